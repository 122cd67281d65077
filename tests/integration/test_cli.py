"""The `dynamo-ray` command line, run as a user runs it (a separate process)."""

import json
import os
import subprocess
import sys

import ray

CLI = os.path.join(os.path.dirname(sys.executable), "dynamo-ray")


def run(*args, timeout=180):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_demo_tells_both_stories_and_exits_0():
    out = run("demo")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "The next read returns 2 siblings: [['book'], ['lamp']]" in out.stdout
    assert "the cart reads as one value: ['book', 'lamp']" in out.stdout
    assert "['book', 'lamp', 'pen']" in out.stdout
    assert "Store stopped." in out.stdout


def test_put_get_delete_and_status_against_a_running_store(store, key):
    where = ["--address", ray.get_runtime_context().gcs_address, "--name", store.name]
    put = run("put", key, '{"items": ["book"]}', "--table", "carts", *where)
    assert put.returncode == 0, put.stderr[-2000:]
    got = json.loads(run("get", key, "--table", "carts", *where).stdout)
    assert got == {"key": key, "values": [{"items": ["book"]}], "siblings": 1}
    assert store.table("carts").get(key).value == {"items": ["book"]}
    assert run("delete", key, "--table", "carts", *where).returncode == 0
    assert store.table("carts").get(key).values == []
    status = run("status", *where)
    assert status.returncode == 0 and "partition" in status.stdout and "node-1" in status.stdout


def test_ring_prints_the_ownership_table_and_draws_it(store, tmp_path):
    where = ["--address", ray.get_runtime_context().gcs_address, "--name", store.name]
    png = tmp_path / "ring.png"
    out = run("ring", "--plot", str(png), "--key", "alice", *where)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Q=8 partitions" in out.stdout and "node-1/p0" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_print_one_line_and_exit_1(store):
    where = ["--address", ray.get_runtime_context().gcs_address]
    missing = run("get", "k", "--name", "no-such-store", *where)
    assert missing.returncode == 1 and "no store named 'no-such-store'" in missing.stderr
    bad_json = run("put", "k", "{not json", "--name", store.name, *where)
    assert bad_json.returncode == 1 and "VALUE must be JSON" in bad_json.stderr
    bad_table = run("get", "k", "--table", "nope", "--name", store.name, *where)
    assert bad_table.returncode == 1 and "table 'nope'" in bad_table.stderr
