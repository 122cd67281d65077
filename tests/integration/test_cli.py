"""The `dynamo-ray` command line, run as a user runs it (a separate process)."""

import json
import os
import subprocess
import sys
import uuid

import click
import numpy as np
import pytest
import ray

import dynamo_ray
from dynamo_ray.tools import cli
from dynamo_ray.runtime import placement

CLI = os.path.join(os.path.dirname(sys.executable), "dynamo-ray")
TWO_MB = 2 * 2**20


def run(*args, timeout=180, stdin=None):
    return subprocess.run([CLI, *args], capture_output=True, timeout=timeout,
                          text=not isinstance(stdin, bytes), input=stdin)


@pytest.fixture(scope="module")
def store(start_store):
    """The module's store: configs/test.yaml, with room for 2 MB values."""
    return start_store(limits={"max_value_bytes": 4 * 2**20})


@pytest.fixture
def where(store):
    return ["--address", ray.get_runtime_context().gcs_address, "--name", store.name]


def test_version_prints_the_package_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout == f"dynamo-ray {dynamo_ray.__version__}\n"


def test_every_option_has_help_and_every_argument_is_named_in_its_command_help():
    assert all(p.help for p in cli.main.params if isinstance(p, click.Option))
    for name, command in cli.main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help and param.help.strip(), f"{name} {param.opts[0]} has no help"
            elif isinstance(param, click.Argument):
                assert param.name.upper() in (command.help or ""), f"{name}: {param.name}"


def test_put_get_delete_and_status_against_a_running_store(store, key, where):
    put = run("put", key, '{"items": ["book"]}', "--table", "carts", *where)
    assert put.returncode == 0, put.stderr[-2000:]
    got = json.loads(run("get", key, "--table", "carts", *where).stdout)
    assert got == {"key": key, "values": [{"items": ["book"]}], "siblings": 1}
    assert store.table("carts").get(key).value == {"items": ["book"]}
    assert run("delete", key, "--table", "carts", *where).returncode == 0
    assert store.table("carts").get(key).values == []
    status = run("status", *where)
    assert status.returncode == 0 and "partition" in status.stdout and "node-1" in status.stdout
    assert "repairs" in status.stdout and "p99_ms" in status.stdout


def test_put_takes_a_2_mb_value_from_a_file_or_stdin(store, where, tmp_path):
    blob = os.urandom(TWO_MB)
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    k1, k2, k3, k4 = (f"big-{uuid.uuid4().hex}" for _ in range(4))
    assert run("put", k1, "--file", str(path), "--raw", *where).returncode == 0
    assert store.table().get(k1).value == blob  # --file --raw: the file's bytes, as bytes
    doc = {"blob": "x" * TWO_MB}
    out = run("put", k2, "-", *where, stdin=json.dumps(doc))
    assert out.returncode == 0, out.stderr[-2000:]
    assert store.table().get(k2).value == doc  # stdin: JSON
    json_file = tmp_path / "doc.json"
    json_file.write_text(json.dumps(doc))
    assert run("put", k3, "--file", str(json_file), *where).returncode == 0
    assert store.table().get(k3).value == doc  # --file: JSON
    assert run("put", k4, "-", "--raw", *where, stdin="plain text\n").returncode == 0
    assert store.table().get(k4).value == "plain text\n"  # stdin --raw: text, as str
    assert run("put", k4, "-", "--raw", *where, stdin=b"\xff\xfe").returncode == 0
    assert store.table().get(k4).value == b"\xff\xfe"  # ... bytes when it is not UTF-8
    assert run("put", k4, "book", "--raw", *where).returncode == 0
    assert store.table().get(k4).value == "book"  # VALUE --raw: the text


def test_put_needs_exactly_one_value_and_json_unless_raw(tmp_path):
    path = tmp_path / "v.json"
    path.write_text("1")
    both = run("put", "k", "1", "--file", str(path))
    neither = run("put", "k")
    assert both.returncode == neither.returncode == 2  # usage errors, before any Ray
    assert "give the value once" in both.stderr and "give the value once" in neither.stderr
    not_json = run("put", "k", "book")
    assert not_json.returncode == 1
    assert not_json.stderr.startswith("error: VALUE must be JSON")
    assert "hint: quote a string as JSON ('\"book\"') or pass --raw" in not_json.stderr
    assert len(not_json.stderr.strip().splitlines()) == 1


def test_get_prints_values_json_cannot_hold(store, key, where):
    store.table().put(key, b"\xffab")
    got = run("get", key, *where)
    assert got.returncode == 0, got.stderr[-2000:]
    assert json.loads(got.stdout) == {"key": key, "values": ["\ufffdab"], "siblings": 1}


def test_result_json_turns_what_json_cannot_hold_into_text():
    class Got:  # a GetResult's values, as a pickle-codec table returns them
        values = [np.arange(3), {1, 2}, b"\xffab", {b"k": (1, 2)}]

    shown = json.loads(cli._result_json("k", Got()))
    assert shown == {"key": "k", "values": ["array([0, 1, 2])", "{1, 2}", "\ufffdab",
                                            {"k": [1, 2]}], "siblings": 4}


def test_config_drift_names_the_dotted_keys_that_differ():
    running = {"nodes": 3, "tables": {"carts": {"w": 2}}, "timeouts": {"request_ms": 1500}}
    given = {"nodes": 4, "tables": {"carts": {"w": 3}, "t": {"n": 1}},
             "timeouts": {"request_ms": 1500}}
    assert cli.config_drift(running, given) == [
        ("nodes", 3, 4), ("tables.carts.w", 2, 3), ("tables.t.n", cli.ABSENT, 1)]
    assert cli.config_drift(running, running) == []


def test_status_watch_redraws_the_node_table(where):
    out = run("status", "--watch", "--count", "2", "--interval", "0.2", *where)
    assert out.returncode == 0, out.stderr[-2000:]
    frames = out.stdout.split("\n\n")  # not a terminal: frames apart by a blank line, no ANSI
    assert len(frames) == 2 and "\x1b[" not in out.stdout
    for frame in frames:
        assert frame.startswith(f"store {where[-1]!r} at ")
        assert all(column in frame for column in ("vnodes", "hints_pending", "repairs", "p99_ms"))
        assert "node-1" in frame and "partition" not in frame  # the per-node table only


def test_down_removes_actors_left_without_their_node_and_is_idempotent():
    class Leftover:
        def ping(self):
            return 1

    name = f"t-left-{uuid.uuid4().hex[:6]}"
    actors = [placement.spawn(Leftover, placement.vnode_actor_name(name, "node-1", 0),
                              detached=True),
              placement.spawn(Leftover, placement.coordinator_actor_name(name, "node-1"),
                              detached=True)]
    ray.get([a.ping.remote() for a in actors])
    where = ["--address", ray.get_runtime_context().gcs_address, "--name", name]
    down = run("down", *where)
    assert down.returncode == 0 and f"store {name!r} is down" in down.stdout, down.stderr
    assert placement.store_actor_names(name) == []
    again = run("down", *where)
    assert again.returncode == 0 and f"store {name!r} is not running" in again.stdout


def test_ring_prints_the_ownership_table_and_draws_it(store, tmp_path, where):
    png = tmp_path / "ring.png"
    out = run("ring", "--plot", str(png), "--key", "alice", *where)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"Q={store.ring.partitions} partitions" in out.stdout and "node-1/p0" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_print_one_line_and_exit_1(store):
    where = ["--address", ray.get_runtime_context().gcs_address]
    missing = run("get", "k", "--name", "no-such-store", *where)
    assert missing.returncode == 1 and "no store named 'no-such-store'" in missing.stderr
    bad_json = run("put", "k", "{not json", "--name", store.name, *where)
    assert bad_json.returncode == 1 and "VALUE must be JSON" in bad_json.stderr
    bad_table = run("get", "k", "--table", "nope", "--name", store.name, *where)
    assert bad_table.returncode == 1 and "table 'nope'" in bad_table.stderr
