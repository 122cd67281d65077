"""A private Ray on this machine that listens on loopback only, and a quiet driver.

Role: start the embedded Ray of `dr.start()` (and of the tests) with node IP 127.0.0.1, so that
nothing it runs listens beyond loopback. Ray 2.60 rewrites a ``_node_ip_address`` of 127.0.0.1 to
the machine's routable address and binds its servers on every interface; its switch for a
single-machine Ray (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps every server on 127.0.0.1. Ray
reads that switch when it is imported, so this module sets it for the processes Ray spawns and
for this one.

Also: keep the driver free of one raylet notice, "N PYTHON worker processes have been started on
node ... which is Kx the maximum expected startup concurrency". The raylet publishes it to every
driver each time its worker count passes another multiple of its startup concurrency (the CPU
count), a heuristic for tasks blocked in ``ray.get``; a store is one worker process per actor
(nodes + partitions + coordinators: 24 for the built-in config), so every store on a small machine
trips it while nothing is wrong. Ray offers no switch for it (``log_to_driver=False`` does not
cover raylet notices; raising ``worker_maximum_startup_concurrency`` would start that many Python
processes at once on a 2-core machine, and cannot be set from a driver that joins a running
cluster), so the driver drops exactly that notice on its way to the terminal: every other raylet
message and every error still prints, and the raylet's own log (``raylet.out``) keeps it.

Must not: be used to join a multi-machine cluster (its node IP would be wrong there); drop any
message but the worker-pool-size notice.
"""

from __future__ import annotations

import os
import re

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

# Ray 2.60's wording (src/ray/raylet/worker_pool.cc, WarnAboutSize); older Rays say "N PYTHON
# workers have been started".
WORKER_POOL_NOTICE = re.compile(r"WARNING: \d+ \w+ worker(?: processes)? have been started")


def keep_ray_on_loopback() -> None:
    """Make this process and the Ray processes it starts use 127.0.0.1 as their node IP."""
    os.environ.update(LOOPBACK_ENV)
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def quiet_worker_startup_notices() -> None:
    """Drop the raylet's worker-pool-size notice from what this driver prints (idempotent).

    The driver's listener thread hands each raylet message to ``ray._private.worker``'s
    ``print_to_stdstream``, looked up at every call; this wraps it with a filter on that one
    notice. If a future Ray moves the function, nothing is wrapped and the notice prints again
    (tests/integration/test_cli.py checks the demo's output for it)."""
    from ray._private import worker

    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "drops_worker_pool_notice", False):
        return

    def print_to_stdstream(data, *args, **kwargs):
        if data.get("pid") == "raylet":
            lines = [line for line in data.get("lines", []) if not WORKER_POOL_NOTICE.search(line)]
            if not lines:
                return None
            data = {**data, "lines": lines}
        return printer(data, *args, **kwargs)

    print_to_stdstream.drops_worker_pool_notice = True
    worker.print_to_stdstream = print_to_stdstream


def start_local_ray(**kwargs) -> None:
    """``ray.init`` a new local Ray on 127.0.0.1 (no dashboard unless asked for)."""
    import ray

    keep_ray_on_loopback()
    quiet_worker_startup_notices()
    options = dict(address="local", include_dashboard=False, logging_level="warning",
                   log_to_driver=False)
    options.update(kwargs)
    ray.init(**options)


# client.py imports this module, and its own ray.init calls (`connect`, and `start` in a Ray job)
# are how jobs/ reach the store: quiet every driver that imports the store's client.
quiet_worker_startup_notices()
