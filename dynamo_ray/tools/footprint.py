"""The embedded default's footprint, beside a bare Ray on the same machine, in one run.

Role (`dynamo-ray bench --footprint`): in a fresh interpreter each, start (1) a bare local Ray
(`ray.init` on 127.0.0.1) and (2) `dr.start()` with the built-in config, and measure:
- the wall time to start (Ray included, in both);
- the private resident memory (USS) of every Ray process (the interpreter's descendants:
  GCS, raylet, agents, workers and actors), after a settling pause;
- the CPU of those processes while idle over 10 s, as a fraction of one core;
and, for the store, the same per kind of process (vnodes, nodes, coordinators, Ray's idle
workers, the rest of Ray). Prints each beside its goal over the bare Ray: start +2.5 s, memory
+600 MiB, idle CPU +5 % of a core. The interpreters join no running Ray (RAY_ADDRESS unset), so
the figures are of the Ray each starts.

Must not: leave Ray running (each measurement stops what it started, on an error too; a child
that times out is killed with every process it started).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable

GOALS = {"start_s": 2.5, "uss_mib": 600.0, "idle_cpu": 0.05}
SETTLE_S = 5.0
IDLE_S = 10.0
KINDS = ("VNode", "Node", "Coordinator")  # the store's actor classes (runtime/hosts.py)


def _kind(process) -> str:
    """The store's actor class a Ray process runs, ``idle worker`` for Ray's spare workers, else
    ``ray``. An actor's title is ``ray::VNode`` between calls and ``ray::NAME:VNode.method``
    during one (NAME, the actor's name, is ``store:vnode:node-1:3``)."""
    try:
        title = " ".join(process.cmdline())
    except Exception:
        return "other"
    if not title.startswith("ray::"):
        return "ray"
    words = title[len("ray::"):].split()
    name = words[0].rsplit(":", 1)[-1].split(".")[0] if words else ""
    if name in KINDS:
        return name
    return "idle worker" if name == "IDLE" else "ray"


def measure(what: str, **overrides) -> dict:
    """In this interpreter: start ``what`` (``bare`` or ``store``, with config ``overrides``),
    then measure it; the store and Ray are shut down on return, an error included."""
    import psutil
    import ray

    stop = None
    try:
        started = time.perf_counter()
        if what == "bare":
            from ..runtime.localray import start_local_ray

            start_local_ray()
        else:
            import dynamo_ray as dr

            stop = dr.start(**overrides).stop
        start_s = time.perf_counter() - started
        time.sleep(SETTLE_S)
        processes = psutil.Process().children(recursive=True)
        cpu_before = {}
        for p in processes:
            try:
                times = p.cpu_times()
                cpu_before[p.pid] = times.user + times.system
            except psutil.Error:
                pass
        time.sleep(IDLE_S)
        by_kind: dict = {}
        for p in processes:
            try:
                times = p.cpu_times()
                uss = p.memory_full_info().uss
            except psutil.Error:
                continue
            entry = by_kind.setdefault(_kind(p), {"processes": 0, "uss_mib": 0.0, "idle_cpu": 0.0})
            entry["processes"] += 1
            entry["uss_mib"] += uss / 2**20
            entry["idle_cpu"] += (times.user + times.system - cpu_before.get(p.pid, 0.0)) / IDLE_S
    finally:
        try:
            if stop is not None:
                stop()
        finally:
            ray.shutdown()
    total = {name: sum(k[name] for k in by_kind.values())
             for name in ("processes", "uss_mib", "idle_cpu")}
    return {"start_s": start_s, **total, "by_kind": by_kind}


def _measure_in_child(what: str, timeout_s: float = 600.0) -> dict:
    """`measure` in a fresh interpreter that joins no running Ray (RAY_ADDRESS unset); on a
    timeout, it and every process it started are killed."""
    import psutil

    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    code = ("import json; from dynamo_ray.tools import footprint; "
            f"print(json.dumps(footprint.measure({what!r})))")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            descendants = psutil.Process(child.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        for p in [psutil.Process(child.pid), *descendants]:
            try:
                p.kill()
            except psutil.Error:
                pass
        child.communicate()
        raise RuntimeError(f"footprint of {what} took over {timeout_s:.0f} s") from None
    if child.returncode != 0:
        raise RuntimeError(f"footprint of {what} failed: {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def run(say: Callable = print) -> dict:
    """Both measurements, each in a fresh interpreter; returns and prints the comparison."""
    results = {what: _measure_in_child(what) for what in ("bare", "store")}
    bare, store = results["bare"], results["store"]
    say("footprint of dr.start() (built-in config) over a bare ray.init(), same machine, one run")
    say(f"{'':22s} {'bare Ray':>10s} {'dr.start()':>11s} {'over':>9s} {'goal':>9s}  result")
    rows = [("start (s)", "start_s", 1, "s"), ("private memory (MiB)", "uss_mib", 0, "MiB"),
            ("idle CPU (of a core)", "idle_cpu", 3, "")]
    goals = []
    for label, key, digits, _ in rows:
        over = store[key] - bare[key]
        met = over <= GOALS[key]
        goals.append((f"footprint {label} over bare Ray", round(over, 3), GOALS[key], met))
        say(f"{label:22s} {bare[key]:10.{digits}f} {store[key]:11.{digits}f} {over:+9.{digits}f} "
            f"{'+' + str(GOALS[key]):>9s}  {'met' if met else 'MISSED'}")
    say(f"processes: bare {bare['processes']}, store {store['processes']}")
    for kind, entry in sorted(store["by_kind"].items()):
        say(f"  {kind:12s} {entry['processes']:3d} processes  {entry['uss_mib']:7.0f} MiB  "
            f"{entry['idle_cpu'] * 100:5.1f} % of a core idle")
    return {"bare": bare, "store": store, "goals": goals}
