"""What must hold of every simulated history, beyond the shipped set/register/sibling checkers
(`dynamo_ray.testing`). Each returns a list of violations (empty: it holds).

- `n_copies`: after healing and quiescence (hints delivered, no anti-entropy yet) every
  acknowledged cart add is on N distinct nodes: primaries of its range, or fallbacks holding
  it under a hint. Excused, because N nodes were not reachable or the router died: an add
  whose write (and the background work after it) overlapped a partition, an isolation or a
  restart of every node, or whose coordinator crashed before the background work could end;
- `merkle_converged`: after anti-entropy, the primaries of every range have equal roots;
- `no_dot_reused`: two different values never carry one dot (the kv679 loss);
- `deleted_stay_deleted`: a key whose delete was acknowledged (and never written again)
  reads absent;
- `reads_back`: every acknowledged add is in the cart read back (used after a full restart
  of the durable table, at its R).

Pure: reads the simulated vnodes' state directly; no Ray.
"""

from __future__ import annotations

from typing import Iterable

from ..core import versioning
from .workload import CARTS, values_of


def _elements(blobs: Iterable) -> set:
    return {x for blob in blobs for sibling in values_of(blob) for x in sibling}


def _windows(history, kinds: tuple) -> list:
    windows = []
    for invoke, done in history.pairs():
        if invoke.f == "fault" and invoke.key in kinds:
            windows.append((invoke.time_s, done.time_s if done is not None else float("inf"),
                            done.value if done is not None else ""))
    return windows


def n_copies(cluster, history, clients: list, background_s: float) -> list[str]:
    n = cluster.config.tables[CARTS].n
    ring = cluster.ring
    network_faults = _windows(history, ("partition", "isolate"))
    crashes = _windows(history, ("crash",))
    acked = [a for c in clients for a in c.acked]
    keys = sorted({a[0] for a in acked})
    holders: dict = {k: {} for k in keys}
    for address, vnode in cluster.vnodes().items():
        for key, hint, blob in vnode.inspect(CARTS, keys):
            kp = ring.partition_of(key)
            if hint is not None or address.partition in ring.preference_list(kp, n):
                holders[key].setdefault(address.node, []).append(blob)
    violations = []
    for key, element, via, invoked_s, done_s in acked:
        end_s = done_s + background_s
        if any(a <= end_s and invoked_s <= b for a, b, _ in network_faults):
            continue
        # a crash of every node, or of the coordinator before its background work ended
        if any(a <= end_s and done_s <= b and ("," in detail or detail == via)
               for a, b, detail in crashes):
            continue
        nodes = sorted(node for node, blobs in holders[key].items() if element in _elements(blobs))
        if len(nodes) < n:
            violations.append(f"n-copies: add {element!r} to {key!r} (acknowledged at "
                              f"{done_s:.3f}s) is on {len(nodes)} of {n} nodes: {nodes}")
    return violations


def merkle_converged(cluster) -> list[str]:
    ring, vnodes = cluster.ring, cluster.vnodes()
    by_partition = {a.partition: v for a, v in vnodes.items() if ring.owners[a.partition] == a.node}
    violations = []
    for table, tcfg in cluster.config.tables.items():
        if tcfg.evicts:
            continue
        for kp in range(ring.partitions):
            roots = {}
            for p in ring.preference_list(kp, tcfg.n):
                store = by_partition[p].ranges.get((table, kp)) if p in by_partition else None
                roots[p] = store.tree.root() if store is not None and store.tree else 0
            if len(set(roots.values())) > 1:
                violations.append(f"merkle: range {table}/{kp} has roots {roots}")
    return violations


def no_dot_reused(cluster, clients: list) -> list[str]:
    seen: dict = {}
    violations = []
    blobs = [s for c in clients for s in c.states]
    for vnode in cluster.vnodes().values():
        for stores in (vnode.ranges.values(), vnode.hinted.values()):
            for store in stores:
                blobs += [blob for _, blob in store.items()]
    for blob in blobs:
        for s in versioning.decode(blob).siblings:
            if s.value is None:
                continue
            first = seen.setdefault(s.dot, s.value)
            if first != s.value:
                violations.append(f"dot {s.dot} carries two values: {first!r} and {s.value!r}")
                seen[s.dot] = s.value
    return sorted(set(violations))


def deleted_stay_deleted(found: dict) -> list[str]:
    """``found``: {deleted key: the state read back}."""
    return [f"deleted key {key!r} came back as {values_of(blob)}"
            for key, blob in found.items() if values_of(blob)]


def reads_back(clients: list, carts: dict, when: str) -> list[str]:
    """``carts``: {key: the state read back}."""
    present = {k: _elements([b]) for k, b in carts.items()}
    return [f"{when}: acknowledged add {element!r} to {key!r} is not read back"
            for c in clients for key, element, *_ in c.acked
            if element not in present.get(key, set())]
