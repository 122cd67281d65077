"""The public surface: start or connect to a store, and operate it.

Role (DESIGN §6): `start` and `connect` give a `Store` handle, which opens tables (`table`,
`async_table`; reads and writes live in `table.py`), reports `status`, changes membership,
injects faults for tests and chaos runs, and stops the store. Every call to the store's actors
has a deadline and whatever Ray raises becomes a `DynamoError`. A `Store` handle pickles, so it
travels into Ray tasks and actors.

Must not: hold store state beyond a cached view of the config and ring.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Mapping, Optional

import ray

from .. import config as config_mod
from ..core import codec, versioning
from ..runtime import placement
from ..config import StoreConfig
from ..errors import (ClusterNotFound, DynamoError, InvalidArgument, StoreExists,
                     TableNotFound, Unavailable)
from ..runtime.localray import start_local_ray
from ..core.ring import Ring, claim
from ..protocol import membership
from .routing import ClientRoute, CoordinatorRoute, rpc_timeout_s
from ..runtime.hosts import spawn_nodes
from ..runtime.transport import RayTransport
from .table import AsyncTable, Table, _checked_keys, now_ms

START_TIMEOUT_S = 180.0


# --- Ray session ----------------------------------------------------------------------------------
def _ensure_ray() -> None:
    """Use the Ray this process is connected to; else the cluster in RAY_ADDRESS (a Ray job);
    else start a private local Ray on 127.0.0.1."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="warning", log_to_driver=False)
    else:
        start_local_ray()


# --- starting and finding stores ------------------------------------------------------------------
def start(config: Any = None, *, name: str = "dynamo", **overrides: Any) -> "Store":
    """Start a store (and a local Ray on 127.0.0.1 when Ray is not initialised and RAY_ADDRESS
    is unset). ``config``: None (built-in defaults = configs/local.yaml), a YAML path, a dict or
    a StoreConfig; ``overrides``: top-level config keys, nested sections as dicts."""
    cfg = config_mod.load(config, **overrides)
    if name != "dynamo":  # an explicit name wins over the config's
        cfg = config_mod.load(cfg, name=name)
    _ensure_ray()
    if placement.store_node_names(cfg.name):
        raise StoreExists(
            f"a store named {cfg.name!r} is already running; use dynamo_ray.connect({cfg.name!r})"
        )
    replicas = max(t.n for t in cfg.tables.values())
    ring = claim(cfg.partitions, placement.node_names(cfg.nodes), replicas)
    ray_nodes = placement.ray_nodes_for(cfg.placement, cfg.nodes)
    try:
        spawn_nodes(cfg.name, cfg, ring, dict(zip(placement.node_names(cfg.nodes), ray_nodes)))
    except DynamoError:
        _kill_store_actors(cfg.name)
        raise
    return Store(cfg.name, cfg, ring)


def connect(name: str = "dynamo", *, address: Optional[str] = "auto") -> "Store":
    """A handle on a running store; initialises Ray (``address="auto"``) if needed."""
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level="warning", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ClusterNotFound(f"no Ray cluster to connect to at {address!r}: {e}") from None
    view = _describe(name)
    return Store(name, view["config"], view["ring"])


def _describe(name: str) -> dict:
    nodes = placement.store_node_names(name)
    if not nodes:
        raise ClusterNotFound(f"no store named {name!r} is running in this Ray cluster")
    errors = []
    for node in nodes:
        handle = placement.lookup(placement.node_actor_name(name, node))
        if handle is None:
            continue
        try:
            return ray.get(handle.describe.remote(), timeout=30)
        except Exception as e:  # a node that is down: ask the next
            errors.append(f"{node}: {type(e).__name__}")
    raise ClusterNotFound(f"store {name!r} has node actors but none answered ({', '.join(errors)})")


def _kill_store_actors(name: str, node: Optional[str] = None) -> None:
    """Kill every actor of store ``name`` (of one of its nodes, if given)."""
    names = placement.store_actor_names(name)
    if node is not None:
        names = [n for n in names if n.split(":")[2] == node]
    for actor_name in names:
        handle = placement.lookup(actor_name)
        if handle is not None:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass


def _quiet_get(refs: list, timeout_s: float) -> None:
    """Wait for fire-and-forget control calls; a node that is down simply does not answer."""
    for ref in refs:
        try:
            ray.get(ref, timeout=timeout_s)
        except Exception:
            pass


def _reconnect(name: str, config: StoreConfig, ring: Ring) -> "Store":
    return Store(name, config, ring)


class Store:
    """A running store. Cheap to create and to pickle: it holds the config and a ring view."""

    def __init__(self, name: str, config: StoreConfig, ring: Ring):
        self.name = name
        self.config = config
        self.ring = ring
        self._routes: dict[str, Any] = {}
        self._cut: dict[str, list] = {}  # the partition this handle applied: node -> unreachable

    def __reduce__(self):
        return (_reconnect, (self.name, self.config, self.ring))

    def __repr__(self) -> str:
        return f"Store({self.name!r}, nodes={len(self.ring.nodes)}, partitions={self.ring.partitions})"

    # --- tables -------------------------------------------------------------------------------
    def table(self, name: str = "default", *, merge: Optional[Callable] = None,
              via: Optional[str] = None, routing: str = "coordinator") -> Table:
        """A handle on table ``name``. ``merge``: reconcile siblings on read; ``via``: send
        requests through that node's coordinator; ``routing="client"``: coordinate in this
        process and call vnodes directly (one hop fewer)."""
        self._check_table_args(name, merge, via, routing)
        return Table(self, name, merge=merge, via=via, routing=routing)

    def async_table(self, name: str = "default", *, merge: Optional[Callable] = None,
                    via: Optional[str] = None, routing: str = "coordinator") -> AsyncTable:
        """`table` with coroutine methods; concurrent single-key requests are coalesced."""
        self._check_table_args(name, merge, via, routing)
        return AsyncTable(self, name, merge=merge, via=via, routing=routing)

    def _check_table_args(self, name: str, merge: Any, via: Any, routing: Any) -> None:
        if name not in self.config.tables:
            raise TableNotFound(
                f"table {name!r} is not in store {self.name!r} (tables: "
                f"{', '.join(sorted(self.config.tables))})"
            )
        if routing not in ("coordinator", "client"):
            raise InvalidArgument(f"routing={routing!r} must be 'coordinator' or 'client'")
        if via is not None and (routing != "coordinator" or via not in self.ring.nodes):
            raise InvalidArgument(f"via={via!r} must name a node of store {self.name!r}, with "
                                  "routing='coordinator'")
        if merge is not None and not callable(merge):
            raise InvalidArgument(f"merge={merge!r} must be a function of the list of siblings")

    def _route_for(self, routing: str) -> Any:
        route = self._routes.get(routing)
        if route is None:
            route = self._routes[routing] = (ClientRoute(self) if routing == "client"
                                             else CoordinatorRoute(self))
        return route

    def _forget_routes(self) -> None:
        for route in self._routes.values():
            route.forget()

    def nodes(self) -> list[str]:
        """The store's nodes, in the newest ring any running node holds."""
        return list(self.refresh_ring().nodes)

    def refresh_ring(self) -> Ring:
        """Adopt the newest ring among the running nodes (gossip spreads it; this reads it)."""
        refs = []
        for node in placement.store_node_names(self.name):
            handle = placement.lookup(placement.node_actor_name(self.name, node))
            if handle is not None:
                refs.append(handle.describe.remote())
        for ref in refs:
            try:
                ring = ray.get(ref, timeout=rpc_timeout_s(self.config))["ring"]
            except Exception:
                continue
            if ring.version > self.ring.version:
                self.ring = ring
        return self.ring

    # --- membership (DESIGN §2) -----------------------------------------------------------------
    def add_node(self, node: str, *, ray_node: Optional[str] = None, progress: bool = True) -> dict:
        """Add ``node``: claim about 1/(S+1) of the partitions for it and stream their ranges
        to it before ownership switches; reads and writes go on meanwhile. With placement
        ``spread`` it is pinned to ``ray_node`` or to a Ray node hosting no store node.
        Returns a report (partitions_moved, transfers, keys_moved, seconds)."""
        old = self.refresh_ring()
        if not isinstance(node, str) or not node or ":" in node:
            raise InvalidArgument(f"node name {node!r} must be a non-empty string without ':'")
        if node in old.nodes or placement.lookup(placement.node_actor_name(self.name, node)):
            raise InvalidArgument(f"{node!r} is already a node of store {self.name!r}")
        if len(old.nodes) + 1 > old.partitions:
            raise InvalidArgument(f"partitions={old.partitions} cannot be spread over "
                              f"{len(old.nodes) + 1} nodes")
        where = ray_node or self._ray_node_for(node)
        new = claim(old.partitions, [*old.nodes, node], self._replicas(), previous=old)
        return self._change(old, new, joining={node: where}, leaving=[], progress=progress)

    def remove_node(self, node: str, *, progress: bool = True) -> dict:
        """Remove ``node`` gracefully: its partitions go to the others (streamed first), its
        hints are delivered, then it stops. Returns a report as `add_node` does."""
        old = self.refresh_ring()
        if node not in old.nodes:
            raise InvalidArgument(f"{node!r} is not a node of store {self.name!r} ({list(old.nodes)})")
        rest = [n for n in old.nodes if n != node]
        if not rest or max(t.n for t in self.config.tables.values()) > len(rest):
            raise InvalidArgument(f"removing {node!r} would leave {len(rest)} nodes, fewer than a "
                              "table's n")
        new = claim(old.partitions, rest, self._replicas(), previous=old)
        report = self._change(old, new, joining={}, leaving=[node], progress=progress)
        _kill_store_actors(self.name, node)
        self._wait_gone(node)
        return report

    def _replicas(self) -> int:
        return max(t.n for t in self.config.tables.values())

    def _change(self, old: Ring, new: Ring, joining: dict, leaving: list, progress: bool) -> dict:
        import asyncio

        from .progress import bar

        async def spawn_node(node, ring, partitions, ray_node):
            await asyncio.get_running_loop().run_in_executor(
                None, spawn_nodes, self.name, self.config, ring, {node: ray_node},
                {node: partitions})

        change = membership.change(
            RayTransport(self.name), self.config, old, new, joining, leaving, spawn_node,
            progress=(lambda total, desc, unit: bar(total, desc, unit)) if progress else None)
        report = asyncio.run_coroutine_threadsafe(change, ClientRoute.background_loop()).result()
        self.ring = new
        self._forget_routes()
        return report

    # --- operations ---------------------------------------------------------------------------
    def status(self, view: Optional[str] = None):
        """One row per vnode: node, partition, up, keys, bytes, hints_pending, ranges (key
        ranges held), calls (requests served), expired (requests dropped unserved because
        their caller had already given up on them), evicted (keys of cache tables dropped to
        stay within their ``max_memory_mb``); anti-entropy totals of the exchanges it started:
        ae_ranges (ranges compared), ae_nodes (tree nodes and listing entries received),
        ae_keys (key states moved), ae_bytes, ae_reaped (tombstones removed here), ae_last (time
        of its last exchange); memory_bytes (what it holds in memory by its own account),
        rss_bytes and uss_bytes (its process's resident and private resident memory), segments (spill files), storage_errors
        (files set aside as corrupt); and actor (the vnode's current version id).

        ``view``: take ``up`` from that node's gossip view (heartbeats) instead of asking each
        vnode from here."""
        import pandas as pd

        self.refresh_ring()
        rows: list[dict] = []
        for node in self.ring.nodes:
            handle = placement.lookup(placement.node_actor_name(self.name, node))
            answered = None
            if handle is not None:
                try:
                    answered = ray.get(handle.vnode_info.remote(), timeout=rpc_timeout_s(self.config))
                except Exception:
                    answered = None
            if answered is None:
                answered = [{"partition": p, "node": node, "up": False}
                            for p in self.ring.partitions_of(node)]
            rows.extend(answered)
        frame = pd.DataFrame(rows)
        counts = ("keys", "bytes", "hints_pending", "ranges", "calls", "expired", "evicted",
                  "ae_ranges",
                  "ae_nodes", "ae_keys", "ae_bytes", "ae_reaped", "memory_bytes", "cache_bytes",
                  "rss_bytes", "uss_bytes", "segments", "storage_errors")
        for column in counts:
            frame[column] = frame[column].fillna(0).astype(int) if column in frame else 0
        last = frame["ae_last"] if "ae_last" in frame else pd.Series(0.0, index=frame.index)
        frame["ae_last"] = pd.to_datetime(last.where(last > 0), unit="s")
        columns = ["node", "partition", "up", "keys", "bytes", "hints_pending", "ranges", "calls",
                   "expired", "evicted", *counts[7:12], "ae_last", *counts[12:], "actor"]
        frame = frame.reindex(columns=columns).sort_values("partition").reset_index(drop=True)
        if view is not None:
            frame["up"] = frame["node"].map(self._view_of(view)).fillna(False).astype(bool)
        return frame

    def _view_of(self, node: str) -> dict[str, bool]:
        """Which nodes ``node``'s gossip view holds up."""
        handle = self._node_handle(node)
        if handle is None:
            raise Unavailable(f"{node!r} is down: it has no view to show", needed=1, got=0)
        try:
            return ray.get(handle.view_status.remote(), timeout=rpc_timeout_s(self.config))
        except Exception as e:
            raise Unavailable(f"{node!r} did not answer: {type(e).__name__}", needed=1, got=0) from None

    # --- fault injection (DESIGN §4; the chaos jobs and tests use these) ----------------------
    def _node_handle(self, node: str) -> Optional[Any]:
        if node not in self.ring.nodes:
            raise InvalidArgument(f"{node!r} is not a node of store {self.name!r} ({self.nodes()})")
        return placement.lookup(placement.node_actor_name(self.name, node))

    def _wait_gone(self, node: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            n.split(":")[2] == node for n in placement.store_actor_names(self.name)
        ):
            time.sleep(0.05)

    def fail_node(self, node: str) -> None:
        """Crash ``node``: its node actor, vnodes and coordinator die; their memory is gone."""
        self._node_handle(node)
        _kill_store_actors(self.name, node)
        self._wait_gone(node)
        self._forget_routes()

    def recover_node(self, node: str) -> None:
        """Start a fresh ``node`` (same name and partitions, empty memory) in place of a failed
        one: on the Ray node it was on if that is alive, else on one hosting no store node."""
        if self._node_handle(node) is not None:
            raise InvalidArgument(f"{node!r} is running; fail_node({node!r}) first")
        self._wait_gone(node)
        spawn_nodes(self.name, self.config, self.ring, {node: self._ray_node_for(node)})
        self._forget_routes()
        if self._cut.get(node):  # it comes back on its side of the partition
            self._set_unreachable({node: self._cut[node]})

    def _ray_node_for(self, node: str) -> str:
        if self.config.placement == "local":
            return placement.current_ray_node()
        alive = placement.alive_ray_nodes()
        used = set()
        for other in self.ring.nodes:
            handle = placement.lookup(placement.node_actor_name(self.name, other))
            if handle is not None:
                try:
                    used.add(ray.get(handle.describe.remote(), timeout=10)["ray_node"])
                except Exception:
                    pass
        free = [n for n in alive if n not in used]
        if not free:
            raise Unavailable(f"no Ray node without a store node is alive to host {node!r}")
        return free[0]

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network: calls between nodes of different groups fail as unreachable. Nodes
        named in no group form one more group together. A node's coordinator is on its side."""
        sides = [list(g) for g in groups]
        named = [n for g in sides for n in g]
        for n in named:
            self._node_handle(n)
        if len(set(named)) != len(named):
            raise InvalidArgument(f"a node is named in two groups: {sides}")
        rest = [n for n in self.ring.nodes if n not in named]
        if rest:
            sides.append(rest)
        side_of = {n: i for i, g in enumerate(sides) for n in g}
        self._set_unreachable({
            n: [m for m in self.ring.nodes if side_of[m] != side_of[n]] for n in self.ring.nodes
        })

    def heal(self) -> None:
        """End every partition."""
        self._set_unreachable({n: [] for n in self.ring.nodes})

    def _set_unreachable(self, cut: Mapping[str, list]) -> None:
        self._cut.update(cut)
        refs = []
        for node, others in cut.items():
            handle = self._node_handle(node)
            if handle is not None:
                refs.append(handle.set_unreachable.remote(others))
        _quiet_get(refs, rpc_timeout_s(self.config))

    def slow_node(self, node: str, delay_ms: int, *, clock_skew_ms: int = 0) -> None:
        """Make ``node``'s vnodes answer ``delay_ms`` late (0 ends it); optionally skew the
        clock its versions are stamped with."""
        handle = self._node_handle(node)
        if handle is not None:
            _quiet_get([handle.set_faults.remote(delay_ms, clock_skew_ms)], rpc_timeout_s(self.config))

    def run_antientropy(self, nodes: Optional[Iterable[str]] = None) -> dict:
        """Run one anti-entropy round now (besides the scheduled ones) on every node, or on
        ``nodes``, and wait for it; returns the summed figures: ae_ranges, ae_nodes, ae_keys,
        tree_bytes, state_bytes, repaired, reaped."""
        refs = []
        for node in self.ring.nodes if nodes is None else nodes:
            handle = placement.lookup(placement.node_actor_name(self.name, node))
            if handle is not None:
                refs.append(handle.antientropy_now.remote())
        totals: dict = {}
        for ref in refs:
            try:
                figures = ray.get(ref, timeout=120)
            except Exception:
                continue
            for name, value in figures.items():
                totals[name] = totals.get(name, 0) + value
        return totals

    # --- inspection ---------------------------------------------------------------------------
    def inspect(self, table: str, key: Any) -> dict[str, list]:
        """Every copy of ``key`` in the store: {replica: [values]}, one entry per vnode that
        holds it, primaries ("node-2/p5") and hinted copies ("node-4/p7 hint for p5") alike.
        A deleted or expired key shows as []."""
        return self.inspect_many(table, [key])[key]

    def inspect_many(self, table: str, keys: Iterable[Any]) -> dict[Any, dict[str, list]]:
        """`inspect` for many keys: one call per node per range."""
        if table not in self.config.tables:
            raise TableNotFound(f"table {table!r} is not in store {self.name!r}")
        keys = _checked_keys(keys, self.config.limits.max_key_bytes)
        codec_name, read_ms = self.config.tables[table].codec, now_ms()
        found: dict[Any, dict[str, list]] = {k: {} for k in keys}
        refs = []
        for node in self.ring.nodes:
            handle = placement.lookup(placement.node_actor_name(self.name, node))
            if handle is not None:
                refs.append((node, handle.inspect_many.remote(table, keys)))
        for node, ref in refs:
            try:
                copies = ray.get(ref, timeout=rpc_timeout_s(self.config))
            except Exception:
                continue
            for key, partition, hint, blob in copies:
                label = f"{node}/p{partition}" + (f" hint for p{hint}" if hint is not None else "")
                state = versioning.decode(blob)
                found[key][label] = [codec.decode(v, codec_name) for v in versioning.values(state)
                                     if not codec.expired(v, read_ms)]
        return found

    def stop(self) -> None:
        """Kill every actor of this store; returns once Ray no longer lists any of them."""
        _kill_store_actors(self.name)
        deadline = time.monotonic() + 30
        while placement.store_actor_names(self.name) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._forget_routes()


