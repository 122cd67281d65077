"""`dynamo-ray bench --smoke`, run as a user runs it (a separate process with its own Ray): every
system of the matrix has its rows, and every goal of issue 16 has a ratio.

Also, without Ray: the footprint's report parses its two measurements, its process kinds and
its goals print as lower-is-better."""

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dynamo_ray.tools import bench, footprint

CLI = os.path.join(os.path.dirname(sys.executable), "dynamo-ray")
ROUTINGS = ("client", "coordinator")

# issue 16: keys/s of dynamo over ray-replicated, uniform keys, 100 B values
SPEED_GOALS = {
    **{f"batched get, routing {r} vs ray-replicated": t for r, t in zip(ROUTINGS, (0.9, 0.7))},
    **{f"batched put, routing {r} vs ray-replicated": t for r, t in zip(ROUTINGS, (0.5, 0.45))},
    **{f"single get, routing {r} vs ray-replicated": t for r, t in zip(ROUTINGS, (0.9, 0.6))},
    **{f"single put, routing {r} vs ray-replicated": t for r, t in zip(ROUTINGS, (0.45, 0.35))},
}
CONCURRENT_GOALS = {f"16 concurrent {op} vs single sync ({r})": 3.0
                    for op in ("put", "get") for r in ROUTINGS}
TAIL_GOALS = {f"{what} {op} p99.9 / p50 ({r})": 5.0
              for what in ("single", "16 concurrent") for op in ("put", "get") for r in ROUTINGS}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """results.json and the printed output of one `dynamo-ray bench --smoke`."""
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # its own Ray, not the tests' one
    done = subprocess.run([CLI, "bench", "--smoke", "--out", str(out)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "results.json") as f:
        return json.load(f), done.stdout


def _rows(results, system, **fields):
    return [r for r in results["rows"] if r["system"] == system
            and all(r[k] == v for k, v in fields.items())]


def test_ray_replicated_has_single_and_batched_rows(smoke):
    results, _ = smoke
    for op in ("put", "get"):
        for batch in (1, bench.BATCH):
            (row,) = _rows(results, "ray-replicated", op=op, batch=batch, concurrency=1,
                           keys="uniform", value_bytes=100)
            assert row["ops_per_s"] > 0 and row["samples"] > 0
        assert _rows(results, "ray-replicated", op=op, concurrency=16)


def test_dynamo_durable_runs_uniform_100_bytes_only(smoke):
    results, _ = smoke
    rows = _rows(results, "dynamo-durable")
    assert {(r["op"], r["batch"], r["concurrency"]) for r in rows} == {
        (op, batch, concurrency) for op in ("put", "get")
        for batch, concurrency in ((1, 1), (bench.BATCH, 1), (1, 16))}
    assert {(r["routing"], r["keys"], r["value_bytes"]) for r in rows} == {
        ("client", "uniform", 100)}
    assert all(r["ops_per_s"] > 0 for r in rows)


def test_the_other_systems_still_run(smoke):
    results, _ = smoke
    for routing in ROUTINGS:
        assert _rows(results, "dynamo", routing=routing)
    assert _rows(results, "ray-actor")
    if bench.redis_available():
        assert _rows(results, "redis")


def test_every_goal_of_issue_16_has_a_ratio(smoke):
    results, stdout = smoke
    measured = {g["goal"]: g for g in results["goals"]}
    for label, target in {**SPEED_GOALS, **CONCURRENT_GOALS, **TAIL_GOALS}.items():
        assert label in measured, f"{label!r} missing from {sorted(measured)}"
        goal = measured[label]
        assert isinstance(goal["ratio"], (int, float)) and math.isfinite(goal["ratio"])
        assert goal["target"] == target and isinstance(goal["met"], bool)
        assert label in stdout
    assert not any("vs ray-actor" in label or "vs redis" in label for label in measured)


def test_ray_actor_and_redis_print_as_information(smoke):
    results, stdout = smoke
    assert "vs ray-actor" in stdout and "what durable: true costs" in stdout
    rows = {c["row"]: c for c in results["versus"]}
    for kind in ("single", "batched"):
        for op in ("get", "put"):
            for routing in ROUTINGS:
                assert isinstance(rows[f"{kind} {op}, routing {routing}"]["vs ray-actor"], float)


def test_footprint_report_parses_its_measurements(monkeypatch):
    def fake(what):
        extra = what == "store"
        return {"start_s": 3.0 + extra, "processes": 8 + 24 * extra, "uss_mib": 300.0 + 700 * extra,
                "idle_cpu": 0.02 + 0.01 * extra,
                "by_kind": {"ray": {"processes": 8, "uss_mib": 300.0, "idle_cpu": 0.02}}}

    monkeypatch.setattr(footprint, "_measure_in_child", fake)
    said = []
    out = footprint.run(say=said.append)
    met = {label: m for label, _, _, m in out["goals"]}
    assert met == {"footprint start (s) over bare Ray": True,
                   "footprint private memory (MiB) over bare Ray": False,
                   "footprint idle CPU (of a core) over bare Ray": True}
    printed = bench.format_goals(out["goals"])
    assert printed.count("<=") == 3 and ">=" not in printed


def test_footprint_kinds_of_process():
    def process(title):
        return SimpleNamespace(cmdline=lambda: title.split())

    assert footprint._kind(process("ray::VNode")) == "VNode"
    assert footprint._kind(process("ray::VNode.put_many")) == "VNode"
    assert footprint._kind(process("ray::Node")) == "Node"
    assert footprint._kind(process("ray::Coordinator.handle")) == "Coordinator"
    assert footprint._kind(process("ray::bench:vnode:node-1:3:VNode.get_many")) == "VNode"
    assert footprint._kind(process("ray::bench:node:node-2:Node.__init__")) == "Node"
    assert footprint._kind(process("ray::bench:coordinator:node-2:Coordinator.put")) == (
        "Coordinator")
    assert footprint._kind(process("ray::IDLE")) == "idle worker"
    assert footprint._kind(process("ray::DashboardAgent")) == "ray"
    assert footprint._kind(process("/usr/bin/python -m ray.gcs")) == "ray"
