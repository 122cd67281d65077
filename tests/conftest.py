"""Shared Ray sessions for the tests.

One local Ray (node IP 127.0.0.1) serves every integration test module; the cluster tests shut it
down to run one `ray.cluster_utils.Cluster` for all their modules, and the next module that needs
the local Ray shuts that down and starts the local one again. Whatever is running at the end of
the session is shut down.
"""

import os
import uuid

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on loopback: see dynamo_ray.localray

import pytest  # noqa: E402
import ray  # noqa: E402

import helpers  # noqa: E402

from dynamo_ray.runtime.localray import start_local_ray as _start_local_ray  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
TEST_CONFIG = os.path.join(CONFIGS, "test.yaml")


def start_local_ray() -> None:
    while helpers.leave_other_ray:
        helpers.leave_other_ray.pop()()
    if not ray.is_initialized():
        _start_local_ray(num_cpus=2)


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_end():
    yield
    while helpers.leave_other_ray:
        helpers.leave_other_ray.pop()()
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def local_ray():
    start_local_ray()
    yield


@pytest.fixture(scope="module")
def store(start_store):
    """A small store (configs/test.yaml: 3 nodes, 4 partitions) shared by one test module."""
    return start_store()


def _store_factory(prefix: str):
    """A function starting stores (configs/test.yaml plus overrides) and a list of them."""
    import dynamo_ray as dr

    started = []

    def _start(config=TEST_CONFIG, **overrides):
        s = dr.start(config, name=f"t-{prefix[:30]}-{uuid.uuid4().hex[:6]}", **overrides)
        started.append(s)
        return s

    return _start, started


@pytest.fixture(scope="module")
def start_store(local_ray, request):
    """A factory of stores; all are stopped after the module."""
    start, started = _store_factory(request.module.__name__.rsplit(".", 1)[-1])
    yield start
    for s in started:
        s.stop()


@pytest.fixture
def new_store(local_ray, request):
    """Like start_store, but each store is stopped when its test ends (for heavy stores)."""
    start, started = _store_factory(request.node.name)
    yield start
    for s in started:
        s.stop()


@pytest.fixture
def key():
    """A key no other test uses."""
    return f"k-{uuid.uuid4().hex}"
