"""The write-ahead log of a vnode's durable tables (DESIGN §5).

Role: make every write a vnode accepts on a durable table survive a crash: appended and
fsynced before the vnode answers (group commit: one fsync per call), replayed when it starts,
rewritten smaller at checkpoints. Invariants: a record is complete on disk or dropped on
replay (a torn tail is cut off, so later appends are never read as its missing bytes); a
rewrite is atomic. Must not: import Ray; it reaches the disk only through its `Files` (the
seam's), so the simulator can keep only what was fsynced.
"""

from __future__ import annotations

import logging

from ..errors import StorageError

log = logging.getLogger(__name__)


class WriteAheadLog:
    """A vnode's log of durable writes: appended and fsynced before a write is acknowledged
    (by every replica that accepts it, fallbacks included), replayed at start, and rewritten
    smaller at checkpoints. Records are msgpack [table, kp, key, blob, hint, made] (hint None
    for an own range; blob None for a removal; made: [request, actor, counter] of the dot a
    coordinated write made, else absent; shorter records are read too); a torn last record
    (a crash mid-append) is dropped on replay. ``files`` is the disk (the seam's `Files`)."""

    def __init__(self, path: str, files):
        self.path = path
        self.files = files
        self._log = files.open_log(path)

    @property
    def size_bytes(self) -> int:
        return self._log.size()

    @staticmethod
    def _pack(records: list) -> bytes:
        import msgpack

        pack = msgpack.Packer(use_bin_type=True).pack  # one Packer for the batch, not per record
        return b"".join(pack(list(r)) for r in records)

    def append(self, records: list) -> None:
        self._log.append(self._pack(records))
        self._log.sync()

    def replay(self) -> list[tuple]:
        """Every complete record, as (table, kp, key, blob, hint, made)."""
        import msgpack

        data = self._log.read()
        records = []
        end = 0  # just after the last complete record
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(data)
        try:
            for record in unpacker:
                end = unpacker.tell()
                if isinstance(record, list) and 4 <= len(record) <= 6:
                    records.append((*record, *[None] * (6 - len(record))))
        except Exception as e:  # a torn tail: keep what came before it
            log.error("%s", StorageError(f"write-ahead log {self.path} ends in a torn record: {e}"))
        if end < len(data):
            # Cut the torn tail off: appended after it, new records would be read as its
            # missing bytes on the next replay (acknowledged writes lost or garbled).
            log.error("%s", StorageError(f"write-ahead log {self.path}: torn record at byte "
                                         f"{end} dropped"))
            self._log.truncate(end)
        return records

    def rewrite(self, records: list) -> None:
        """Make the log hold exactly ``records``, atomically (a crash leaves the old or the
        new log, never neither)."""
        self._log.close()
        self._log = self.files.replace_log(self.path, self._pack(records))

    def close(self) -> None:
        self._log.close()
