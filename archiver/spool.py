"""The archiver's durable spool: what it has accepted and InfluxDB has not yet, in SQLite (WAL mode, synchronous FULL).

A face event is acknowledged to the broker only once its entry is committed here; the writer thread sends the
spooled lines to InfluxDB and deletes them only after InfluxDB accepted them. ``kill -9`` at any moment therefore
loses nothing: what was committed is written after the restart, what was not is delivered again by the broker.

Tables (one file, ``ArchiverSettings.spool_path``):

- ``queue``: line-protocol lines waiting for InfluxDB, oldest first (``counter`` names what a write of it counts,
  ``entries_written`` or ``metrics_written``);
- ``seen``: ids of the face events spooled in the last ``keep_ids_s`` seconds, so a repeated delivery makes no
  second entry (idempotent by ``event_id``);
- ``dead``: lines InfluxDB refused for good (a 4xx), with the reason, the newest ``MAX_DEAD`` kept.

Bounds: ``max_bytes`` of queued lines and ``max_age_s`` for the oldest one; past either the spool is full and
:meth:`Spool.put` raises :class:`SpoolFull` (the archiver then stops acknowledging; nothing is dropped silently).
Thread-safe: the MQTT thread puts, the writer thread peeks and deletes.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_DEAD = 10_000  # dead letters kept (the newest); each is also logged and counted when it is moved there

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL,
    counter TEXT NOT NULL,
    event_id TEXT,
    spooled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, spooled_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (spooled_at);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL,
    counter TEXT NOT NULL,
    event_id TEXT,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
"""


class SpoolLocked(RuntimeError):
    """Another process (a second archiver) has this spool open."""


class SpoolFull(RuntimeError):
    """The spool holds ``max_bytes`` of lines or its oldest line is older than ``max_age_s``; the message says which."""


@dataclass(frozen=True)
class Spooled:
    """One queued line: its row id, line-protocol text, the counter its write bumps, the face event's id (or None)."""

    id: int
    line: str
    counter: str
    event_id: str | None


class Spool:
    """A bounded, durable FIFO of line-protocol lines with duplicate suppression by event id.

    :param path: SQLite file (created with its folder when missing)
    :param max_bytes: most bytes of queued lines (UTF-8 length) before :meth:`put` refuses
    :param max_age_s: oldest queued line's age (s) before :meth:`put` refuses
    :param keep_ids_s: how long (s) a spooled event id keeps a repeated delivery out
    """

    def __init__(self, path: Path, max_bytes: int, max_age_s: float, keep_ids_s: float = 86400.0) -> None:
        self.path, self.max_bytes, self.max_age_s, self.keep_ids_s = Path(path), max_bytes, max_age_s, keep_ids_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115 - held while open
        try:  # one archiver per spool: two would each count and send the other's lines
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolLocked(f"spool {self.path} is in use by another archiver") from None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut too, not only kill -9
        self._db.executescript(_SCHEMA)
        self._bytes, self._count = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(CAST(line AS BLOB))), 0), COUNT(*) FROM queue").fetchone()
        self._last_prune_s = 0.0

    # -- the MQTT side ---------------------------------------------------------------------------------------------

    def put(self, line: str, counter: str, event_id: str | None = None, now_s: float | None = None) -> bool:
        """Queue ``line`` durably (committed when this returns). False, and nothing queued, when ``event_id`` was
        spooled before (within ``keep_ids_s``). Raises SpoolFull, or sqlite3.Error when the file cannot be written."""
        now_s = time.time() if now_s is None else now_s
        size = len(line.encode())
        with self._lock:
            self._check_room(now_s)
            with self._transaction():  # the id and the line together or neither
                if event_id is not None:
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO seen (event_id, spooled_at) VALUES (?, ?)", (event_id, now_s))
                    if cursor.rowcount == 0:
                        return False
                self._db.execute("INSERT INTO queue (line, counter, event_id, spooled_at) VALUES (?, ?, ?, ?)",
                                 (line, counter, event_id, now_s))
            self._bytes += size
            self._count += 1
            if now_s - self._last_prune_s > 60:
                self._last_prune_s = now_s
                self._db.execute("DELETE FROM seen WHERE spooled_at < ?", (now_s - self.keep_ids_s,))
            return True

    def seen(self, event_id: str) -> bool:
        """True when a face event with this id was spooled within ``keep_ids_s``."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone() is not None

    def full(self, now_s: float | None = None) -> str | None:
        """Why the spool takes nothing more (bytes or age over its bound), or None when it has room."""
        with self._lock:
            try:
                self._check_room(time.time() if now_s is None else now_s)
            except SpoolFull as exc:
                return str(exc)
            return None

    def _check_room(self, now_s: float) -> None:
        if self._bytes >= self.max_bytes:
            raise SpoolFull(f"spool {self.path} holds {self._bytes} bytes, its limit is {self.max_bytes}")
        oldest = self._db.execute("SELECT spooled_at FROM queue ORDER BY id LIMIT 1").fetchone()
        if oldest and now_s - oldest[0] > self.max_age_s:
            raise SpoolFull(f"the oldest line in spool {self.path} waits {now_s - oldest[0]:.0f} s, its limit is "
                            f"{self.max_age_s:.0f} s")

    # -- the writer side -------------------------------------------------------------------------------------------

    def peek(self, limit: int) -> list[Spooled]:
        """The oldest ``limit`` queued lines, left in the queue."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, line, counter, event_id FROM queue ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Spooled(*row) for row in rows]

    def delete(self, rows: list[Spooled]) -> None:
        """Remove written lines from the queue."""
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM queue WHERE id = ?", [(row.id,) for row in rows])
            self._bytes -= sum(len(row.line.encode()) for row in rows)
            self._count -= len(rows)

    def bury(self, row: Spooled, reason: str, now_s: float | None = None) -> None:
        """Move ``row`` from the queue to the dead letters with ``reason`` (the newest MAX_DEAD are kept)."""
        now_s = time.time() if now_s is None else now_s
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM queue WHERE id = ?", (row.id,))
            self._db.execute("INSERT INTO dead (line, counter, event_id, reason, dead_at) VALUES (?, ?, ?, ?, ?)",
                             (row.line, row.counter, row.event_id, reason[:1000], now_s))
            self._db.execute("DELETE FROM dead WHERE id <= (SELECT MAX(id) FROM dead) - ?", (MAX_DEAD,))
            self._bytes -= len(row.line.encode())
            self._count -= 1

    def dead(self) -> list[tuple[str | None, str, str]]:
        """The dead letters, oldest first: (event id or None, reason, line)."""
        with self._lock:
            return self._db.execute("SELECT event_id, reason, line FROM dead ORDER BY id").fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- figures ---------------------------------------------------------------------------------------------------

    def waiting(self) -> dict[str, int]:
        """Queued lines per counter name, e.g. ``{"entries_written": 11, "metrics_written": 4}``."""
        with self._lock:
            return dict(self._db.execute("SELECT counter, COUNT(*) FROM queue GROUP BY counter").fetchall())

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def bytes(self) -> int:
        """UTF-8 bytes of the queued lines."""
        with self._lock:
            return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lock_file.close()
