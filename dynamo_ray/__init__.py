"""dynamo_ray: Amazon's Dynamo as actors on Ray.

    import dynamo_ray as dr
    store = dr.start()                      # or dr.connect("dynamo") from any Ray job/task/actor
    carts = store.table("carts", merge=dr.merges.union)
    got = carts.get("alice")
    carts.put("alice", ["book"], context=got.context)
"""

import os as _os
import sys as _sys

# In Ray worker processes (the store's actors among them), before anything imports pyarrow:
# Arrow reads this when it loads, and its own default (mimalloc) keeps the pages that Parquet
# reads and writes free in per-thread arenas, about 10 MB a spilling vnode never gives back.
# Set it yourself to choose otherwise; drivers are left alone.
if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "default_worker.py":
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from .core import merges
from .config import StoreConfig, TableConfig
from .errors import (
    ClusterNotFound,
    ConfigError,
    ConflictError,
    DynamoError,
    InvalidArgument,
    InvalidContext,
    InvalidKey,
    InvalidValue,
    Overloaded,
    StorageError,
    StoreExists,
    TableNotFound,
    Unavailable,
    ValueTooLarge,
)

__all__ = [
    "start", "connect", "cached", "Store", "Table", "AsyncTable", "GetResult", "Context", "StoreConfig", "TableConfig",
    "merges", "DynamoError", "ConfigError", "ClusterNotFound", "StoreExists", "TableNotFound",
    "InvalidKey", "InvalidValue", "ValueTooLarge", "InvalidArgument", "InvalidContext", "Unavailable",
    "ConflictError", "Overloaded", "StorageError",
]
__version__ = "0.1.0"

# The parts that need Ray load on first use, so that the pure modules (ring, versioning, merkle,
# merges, config, errors) import without it: `import dynamo_ray.core.ring` costs no Ray import.
_RAY_BACKED = {
    "cached": "client.cache", "Store": "client.store", "connect": "client.store",
    "start": "client.store", "AsyncTable": "client.table", "Context": "client.table",
    "GetResult": "client.table", "Table": "client.table",
}


def __getattr__(name: str):
    module = _RAY_BACKED.get(name)
    if module is None:
        raise AttributeError(f"module 'dynamo_ray' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_RAY_BACKED))
