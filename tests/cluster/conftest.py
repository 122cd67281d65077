"""A Ray cluster of several Ray nodes on this machine (`ray.cluster_utils.Cluster`).

Each Ray node is a raylet with its own worker processes, so removing one is a machine lost:
every actor on it dies at once. The local Ray of the integration tests is shut down first (a
process talks to one Ray at a time) and the next module that needs it starts it again.
"""

import pytest
import ray
from ray.cluster_utils import Cluster

NODE_ARGS = dict(num_cpus=1, node_ip_address="127.0.0.1")


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False})
    for _ in range(3):
        c.add_node(**NODE_ARGS)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="warning", log_to_driver=False)
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
    yield c
    ray.shutdown()
    c.shutdown()


def add_ray_node(c: Cluster):
    node = c.add_node(**NODE_ARGS)
    c.wait_for_nodes()
    return node
