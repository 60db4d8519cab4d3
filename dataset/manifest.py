"""The manifest: one CSV row per image the project writes, saying where it came from.

Columns: path (relative to the manifest's folder), label, site_id, origin (the source
image(s), `;`-separated), generator (`original`, `rotate_flip`, `ddim`, `repaint`,
`sd_inpaint`, ...), seed, params (JSON), quality (a score, or empty).

Example:
    >>> write_manifest("out/manifest.csv", [ManifestRow("1/S1_a.jpg", "1", "S1", "in/1/S1_a.jpg",
    ...                                                  "rotate_flip", 42, {"theta": 5})])
    >>> rows = read_manifest("out/manifest.csv")
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from dataset.atomic import atomic_write_text

MANIFEST_NAME = "manifest.csv"


@dataclass
class ManifestRow:
    """Provenance of one written image."""
    path: str
    label: str
    site_id: str
    origin: str
    generator: str
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    quality: float | None = None

    def to_csv_dict(self) -> dict[str, str]:
        # A shallow copy: asdict would deep-copy params (large for replay records) only for
        # json.dumps to read them.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["params"] = json.dumps(self.params, sort_keys=True)
        data["seed"] = "" if self.seed is None else str(self.seed)
        data["quality"] = "" if self.quality is None else repr(float(self.quality))
        return data


COLUMNS = [f.name for f in fields(ManifestRow)]


def _to_text(rows: Iterable[ManifestRow], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow(row.to_csv_dict())
    return buf.getvalue()


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> Path:
    """Writes the whole manifest atomically (replacing an earlier version of it)."""
    return atomic_write_text(Path(path), _to_text(rows, header=True))


def append_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> None:
    """Appends rows (header first if the file is new) and flushes them to disk.

    For long jobs that record each image as soon as it exists. A last line cut short by a
    crash (which `read_manifest` ignores) is cut off first, so that the new rows do not fuse
    with it.
    """
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, "rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
        new = path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as fh:
        fh.write(_to_text(rows, header=new))
        fh.flush()


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Reads a manifest; a truncated final line (an interrupted append) is dropped.

    Raises:
        ValueError: the file lacks the manifest columns.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(complete))
    if reader.fieldnames is None or not set(COLUMNS[:5]) <= set(reader.fieldnames):
        raise ValueError(f"{path} is not a manifest (columns {reader.fieldnames})")
    rows = []
    for rec in reader:
        rows.append(ManifestRow(
            path=rec["path"], label=rec["label"], site_id=rec["site_id"], origin=rec["origin"],
            generator=rec["generator"],
            seed=int(rec["seed"]) if rec.get("seed") else None,
            params=json.loads(rec["params"]) if rec.get("params") else {},
            quality=float(rec["quality"]) if rec.get("quality") else None))
    return rows
