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

from . import merges
from .cache import cached
from .client import Store, connect, start
from .table import AsyncTable, Context, GetResult, Table
from .config import StoreConfig, TableConfig
from .errors import (
    ClusterNotFound,
    ConfigError,
    ConflictError,
    DynamoError,
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
    "InvalidKey", "InvalidValue", "ValueTooLarge", "InvalidContext", "Unavailable",
    "ConflictError", "Overloaded", "StorageError",
]
__version__ = "0.1.0"
