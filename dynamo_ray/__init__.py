"""dynamo_ray: Amazon's Dynamo as actors on Ray.

    import dynamo_ray as dr
    store = dr.start()                      # or dr.connect("dynamo") from any Ray job/task/actor
    carts = store.table("carts", merge=dr.merges.union)
    got = carts.get("alice")
    carts.put("alice", ["book"], context=got.context)
"""

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
