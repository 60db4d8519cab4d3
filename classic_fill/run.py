"""classic_fill pipeline: scan the originals, plan stage 3's gap, write augmented real images.

The plan is stage 3's (`gap_filling.plan.plan_gap` on the same scan, categories, balance and
site rule), complete before anything is written, so `--dry-run` shows exactly what a run
would write. The output folder has stage 3's layout: the originals under `<label>/`, the new
images `<label>/<site>_classic_<k>_<hash>.png`, and `manifest.csv` whose rows carry each
image's source, seed and ReplayCompose record (`classic_fill.replay.replay_row` makes the
image again from its row). Rows are appended as images are written, so a re-run skips what
the manifest already holds and an interrupted run resumes.

Example:
    >>> plan = plan_classic_fill(ClassicFillConfig(in_dir="photos", categories=["1,2", "3"]))
    >>> print(format_plan(plan))
    >>> result = run_classic_fill(plan)
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classic_fill.config import ClassicFillConfig
from classic_fill.plan import ClassicImage, plan_images
from classic_fill.presets import from_pipeline_json, pipeline_json, pipeline_sha, resolve_pipeline
from classic_fill.replay import augment, load_image, replay_params
from cli.flags import ConfigError, save_config_json
from cli.tables import format_table
from dataset.atomic import atomic_write_text
from dataset.copying import copy_missing_originals, original_names, short_hash
from dataset.images import ImageLoadError, save_rgb
from dataset.manifest import (MANIFEST_NAME, ManifestRow, append_manifest, read_manifest,
                              write_manifest)
from dataset.out_dir import CONFIG_NAME, check_out_dir, remove_stale_temp_files, saved_config
from dataset.resume import resume_keys
from dataset.scan import DatasetError, ScanResult, scan_labelled_dir, validate_images
from gap_filling.plan import GapPlan, plan_gap
from runtime.parallel import default_workers, parallel_imap, worker_pool

GENERATOR = "classic_fill"
TOOL = "python3 -m classic_fill"
# Settings that change what is written: a resumed run must match them (the pipeline itself
# is compared by the hash of its serialisation, wherever its file lies).
_RESUME_KEYS = resume_keys(ClassicFillConfig, exclude=(
    "in_dir", "out_dir", "link_originals", "workers", "preset", "pipeline"))


@dataclass
class ClassicFillPlan:
    """Everything a run will write, decided before writing anything."""
    cfg: ClassicFillConfig
    scan: ScanResult
    gap: GapPlan
    pipeline_name: str          # preset name or file:<name>
    pipeline_spec: str          # albumentations serialisation (canonical JSON)
    originals: dict[str, str]   # source relpath -> output name
    images: list[ClassicImage]

    @property
    def pipeline_sha(self) -> str:
        return pipeline_sha(self.pipeline_spec)


@dataclass
class ClassicFillResult:
    generated: int = 0
    reused: int = 0             # already in the manifest from an earlier run
    copied: int = 0
    errors: list[str] = field(default_factory=list)


def plan_classic_fill(cfg: ClassicFillConfig, progress: bool = True,
                      pool=None) -> ClassicFillPlan:
    """Loads the pipeline, scans and checks the originals, plans every image. Writes nothing.

    Args:
        pool: an open `runtime.parallel.worker_pool` to reuse for checking the images.

    Raises:
        ConfigError: unknown preset, bad pipeline file, categories that do not fit the data.
        DatasetError: unusable input folder.
    """
    transform = resolve_pipeline(cfg.preset, cfg.pipeline)
    spec = pipeline_json(transform)
    scan = scan_labelled_dir(cfg.in_dir, None, cfg.site_regex, cfg.site_csv)
    scan = validate_images(scan, min_size=cfg.min_size, workers=cfg.workers, progress=progress,
                           pool=pool)
    try:  # the same call as stage 3's plan_gap_fill: same counts
        gap = plan_gap(scan.counts(), cfg.category_labels(), cfg.balance, cfg.split_sites)
    except ValueError as err:
        raise ConfigError(f"--categories: {err}") from None
    tag = short_hash(f"{pipeline_sha(spec)}|{cfg.seed}")
    images = plan_images(scan.by_label(), gap.extra, cfg.seed, tag)
    originals = original_names(scan.images)
    clash = {n.lower() for n in originals.values()} & {i.name.lower() for i in images}
    if clash:
        raise DatasetError(f"an original is named like a new image ({sorted(clash)[0]}): "
                           f"rename it")
    return ClassicFillPlan(cfg, scan, gap, cfg.pipeline_label(), spec, originals, images)


def plan_table(plan: ClassicFillPlan) -> list[dict]:
    """One row per label and site: real images, new images, distinct sources they use."""
    sources: dict[tuple[str, str], set[str]] = {}
    for img in plan.images:
        sources.setdefault((img.label, img.site_id), set()).add(img.source.relpath)
    return [{"label": label, "site_id": site, "real": plan.gap.counts[label].get(site, 0),
             "classic": extra, "sources": len(sources.get((label, site), ()))}
            for label, sites in plan.gap.extra.items() for site, extra in sites.items()]


def format_plan(plan: ClassicFillPlan) -> str:
    """The plan as a table, with category and label totals (as stage 3 prints them)."""
    lines = [format_table(plan_table(plan), ["label", "site_id", "real", "classic", "sources"])]
    lines += plan.gap.totals_lines("classic")
    lines.append(f"pipeline: {plan.pipeline_name} (sha1 {plan.pipeline_sha[:12]})")
    lines.append(f"total: {len(plan.images)} augmented image(s) to write; "
                 f"{len(plan.scan.skipped)} file(s) skipped")
    return "\n".join(lines)


# ------------------------------------------------------------------ writing


_per_thread = threading.local()


def _transform(spec: str):
    # Built once per worker thread and pipeline: each image reseeds it
    # (classic_fill.replay.augment), so two threads must never share one.
    built = _per_thread.__dict__.setdefault("transforms", {})
    if spec not in built:
        built[spec] = from_pipeline_json(spec)
    return built[spec]


def _row(img: ClassicImage, pipeline_name: str, record: dict) -> ManifestRow:
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    params = {"pipeline": pipeline_name, "source": img.source.relpath, "index": img.index,
              "albumentations": A.__version__, **record}
    return ManifestRow(img.name, img.label, img.site_id, img.source.path.resolve().as_posix(),
                       GENERATOR, img.seed, params)


def _make_one(out_dir: Path, spec: str, name: str, img: ClassicImage,
              source: np.ndarray) -> ManifestRow:
    """Writes one image (atomically) and returns its manifest row.

    Raises:
        ValueError: the pipeline returned an image that cannot be written as its source was.
    """
    out, record = augment(_transform(spec), source, img.seed)
    save_rgb(out_dir / img.name, out)
    return _row(img, name, record)


def _make_images(job: tuple[str, str, str, list[ClassicImage]]
                 ) -> tuple[list[ManifestRow], list[str]]:
    """Worker: writes the images of one source (decoded once); (manifest rows, errors)."""
    out_dir, spec, name, images = job
    rows, errors = [], []
    try:
        source = load_image(images[0].source.path)
    except ImageLoadError as err:
        return rows, [str(err)] * len(images)
    for img in images:
        try:
            rows.append(_make_one(Path(out_dir), spec, name, img, source))
        except ValueError as err:
            errors.append(f"{img.name}: {err}")
    return rows, errors


def _check_replay(plan: ClassicFillPlan, out_dir: Path, row: ManifestRow) -> None:
    """Makes the run's first image again from its row as the manifest stores it (JSON), so a
    pipeline whose record does not replay is caught before the bulk of the work.

    Raises:
        ConfigError: the replayed image differs from the written one.
    """
    params = json.loads(json.dumps(row.params))
    source = load_image(plan.scan.in_dir / params["source"])
    again = replay_params(params, source, row.seed)
    written = load_image(out_dir / row.path)
    if again.shape != written.shape or not np.array_equal(again, written):
        raise ConfigError(f"pipeline {plan.pipeline_name}: {row.path} does not replay exactly "
                          f"from its manifest row; use transforms whose parameters are plain "
                          f"numbers and arrays")


def _earlier_rows(out_dir: Path, wanted: set[str]) -> dict[str, ManifestRow]:
    """classic_fill rows of an earlier run whose image is still there, by path."""
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        rows = read_manifest(path)
    except (ValueError, OSError) as err:
        raise DatasetError(f"{path}: cannot resume from it ({err})") from None
    return {r.path: r for r in rows if r.generator == GENERATOR and r.path in wanted
            and (out_dir / r.path).is_file()}


def check_output(cfg: ClassicFillConfig) -> Path:
    """The resolved out_dir if it is new or an earlier run of the same settings (read only).

    Raises:
        DatasetError: out_dir is inside in_dir, holds foreign files or other settings.
    """
    return check_out_dir(cfg.out_dir, cfg.in_dir, cfg, _RESUME_KEYS, TOOL)


def _check_same_pipeline(out_dir: Path, plan: ClassicFillPlan) -> None:
    saved = saved_config(out_dir).get("_pipeline_sha")
    if saved is not None and saved != plan.pipeline_sha:
        raise DatasetError(f"--out_dir {plan.cfg.out_dir} was made with another pipeline "
                           f"(sha1 {saved[:12]}, now {plan.pipeline_sha[:12]} for "
                           f"{plan.pipeline_name}): choose a new folder or the same pipeline "
                           f"to resume")


def _jobs(images: list[ClassicImage], out_dir: Path, plan: ClassicFillPlan) -> list[tuple]:
    """One job per source image (a worker decodes each source once)."""
    groups: dict[str, list[ClassicImage]] = {}
    for img in images:
        groups.setdefault(img.source.relpath, []).append(img)
    return [(str(out_dir), plan.pipeline_spec, plan.pipeline_name, group)
            for group in groups.values()]


def run_classic_fill(plan: ClassicFillPlan, progress: bool = True,
                     pool=None) -> ClassicFillResult:
    """Copies the originals, writes the images the manifest does not hold yet, and writes
    manifest.csv, summary.txt, skipped.csv and config.json into out_dir.

    Args:
        pool: an open `runtime.parallel.worker_pool` (default: `cfg.workers` threads).

    Raises:
        DatasetError: out_dir is unusable (inside in_dir, foreign files, other settings).
        ConfigError: the pipeline does not replay exactly from its record, or returns images
            that cannot be written (another dtype or number of channels).
    """
    cfg = plan.cfg
    out_dir = check_output(cfg)
    _check_same_pipeline(out_dir, plan)
    remove_stale_temp_files(out_dir)  # what a killed run left half-written
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out_dir / CONFIG_NAME, in_dir_resolved=str(Path(cfg.in_dir).resolve()),
                     pipeline_name=plan.pipeline_name, pipeline_sha=plan.pipeline_sha)
    result = ClassicFillResult()
    result.copied = copy_missing_originals(plan.scan.images, plan.originals, out_dir,
                                           cfg.link_originals)
    rows = _earlier_rows(out_dir, {img.name for img in plan.images})
    todo = [img for img in plan.images if img.name not in rows]
    result.reused = len(plan.images) - len(todo)
    manifest = out_dir / MANIFEST_NAME
    if todo:
        # The first image in this process, checked against its row before the rest.
        first = todo[0]
        try:
            row = _make_one(out_dir, plan.pipeline_spec, plan.pipeline_name, first,
                            load_image(first.source.path))
        except ImageLoadError as err:
            raise DatasetError(str(err)) from None
        except ValueError as err:
            raise ConfigError(f"pipeline {plan.pipeline_name}: {err}") from None
        _check_replay(plan, out_dir, row)
        append_manifest(manifest, [row])
        rows[row.path] = row
        result.generated = 1
        jobs = _jobs(todo[1:], out_dir, plan)
        with contextlib.ExitStack() as stack:
            if pool is None and len(jobs) > 1:
                pool = stack.enter_context(worker_pool(cfg.workers, threads=True))
            workers = cfg.workers or default_workers()
            for new, errors in parallel_imap(
                    _make_images, jobs, desc="classic fill" if progress else None, unit="img",
                    # the bar counts the first image, made above, too
                    weight=lambda res: len(res[0]) + len(res[1]), total=len(todo), initial=1,
                    chunksize=max(1, min(8, len(jobs) // (4 * workers))), pool=pool,
                    workers=1):
                append_manifest(manifest, new)  # as soon as they exist: resumable
                rows.update((r.path, r) for r in new)
                result.generated += len(new)
                result.errors += errors
    originals = [ManifestRow(plan.originals[r.relpath], r.label, r.site_id,
                             r.path.resolve().as_posix(), "original", None, {})
                 for r in plan.scan.images]
    write_manifest(manifest, originals + [rows[i.name] for i in plan.images if i.name in rows])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([("path", "reason"), *plan.scan.skipped])
    atomic_write_text(out_dir / "skipped.csv", buf.getvalue())
    atomic_write_text(out_dir / "summary.txt", format_plan(plan) + "\n")
    return result
