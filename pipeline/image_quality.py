"""The report's "Generated image quality" section: per label, how many generated images lie
as close to a real image as a copy would (stage 3's memorisation audit), how recognisable
they are (GAN-test with stage 4's real-only classifier) and their KID, with the closest
(generated | nearest real) pairs.

GAN-test loads a classifier and reads every generated image, so its table is cached in
`out_dir/quality/gan_test.csv`, with the stamps of the files it was computed from in
`gan_test.json`: re-rendering the report reuses it until stage 3 or stage 4 write anew.

Example:
    >>> table, note = gan_test_table(Layout("run"), "data/test")
    >>> html = quality_html(Layout("run"), "data/test", kid_rows)
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

from classifier.runs import METRICS_NAME, is_finished
from dataset.atomic import atomic_write_text
from dataset.manifest import MANIFEST_NAME, read_manifest
from dataset.scan import DatasetError, scan_labelled_dir
from pipeline.evidence import REAL_GENERATORS
from pipeline.stages import Layout
from quality.recognisability import gan_test
from quality.report import panel_html

# The classifier seed whose `original` run judges the generated images (any seed would do;
# a fixed one keeps the numbers comparable between runs).
GAN_TEST_SEED = 0


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def original_run(results_dir: str | Path, seed: int = GAN_TEST_SEED) -> tuple[Path, int] | None:
    """(run folder, seed) of a finished run of stage 4's `original` arm (real images only):
    `seed`'s, else the lowest seed that finished; None when none has.

    Example:
        >>> original_run("run/results")
        (PosixPath('run/results/original/seed0'), 0)
    """

    arm = Path(results_dir) / "original"
    if is_finished(arm / f"seed{seed}"):
        return arm / f"seed{seed}", seed
    seeds = sorted(int(m.group(1)) for p in arm.glob("seed*")
                   if (m := re.fullmatch(r"seed(\d+)", p.name)) and is_finished(p))
    return (arm / f"seed{seeds[0]}", seeds[0]) if seeds else None


def generated_images(balanced_dir: str | Path) -> list[tuple[str, str]]:
    """(path, label) of every generated image stage 3's manifest lists."""
    folder = Path(balanced_dir)
    return [(str(folder / r.path), r.label) for r in read_manifest(folder / MANIFEST_NAME)
            if r.generator not in REAL_GENERATORS]


def _stamp(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _describe(meta: dict, out_dir: Path) -> str:
    run = Path(meta["classifier_run"])
    if run.is_relative_to(out_dir.resolve()):
        run = run.relative_to(out_dir.resolve())
    text = (f"GAN-test classifier: stage 4's 'original' arm (real images only), seed "
            f"{meta['seed']} ({run})")
    if meta["seed"] != GAN_TEST_SEED:
        text += f"; seed {GAN_TEST_SEED} has no finished run"
    if meta.get("skipped"):
        text += f"; {len(meta['skipped'])} unreadable image(s) left out"
    return text + "."


def gan_test_table(layout: Layout, test_dir: str | Path, seed: int = GAN_TEST_SEED):
    """GAN-test of stage 3's generated images with stage 4's `original` classifier, per
    label beside its accuracy on the real test images; computed once, then read back from
    `layout.quality/gan_test.csv` while the stage-3 manifest and the classifier run are the
    same files.

    Args:
        layout: the pipeline run's folders.
        test_dir: real test images, one sub-folder per label.
        seed: the `original` run to use (the lowest finished seed if it has none).

    Returns:
        (DataFrame of `quality.recognisability.GAN_TEST_COLUMNS`, or None; a sentence saying
        which classifier judged, or what is missing).

    Example:
        >>> table, note = gan_test_table(Layout("run"), "data/test")
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    manifest = layout.balanced_data / MANIFEST_NAME
    if not manifest.is_file():
        return None, "GAN-test: stage 3 has not run."
    found = original_run(layout.results, seed)
    if found is None:
        return None, ("GAN-test: stage 4 has not run (no finished run of its 'original' arm "
                      f"in {layout.results / 'original'}).")
    synthetic = generated_images(layout.balanced_data)
    if not synthetic:
        return None, "GAN-test: stage 3 generated no images."
    run, used = found
    key = {"manifest": _stamp(manifest), "classifier": _stamp(run / METRICS_NAME),
           "test_dir": str(Path(test_dir).resolve())}
    cache, meta_path = layout.quality / "gan_test.csv", layout.quality / "gan_test.json"
    if cache.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return pd.read_csv(cache), _describe(meta, layout.out_dir)
    print(f"[pipeline] report: GAN-test of {len(synthetic)} generated image(s) with {run}",
          flush=True)
    test = [(str(r.path), r.label) for r in scan_labelled_dir(test_dir).images]
    table = gan_test(run, synthetic, test)
    meta = {"key": key, "classifier_run": str(run.resolve()), "seed": used,
            "skipped": list(table.attrs.get("skipped", []))}
    layout.quality.mkdir(parents=True, exist_ok=True)
    # The CSV first: a stamp file that matches always describes the CSV beside it.
    atomic_write_text(cache, table.to_csv(index=False))
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return table, _describe(meta, layout.out_dir)


def _audit_lines(balanced_dir: Path) -> str:
    """Stage 3's own sentences about the audit (threshold rule, share, gate) from summary.txt."""
    path = balanced_dir / "summary.txt"
    if not path.is_file():
        return ""
    return " ".join(ln.strip() for ln in path.read_text().splitlines()
                    if ln.startswith(("memorisation audit:", "memorisation gate:")))


def quality_html(layout: Layout, test_dir: str | Path | None, kid_rows: list[dict] | None,
                 kid_note: str = "") -> str:
    """The section's body: one table per label (memorisation share, GAN-test beside real-test
    accuracy, KID), the closest pairs, and a line for each measurement that is missing.

    Args:
        layout: the pipeline run's folders.
        test_dir: real test images (None: no GAN-test).
        kid_rows: `pipeline.evidence.synthetic_kid` rows (None or []: none).
        kid_note: the KID features used, or why there is no KID.

    Example:
        >>> body = quality_html(Layout("run"), "data/test", kid_rows, "KID features: random.")
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    folder = layout.balanced_data
    if not (folder / MANIFEST_NAME).is_file():
        return _note("Stage 3 has not run: no generated images to judge.")
    if not generated_images(folder):
        return _note("Stage 3 generated no images (no label needed filling).")
    missing, info = [], []
    audit = summary = None
    if (folder / "audit.csv").is_file():
        audit = pd.read_csv(folder / "audit.csv")
        if (folder / "audit_summary.csv").is_file():
            summary = pd.read_csv(folder / "audit_summary.csv")
    else:
        missing.append(f"Memorisation audit: stage 3 wrote no audit.csv in {folder} (a "
                       "stage 3 from before the audit?).")
    gan = None
    if not test_dir:
        missing.append("GAN-test and KID: no --test_dir (real test images) was given.")
    else:
        try:
            gan, gan_note = gan_test_table(layout, test_dir)
        except (DatasetError, OSError, ValueError) as err:  # the rest of the report stands
            gan_note = f"GAN-test failed: {err}"
            print(f"[pipeline] report: {gan_note}", flush=True)
        (info if gan is not None else missing).append(gan_note)
    if kid_note:
        (info if kid_rows else missing).append(kid_note)
    pairs = folder / "closest_pairs.png"
    panel = panel_html(audit=audit, audit_summary=summary, gan_test=gan, kid_rows=kid_rows,
                       pairs_png=pairs if pairs.is_file() else None,
                       threshold_text=_audit_lines(folder),
                       gan_train_note="the pipeline runs GAN-test only; `python3 -m quality "
                                      "recognisability` also runs GAN-train.")
    return "".join(map(_note, missing + info)) + panel
