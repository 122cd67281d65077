"""Store configuration: YAML or dicts loaded into frozen dataclasses that validate themselves.

Role: the one place that knows every config key, its default and its allowed range. A config
that loads is internally consistent (1 <= R, W <= N <= nodes; Q a power of two), so no other
module re-checks it. Every rejection is a `ConfigError` whose message names the dotted field
(``tables.carts.w``). Built-in defaults equal ``configs/local.yaml``.

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
PLACEMENTS = ("local", "spread")


@dataclass(frozen=True)
class TableConfig:
    """Per-table replication (DESIGN §4) and conflict policy (§3)."""

    n: int = 3
    r: int = 2
    w: int = 2
    conflict: str = "siblings"
    strict: bool = False  # primaries only: no sloppy quorum, no hinted handoff
    durable: bool = False  # the coordinating replica logs and fsyncs each write before the ack

    def check(self, path: str) -> None:
        for name in ("n", "r", "w"):
            _require_int(getattr(self, name), f"{path}.{name}", low=1)
        if self.r > self.n:
            raise ConfigError(f"{path}.r={self.r} is larger than {path}.n={self.n}")
        if self.w > self.n:
            raise ConfigError(f"{path}.w={self.w} is larger than {path}.n={self.n}")
        if self.conflict not in CONFLICT_POLICIES:
            raise ConfigError(f"{path}.conflict={self.conflict!r} is not one of {CONFLICT_POLICIES}")
        _require_bool(self.strict, f"{path}.strict")
        _require_bool(self.durable, f"{path}.durable")


@dataclass(frozen=True)
class Timeouts:
    request_ms: int = 2000  # deadline of every call between actors

    def check(self, path: str) -> None:
        _require_int(self.request_ms, f"{path}.request_ms", low=1)


@dataclass(frozen=True)
class Limits:
    max_key_bytes: int = 2048
    max_value_bytes: int = 1 << 20  # of the msgpack-encoded value
    max_batch_keys: int = 100_000  # keys in one get_many / put_many

    def check(self, path: str) -> None:
        _require_int(self.max_key_bytes, f"{path}.max_key_bytes", low=1)
        _require_int(self.max_value_bytes, f"{path}.max_value_bytes", low=1)
        _require_int(self.max_batch_keys, f"{path}.max_batch_keys", low=1)


@dataclass(frozen=True)
class Handoff:
    enabled: bool = True
    interval_s: float = 1.0
    batch_keys: int = 500  # keys per delivery call

    def check(self, path: str) -> None:
        _require_bool(self.enabled, f"{path}.enabled")
        _require_number(self.interval_s, f"{path}.interval_s", low=0.01)
        _require_int(self.batch_keys, f"{path}.batch_keys", low=1)


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

    def check(self, path: str) -> None:
        _require_bool(self.enabled, f"{path}.enabled")
        _require_number(self.interval_s, f"{path}.interval_s", low=0.01)
        _require_int(self.fanout, f"{path}.fanout", low=2)
        _require_int(self.depth, f"{path}.depth", low=1)
        if self.fanout ** self.depth > 1 << 20:
            raise ConfigError(f"{path}.fanout ** {path}.depth is over 2**20 leaf buckets")
        _require_int(self.max_keys_per_round, f"{path}.max_keys_per_round", low=1)
        _require_number(self.latency_goal_ms, f"{path}.latency_goal_ms", low=0)
        _require_number(self.tombstone_grace_s, f"{path}.tombstone_grace_s", low=0)


@dataclass(frozen=True)
class Storage:
    """Where vnodes keep what does not fit in memory, and their write-ahead logs (DESIGN §5)."""

    spill_dir: Optional[str] = None  # segments under spill_dir/<store>/<node>/<partition>/
    memory_limit_mb: Optional[float] = None  # per vnode; past it the coldest entries spill
    compact_after_segments: int = 8  # a range with more segments is compacted in the background
    wal_checkpoint_mb: float = 16.0  # a log past this size is checkpointed into segments

    def check(self, path: str) -> None:
        if self.spill_dir is not None and not isinstance(self.spill_dir, str):
            raise ConfigError(f"{path}.spill_dir={self.spill_dir!r} must be a directory path")
        if self.memory_limit_mb is not None:
            _require_number(self.memory_limit_mb, f"{path}.memory_limit_mb", low=0.01)
            if self.spill_dir is None:
                raise ConfigError(f"{path}.memory_limit_mb needs {path}.spill_dir to spill to")
        _require_int(self.compact_after_segments, f"{path}.compact_after_segments", low=2)
        _require_number(self.wal_checkpoint_mb, f"{path}.wal_checkpoint_mb", low=0.01)


@dataclass(frozen=True)
class Gossip:
    """Membership and heartbeat gossip between nodes (Dynamo §4.8)."""

    interval_s: float = 1.0  # the paper's one exchange per second
    suspect_after: int = 3  # intervals without a fresh heartbeat before a view marks a node down
    seeds: tuple = ()  # nodes every other node also gossips with (default: the ring's first)

    def __post_init__(self) -> None:
        if isinstance(self.seeds, list):
            object.__setattr__(self, "seeds", tuple(self.seeds))

    def check(self, path: str) -> None:
        _require_number(self.interval_s, f"{path}.interval_s", low=0.01)
        _require_int(self.suspect_after, f"{path}.suspect_after", low=1)
        if not isinstance(self.seeds, tuple) or not all(isinstance(s, str) for s in self.seeds):
            raise ConfigError(f"{path}.seeds={self.seeds!r} must be a list of node names")


@dataclass(frozen=True)
class Overload:
    """Bounded queues: past them a request is shed with `Overloaded` instead of waiting."""

    max_inflight_requests: int = 256  # per coordinator, and per client process (either routing)
    max_pending_calls: int = 64  # per vnode, from each caller (Ray's max_pending_calls)
    max_queue_ms: float = 1000.0  # a request queued longer than this before a router took it

    def check(self, path: str) -> None:
        _require_int(self.max_inflight_requests, f"{path}.max_inflight_requests", low=1)
        _require_int(self.max_pending_calls, f"{path}.max_pending_calls", low=1)
        _require_number(self.max_queue_ms, f"{path}.max_queue_ms", low=0.1)


@dataclass(frozen=True)
class FailureDetection:
    """Local failure detector of each coordinator (Dynamo §4.8.1: a purely local view)."""

    backoff_ms: int = 500  # a replica marked down is probed again after this ...
    max_backoff_ms: int = 8000  # ... doubling per consecutive failure up to this

    def check(self, path: str) -> None:
        _require_int(self.backoff_ms, f"{path}.backoff_ms", low=1)
        _require_int(self.max_backoff_ms, f"{path}.max_backoff_ms", low=self.backoff_ms)


@dataclass(frozen=True)
class Versioning:
    max_clock_entries: int = 10  # the paper's pruning threshold ...
    prune_min_age_s: float = 3600.0  # ... applied only to entries older than this (Riak's rule)

    def check(self, path: str) -> None:
        _require_int(self.max_clock_entries, f"{path}.max_clock_entries", low=1)
        _require_number(self.prune_min_age_s, f"{path}.prune_min_age_s", low=0)


def _default_tables() -> dict[str, TableConfig]:
    return {"default": TableConfig(), "carts": TableConfig()}


@dataclass(frozen=True)
class StoreConfig:
    name: str = "dynamo"
    placement: str = "local"
    nodes: int = 4
    partitions: int = 16
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
        if not isinstance(self.name, str) or not self.name or ":" in self.name:
            raise ConfigError(f"name={self.name!r} must be a non-empty string without ':'")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"placement={self.placement!r} is not one of {PLACEMENTS}")
        _require_int(self.nodes, "nodes", low=1)
        _require_int(self.partitions, "partitions", low=1)
        if self.partitions & (self.partitions - 1):
            raise ConfigError(f"partitions={self.partitions} is not a power of two")
        if self.partitions < self.nodes:
            raise ConfigError(f"partitions={self.partitions} is fewer than nodes={self.nodes}")
        if not self.tables:
            raise ConfigError("tables is empty: declare at least one table")
        for table_name, table in self.tables.items():
            if not isinstance(table_name, str) or not table_name:
                raise ConfigError(f"tables: table name {table_name!r} must be a non-empty string")
            table.check(f"tables.{table_name}")
            if table.n > self.nodes:
                raise ConfigError(
                    f"tables.{table_name}.n={table.n} is larger than nodes={self.nodes}"
                )
            if table.durable and self.storage.spill_dir is None:
                raise ConfigError(f"tables.{table_name}.durable needs storage.spill_dir for "
                                  "its write-ahead log")
        _require_bool(self.read_repair, "read_repair")
        for section in _section_types():
            getattr(self, section).check(section)

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
    config = _build(StoreConfig, merged, "")
    config.check()
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


def _build(cls: type, raw: Any, path: str) -> Any:
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path or 'config'} must be a mapping, not {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            raise ConfigError(f"unknown config key {where!r}")
        if key == "tables" and cls is StoreConfig:
            kwargs[key] = _build_tables(value, where)
            continue
        ftype = _section_types().get(key) if cls is StoreConfig else None
        kwargs[key] = _build(ftype, value, where) if ftype else value
    return cls(**kwargs)


def _build_tables(raw: Any, path: str) -> dict[str, TableConfig]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path} must be a mapping of table name to settings")
    return {
        name: _build(TableConfig, {} if settings is None else settings, f"{path}.{name}")
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


def _require_int(value: Any, path: str, *, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}={value!r} must be an integer")
    if low is not None and value < low:
        raise ConfigError(f"{path}={value} must be at least {low}")


def _require_number(value: Any, path: str, *, low: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}={value!r} must be a number")
    if low is not None and value < low:
        raise ConfigError(f"{path}={value} must be at least {low}")


def _require_bool(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}={value!r} must be true or false")
