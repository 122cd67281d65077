"""A Ray cluster of several Ray nodes on this machine (`ray.cluster_utils.Cluster`).

Each Ray node is a raylet with its own worker processes, so removing one is a machine lost:
every actor on it dies at once. The local Ray of the integration tests is shut down first (a
process talks to one Ray at a time); the one cluster serves every module here, and the next
module that needs the local Ray shuts it down (tests/conftest.py).
"""

import pytest
import ray
from ray.cluster_utils import Cluster

import helpers

NODE_ARGS = dict(num_cpus=1, node_ip_address="127.0.0.1")


_shared: dict = {}  # "cluster": the running one, until the local Ray is wanted again


@pytest.fixture(scope="module")
def cluster():
    """Four Ray nodes (head and three) to begin with, shared by the cluster modules that run one
    after another: tests add and remove Ray nodes, so a test needing N of them adds its own
    rather than count on those left. The local Ray shuts it down when it is next wanted
    (`helpers.leave_other_ray`); a cluster module after that starts a new one."""
    if "cluster" not in _shared:
        _shared["cluster"] = _start_cluster()
    yield _shared["cluster"]


def _start_cluster() -> Cluster:
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False})
    for _ in range(3):
        c.add_node(**NODE_ARGS)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="warning", log_to_driver=False)
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())

    def leave():
        _shared.pop("cluster", None)
        ray.shutdown()
        c.shutdown()

    helpers.leave_other_ray.append(leave)
    return c


def add_ray_node(c: Cluster):
    node = c.add_node(**NODE_ARGS)
    c.wait_for_nodes()
    return node
