"""Where the store's actors live and what they are called.

Role (DESIGN §1): the one module that spawns actors and finds them again. Every actor of store
S is named in Ray namespace ``dynamo`` (``S:node:NAME``, ``S:vnode:NAME:P``,
``S:coordinator:NAME``) so any driver, job, task or actor of the cluster can find it. Node actors
are detached (the store outlives the driver that started it); a node's vnodes and coordinator are
owned by it and pinned to its Ray node, so a node's death takes them with it.

Placement ``local`` puts every node on the caller's Ray node (several simulated hosts on one
machine); ``spread`` puts one node per Ray node of the cluster, pinned.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import ConfigError

NAMESPACE = "dynamo"


def node_actor_name(store: str, node: str) -> str:
    return f"{store}:node:{node}"


def vnode_actor_name(store: str, node: str, partition: int) -> str:
    return f"{store}:vnode:{node}:{partition}"


def coordinator_actor_name(store: str, node: str) -> str:
    return f"{store}:coordinator:{node}"


def node_names(count: int) -> list[str]:
    return [f"node-{i + 1}" for i in range(count)]


@functools.lru_cache(maxsize=None)
def _remote_class(cls: type) -> Any:
    return ray.remote(cls)


def spawn(
    cls: type,
    name: str,
    *args: Any,
    ray_node_id: Optional[str] = None,
    detached: bool = False,
    max_concurrency: Optional[int] = None,
    max_pending_calls: int = -1,
) -> Any:
    """Start actor ``cls`` (a plain class) named ``name``, pinned to ``ray_node_id`` if given."""
    options: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "num_cpus": 0,
        "max_restarts": 0,
        "max_pending_calls": max_pending_calls,
        "enable_task_events": False,  # per-call bookkeeping for Ray's dashboard: time and memory
    }
    if detached:
        options["lifetime"] = "detached"
    if max_concurrency is not None:
        options["max_concurrency"] = max_concurrency
    if ray_node_id is not None:
        options["scheduling_strategy"] = pinned(ray_node_id)
    return _remote_class(cls).options(**options).remote(*args)


def pinned(ray_node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(ray_node_id, soft=False)


def lookup(name: str) -> Optional[Any]:
    """The live actor named ``name`` in the store namespace, or None."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def store_node_names(store: str) -> list[str]:
    """Names of the node actors of ``store`` that Ray knows as alive and named."""
    prefix = f"{store}:node:"
    found = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        a["name"][len(prefix):]
        for a in found
        if a.get("namespace") == NAMESPACE and a["name"].startswith(prefix)
    )


def store_actor_names(store: str) -> list[str]:
    prefix = f"{store}:"
    found = ray.util.list_named_actors(all_namespaces=True)
    return [a["name"] for a in found if a.get("namespace") == NAMESPACE and a["name"].startswith(prefix)]


def current_ray_node() -> str:
    return ray.get_runtime_context().get_node_id()


def alive_ray_nodes() -> list[str]:
    """Alive Ray nodes, head first, then in a stable order."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    nodes.sort(key=lambda n: ("node:__internal_head__" not in n.get("Resources", {}), n["NodeID"]))
    return [n["NodeID"] for n in nodes]


def ray_nodes_for(placement: str, node_count: int) -> list[str]:
    """The Ray node each of ``node_count`` store nodes is pinned to."""
    if placement == "local":
        return [current_ray_node()] * node_count
    available = alive_ray_nodes()
    if len(available) < node_count:
        raise ConfigError(
            f"placement=spread needs one Ray node per store node: nodes={node_count}, "
            f"but the Ray cluster has {len(available)} alive nodes"
        )
    return available[:node_count]
