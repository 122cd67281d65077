"""Ray Data in and out of a table: a datasink, a datasource and a cache-lookup step.

Role (DESIGN §6): the bulk paths between a `ray.data.Dataset` and a table, run inside Ray
Data's own tasks. `TableDatasink` writes a Dataset's rows (``ds.write_datasink(...)``),
`read_table` reads a table as a Dataset of ``key`` and ``value``, and `lookup` is a
``map_batches`` step that adds each row's cached value. Every one ships a pickled `Table` handle
into its tasks and goes through that handle, so the client edge checks every key and value.

Invariants:
- A many-key path batches: writes are ``put_many`` calls of at most ``batch_keys`` rows (never
  over ``limits.max_batch_keys``), reads are one ``range_keys`` per range and ``get_many``
  calls of at most ``batch_keys`` keys, a lookup is one ``get_many`` per batch. Never one Ray
  call per key.
- A row's key is ``str(row[key_column])`` (numpy scalars first become Python values, so the
  int64 5 is the key ``"5"``); a row whose key is None is an `InvalidKey` in a sink and a miss
  in a lookup.
- The caller of ``ds.write_datasink(TableDatasink(...))`` sees a `DynamoError`, never a Ray
  exception wrapper: a missing column is raised from ``on_write_start`` on the driver (the Write
  operator is kept apart from the operator before it, so the schema it is given is the schema of
  the rows it writes) before any write task starts, and so stores nothing (Ray Data's report of
  it as an error of "Ray Data internal code" is dropped, its chained ``SystemException`` cut
  off); a `DynamoError` inside a write task ends that task's writes (the batch that raised
  stores nothing) and is handed back as its result, then raised from ``on_write_complete`` once
  every task has finished (other tasks' rows may have been written, as with any failed Ray
  Data write). An empty block (a filter that kept nothing) writes nothing and is no error.
- `read_table` emits one row per live value: absent, deleted and expired keys are skipped; a key
  with several siblings gives one row per sibling (the key repeated) unless the table handle has
  a ``merge`` function, which makes it one row. Values keep their Python types (dicts stay dicts,
  numpy arrays stay arrays): the ``value`` column is Ray Data's Python-object extension type,
  never an Arrow struct that would fill the keys one dict lacks with None.
- Errors raised while a Dataset is consumed surface wherever Ray Data raises them, wrapped, as
  no code of this module runs there to unwrap them: a `read_table` read task's error as a
  ``RayTaskError`` that is also an instance of the `DynamoError` raised (``except
  dr.Unavailable`` still catches it); a `lookup` step's error, like any ``map_batches`` step's,
  as Ray Data's ``UserCodeException``, whose message carries the `DynamoError`'s. Transient
  refusals (`Overloaded`, `Unavailable`) are retried a few times in the task first.

Must not: be imported by ``dynamo_ray/__init__.py`` (it loads Ray Data); hold a connection of its
own (it uses the table handle's).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
from ray.data import Dataset, Datasink, Datasource, ReadTask, read_datasource
from ray.data.block import Block, BlockAccessor, BlockMetadata
from ray.data.datasource.datasink import WriteResult

from ..errors import DynamoError, InvalidArgument, InvalidKey, Overloaded, Unavailable
from .table import AsyncTable, Table, check_ttl

__all__ = ["TableDatasink", "lookup", "read_table"]

log = logging.getLogger(__name__)

BATCH_KEYS = 2000  # rows per put_many / keys per get_many of the bulk paths
WRITE_BUNDLE_BYTES = 1 << 20  # a write task gathers upstream blocks up to about this much
RETRY_ATTEMPTS = 3  # tries of one batch call that is refused as Overloaded or Unavailable
RETRY_BACKOFF_S = 0.2  # before the second try; doubled before each later one


# --- shared checks and conversions ---------------------------------------------------------------
def _sync_table(table: Any) -> Table:
    """The handle the tasks use: ``table`` itself, or a synchronous twin of an `AsyncTable`."""
    if not isinstance(table, Table):
        raise InvalidArgument(f"table must be a Table or AsyncTable handle (store.table(...)), "
                              f"not {type(table).__name__}")
    if isinstance(table, AsyncTable):
        return Table(table.store, table.name, merge=table.merge, via=table.via,
                     routing=table.routing)
    return table


def _check_column(column: Any, what: str) -> str:
    if not isinstance(column, str) or not column:
        raise InvalidArgument(f"{what} must be a non-empty column name (str), not {column!r}")
    return column


def _check_batch_keys(batch_keys: Any, table: Table) -> int:
    if isinstance(batch_keys, bool) or not isinstance(batch_keys, int) or batch_keys < 1:
        raise InvalidArgument(f"batch_keys={batch_keys!r} must be a positive integer")
    return min(batch_keys, table._limits.max_batch_keys)


def _missing_column(column: str, what: str, columns: Iterable[str]) -> InvalidArgument:
    columns = list(columns)
    return InvalidArgument(
        f"{what} {column!r} is not a column of the dataset (columns: "
        f"{', '.join(repr(c) for c in columns) if columns else 'none'})"
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else (numpy arrays included) as is."""
    return value.item() if isinstance(value, np.generic) else value


def _column_names(block: Block) -> list:
    if isinstance(block, pa.Table):
        return list(block.column_names)
    if isinstance(block, pd.DataFrame):
        return list(block.columns)
    return list(BlockAccessor.for_block(block).column_names())


def _column(block: Block, name: str) -> list:
    """One column of a block as plain Python values: Arrow's own conversion (lists, dicts, str;
    Ray's tensor columns give one numpy array per row), or pandas' ``tolist``."""
    if isinstance(block, pd.DataFrame):
        return [_plain(v) for v in block[name].tolist()]
    if not isinstance(block, pa.Table):
        block = BlockAccessor.for_block(block).to_arrow()
    return [_plain(v) for v in block.column(name).to_pylist()]


def _objects(values: list) -> Any:
    """An Arrow array that hands back exactly these Python objects (Ray's object extension)."""
    from ray.data.extensions import ArrowPythonObjectArray

    return ArrowPythonObjectArray.from_objects(values)


def _keys_array(keys: list) -> Any:
    if all(isinstance(k, str) for k in keys):
        return pa.array(keys, type=pa.string())
    if all(isinstance(k, bytes) for k in keys):
        return pa.array(keys, type=pa.binary())
    return _objects(keys)  # a table holding str and bytes keys


def _retrying(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, tried again after a back-off when the store refuses it for
    now (a blind put of the same values again is harmless: equal values supersede)."""
    delay_s = RETRY_BACKOFF_S
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return call(*args, **kwargs)
        except (Overloaded, Unavailable):
            if attempt == RETRY_ATTEMPTS - 1:
                raise
            time.sleep(delay_s)
            delay_s *= 2


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- writing -------------------------------------------------------------------------------------
class _DropRayDataReport(logging.Filter):
    """Drops what Ray Data logs for one exception raised from ``on_write_start`` (that it came
    from "Ray Data or Ray Core internal code", with a stack trace): it is the caller's error, and
    the caller gets it raised. Every other record passes; it removes itself on its last one."""

    LOGGER = "ray.data.exceptions"

    def __init__(self, error: BaseException):
        super().__init__()
        self.error = error

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if exc is not self.error:
            return True
        if record.getMessage().startswith("Full stack trace"):
            self.remove()
        return False

    def install(self) -> None:
        logging.getLogger(self.LOGGER).addFilter(self)

    def remove(self) -> None:
        logging.getLogger(self.LOGGER).removeFilter(self)


class TableDatasink(Datasink):
    """Writes a Dataset's rows into a table: ``ds.write_datasink(TableDatasink(table, "id"))``.

    Each row is stored under ``str(row[key_column])``; its value is ``row[value_column]``, or
    the whole row as a dict of plain Python values when ``value_column`` is None (numpy scalars
    become Python numbers, numpy arrays stay arrays: a ``msgpack`` table rejects them with
    `InvalidValue`, a ``pickle`` table such as ``cache`` keeps them). Rows are written blind
    with ``put_many`` in batches of ``batch_keys`` (at most ``limits.max_batch_keys``), from
    Ray Data's write tasks, in parallel; a key that occurs twice keeps one of its rows (the later
    in its batch; across tasks, whichever the table's versioning keeps). ``ttl_s`` as in
    `Table.put_many`.

    After the write, ``rows_written`` holds the number of rows stored. Errors: `InvalidArgument`
    from the constructor for a bad argument, and from ``write_datasink`` (before anything is
    written) when a column is missing; any `DynamoError` of the writes themselves (`InvalidKey`,
    `InvalidValue`, `Unavailable`, ...) from ``write_datasink`` once the write tasks are done.
    """

    def __init__(self, table: Table, key_column: str, value_column: Optional[str] = None, *,
                 batch_keys: int = BATCH_KEYS, ttl_s: Optional[float] = None):
        self.table = _sync_table(table)
        self.key_column = _check_column(key_column, "key_column")
        self.value_column = (None if value_column is None
                             else _check_column(value_column, "value_column"))
        self.batch_keys = _check_batch_keys(batch_keys, self.table)
        self.ttl_s = check_ttl(ttl_s)
        self.rows_written: Optional[int] = None
        self._raised: Optional[_DropRayDataReport] = None

    def __repr__(self) -> str:
        return (f"TableDatasink({self.table!r}, key_column={self.key_column!r}, "
                f"value_column={self.value_column!r})")

    def get_name(self) -> str:
        return f"Table({self.table.name})"

    @property
    def min_bytes_per_write(self) -> int:
        # Also what keeps the Write operator from being fused into the one before it: fused, the
        # schema `on_write_start` is given would be that operator's input, not these rows.
        return WRITE_BUNDLE_BYTES

    def _schema_error(self, columns: list) -> Optional[InvalidArgument]:
        if self.key_column not in columns:
            return _missing_column(self.key_column, "key_column", columns)
        if self.value_column is not None and self.value_column not in columns:
            return _missing_column(self.value_column, "value_column", columns)
        return None

    # --- on the driver --------------------------------------------------------------------------
    def on_write_start(self, schema: Optional[pa.Schema] = None) -> None:
        """Checks the columns of the first bundle's schema (None: no schema, each write task
        checks its own blocks). Called on the driver before any write task is submitted."""
        self.rows_written = None
        if schema is None:
            return
        error = self._schema_error(list(schema.names))
        if error is not None:
            self._raised = _DropRayDataReport(error)
            self._raised.install()
            raise error

    def on_write_complete(self, write_result: WriteResult) -> None:
        results = [r for r in write_result.write_returns if isinstance(r, dict)]
        self.rows_written = sum(r["rows"] for r in results)
        errors = [r["error"] for r in results if r["error"] is not None]
        if errors:
            log.warning("%s: %d rows written before %d write tasks failed", self.get_name(),
                        self.rows_written, len(errors))
            raise errors[0]
        if self.rows_written != write_result.num_rows:
            log.warning("%s: %d rows written of the %d rows Ray Data handed to the write tasks",
                        self.get_name(), self.rows_written, write_result.num_rows)
        log.info("%s: %d rows written", self.get_name(), self.rows_written)

    def on_write_failed(self, error: Exception) -> None:
        if self._raised is not None and error is self._raised.error:
            # our own error from on_write_start: Ray Data chained a SystemException to it
            error.__cause__ = None
            error.__suppress_context__ = True
            self._raised.remove()
            self._raised = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_raised": None}  # the log filter stays on the driver

    # --- in the write tasks ---------------------------------------------------------------------
    def write(self, blocks: Iterable[Block], ctx: Any) -> dict:
        """Writes this task's blocks; returns ``{"rows": stored, "error": None or the
        DynamoError that ended the task}`` (raised on the driver by `on_write_complete`)."""
        rows = 0
        try:
            for block in blocks:
                rows += self._write_block(block)
        except DynamoError as e:
            return {"rows": rows, "error": e}
        return {"rows": rows, "error": None}

    def _write_block(self, block: Block) -> int:
        if BlockAccessor.for_block(block).num_rows() == 0:
            return 0  # an empty block may have no columns at all (a filter that kept nothing)
        columns = _column_names(block)
        error = self._schema_error(columns)
        if error is not None:
            raise error
        keys = _column(block, self.key_column)
        if self.value_column is not None:
            values: Any = _column(block, self.value_column)
        else:
            values = {c: _column(block, c) for c in columns}
        written = 0
        for start in range(0, len(keys), self.batch_keys):
            stop = min(start + self.batch_keys, len(keys))
            batch = {}
            for i in range(start, stop):
                if keys[i] is None:
                    raise InvalidKey(f"row {i} of a block has no key (None in column "
                                     f"{self.key_column!r})")
                batch[str(keys[i])] = (values[i] if self.value_column is not None
                                       else {c: values[c][i] for c in columns})
            _retrying(self.table.put_many, batch, ttl_s=self.ttl_s)
            written += stop - start
        return written


# --- reading -------------------------------------------------------------------------------------
class _TableDatasource(Datasource):
    """The key ranges of one table, spread over read tasks (each task lists and reads its
    ranges range by range, so it holds one range's key list at a time)."""

    def __init__(self, table: Table, partitions: int, batch_keys: int):
        super().__init__()
        self.table = table
        self.partitions = partitions
        self.batch_keys = batch_keys

    def get_name(self) -> str:
        return f"Table({self.table.name})"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None,
                       data_context: Any = None) -> list:
        tasks = max(1, min(int(parallelism), self.partitions))
        return [
            ReadTask(_RangeReader(self.table, list(range(i, self.partitions, tasks)),
                                  self.batch_keys),
                     BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None,
                                   input_files=None),
                     per_task_row_limit=per_task_row_limit)
            for i in range(tasks)
        ]


class _RangeReader:
    """One read task: the live values of some key ranges, a block per ``get_many`` batch."""

    def __init__(self, table: Table, ranges: list, batch_keys: int):
        self.table, self.ranges, self.batch_keys = table, ranges, batch_keys

    def __call__(self) -> Iterator[Block]:
        ring = self.table.store.refresh_ring()  # the ring at run time: ranges may have moved
        emitted = False
        for kp in self.ranges:
            keys = _retrying(self.table.range_keys, ring, kp)
            for chunk in _chunks(keys, self.batch_keys):
                got = _retrying(self.table.get_many, chunk)
                out_keys, out_values = [], []
                for key, result in got.items():
                    for value in result.values:  # none when absent/deleted/expired
                        out_keys.append(key)
                        out_values.append(value)
                if out_keys:
                    emitted = True
                    yield pa.table({"key": _keys_array(out_keys), "value": _objects(out_values)})
        if not emitted:  # an empty block still carries the columns
            yield pa.table({"key": pa.array([], type=pa.string()), "value": _objects([])})


def read_table(table: Table, *, parallelism: Optional[int] = None,
               batch_keys: int = BATCH_KEYS) -> Dataset:
    """The table as a Dataset of ``key`` and ``value``: one row per live value (absent, deleted
    and expired keys are skipped; a key with siblings gives a row per sibling, the key repeated,
    unless the handle has a ``merge``). ``parallelism``: read tasks (default: Ray Data's choice;
    never more than the store's Q key ranges, each task reads a subset of them). Each task reads
    with quorum ``get_many`` batches of ``batch_keys``, so it sees what a quorum read sees when
    it runs (the Dataset is lazy: it reads when consumed)."""
    table = _sync_table(table)
    if parallelism is not None and (isinstance(parallelism, bool)
                                    or not isinstance(parallelism, int) or parallelism < 1):
        raise InvalidArgument(f"parallelism={parallelism!r} must be None or a positive integer")
    batch_keys = _check_batch_keys(batch_keys, table)
    partitions = table.store.refresh_ring().partitions
    source = _TableDatasource(table, partitions, batch_keys)
    if parallelism is None:
        return read_datasource(source)
    return read_datasource(source, override_num_blocks=min(parallelism, partitions))


# --- lookups -------------------------------------------------------------------------------------
class _Lookup:
    """The ``map_batches`` step `lookup` returns (a plain picklable object)."""

    def __init__(self, table: Table, key_column: str, value_column: str):
        self.table, self.key_column, self.value_column = table, key_column, value_column

    def __repr__(self) -> str:
        return f"lookup({self.table!r}, {self.key_column!r}, {self.value_column!r})"

    def _values(self, raw_keys: list) -> list:
        keys = [None if k is None else str(_plain(k)) for k in raw_keys]
        found: dict = {}
        wanted = list(dict.fromkeys(k for k in keys if k is not None))
        for chunk in _chunks(wanted, self.table._limits.max_batch_keys):
            found.update(_retrying(self.table.get_many, chunk))
        return [None if k is None else found[k].value for k in keys]

    def __call__(self, batch: Any) -> pa.Table:
        if isinstance(batch, pa.Table):
            columns = list(batch.column_names)
        elif isinstance(batch, pd.DataFrame):
            columns = [str(c) for c in batch.columns]
        elif isinstance(batch, Mapping):
            columns = [str(c) for c in batch]
        else:
            raise InvalidArgument(f"lookup takes pandas, pyarrow or numpy (dict) batches, not "
                                  f"{type(batch).__name__}")
        if self.key_column not in columns:
            raise _missing_column(self.key_column, "key_column", columns)
        if isinstance(batch, pa.Table):
            values = self._values(batch.column(self.key_column).to_pylist())
            rest = batch.drop_columns([self.value_column] if self.value_column in columns else [])
        elif isinstance(batch, pd.DataFrame):
            values = self._values(batch[self.key_column].tolist())
            rest = BlockAccessor.for_block(
                batch.drop(columns=[self.value_column], errors="ignore")).to_arrow()
        else:
            values = self._values(list(batch[self.key_column]))
            rest = BlockAccessor.batch_to_block(
                {c: v for c, v in batch.items() if c != self.value_column})
            if not isinstance(rest, pa.Table):
                rest = BlockAccessor.for_block(rest).to_arrow()
        # Always an Arrow block with the values as Python objects: a pandas object column or a
        # numpy object array of arrays and Nones is one Ray Data fails to cast to a tensor column.
        return rest.append_column(self.value_column, _objects(values))


def lookup(table: Table, key_column: str, value_column: str = "value") -> Callable[[Any], Any]:
    """A ``map_batches`` step: ``ds.map_batches(lookup(table, "text"), batch_format="pandas")``
    (or ``"numpy"``, ``"pyarrow"``) adds column ``value_column`` holding the value stored under
    each row's key ``str(row[key_column])``, or None on a miss (a row whose key is None is a
    miss; so is a stored None), with one ``get_many`` per batch. A key with siblings raises
    `ConflictError` unless the handle has a ``merge``. The step pickles; it carries the handle.

    Whatever the batch format, the step returns an Arrow table (Ray Data takes any block from a
    step; the next step gets its own ``batch_format``) whose new column holds the values as
    Python objects: ``to_pandas()`` shows it as Ray's ``python_object`` dtype
    (``.astype(object)`` makes it a plain object column)."""
    return _Lookup(_sync_table(table), _check_column(key_column, "key_column"),
                   _check_column(value_column, "value_column"))
