"""A private Ray on this machine that listens on loopback only.

Role: start the embedded Ray of `dr.start()` (and of the tests) with node IP 127.0.0.1, so that
nothing it runs listens beyond loopback. Ray 2.60 rewrites a ``_node_ip_address`` of 127.0.0.1 to
the machine's routable address and binds its servers on every interface; its switch for a
single-machine Ray (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps every server on 127.0.0.1. Ray
reads that switch when it is imported, so this module sets it for the processes Ray spawns and
for this one.

Must not: be used to join a multi-machine cluster (its node IP would be wrong there).
"""

from __future__ import annotations

import os

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def keep_ray_on_loopback() -> None:
    """Make this process and the Ray processes it starts use 127.0.0.1 as their node IP."""
    os.environ.update(LOOPBACK_ENV)
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def start_local_ray(**kwargs) -> None:
    """``ray.init`` a new local Ray on 127.0.0.1 (no dashboard unless asked for)."""
    import ray

    keep_ray_on_loopback()
    options = dict(address="local", include_dashboard=False, logging_level="warning",
                   log_to_driver=False)
    options.update(kwargs)
    ray.init(**options)
