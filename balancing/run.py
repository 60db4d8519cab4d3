"""Stage 1 pipeline: scan -> check -> plan -> write augmentations, manifest and summary.

The plan is made in full before anything is written (so `--dry-run` shows exactly what a
run would do); the work runs on all cores (threads: decoding, rotating and encoding release
the GIL), one task per source image, and skips outputs that already exist, so an interrupted
run resumes where it stopped.

Example:
    >>> cfg = BalancerConfig(in_dir="photos", out_dir="diffusion_data")
    >>> with balancer_pool(cfg.workers) as pool:
    ...     plan = plan_balance(cfg, pool=pool)
    ...     print(format_plan(plan))
    ...     result = run_balance(plan, pool=pool)
"""
from __future__ import annotations

import contextlib
import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from balancing.charts import plot_site_counts
from balancing.plan import Augmentation, SitePlan, augmentation_ladder, plan_label
from balancing.rotate_zoom import cover_zoom, rotate_zoom
from cli.flags import save_config_json
from cli.tables import format_table
from config import BalancerConfig
from dataset.atomic import atomic_write_text
from dataset.copying import copy_original, original_names, short_hash
from dataset.images import ImageLoadError, load_rgb, save_rgb
from dataset.out_dir import CONFIG_NAME, remove_stale_temp_files
from dataset.out_dir import check_out_dir as check_resumable
from dataset.manifest import MANIFEST_NAME, ManifestRow, write_manifest
from dataset.resume import resume_keys
from dataset.scan import DatasetError, ImageRecord, ScanResult, scan_labelled_dir, validate_images
from runtime.parallel import parallel_imap, worker_pool

# Settings that change what is written: a resumed run must match them. Left out: where the
# inputs and outputs are, and how the work is done (workers, links or copies).
_RESUME_KEYS = resume_keys(BalancerConfig, exclude=("in_dir", "out_dir", "workers",
                                                    "link_originals"))


def balancer_pool(workers: int | None = None):
    """The pool stage 1 runs on: threads, one per core by default. Measured against a plain
    one-image-at-a-time loop (benchmarks/bench_site_balancer.py), a process pool lost on
    2 cores (spawn + imports + pickling for work that releases the GIL anyway)."""
    return worker_pool(workers, threads=True)


@dataclass(frozen=True)
class PlannedImage:
    """One file the run writes: a copy of the original (aug None) or an augmentation."""
    name: str                 # relative to out_dir, posix
    source: ImageRecord
    aug: Augmentation | None
    zoom: float | None


@dataclass
class BalancePlan:
    """Everything a run will write, decided before writing anything."""
    cfg: BalancerConfig
    scan: ScanResult
    sites: dict[str, dict[str, SitePlan]]
    outputs: list[PlannedImage]

    def jobs(self) -> list[list[PlannedImage]]:
        """The outputs grouped by source image (a worker decodes each source once)."""
        groups: dict[str, list[PlannedImage]] = {}
        for out in self.outputs:
            groups.setdefault(out.source.relpath, []).append(out)
        return list(groups.values())


@dataclass
class BalanceResult:
    written: int = 0
    reused: int = 0  # already present from an earlier (interrupted) run
    errors: list[str] = field(default_factory=list)


def _augmented_suffix(source: Path) -> str:
    # JPEG stays JPEG (re-encoded at high quality); everything else is written losslessly.
    return ".jpg" if source.suffix.lower() in (".jpg", ".jpeg") else ".png"


def _label_outputs(label: str, records: list[ImageRecord], site_plans: dict[str, SitePlan],
                   ladder: list[Augmentation], fact: float | None) -> list[PlannedImage]:
    names = original_names(records)
    by_site: dict[str, list[ImageRecord]] = {}
    for rec in records:
        by_site.setdefault(rec.site_id, []).append(rec)
    outputs: list[PlannedImage] = [PlannedImage(names[r.relpath], r, None, None) for r in records]
    for site, plan in site_plans.items():
        site_records = by_site[site]
        for img_idx, aug_idx in plan.assignments:
            rec, aug = site_records[img_idx], ladder[aug_idx]
            src = Path(rec.relpath)
            w, h = rec.size
            zoom = fact if fact is not None else cover_zoom(aug.theta, h, w)
            name = f"{label}/{src.stem}_{aug.tag}_{short_hash(rec.relpath)}{_augmented_suffix(src)}"
            outputs.append(PlannedImage(name, rec, aug, zoom))
    taken = Counter(o.name.lower() for o in outputs)
    clash = [n for n, c in taken.items() if c > 1]
    if clash:
        raise DatasetError(f"output names collide in label {label!r}: {clash[0]} "
                           f"(rename the input files)")
    return outputs


def plan_balance(cfg: BalancerConfig, progress: bool = True, pool=None) -> BalancePlan:
    """Scans and checks the input, then plans every output. Reads only; writes nothing.

    Args:
        pool: an open `balancer_pool` to reuse (default: one of its own).

    Raises:
        DatasetError: unusable input (one-line reason).
    """
    scan = scan_labelled_dir(cfg.in_dir, cfg.labels, cfg.site_regex, cfg.site_csv)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(balancer_pool(cfg.workers))
        scan = validate_images(scan, min_size=cfg.min_size, workers=1, progress=progress,
                               pool=pool)
    ladder = augmentation_ladder(cfg.theta, cfg.multiplier)
    sites, outputs = {}, []
    counts = scan.counts()
    for label, records in scan.by_label().items():
        sites[label] = plan_label(counts[label], ladder, cfg.seed, label)
        outputs += _label_outputs(label, records, sites[label], ladder, cfg.fact)
    return BalancePlan(cfg, scan, sites, outputs)


def plan_rows(plan: BalancePlan) -> list[dict]:
    """One row per (label, site): images before, added, after, target, shortfall."""
    return [{"label": label, "site_id": site, "before": sp.n_images, "added": sp.n_planned,
             "after": sp.n_after, "target": sp.target, "shortfall": sp.shortfall}
            for label, sites in plan.sites.items() for site, sp in sites.items()]


def format_plan(plan: BalancePlan) -> str:
    """The plan as a plain-text table, with totals and the shortfall called out."""
    rows = plan_rows(plan)
    head = ["label", "site_id", "before", "added", "after", "target", "shortfall"]
    lines = [format_table(rows, head)]
    short = [r for r in rows if r["shortfall"] > 0]
    before = sum(r["before"] for r in rows)
    added = sum(r["added"] for r in rows)
    lines.append(f"total: {before} images in, {added} augmentations planned, "
                 f"{before + added} out; {len(plan.scan.skipped)} file(s) skipped")
    for r in short:
        lines.append(f"shortfall: label {r['label']} site {r['site_id']} reaches {r['after']} "
                     f"of {r['target']} ({r['shortfall']} short: {r['before']} image(s) x "
                     f"{2 * plan.cfg.multiplier} distinct augmentations); raise --multiplier "
                     f"or lower --theta for more")
    return "\n".join(lines)


def check_out_dir(cfg: BalancerConfig) -> Path:
    """Checks that out_dir is new, or an earlier run of the same settings (resume).

    Raises:
        DatasetError: out_dir is inside in_dir, holds foreign files or other settings.
    """
    return check_resumable(cfg.out_dir, cfg.in_dir, cfg, _RESUME_KEYS, "site_id_balancer.py")


def _write_source(job: tuple[str, list[PlannedImage], int, bool]) -> BalanceResult:
    """Worker: writes every missing output of one source image (decoded at most once)."""
    out_dir, outputs, quality, link = job
    result, image = BalanceResult(), None
    for out in outputs:
        dst = Path(out_dir) / out.name
        if dst.exists():
            result.reused += 1
            continue
        if out.aug is None:
            copy_original(out.source.path, dst, link)
        else:
            if image is None:
                try:
                    image = load_rgb(out.source.path)
                except ImageLoadError as err:
                    result.errors.append(str(err))
                    return result
            save_rgb(dst, rotate_zoom(image, out.aug.theta, out.aug.flip, out.zoom), quality)
        result.written += 1
    return result


def _manifest_rows(plan: BalancePlan, out_dir: Path) -> list[ManifestRow]:
    rows = []
    for out in plan.outputs:
        if not (out_dir / out.name).exists():
            continue
        origin = out.source.path.resolve().as_posix()
        if out.aug is None:
            rows.append(ManifestRow(out.name, out.source.label, out.source.site_id, origin,
                                    "original", plan.cfg.seed, {}))
        else:
            rows.append(ManifestRow(out.name, out.source.label, out.source.site_id, origin,
                                    "rotate_flip", plan.cfg.seed,
                                    {"theta": out.aug.theta, "flip": out.aug.flip,
                                     "zoom": round(out.zoom, 6)}))
    return rows


def run_balance(plan: BalancePlan, progress: bool = True, pool=None) -> BalanceResult:
    """Writes the plan's outputs, manifest.csv, skipped.csv, summary.txt, config.json and
    balance_counts.png into out_dir, resuming an interrupted run of the same settings.

    Args:
        pool: an open `balancer_pool` to reuse (default: one of its own).

    Raises:
        DatasetError: out_dir is unusable (inside in_dir, foreign content, other settings).
    """
    cfg = plan.cfg
    out_dir = check_out_dir(cfg)
    remove_stale_temp_files(out_dir)  # what a killed run left half-written
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out_dir / CONFIG_NAME, in_dir_resolved=str(Path(cfg.in_dir).resolve()))
    jobs = [(str(out_dir), group, cfg.jpeg_quality, cfg.link_originals) for group in plan.jobs()]
    total = BalanceResult()
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(balancer_pool(cfg.workers))
        # The chart needs only the plan: draw it in a worker while the images are written.
        chart_args = (plan_rows(plan), out_dir / "balance_counts.png")
        chart = pool.submit(plot_site_counts, *chart_args) if pool is not None else None
        for res in parallel_imap(_write_source, jobs, desc="balancing" if progress else None,
                                 unit="img", weight=lambda r: r.written + r.reused + len(r.errors),
                                 total=len(plan.outputs), pool=pool, workers=1):
            total.written += res.written
            total.reused += res.reused
            total.errors += res.errors
        chart.result() if chart is not None else plot_site_counts(*chart_args)
    write_manifest(out_dir / MANIFEST_NAME, _manifest_rows(plan, out_dir))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([("path", "reason"), *plan.scan.skipped])
    atomic_write_text(out_dir / "skipped.csv", buf.getvalue())
    atomic_write_text(out_dir / "summary.txt", format_plan(plan) + "\n")
    return total
