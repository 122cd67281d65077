"""`cached`: memoize a function's results cluster-wide in a dynamo_ray table.

Role: the store as a cache for Ray workloads. Any task, actor or driver that calls the wrapped
function first looks its arguments up in the table and computes (and stores) only on a miss; the
wrapper pickles, so it can be shipped into tasks. `wrapper.many(list_of_args)` looks up a whole
batch with one `get_many` and stores the misses with one `put_many`.

Keys are ``cache:<module.qualname>:<sha1 of the pickled arguments>`` unless ``key=`` says
otherwise. Results are kept in the table's codec: on the built-in ``cache`` table (codec
``pickle``, last-write-wins, LRU past its memory limit) any picklable result, numpy arrays
and DataFrames included; a result the codec cannot encode is returned uncached (with a
warning), never an error. A miss computed by two callers at once is written twice; equal
values supersede each other, so the key still holds one value.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import pickle
from typing import Any, Callable, Iterable, Optional

from ..errors import InvalidValue
from .table import Table, check_ttl

log = logging.getLogger(__name__)


def _default_key(fn: Callable, args: tuple, kwargs: dict) -> str:
    digest = hashlib.sha1(pickle.dumps((args, sorted(kwargs.items())), protocol=4)).hexdigest()
    return f"cache:{fn.__module__}.{fn.__qualname__}:{digest}"


def cached(table: Table, *, key: Optional[Callable[..., str]] = None,
           ttl_s: Optional[float] = None) -> Callable:
    """Decorator: ``@dr.cached(store.table("cache"))``. ``key(*args, **kwargs)`` may name the
    cache key (default: the function's name and a hash of its arguments); ``ttl_s``: how long a
    result is kept (default: the table's ``ttl_s``, else until it is evicted)."""
    check_ttl(ttl_s)

    def decorate(fn: Callable) -> Callable:
        def key_of(args: tuple, kwargs: dict) -> str:
            return key(*args, **kwargs) if key is not None else _default_key(fn, args, kwargs)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key_of(args, kwargs)
            got = table.get(k)
            if got.exists:
                return got.values[0]
            result = fn(*args, **kwargs)
            _store(table, {k: result}, ttl_s)
            return result

        def many(calls: Iterable[tuple]) -> list:
            """Results for many positional argument tuples: one get_many, one put_many."""
            calls = [tuple(c) for c in calls]
            keys = [key_of(c, {}) for c in calls]
            found = table.get_many(keys)
            results, missing = [], {}
            for c, k in zip(calls, keys):
                if found[k].exists:
                    results.append(found[k].values[0])
                else:
                    value = missing[k] = fn(*c) if k not in missing else missing[k]
                    results.append(value)
            _store(table, missing, ttl_s)
            return results

        wrapper.many = many  # type: ignore[attr-defined]
        wrapper.table = table  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _store(table: Table, results: dict, ttl_s: Optional[float]) -> None:
    if not results:
        return
    try:
        table.put_many(results, ttl_s=ttl_s)
    except InvalidValue as e:
        log.warning("not cached: %s", e)
