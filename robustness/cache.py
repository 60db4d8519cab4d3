"""The resumable probe cache: what the model said about every (op, intensity, image).

One folder per key, `cache_dir/<key>/`, where the key hashes everything a probe's result
depends on: the model's weights (and input settings), the exact pixels of the image set,
the diff error, the label format and the seed of the ops' random numbers. Inside, one JSON
file per op (`<op>.json`, stamped with the op's version) maps each probed intensity to the
per-image errors and predicted classes. A search writes each op's file (atomically) as
soon as the op is done, so an interrupted search resumes where it stopped, a second run
makes no probe at all, and new weights, images or settings start a new folder.

Thresholds are not part of the key: they only summarise the stored curves.

Example:
    >>> cache = ProbeCache("robustness/cache", {"model": fp, "images": ifp, "seed": 42})
    >>> done = cache.load_op("fog", version=1)          # {0.05: {...}, ...}
    >>> cache.save_op("fog", 1, done)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dataset.atomic import atomic_write_text

CACHE_VERSION = 1


def intensity_key(x: float) -> str:
    """Intensities as fixed strings (4 decimals): 0.1 + 0.2 and 0.3 are the same probe."""
    return f"{float(x):.4f}"


class ProbeCache:
    """Per-op probe results under `root/<key>/`; `root=None` keeps them in memory only."""

    def __init__(self, root: str | Path | None, parts: dict[str, Any]):
        self.parts = {**parts, "cache_version": CACHE_VERSION}
        text = json.dumps(self.parts, sort_keys=True, default=str)
        self.key = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.folder = Path(root) / self.key if root else None
        self._memory: dict[str, dict] = {}
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            key_file = self.folder / "key.json"
            if not key_file.exists():
                atomic_write_text(key_file, json.dumps(self.parts, indent=2, sort_keys=True,
                                                       default=str) + "\n")

    def load_op(self, op: str, version: int) -> dict[str, dict]:
        """{intensity key: {"errors": [...], "pred": [...] or None}} already probed."""
        if op in self._memory:
            return self._memory[op]
        results: dict[str, dict] = {}
        path = self.folder / f"{op}.json" if self.folder else None
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("op") == op and data.get("version") == version:
                    results = data.get("results", {})
            except (OSError, ValueError):
                results = {}  # a damaged cache file is recomputed, never trusted
        self._memory[op] = results
        return results

    def save_op(self, op: str, version: int, results: dict[str, dict]) -> None:
        self._memory[op] = results
        if self.folder is None:
            return
        data = {"op": op, "version": version, "results": results}
        atomic_write_text(self.folder / f"{op}.json", json.dumps(data, separators=(",", ":")))
