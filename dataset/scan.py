"""Finds the labelled images of a dataset folder and the site (camera) of each.

Layout: `in_dir/<label>/.../<site>_<rest>.<ext>`: one folder per label, nested folders
allowed, any of IMAGE_EXTENSIONS in any case. The site_id is read from the file name (the
prefix before the first `_`, as the CT DEEP Rivers code does; the whole stem if there is no
`_`), or from a regex, or from a CSV `path,site_id`.

Example:
    >>> scan = scan_labelled_dir("photos", site_regex=r"^(S\\d+)")
    >>> scan.counts()          # {'1': {'S1': 40, 'S2': 7}, ...}
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from dataset.errors import DatasetError
from dataset.images import ImageLoadError, is_image_name, probe_image
from runtime.parallel import parallel_imap


@dataclass(frozen=True)
class ImageRecord:
    """One input image: where it is, its label, its site and (once checked) its size."""
    path: Path
    relpath: str
    label: str
    site_id: str
    size: tuple[int, int] | None = None  # (width, height) as displayed; set by validate_images


@dataclass
class ScanResult:
    """The usable images of a dataset folder, and every file left out with the reason."""
    in_dir: Path
    labels: list[str]
    images: list[ImageRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def by_label(self) -> dict[str, list[ImageRecord]]:
        out: dict[str, list[ImageRecord]] = {label: [] for label in self.labels}
        for rec in self.images:
            out[rec.label].append(rec)
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per site per label, sites in natural order."""
        out = {}
        for label, recs in self.by_label().items():
            c = Counter(r.site_id for r in recs)
            out[label] = {s: c[s] for s in sorted(c, key=natural_key)}
        return out


def natural_key(text: str) -> list:
    """Sort key that puts "2" before "10" and "S2" before "S10"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def site_from_name(name: str) -> str:
    """The CT DEEP Rivers rule: the file name's prefix before the first `_`."""
    return Path(name).stem.split("_", 1)[0]


def _regex_rule(pattern: str) -> Callable[[str, str], str | None]:
    try:
        rx = re.compile(pattern)
    except re.error as err:
        raise DatasetError(f"--site_regex {pattern!r} is not a valid regex: {err}") from None

    def rule(relpath: str, name: str) -> str | None:
        m = rx.search(name)
        if m is None:
            return None
        if "site" in rx.groupindex:
            return m.group("site")
        return m.group(1) if rx.groups else m.group(0)
    return rule


def _csv_rule(csv_path: str | Path, in_dir: Path) -> Callable[[str, str], str | None]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"--site_csv {csv_path} does not exist")
    table: dict[str, str] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "site_id"} <= set(reader.fieldnames):
            raise DatasetError(f"--site_csv {csv_path} needs the columns path,site_id; "
                               f"found {reader.fieldnames}")
        for row in reader:
            key = Path(row["path"])
            if key.is_absolute():
                try:
                    key = key.resolve().relative_to(in_dir.resolve())
                except ValueError:
                    continue
            table[key.as_posix()] = row["site_id"].strip()
    return lambda relpath, name: table.get(relpath)


def label_folders(in_dir: str | Path, labels: Sequence[str] | None = None) -> list[Path]:
    """The label folders `in_dir/<label>/` (natural order; hidden ones skipped), or the ones
    named in `labels`, checked to exist.

    Raises:
        DatasetError: in_dir missing or not a folder, an unknown label, no label folders.
    """
    in_dir = Path(in_dir)
    if not in_dir.exists():
        raise DatasetError(f"input folder {in_dir} does not exist")
    if not in_dir.is_dir():
        raise DatasetError(f"input {in_dir} is not a folder")
    found = sorted((p for p in in_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    if labels:
        missing = [lab for lab in labels if not (in_dir / lab).is_dir()]
        if missing:
            have = ", ".join(p.name for p in found) or "none"
            raise DatasetError(f"label folder(s) {', '.join(missing)} not found in {in_dir} "
                               f"(label folders there: {have})")
        return [in_dir / lab for lab in labels]
    if not found:
        loose = [p for p in in_dir.iterdir() if p.is_file() and is_image_name(p)]
        hint = (f"; it holds {len(loose)} images directly: put them in one folder per label"
                if loose else "")
        raise DatasetError(f"{in_dir} has no label folders (expected {in_dir}/<label>/<images>){hint}")
    return found


def scan_labelled_dir(in_dir: str | Path, labels: Sequence[str] | None = None,
                      site_regex: str | None = None, site_csv: str | Path | None = None
                      ) -> ScanResult:
    """Lists the images of `in_dir/<label>/...` with their label and site_id.

    Reads file names only (fast); `validate_images` then checks the pixels.

    Args:
        in_dir: the dataset folder.
        labels: label folder names to use (default: every sub-folder, natural order).
        site_regex: regex searched in the file name; the site is group `site`, else group 1,
            else the whole match.
        site_csv: CSV with columns `path,site_id` (path relative to in_dir); wins over the rest.

    Raises:
        DatasetError: missing/empty folder, unknown label, label without images, a site
            rule that does not cover every file.
    """
    in_dir = Path(in_dir)
    label_dirs = label_folders(in_dir, labels)
    rule = (_csv_rule(site_csv, in_dir) if site_csv else
            _regex_rule(site_regex) if site_regex else
            (lambda relpath, name: site_from_name(name)))
    images: list[ImageRecord] = []
    skipped: list[tuple[str, str]] = []
    unmatched: list[str] = []
    used_labels: list[str] = []
    # Images beside the label folders belong to no label: said, never silently dropped.
    skipped += [(f.name, "image at the dataset root, in no label folder: not used")
                for f in sorted(in_dir.iterdir(), key=lambda p: natural_key(p.name))
                if f.is_file() and not f.name.startswith(".") and is_image_name(f)]
    for ldir in label_dirs:
        n_before = len(images)
        for path in sorted(ldir.rglob("*"), key=lambda p: natural_key(p.as_posix())):
            rel_path = path.relative_to(in_dir)
            if any(part.startswith(".") for part in rel_path.parts):
                continue
            rel = rel_path.as_posix()
            if not path.is_file():
                continue
            if not is_image_name(path):
                skipped.append((rel, "not an image file (by its extension)"))
                continue
            site = rule(rel, path.name)
            if not site:
                unmatched.append(rel)
                continue
            images.append(ImageRecord(path, rel, ldir.name, site))
        if len(images) == n_before:
            if labels:
                raise DatasetError(f"label {ldir.name!r} has no images in {ldir}")
            skipped.append((ldir.relative_to(in_dir).as_posix() + "/", "label folder without images"))
        else:
            used_labels.append(ldir.name)
    if unmatched:
        how = (f"--site_csv {site_csv}" if site_csv else f"--site_regex {site_regex!r}"
               if site_regex else "the default site rule (the prefix before the first '_')")
        raise DatasetError(f"{how} gives no site_id for {len(unmatched)} file(s), "
                           f"e.g. {unmatched[0]}")
    if not images:
        raise DatasetError(f"no images found in {in_dir} (extensions: jpg, jpeg, png, bmp, tif, webp)")
    return ScanResult(in_dir, used_labels, images, skipped)


def _probe(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    try:
        return probe_image(path), None
    except ImageLoadError as err:
        return None, str(err).replace(f"{path}: ", "")


def _probe_job(path: Path) -> tuple[Path, tuple[int, int] | None, str | None]:
    return (path, *_probe(path))


def probe_images(paths: Sequence[Path], workers: int | None = None, progress: bool = False,
                 pool=None) -> dict[Path, tuple[tuple[int, int] | None, str | None]]:
    """Decodes every image once (in parallel): {path: ((width, height), None)} for a
    readable image, {path: (None, one-line reason)} for the rest.

    Args:
        workers, pool: processes to use, or an open `runtime.parallel.worker_pool`.
    """
    return {path: (size, err) for path, size, err in parallel_imap(
        _probe_job, list(paths), workers=workers, chunksize=16, pool=pool,
        desc="checking images" if progress else None, unit="img")}


def validate_images(scan: ScanResult, min_size: int = 1, workers: int | None = None,
                    progress: bool = True, pool=None) -> ScanResult:
    """Decodes every image once (in parallel) and drops the unusable ones, listing why.

    Args:
        min_size: images whose shorter side is below this many pixels are skipped.
        workers, pool: processes to use, or an open `runtime.parallel.worker_pool`.

    Returns:
        A new ScanResult; labels left without any usable image are dropped (and listed).
    """
    probed = probe_images([r.path for r in scan.images], workers, progress, pool)
    verdicts, sizes = {}, {}
    for rec in scan.images:
        size, err = probed[rec.path]
        if err is None and min(size) < min_size:
            err = f"too small ({size[0]}x{size[1]} px; the minimum side is {min_size} px)"
        verdicts[rec.relpath], sizes[rec.relpath] = err, size
    good = [replace(r, size=sizes[r.relpath]) for r in scan.images if verdicts[r.relpath] is None]
    skipped = list(scan.skipped) + [(r.relpath, verdicts[r.relpath]) for r in scan.images
                                    if verdicts[r.relpath] is not None]
    labels = []
    for label in scan.labels:
        if any(r.label == label for r in good):
            labels.append(label)
        else:
            skipped.append((f"{label}/", "label folder without usable images"))
    if not good:
        raise DatasetError(f"none of the {len(scan.images)} image files in {scan.in_dir} "
                           f"could be read; first problem: {skipped[-1][0]}: {skipped[-1][1]}")
    return ScanResult(scan.in_dir, labels, good, skipped)
