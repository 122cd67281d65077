"""Small helpers shared by the test modules (imported as `helpers`: tests/ is on sys.path)."""

import time

# How to leave a Ray this process joined other than the suite's local one (the cluster tests'
# `Cluster`, shared by their modules): run by `conftest.start_local_ray` before it starts that
# one, and at the end of the session.
leave_other_ray: list = []


def wait_for(condition, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; True if it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return False


def primaries_of(store, key, n: int = 3) -> list:
    """The replica labels ("node-2/p5") of ``key``'s preference list, as Store.inspect names them."""
    kp = store.ring.partition_of(key)
    return [f"{store.ring.owners[p]}/p{p}" for p in store.ring.preference_list(kp, n)]
