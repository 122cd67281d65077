"""Shared Ray sessions for the tests.

One local Ray (node IP 127.0.0.1) serves every integration test module; a cluster test shuts it
down to run its own `ray.cluster_utils.Cluster`, and the next module that needs the local one
starts it again. Whatever is running at the end of the session is shut down.
"""

import os
import uuid

import pytest
import ray

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
TEST_CONFIG = os.path.join(CONFIGS, "test.yaml")


def start_local_ray() -> None:
    if ray.is_initialized():
        return
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=2,
        logging_level="warning",
        log_to_driver=False,
    )


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_end():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def local_ray():
    start_local_ray()
    yield


@pytest.fixture(scope="module")
def store(local_ray, request):
    """A small store (configs/test.yaml: 3 nodes, 8 partitions) shared by one test module."""
    import dynamo_ray as dr

    name = f"t-{request.module.__name__.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:6]}"
    s = dr.start(TEST_CONFIG, name=name)
    yield s
    s.stop()


@pytest.fixture
def key():
    """A key no other test uses."""
    return f"k-{uuid.uuid4().hex}"
