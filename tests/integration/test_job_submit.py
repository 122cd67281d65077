"""The operator's path: a Ray head from `ray start`, `dynamo-ray up`, a `ray job submit`, `down`.

Runs its own Ray head (token auth, as Ray 2.60's job server wants) on free loopback ports, and
stops it by terminating `ray start --block`, which takes every process it started with it.
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, env, timeout=180):
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
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
            if _run([os.path.join(BIN, "ray"), "job", "list", "--address", dashboard], env, 30).returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail("the Ray head did not come up within 90 s")
        yield {"gcs": f"127.0.0.1:{gcs_port}", "dashboard": dashboard, "env": env}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


def test_jobs_share_a_store_started_with_up_and_down_leaves_nothing(ray_head):
    env, gcs = ray_head["env"], ray_head["gcs"]
    cli = os.path.join(BIN, "dynamo-ray")
    up = _run([cli, "up", "--address", gcs, "--config", "configs/test.yaml", "--name", "jobs"], env)
    assert up.returncode == 0, up.stderr[-3000:]
    again = _run([cli, "up", "--address", gcs, "--config", "configs/test.yaml", "--name", "jobs"], env)
    assert "already running" in again.stdout  # up is idempotent
    def submit(*job_args):
        for _ in range(15):  # the head's job agent comes up a little after its job server
            job = _run(
                [os.path.join(BIN, "ray"), "job", "submit", "--address", ray_head["dashboard"],
                 "--working-dir", ".", "--", "python", *job_args, "--name", "jobs"],
                env, timeout=300,
            )
            if "No available agent" not in job.stderr:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        return job.stdout

    try:
        assert "shopping cart job done: ['book', 'lamp']" in submit("jobs/shopping_cart.py")
        # two jobs: the second reads what the first wrote, through the detached store
        assert "wrote 1000 keys" in submit("jobs/roundtrip.py", "--write", "--tag", "e2e")
        assert "0 missing or wrong" in submit("jobs/roundtrip.py", "--check", "--tag", "e2e")
    finally:
        down = _run([cli, "down", "--address", gcs, "--name", "jobs"], env)
    assert down.returncode == 0, down.stderr[-3000:]
    left = _run([sys.executable, "-c",
                 f"import ray; ray.init(address={gcs!r}, logging_level='error');"
                 "from dynamo_ray import placement; print('LEFT', placement.store_actor_names('jobs'))"],
                env)
    assert "LEFT []" in left.stdout, left.stdout + left.stderr[-2000:]
