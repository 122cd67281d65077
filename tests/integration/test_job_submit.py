"""The operator's path: a Ray head from `ray start`, `dynamo-ray up`, `ray job submit`, `down`.

Runs one Ray head for the module (token auth, as Ray 2.60's job server wants) on free loopback
ports, and stops it by terminating `ray start --block`, which takes every process it started
with it. The module's one store is started with `dynamo-ray up --config configs/test.yaml` (the
config's own name, ``dynamo-test``), as an operator does; jobs use it, a drifted config is
refused against it, and the last test removes it with `down`.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
CLI = os.path.join(BIN, "dynamo-ray")
TEST_CONFIG = "configs/test.yaml"
TEST_STORE = "dynamo-test"  # configs/test.yaml's name
WORKER_STARTUP_NOTICE = "worker processes have been started"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, env, timeout=180):
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ray_head():
    gcs_port, dashboard_port = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    # Every port its own: the suite's local Ray may be running too, with Ray's default agent
    # ports taken (a second agent on 52365 fails, and job submission waits for it forever).
    ports = {flag: _free_port() for flag in ("--dashboard-agent-listen-port",
                                             "--dashboard-agent-grpc-port",
                                             "--runtime-env-agent-port", "--metrics-export-port",
                                             "--ray-client-server-port")}
    head = subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={gcs_port}", f"--dashboard-port={dashboard_port}", "--dashboard-host=127.0.0.1",
         "--num-cpus=2", "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the job server answers once the head is up
            listed = _run([os.path.join(BIN, "ray"), "job", "list", "--address", dashboard], env,
                          30)
            if listed.returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail("the Ray head did not come up within 90 s")
        yield {"gcs": f"127.0.0.1:{gcs_port}", "dashboard": dashboard, "env": env}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=3)
        except subprocess.TimeoutExpired:  # its graceful stop can take half a minute
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)


def _actors_left(ray_head, name):
    left = _run([sys.executable, "-c",
                 f"import ray; ray.init(address={ray_head['gcs']!r}, logging_level='error');"
                 "from dynamo_ray.runtime import placement;"
                 f"print('LEFT', placement.store_actor_names({name!r}))"],
                ray_head["env"])
    assert "LEFT " in left.stdout, left.stdout + left.stderr[-2000:]
    return left.stdout.split("LEFT ", 1)[1].strip()


@pytest.fixture(scope="module")
def store_up(ray_head):
    """`dynamo-ray up --config configs/test.yaml` once for the module's tests; what it printed.
    The last test takes it down; if a test before it failed, the teardown does."""
    up = _run([CLI, "up", "--config", TEST_CONFIG, "--address", ray_head["gcs"]], ray_head["env"])
    assert up.returncode == 0, up.stderr[-3000:]
    yield up
    _run([CLI, "down", "--config", TEST_CONFIG, "--address", ray_head["gcs"]], ray_head["env"])


def test_jobs_share_a_store_started_with_up(ray_head, store_up):
    env, gcs = ray_head["env"], ray_head["gcs"]
    assert f"store {TEST_STORE!r} is up" in store_up.stdout
    # 10 actors on a 2-CPU head: its raylet tells every driver, and `up` must not pass it on
    assert WORKER_STARTUP_NOTICE not in store_up.stdout + store_up.stderr
    again = _run([CLI, "up", "--config", TEST_CONFIG, "--address", gcs], env)
    assert again.returncode == 0 and "already running" in again.stdout  # up is idempotent

    def submit(*job_args):
        for _ in range(15):  # the head's job agent comes up a little after its job server
            job = _run(
                [os.path.join(BIN, "ray"), "job", "submit", "--address", ray_head["dashboard"],
                 "--working-dir", ".", "--", "python", *job_args, "--name", TEST_STORE],
                env, timeout=300,
            )
            if "No available agent" not in job.stderr:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert WORKER_STARTUP_NOTICE not in job.stdout + job.stderr
        return job.stdout

    assert "shopping cart job done: ['book', 'lamp']" in submit("jobs/shopping_cart.py")
    # two jobs: the second reads what the first wrote, through the detached store
    assert "wrote 1000 keys" in submit("jobs/roundtrip.py", "--write", "--tag", "e2e")
    assert "0 missing or wrong" in submit("jobs/roundtrip.py", "--check", "--tag", "e2e")


def test_up_with_a_drifted_config_names_the_keys_and_fails_unless_told_ok(ray_head, store_up,
                                                                          tmp_path):
    env, gcs = ray_head["env"], ray_head["gcs"]
    with open(os.path.join(ROOT, TEST_CONFIG)) as f:
        original = f.read()
    assert "\nnodes: 3\n" in original and "request_ms: 1500" in original
    assert f"name: {TEST_STORE}\n" in original
    drifted = tmp_path / "drifted.yaml"
    drifted.write_text(original.replace("\nnodes: 3\n", "\nnodes: 4\n")
                       .replace("request_ms: 1500", "request_ms: 900")
                       .replace(f"name: {TEST_STORE}\n", "name: another-store\n"))
    name = ["--name", TEST_STORE]  # wins over the drifted config's own name
    refused = _run([CLI, "up", "--config", str(drifted), "--address", gcs, *name], env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr.startswith(f"error: store {TEST_STORE!r} is already running with a "
                                     "different config")
    assert "nodes: running 3, config 4" in refused.stderr
    assert "timeouts.request_ms: running 1500, config 900" in refused.stderr
    kept = _run([CLI, "up", "--config", str(drifted), "--address", gcs, *name,
                 "--if-exists", "ok"], env)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "already running" in kept.stdout and "note: " in kept.stderr
    assert "nodes: running 3, config 4" in kept.stderr
    same = _run([CLI, "up", "--config", TEST_CONFIG, "--address", gcs, *name], env)
    assert same.returncode == 0 and "already running" in same.stdout
    assert "note:" not in same.stderr


def test_down_leaves_nothing_and_a_second_down_says_so(ray_head, store_up):
    env, gcs = ray_head["env"], ray_head["gcs"]
    down = _run([CLI, "down", "--config", TEST_CONFIG, "--address", gcs], env)
    assert down.returncode == 0, down.stderr[-3000:]
    assert f"store {TEST_STORE!r} is down" in down.stdout
    twice = _run([CLI, "down", "--config", TEST_CONFIG, "--address", gcs], env)
    assert twice.returncode == 0, twice.stderr[-3000:]
    assert f"store {TEST_STORE!r} is not running" in twice.stdout
    assert _actors_left(ray_head, TEST_STORE) == "[]"
