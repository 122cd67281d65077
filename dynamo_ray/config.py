"""Store configuration: YAML or dicts loaded into frozen dataclasses that validate themselves.

Role: the one place that knows every config key, its default and its allowed range. A config
that loads is internally consistent (1 <= R, W <= N <= nodes; Q a power of two), so no other
module re-checks it. A config that does not load raises one `ConfigError` naming every bad
dotted field (``tables.carts.w; nodes``), not just the first. Built-in defaults equal
``configs/local.yaml``.

Must not: import Ray, or read any file other than the YAML it is given.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import yaml

from .errors import ConfigError

CONFLICT_POLICIES = ("siblings", "lww")
CODECS = ("msgpack", "pickle")  # dynamo_ray.codec
EVICTIONS = ("lru",)
PLACEMENTS = ("local", "spread")


class Problems(list):
    """The bad fields found so far: each check appends to it instead of raising, so that one
    `ConfigError` can name them all."""

    def add(self, message: str) -> bool:
        self.append(message)
        return False


@dataclass(frozen=True)
class TableConfig:
    """Per-table replication (DESIGN §4) and conflict policy (§3)."""

    n: int = 3
    r: int = 2
    w: int = 2
    conflict: str = "siblings"
    strict: bool = False  # primaries only: no sloppy quorum, no hinted handoff
    durable: bool = False  # every replica logs and fsyncs a write (once per call) before it answers
    codec: str = "msgpack"  # how values become bytes: msgpack (portable) or pickle (any object)
    ttl_s: Optional[float] = None  # every write expires after this, unless it names its own
    max_memory_mb: Optional[float] = None  # per vnode, for this table's keys (with eviction)
    eviction: Optional[str] = None  # lru: past max_memory_mb drop the least recently used keys

    def check(self, path: str, problems: Problems) -> None:
        quorums = all([_require_int(getattr(self, name), f"{path}.{name}", problems, low=1)
                       for name in ("n", "r", "w")])
        if quorums and self.r > self.n:
            problems.add(f"{path}.r={self.r} is larger than {path}.n={self.n}")
        if quorums and self.w > self.n:
            problems.add(f"{path}.w={self.w} is larger than {path}.n={self.n}")
        _require_choice(self.conflict, f"{path}.conflict", CONFLICT_POLICIES, problems)
        _require_bool(self.strict, f"{path}.strict", problems)
        _require_bool(self.durable, f"{path}.durable", problems)
        _require_choice(self.codec, f"{path}.codec", CODECS, problems)
        if self.ttl_s is not None:
            _require_number(self.ttl_s, f"{path}.ttl_s", problems, above=0)
        if self.max_memory_mb is not None:
            _require_number(self.max_memory_mb, f"{path}.max_memory_mb", problems, low=0.01)
        if self.eviction is not None:
            _require_choice(self.eviction, f"{path}.eviction", EVICTIONS, problems)
        if self.eviction is not None and self.max_memory_mb is None:
            problems.add(f"{path}.eviction={self.eviction!r} needs {path}.max_memory_mb, the "
                         "memory it evicts to stay within")
        if self.max_memory_mb is not None and self.eviction is None:
            problems.add(f"{path}.max_memory_mb needs {path}.eviction: lru (a table's own "
                         "memory limit evicts; storage.memory_limit_mb spills)")
        if self.eviction is not None and self.durable is True:
            problems.add(f"{path}: a table with eviction cannot be durable (evicted keys are "
                         "dropped, not kept)")

    @property
    def evicts(self) -> bool:
        return self.eviction is not None


@dataclass(frozen=True)
class Timeouts:
    request_ms: int = 2000  # deadline of every call between actors

    def check(self, path: str, problems: Problems) -> None:
        _require_int(self.request_ms, f"{path}.request_ms", problems, low=1)


@dataclass(frozen=True)
class Limits:
    max_key_bytes: int = 2048
    max_value_bytes: int = 1 << 20  # of the msgpack-encoded value
    max_batch_keys: int = 100_000  # keys in one get_many / put_many

    def check(self, path: str, problems: Problems) -> None:
        for name in ("max_key_bytes", "max_value_bytes", "max_batch_keys"):
            _require_int(getattr(self, name), f"{path}.{name}", problems, low=1)


@dataclass(frozen=True)
class Handoff:
    enabled: bool = True
    interval_s: float = 1.0
    batch_keys: int = 500  # keys per delivery call

    def check(self, path: str, problems: Problems) -> None:
        _require_bool(self.enabled, f"{path}.enabled", problems)
        _require_number(self.interval_s, f"{path}.interval_s", problems, low=0.01)
        _require_int(self.batch_keys, f"{path}.batch_keys", problems, low=1)


@dataclass(frozen=True)
class AntiEntropy:
    """Merkle-tree anti-entropy between the replicas of every range (DESIGN §4)."""

    enabled: bool = True
    interval_s: float = 10.0
    fanout: int = 16  # the tree of a range has fanout ** depth leaf buckets
    depth: int = 3
    max_keys_per_round: int = 10000  # throttle: keys repaired by one node per round
    latency_goal_ms: float = 100.0  # pause while the coordinator's recent p99 is above this
    tombstone_grace_s: float = 60.0  # reap a tombstone no sooner than this after the delete

    def check(self, path: str, problems: Problems) -> None:
        _require_bool(self.enabled, f"{path}.enabled", problems)
        _require_number(self.interval_s, f"{path}.interval_s", problems, low=0.01)
        shape = all([_require_int(self.fanout, f"{path}.fanout", problems, low=2),
                     _require_int(self.depth, f"{path}.depth", problems, low=1)])
        if shape and self.fanout ** self.depth > 1 << 20:
            problems.add(f"{path}.fanout ** {path}.depth is over 2**20 leaf buckets")
        _require_int(self.max_keys_per_round, f"{path}.max_keys_per_round", problems, low=1)
        _require_number(self.latency_goal_ms, f"{path}.latency_goal_ms", problems, low=0)
        _require_number(self.tombstone_grace_s, f"{path}.tombstone_grace_s", problems, low=0)


@dataclass(frozen=True)
class Storage:
    """Where vnodes keep what does not fit in memory, and their write-ahead logs (DESIGN §5)."""

    spill_dir: Optional[str] = None  # segments under spill_dir/<store>/<node>/<partition>/
    memory_limit_mb: Optional[float] = None  # per vnode; past it the coldest entries spill
    compact_after_segments: int = 8  # a range with more segments is compacted in the background
    wal_checkpoint_mb: float = 16.0  # a log past this size is checkpointed into segments

    def check(self, path: str, problems: Problems) -> None:
        if self.spill_dir is not None and not isinstance(self.spill_dir, str):
            problems.add(f"{path}.spill_dir={self.spill_dir!r} must be a directory path")
        if self.memory_limit_mb is not None:
            _require_number(self.memory_limit_mb, f"{path}.memory_limit_mb", problems, low=0.01)
            if self.spill_dir is None:
                problems.add(f"{path}.memory_limit_mb needs {path}.spill_dir to spill to")
        _require_int(self.compact_after_segments, f"{path}.compact_after_segments", problems,
                     low=2)
        _require_number(self.wal_checkpoint_mb, f"{path}.wal_checkpoint_mb", problems, low=0.01)


@dataclass(frozen=True)
class Gossip:
    """Membership and heartbeat gossip between nodes (Dynamo §4.8)."""

    interval_s: float = 1.0  # the paper's one exchange per second
    suspect_after: int = 3  # intervals without a fresh heartbeat before a view marks a node down
    seeds: tuple = ()  # nodes every other node also gossips with (default: the ring's first)

    def __post_init__(self) -> None:
        if isinstance(self.seeds, list):
            object.__setattr__(self, "seeds", tuple(self.seeds))

    def check(self, path: str, problems: Problems) -> None:
        _require_number(self.interval_s, f"{path}.interval_s", problems, low=0.01)
        _require_int(self.suspect_after, f"{path}.suspect_after", problems, low=1)
        if not isinstance(self.seeds, tuple) or not all(isinstance(s, str) for s in self.seeds):
            problems.add(f"{path}.seeds={self.seeds!r} must be a list of node names")


@dataclass(frozen=True)
class Overload:
    """Bounded queues: past them a request is shed with `Overloaded` instead of waiting."""

    max_inflight_requests: int = 256  # per coordinator, and per client process (either routing)
    max_pending_calls: int = 64  # per vnode, from each caller (Ray's max_pending_calls)
    max_queue_ms: float = 1000.0  # a request queued longer than this before a router took it

    def check(self, path: str, problems: Problems) -> None:
        _require_int(self.max_inflight_requests, f"{path}.max_inflight_requests", problems, low=1)
        _require_int(self.max_pending_calls, f"{path}.max_pending_calls", problems, low=1)
        _require_number(self.max_queue_ms, f"{path}.max_queue_ms", problems, low=0.1)


@dataclass(frozen=True)
class FailureDetection:
    """Local failure detector of each coordinator (Dynamo §4.8.1: a purely local view)."""

    backoff_ms: int = 500  # a replica marked down is probed again after this ...
    max_backoff_ms: int = 8000  # ... doubling per consecutive failure up to this

    def check(self, path: str, problems: Problems) -> None:
        if _require_int(self.backoff_ms, f"{path}.backoff_ms", problems, low=1):
            _require_int(self.max_backoff_ms, f"{path}.max_backoff_ms", problems,
                         low=self.backoff_ms)


@dataclass(frozen=True)
class Versioning:
    max_clock_entries: int = 10  # the paper's pruning threshold ...
    prune_min_age_s: float = 3600.0  # ... applied only to entries older than this (Riak's rule)

    def check(self, path: str, problems: Problems) -> None:
        _require_int(self.max_clock_entries, f"{path}.max_clock_entries", problems, low=1)
        _require_number(self.prune_min_age_s, f"{path}.prune_min_age_s", problems, low=0)


CACHE_TABLE = TableConfig(n=2, r=1, w=1, conflict="lww", codec="pickle", max_memory_mb=32.0,
                          eviction="lru")


def _default_tables() -> dict[str, TableConfig]:
    return {"default": TableConfig(), "carts": TableConfig(), "cache": CACHE_TABLE}


@dataclass(frozen=True)
class StoreConfig:
    name: str = "dynamo"
    placement: str = "local"
    nodes: int = 4
    partitions: int = 8
    tables: Mapping[str, TableConfig] = field(default_factory=_default_tables)
    read_repair: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    handoff: Handoff = field(default_factory=Handoff)
    antientropy: AntiEntropy = field(default_factory=AntiEntropy)
    gossip: Gossip = field(default_factory=Gossip)
    storage: Storage = field(default_factory=Storage)
    overload: Overload = field(default_factory=Overload)
    failure_detection: FailureDetection = field(default_factory=FailureDetection)
    versioning: Versioning = field(default_factory=Versioning)

    def check(self) -> None:
        """Raise one `ConfigError` naming every bad field."""
        problems = Problems()
        self.collect_problems(problems)
        if problems:
            raise ConfigError("; ".join(problems))

    def collect_problems(self, problems: Problems) -> None:
        if not isinstance(self.name, str) or not self.name or ":" in self.name:
            problems.add(f"name={self.name!r} must be a non-empty string without ':'")
        _require_choice(self.placement, "placement", PLACEMENTS, problems)
        nodes = _require_int(self.nodes, "nodes", problems, low=1)
        if _require_int(self.partitions, "partitions", problems, low=1):
            if self.partitions & (self.partitions - 1):
                problems.add(f"partitions={self.partitions} is not a power of two")
            elif nodes and self.partitions < self.nodes:
                problems.add(f"partitions={self.partitions} is fewer than nodes={self.nodes}")
        if not self.tables:
            problems.add("tables is empty: declare at least one table")
        for table_name, table in self.tables.items():
            if not isinstance(table_name, str) or not table_name:
                problems.add(f"tables: table name {table_name!r} must be a non-empty string")
                continue
            path = f"tables.{table_name}"
            before = len(problems)
            table.check(path, problems)
            if len(problems) == before and nodes and table.n > self.nodes:
                problems.add(f"{path}.n={table.n} is larger than nodes={self.nodes}")
            if table.durable is True and self.storage.spill_dir is None:
                problems.add(f"{path}.durable needs storage.spill_dir for its write-ahead log")
        _require_bool(self.read_repair, "read_repair", problems)
        for section in _section_types():
            getattr(self, section).check(section, problems)

    def table(self, name: str) -> TableConfig:
        return self.tables[name]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load(source: Any = None, **overrides: Any) -> StoreConfig:
    """Build a validated StoreConfig from None (defaults), a YAML path, a dict or a StoreConfig,
    then apply keyword overrides (top-level keys; nested sections as dicts, merged key by key).

    A file or dict that declares ``tables`` declares all of them; overrides add to or change the
    tables of the base (``tables={"t": {...}}`` on the defaults gives default, carts and t)."""
    if source is None:
        raw: dict[str, Any] = StoreConfig().to_dict()
    elif isinstance(source, StoreConfig):
        raw = source.to_dict()
    elif isinstance(source, Mapping):
        raw = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        raw = _read_yaml(os.fspath(source))
    else:
        raise ConfigError(f"config must be a path, a dict or a StoreConfig, not {type(source).__name__}")
    merged = _deep_merge(raw, overrides)
    problems = Problems()
    config = _build(StoreConfig, merged, "", problems)
    config.collect_problems(problems)
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(problems)))
    return config


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path!r} is not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at top level")
    return raw


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """``cls`` from the mapping ``raw``; a bad key or a section that is not a mapping is noted
    in ``problems`` and left at its default, so that the other fields are still checked."""
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, Mapping):
        problems.add(f"{path or 'config'} must be a mapping, not {type(raw).__name__}")
        return cls()
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            problems.add(f"unknown config key {where!r}")
        elif key == "tables" and cls is StoreConfig:
            kwargs[key] = _build_tables(value, where, problems)
        elif cls is StoreConfig and key in _section_types():
            kwargs[key] = _build(_section_types()[key], value, where, problems)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _build_tables(raw: Any, path: str, problems: Problems) -> dict[str, TableConfig]:
    if not isinstance(raw, Mapping):
        problems.add(f"{path} must be a mapping of table name to settings")
        return _default_tables()
    return {
        name: _build(TableConfig, {} if settings is None else settings, f"{path}.{name}",
                     problems)
        for name, settings in raw.items()
    }


def _section_types() -> dict[str, type]:
    return {
        "timeouts": Timeouts,
        "limits": Limits,
        "handoff": Handoff,
        "antientropy": AntiEntropy,
        "gossip": Gossip,
        "storage": Storage,
        "overload": Overload,
        "failure_detection": FailureDetection,
        "versioning": Versioning,
    }


def _require_int(value: Any, path: str, problems: Problems, *, low: int | None = None) -> bool:
    """True when ``value`` is an integer of at least ``low``; else the problem is noted."""
    if isinstance(value, bool) or not isinstance(value, int):
        return problems.add(f"{path}={value!r} must be an integer")
    if low is not None and value < low:
        return problems.add(f"{path}={value} must be at least {low}")
    return True


def _require_number(value: Any, path: str, problems: Problems, *, low: float | None = None,
                    above: float | None = None) -> bool:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
            or value in (float("inf"), float("-inf"))):
        return problems.add(f"{path}={value!r} must be a finite number")
    if low is not None and value < low:
        return problems.add(f"{path}={value} must be at least {low}")
    if above is not None and value <= above:
        return problems.add(f"{path}={value} must be more than {above}")
    return True


def _require_bool(value: Any, path: str, problems: Problems) -> bool:
    if not isinstance(value, bool):
        return problems.add(f"{path}={value!r} must be true or false")
    return True


def _require_choice(value: Any, path: str, choices: tuple, problems: Problems) -> bool:
    if not isinstance(value, str) or value not in choices:
        return problems.add(f"{path}={value!r} is not one of {', '.join(choices)}")
    return True
