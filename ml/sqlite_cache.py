"""One SQLite table of values by key and content hash: what the embedding cache (ml.embeddings) and the
fine-tune's latent cache (ml.latent_cache) both keep on disk.

WAL mode, so several worker processes read and write one file at once and a crash mid-write leaves no
torn entries; a 60 s busy timeout; rows are only ever added (INSERT OR IGNORE: the first writer of a
key wins, and every writer computes the same value)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CHUNK = 500  # under SQLite's limit on bound parameters


class SqliteCache:
    """`table(<key columns>, hash, <value columns>)` with the key columns and hash as primary key.
    `columns` is the table's column list as SQL, primary key included."""

    def __init__(self, path: str | Path, table: str, columns: str, key: Sequence[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table, self.key = table, tuple(key)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        self._db.commit()

    def select(self, key: Sequence[Any], hashes: Sequence[str], fields: str) -> Iterator[tuple]:
        """Rows `(hash, <fields>)` of the given hashes under `key` (one value per key column); missing
        hashes are left out, repeated ones read once."""
        where = " AND ".join(f"{k}=?" for k in self.key)
        unique = list(dict.fromkeys(hashes))
        for i in range(0, len(unique), CHUNK):
            chunk = unique[i : i + CHUNK]
            yield from self._db.execute(
                f"SELECT hash, {fields} FROM {self.table} WHERE {where} AND hash IN ({','.join('?' * len(chunk))})",
                [*key, *chunk],
            )

    def insert(self, rows: Sequence[tuple]) -> None:
        """Whole rows, in the table's column order; keys already there keep their value."""
        if not rows:
            return
        with self._db:
            self._db.executemany(
                f"INSERT OR IGNORE INTO {self.table} VALUES ({', '.join('?' * len(rows[0]))})", rows
            )

    def count(self) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        self._db.close()
