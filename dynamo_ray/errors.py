"""Every error a caller of dynamo_ray can see.

Ray's own exceptions (actor died, task timed out, object lost) never reach a caller: the client
and the coordinators translate them into the errors below. A request that raises one of the
input errors (`InvalidKey`, `InvalidValue`, `ValueTooLarge`, `InvalidContext`, `InvalidArgument`,
`TableNotFound`, `ConfigError`) was rejected at the client edge and changed nothing in the store.

    DynamoError
    ├── ConfigError        a config file or override is invalid (every bad field, in one error)
    ├── InvalidArgument    an argument of one call is invalid (r=, w=, ttl_s=, batch_size=, ...)
    ├── ClusterNotFound    connect()/a command found no running store of that name
    ├── StoreExists        start() found a store of that name already running
    ├── TableNotFound      the table is not in the store's config
    ├── InvalidKey         the key is not str/bytes, is empty, or is over limits.max_key_bytes
    ├── InvalidValue       the table's codec (msgpack or pickle) cannot encode the value
    │   └── ValueTooLarge  the encoded value is over limits.max_value_bytes
    ├── InvalidContext     the context is not a Context, or belongs to another key
    ├── Unavailable        fewer than R (or W) replicas answered within the deadline
    ├── ConflictError      GetResult.value was asked of a key that has several siblings
    ├── Overloaded         the store shed the request because its queues are full
    └── StorageError       a segment or log file on disk is missing or corrupt
"""

from __future__ import annotations


class DynamoError(Exception):
    """Base class of every error dynamo_ray raises to its callers."""


class ConfigError(DynamoError):
    """A config value is invalid; the message names every bad field (e.g. ``tables.carts.w``).

    Raised by `start()` and by config loading, never by a read or write. Not raised for
    values that are only unusual (a large Q, a long timeout)."""


class InvalidArgument(DynamoError):
    """An argument of one call is invalid: a quorum outside 1..N (``r=``, ``w=``), a ``ttl_s``
    that is not a positive number, a ``batch_size`` that is not a positive integer, an unknown
    ``routing`` or ``via``. The call changed nothing."""


class ClusterNotFound(DynamoError):
    """No running store has this name in the Ray cluster (namespace ``dynamo``)."""


class StoreExists(DynamoError):
    """`start()` was asked for a store name that is already running; `connect()` to it instead."""


class TableNotFound(DynamoError):
    """The table name is not in the store's config (tables are declared in config, not created)."""


class InvalidKey(DynamoError):
    """The key is not ``str`` or ``bytes``, is empty, or its UTF-8 bytes exceed the key limit."""


class InvalidValue(DynamoError):
    """The table's codec cannot encode the value; the message names the codec. ``msgpack``
    takes None, bool, int (64 bits), float, str, bytes, lists and dicts; ``pickle`` takes
    anything picklable (not lambdas, open files, locks, ...)."""


class ValueTooLarge(InvalidValue):
    """The encoded value is larger than ``limits.max_value_bytes``."""


class InvalidContext(DynamoError):
    """The context is not one a read or put of this key returned."""


class Unavailable(DynamoError):
    """Too few replicas answered in time: ``needed`` (R or W) and ``got`` say how many.

    ``key`` names the first key that missed its quorum and ``keys`` all of them (batches).
    A put that raises Unavailable may still have been stored on fewer than W replicas: it
    was not acknowledged, so it is neither promised nor ruled out."""

    def __init__(self, message: str, *, key=None, keys=(), needed: int = 0, got: int = 0):
        super().__init__(message)
        self.key = key
        self.keys = tuple(keys) if keys else ((key,) if key is not None else ())
        self.needed = needed
        self.got = got

    def __reduce__(self):
        return (_rebuild_unavailable, (str(self), self.key, self.keys, self.needed, self.got))


def _rebuild_unavailable(message, key, keys, needed, got):
    return Unavailable(message, key=key, keys=keys, needed=needed, got=got)


class ConflictError(DynamoError):
    """``GetResult.value`` was read while the key has several siblings; use ``.values``."""


class Overloaded(DynamoError):
    """A replica's queue was full and the request was shed instead of waiting."""


class StorageError(DynamoError):
    """A spill segment or write-ahead log file is missing or corrupt; the message names the file.

    Raised inside vnodes, which log it, set the file aside (``*.corrupt``) and go on serving
    without it while anti-entropy refills what it held. It reaches a caller only from tools
    that read files directly."""
