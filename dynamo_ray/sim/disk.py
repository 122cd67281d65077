"""Simulated disks: files that keep only what was fsynced when their node crashes.

Role: the seam's `Files` for one simulated node. A log's bytes live in two parts: what a
`sync` made durable, and what was appended since (in the page cache). `crash` drops the
second part of every log, as a power cut does; a restarted node reopens the same logs. A
`replace_log` is atomic (written, synced, renamed). No Parquet segments are kept here
(``segments = False``): the simulated store holds its ranges in memory and logs durable
tables, which is what a crash tests.
"""

from __future__ import annotations


class SimLogFile:
    def __init__(self, disk: "SimFiles", path: str):
        self.disk, self.path = disk, path

    def _data(self) -> list:
        return self.disk.logs.setdefault(self.path, [b"", b""])  # [synced, pending]

    def append(self, data: bytes) -> None:
        self._data()[1] += data

    def sync(self) -> None:
        entry = self._data()
        entry[0], entry[1] = entry[0] + entry[1], b""
        self.disk.syncs += 1

    def read(self) -> bytes:
        synced, pending = self._data()
        return synced + pending

    def truncate(self, size: int) -> None:
        whole = self.read()[:size]
        self.disk.logs[self.path] = [whole, b""]

    def size(self) -> int:
        synced, pending = self._data()
        return len(synced) + len(pending)

    def close(self) -> None:
        pass


class SimFiles:
    segments = False

    def __init__(self) -> None:
        self.logs: dict[str, list] = {}
        self.syncs = 0

    def open_log(self, path: str) -> SimLogFile:
        return SimLogFile(self, path)

    def replace_log(self, path: str, data: bytes) -> SimLogFile:
        self.logs[path] = [data, b""]
        self.syncs += 1
        return SimLogFile(self, path)

    def remove(self, path: str) -> None:
        self.logs.pop(path, None)

    def crash(self) -> int:
        """Lose every byte not synced; returns how many."""
        lost = 0
        for entry in self.logs.values():
            lost += len(entry[1])
            entry[1] = b""
        return lost
