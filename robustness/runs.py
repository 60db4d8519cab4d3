"""The subcommands as functions on their config (the pipeline layer): read the model and the
images, run the search / synthesis / evaluation, write the outputs (atomically, into folders
of our own; a user's files are never overwritten).

Example:
    >>> from config import RobustnessSearchConfig
    >>> result = run_search_cmd(RobustnessSearchConfig(model="m.keras", images="photos"))
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from tqdm import tqdm

from cli.flags import save_config_json
from cli.tables import format_table
from config import EXECUTOR_FIELDS, RobustnessSynthesizeConfig
from dataset.atomic import atomic_write_text
from dataset.images import load_rgb, save_rgb
from dataset.manifest import MANIFEST_NAME, ManifestRow, append_manifest, read_manifest
from dataset.out_dir import (CONFIG_NAME, check_location, refuse_changed, refuse_foreign,
                             saved_config)
from dataset.resume import resume_keys
from dataset.scan import DatasetError
from robustness.chains import op_bounds
from robustness.data import list_images, load_image_set, truth_indices
from robustness.evaluate import evaluate_synthetic
from robustness.ops import OPS, resolve_ops
from robustness.predict import load_predictor
from robustness.report import write_evaluation_page, write_preview, write_search_report
from robustness.search import grid, run_search
from robustness.synthesize import GENERATOR, SynthesisStats, candidate_name, generate
from runtime.jobs import Job, run_jobs

# Config classes whose runs write a search folder (search.json, curves.csv, cache/);
# synthesize writes its --search_dir with its own config (see check_search_dir).
_OURS = ("RobustnessSearchConfig", "RobustnessReportConfig", "RobustnessSynthesizeConfig")
# An unbounded --max_images above this many images gets a note (memory, probes) first.
_NOTE_ABOVE = 500


def check_out_dir(out_dir: str | Path, images: str | Path, allowed: tuple[str, ...],
                  what: str, cfg=None) -> Path:
    """Accepts a new or empty folder, or one whose config.json was written by one of the
    `allowed` config classes; refuses a folder inside --images or one holding other files.

    Raises:
        DatasetError: one line saying why (nothing is changed).
    """
    out = check_location(out_dir, images, "--images")
    for flag in ("--model", "--reference_model", "--before_model"):
        model = getattr(cfg, flag[2:], "") if cfg is not None else ""
        if model and Path(model).is_dir():   # a run folder is an input (a .keras file's is not)
            check_location(out_dir, model, flag)
    refuse_foreign(out, out_dir, allowed, what)
    return out


def _is_synthetic_set(folder: Path) -> bool:
    """True for the out_dir of `synthesize` (its manifest, or a config.json with the
    model fingerprint only synthesize saves there)."""
    return (folder / MANIFEST_NAME).exists() or (folder / "state.json").exists() or \
        "_model_fingerprint" in saved_config(folder)


def check_search_dir(folder: str | Path, images: str | Path, flag: str = "--out_dir",
                     cfg=None) -> Path:
    """check_out_dir for a search folder: also refuses a synthetic set (writing the search
    there would break its resume).

    Raises:
        DatasetError: one line saying why (nothing is changed).
    """
    out = check_out_dir(folder, images, _OURS, "python3 -m robustness", cfg)
    if out.is_dir() and _is_synthetic_set(out):
        raise DatasetError(f"{flag} {folder} holds a synthetic set of python3 -m robustness "
                           f"synthesize, not a search: choose another folder (nothing "
                           f"changed)")
    return out


def _error_exit_check(cfg) -> None:
    """Checks the inputs that need no model, so a typo fails in a second, not after loading
    TensorFlow."""
    model = Path(cfg.model)
    if not model.exists():
        raise DatasetError(f"--model {model} does not exist")
    list_images(cfg.images)
    try:
        resolve_ops(getattr(cfg, "ops", None), getattr(cfg, "exclude_ops", None))
    except ValueError as err:
        raise DatasetError(str(err)) from None


def load_inputs(cfg):
    """(predictor, image set, ground-truth indices or None) of a search-like config."""
    predictor = load_predictor(cfg.model, batch_size=cfg.batch_size,
                               input_scale=cfg.input_scale, output=cfg.output)
    if cfg.image_size:
        size = (cfg.image_size, cfg.image_size)
    elif predictor.input_size:
        size = predictor.input_size
    else:
        raise DatasetError(f"--model {cfg.model} takes any input size: give --image_size")
    if not cfg.max_images:
        _note_unbounded(cfg, size)
    image_set = load_image_set(cfg.images, size, cfg.max_images, cfg.seed)
    if image_set.skipped:
        print(f"note: {len(image_set.skipped)} file(s) skipped, e.g. "
              f"{image_set.skipped[0][0]}: {image_set.skipped[0][1]}")
    return predictor, image_set, truth_indices(image_set, predictor.class_names)


def _note_unbounded(cfg, size: tuple[int, int]) -> None:
    """Without --max_images every image is loaded and probed: says what that costs when
    the folder is large."""
    n = len(list_images(cfg.images)[0])
    if n <= _NOTE_ABOVE:
        return
    probes = n * len(resolve_ops(cfg.ops, cfg.exclude_ops)) * (len(grid(cfg.step)) + 5)
    mem = n * size[0] * size[1] * 3
    mem_text = f"{mem / 2 ** 30:.1f} GiB" if mem >= 2 ** 30 else f"{mem / 2 ** 20:.0f} MiB"
    print(f"note: no --max_images: all {n} images are used ({mem_text} in memory at "
          f"{size[0]}x{size[1]}, up to {probes:,} probes); --max_images {_NOTE_ABOVE} takes "
          f"a seeded subset in proportion to the labels")


def search_with(cfg, predictor, image_set, truth, cache_dir: str | Path, progress: bool = True):
    """run_search with a config's settings. With --executor ray or pool every op is first
    probed by its own job into the shared probe cache; the search here then only reads it."""
    if getattr(cfg, "executor", "local") != "local":
        _probe_ops_in_parallel(cfg, cache_dir)
    return run_search(predictor, image_set, ops=resolve_ops(cfg.ops, cfg.exclude_ops),
                      step=cfg.step, noticeable_error=cfg.noticeable_error,
                      critical_error=cfg.critical_error, diff_error=cfg.error, truth=truth,
                      cache_dir=str(cache_dir), seed=cfg.seed, full_curve=cfg.full_curve,
                      max_batch=max(256, cfg.batch_size * 4), progress=progress)


def _probe_ops_in_parallel(cfg, cache_dir: str | Path) -> None:
    """One job per op (a Ray task or on the process pool, `cfg.executor`), each loading the
    model and images itself (a worker shares no memory with this process) and filling the
    op's file of the probe cache."""
    jobs = [Job(op, _probe_one_op, (dataclasses.replace(cfg, ops=[op], exclude_ops=None,
                                                        executor="local"),
                                        str(Path(cache_dir).resolve())))
            for op in resolve_ops(cfg.ops, cfg.exclude_ops)]
    outcomes = run_jobs(jobs, cfg.executor, cfg.ray_address, cfg.task_cpus, cfg.task_gpus,
                        keep_going=True)
    failed = [f"{o.name}: {o.error}" for o in outcomes if o.status != "ok"]
    if failed:
        # What did finish is cached; the search below probes the rest here.
        print(f"note: {len(failed)} op(s) failed on {cfg.executor} and are probed here: "
              + "; ".join(failed))


def _probe_one_op(cfg, cache_dir: str) -> None:
    predictor, image_set, truth = load_inputs(cfg)
    search_with(cfg, predictor, image_set, truth, cache_dir, progress=False)


def curves_csv(result) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["op", "family", "intensity", "mean_error"])
    for name, c in result.curves.items():
        for x, e in zip(c.intensities, c.errors):
            w.writerow([name, OPS[name].family, f"{x:.4f}", f"{e:.5f}"])
    return buf.getvalue()


def run_search_cmd(cfg, progress: bool = True):
    """`search`: probes, then writes search.json, curves.csv and config.json to out_dir.

    Returns:
        (SearchResult, predictor, image_set).
    """
    _error_exit_check(cfg)
    out = check_search_dir(cfg.out_dir, cfg.images, cfg=cfg)
    predictor, image_set, truth = load_inputs(cfg)
    result = search_into(out, cfg, predictor, image_set, truth, progress)
    return result, predictor, image_set


def search_into(out: Path, cfg, predictor, image_set, truth, progress: bool = True):
    """Runs the (cached) search and writes config.json, search.json and curves.csv to the
    search folder `out` (the cache goes to out/cache unless --cache_dir says otherwise)."""
    out.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out / CONFIG_NAME, images_resolved=str(image_set.root))
    result = search_with(cfg, predictor, image_set, truth, cfg.cache_dir or out / "cache",
                         progress)
    summary = result.to_dict()
    summary.update({"model": str(cfg.model), "images": str(image_set.root),
                    "labels": sorted(set(image_set.labels))})
    atomic_write_text(out / "search.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(out / "curves.csv", curves_csv(result))
    return result


def run_report_cmd(cfg, progress: bool = True) -> Path:
    """`report`: the (cached) search, a reference model's severities if given, report.html."""
    if cfg.reference_model and not Path(cfg.reference_model).exists():
        raise DatasetError(f"--reference_model {cfg.reference_model} does not exist")
    result, predictor, image_set = run_search_cmd(cfg, progress)
    reference = None
    out = Path(cfg.out_dir)
    if cfg.reference_model:
        ref = load_predictor(cfg.reference_model, batch_size=cfg.batch_size,
                             input_scale=cfg.input_scale, output=cfg.output)
        reference = run_search(ref, image_set, ops=resolve_ops(cfg.ops, cfg.exclude_ops),
                               diff_error=cfg.error, truth=truth_indices(image_set,
                                                                          ref.class_names),
                               cache_dir=str(cfg.cache_dir or out / "cache"), seed=cfg.seed,
                               curves=False, max_batch=max(256, cfg.batch_size * 4),
                               progress=progress)
    return write_search_report(result, image_set, out / "report.html", reference,
                               model_name=Path(cfg.model).name,
                               reference_name=Path(cfg.reference_model).name
                               if cfg.reference_model else "", seed=cfg.seed)


# Settings a resumed synthesize must share with the first run (--images is compared
# resolved, and by the pixels it loads).
# Left out: where the inputs, outputs and caches are (model and images by their contents),
# how the work runs, and how many images are wanted (a larger count extends the folder).
_SYNTH_RESUME = resume_keys(RobustnessSynthesizeConfig, exclude=(
    *EXECUTOR_FIELDS, "model", "images", "out_dir", "batch_size", "cache_dir", "search_dir",
    "count", "max_attempts", "preview"))


def _check_resume(out: Path, cfg, model_fp: str, images_root: Path, images_fp: str) -> None:
    """Refuses to resume a synthetic set made from other settings, weights or images."""
    saved_path = out / CONFIG_NAME
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text())
    if saved.get("_images_resolved", str(images_root)) != str(images_root):
        raise DatasetError(f"--out_dir {cfg.out_dir} was made from --images "
                           f"{saved['_images_resolved']}, now {images_root}: choose a new "
                           f"folder or the same images to resume")
    refuse_changed(cfg.out_dir, saved, cfg, _SYNTH_RESUME)
    if saved.get("_model_fingerprint") != model_fp:
        raise DatasetError(f"--out_dir {cfg.out_dir} was made with other model weights: "
                           f"choose a new folder")
    # Folders from before the image fingerprint was saved cannot be checked.
    if saved.get("_image_set_fingerprint", images_fp) != images_fp:
        raise DatasetError(f"--out_dir {cfg.out_dir}: the images in --images {cfg.images} "
                           f"changed since the first run: choose a new --out_dir")


def run_synthesize_cmd(cfg, progress: bool = True) -> dict:
    """`synthesize`: search (cached), then images + manifest rows + preview.html.

    Returns:
        {"made", "requested", "attempts", "rejected", "out_dir", "bounds"}.
    """
    _error_exit_check(cfg)
    for name in list(cfg.pairs("op_realism")) + list(cfg.pairs("op_weights")):
        if name not in OPS:
            raise DatasetError(f"unknown op {name!r} in --op_realism/--op_weights; known ops: "
                               f"{', '.join(OPS)}")
    out = check_out_dir(cfg.out_dir, cfg.images, ("RobustnessSynthesizeConfig",),
                        "python3 -m robustness synthesize", cfg)
    if Path(cfg.search_dir).resolve() == out:
        raise DatasetError("--search_dir must differ from --out_dir (the synthetic folder "
                           "holds only images, their manifest and the preview)")
    if (out / "search.json").exists():
        raise DatasetError(f"--out_dir {cfg.out_dir} holds a search (search.json), not a "
                           f"synthetic set: choose a new folder (nothing changed)")
    search_dir = check_search_dir(cfg.search_dir, cfg.images, "--search_dir", cfg)
    predictor, image_set, truth = load_inputs(cfg)
    images_fp = image_set.fingerprint()
    _check_resume(out, cfg, predictor.fingerprint, image_set.root, images_fp)
    result = search_into(search_dir, cfg, predictor, image_set, truth, progress)
    if result.probes:
        print(f"search: {result.probes} probes made, {result.reused} reused; boundaries in "
              f"{cfg.search_dir}/search.json")
    bounds = op_bounds(result.boundaries(), cfg.realism, cfg.pairs("op_realism"))
    out.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out / CONFIG_NAME, images_resolved=str(image_set.root),
                     model_fingerprint=predictor.fingerprint,
                     image_set_fingerprint=images_fp)
    manifest = out / MANIFEST_NAME
    done = read_manifest(manifest) if manifest.is_file() else []
    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    stats = SynthesisStats(made=len(done), attempts=int(state.get("attempts", 0)),
                           rejected=int(state.get("rejected", 0)))
    start = max([int(state.get("next_candidate", 0))]
                + [int(r.params.get("candidate", -1)) + 1 for r in done])
    index_of = {str(p): i for i, p in enumerate(image_set.paths)}
    if stats.made < cfg.count:
        budget = cfg.max_attempts if cfg.max_attempts is not None else 10 * cfg.count
        bar = tqdm(total=cfg.count, initial=stats.made, desc="synthesizing", unit="img",
                   disable=not progress, dynamic_ncols=True)
        for cand in generate(predictor, image_set, bounds, cfg.count, seed=cfg.seed,
                             min_augs=cfg.min_augs, max_augs=cfg.max_augs,
                             op_weights=cfg.pairs("op_weights"), min_error=cfg.min_error,
                             max_error=cfg.max_error, max_attempts=budget,
                             diff_error=cfg.error, batch_size=min(cfg.batch_size, 64),
                             stats=stats, start=start):
            label = image_set.labels[cand.origin]
            params = {**cand.params, "realism": cfg.realism}
            name = candidate_name(Path(cand.params["origin"]).stem, params)
            path = out / label / name
            if not path.exists():  # never rewrite a file; the name hashes its params
                save_rgb(path, cand.image)
            append_manifest(manifest, [ManifestRow(
                f"{label}/{name}", label, image_set.sites[cand.origin], cand.params["origin"],
                GENERATOR, cfg.seed, params, round(cand.error, 5))])
            atomic_write_text(state_path, json.dumps({
                "next_candidate": stats.next_candidate, "attempts": stats.attempts,
                "rejected": stats.rejected, "made": stats.made}) + "\n")
            bar.update(1)
        bar.close()
        atomic_write_text(state_path, json.dumps({
            "next_candidate": stats.next_candidate, "attempts": stats.attempts,
            "rejected": stats.rejected, "made": stats.made}) + "\n")
    rows = read_manifest(manifest) if manifest.is_file() else []
    pairs = []
    for r in rows[:cfg.preview]:
        origin = index_of.get(r.params.get("origin"))
        if origin is None:
            continue
        chain = ", ".join(f"{s['op']} {s['intensity']:.2f}" for s in r.params["ops"])
        pairs.append((image_set.images[origin], load_rgb(out / r.path),
                      f"{r.label}: {chain}; error {r.quality:.2f}"))
    ranges = [{"op": n, "family": OPS[n].family, "low": lo, "high": hi,
               "high means": OPS[n].unit(hi)} for n, (lo, hi) in bounds.items()]
    summary = (f"{len(rows)} synthetic images at realism {cfg.realism:g} (made "
               f"{stats.made} of {cfg.count} requested; {stats.attempts} candidates tried, "
               f"{stats.rejected} rejected by the error window [{cfg.min_error:g}, "
               f"{cfg.max_error:g}]).")
    write_preview(pairs, out / "preview.html", ranges, summary)
    return {"made": stats.made, "requested": cfg.count, "attempts": stats.attempts,
            "rejected": stats.rejected, "out_dir": str(out), "bounds": bounds}


def run_evaluate_cmd(cfg) -> tuple[dict, Path]:
    """`evaluate`: metrics.json + evaluation.html in out_dir."""
    for flag, value in (("--model", cfg.model), ("--before_model", cfg.before_model)):
        if value and not Path(value).exists():
            raise DatasetError(f"{flag} {value} does not exist")
    if not Path(cfg.images).is_dir():
        raise DatasetError(f"--images {cfg.images} is not a folder")
    out = check_out_dir(cfg.out_dir, cfg.images, ("RobustnessEvaluateConfig",),
                        "python3 -m robustness evaluate", cfg)
    models = ({"before": cfg.before_model, "after": cfg.model} if cfg.before_model
              else {"model": cfg.model})
    metrics = evaluate_synthetic(models, cfg.images, cfg.error, cfg.batch_size,
                                 cfg.input_scale, cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out / CONFIG_NAME)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    write_evaluation_page(metrics, out / "evaluation.html")
    return metrics, out


def describe_ops() -> str:
    """The op table for `python3 -m robustness ops`."""
    rows = [{"op": s.name, "family": s.family, "group": s.group or "-",
             "at 0.5": s.unit(0.5), "at 1": s.unit(1.0),
             "severities": " ".join(f"{v:g}" for v in s.severities)} for s in OPS.values()]
    return format_table(rows, ["op", "family", "group", "at 0.5", "at 1", "severities"])
