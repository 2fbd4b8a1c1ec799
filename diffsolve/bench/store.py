"""The result store: one JSON object per finished cell, appended, flushed and fsynced at once.

A kill during a write can leave at most one partial last line; it is dropped (and cut off the
file) when the store is opened, so the interrupted cell simply runs again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ResultStore:
    """Append-only JSON-lines file of cell records, keyed by record['key'] (the last record wins)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a partial line from an interrupted write: cut it off
            with open(self.path, "r+b") as f:
                f.truncate(end)
        for line in data[:end].splitlines():
            if line.strip():
                rec = json.loads(line)
                self.records[rec["key"]] = rec

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line and make it durable before returning."""
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records[record["key"]] = record
