"""The one-command pipeline on a tiny real dataset: stages 1-3, classic fill and stage 4 with
tiny real models, resume, settings changes, a failing stage, and report.html checked in a real
headless Chromium."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from config import PipelineConfig
from conftest import save_image, tiny_sd3, tree_hashes
from dataset.manifest import read_manifest
from reporting.browser import find_chromium, load_page
import run_pipeline

# Category {a, b} has 10 real images, {c, d} 20: stage 3 must add 10 to a and b.
TRAIN = {"a": {"S1": 4, "S2": 2}, "b": {"S1": 3, "S2": 1}, "c": {"S1": 6, "S2": 4},
         "d": {"S1": 5, "S2": 5}}
COLOURS = {"a": (200, 40, 40), "b": (40, 200, 40), "c": (40, 40, 200), "d": (200, 200, 40)}
SETTINGS = {
    "pipeline": {"categories": ["a,b", "c,d"]},
    "diffusion": {"conditional": True, "image_size": [16, 16], "widths": [8, 16],
                  "block_depth": 1, "embedding_dims": 8, "batch_size": 8, "num_epochs": 2,
                  "kid_every": 0, "sample_every": 0},
    "augmentation": {"generate_diffusion_steps": 2},
    "classic_fill": {"preset": "light", "workers": 1},
    "compare": {"backbone": "small_cnn", "input_shape": 16, "number_epochs": 2,
                "batch_size": 8, "seeds": [0, 1], "workers": 1},
}
SECTION_TITLES = ["Stages", "Images per label and site", "Site balancing (stage 1)",
                  "Diffusion training (stage 2)", "Gap filling plan (stage 3)",
                  "Real vs generated images", "Generated image quality",
                  "Classifier comparison (stage 4)",
                  "Confusion matrices", "Settings used"]


def _write_split(root: Path, layout: dict[str, dict[str, int]], seed: int) -> Path:
    """Label-coloured 20x20 photos with noise, so that a tiny classifier can learn them."""
    rng = np.random.default_rng(seed)
    for label, sites in layout.items():
        for site, count in sites.items():
            for n in range(count):
                save_image(root / label / f"{site}_{n:02d}.png",
                           np.array(COLOURS[label]) + rng.normal(0, 25, (20, 20, 3)))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pipeline")
    train = _write_split(root / "train", TRAIN, 0)
    test = _write_split(root / "test", {lab: {"T": 4} for lab in TRAIN}, 1)
    config = root / "settings.json"
    config.write_text(json.dumps(SETTINGS))
    return {"root": root, "train": train, "test": test, "config": config}


def _argv(data: dict, out: Path, *extra: str) -> list[str]:
    return ["--in_dir", str(data["train"]), "--test_dir", str(data["test"]),
            "--out_dir", str(out), "--config", str(data["config"]), *extra]


@pytest.fixture(scope="module")
def finished(data) -> dict:
    out = data["root"] / "run"
    before = tree_hashes(data["train"])
    code = run_pipeline.main(_argv(data, out))
    return {"out": out, "code": code, "inputs_before": before}


def test_pipeline_runs_every_stage_and_fills_the_gap(finished, data):
    out = finished["out"]
    assert finished["code"] == 0
    state = json.loads((out / "pipeline_state.json").read_text())
    assert set(state) == {"balance", "diffusion", "augment", "classic_fill", "classify"}
    assert len(state["diffusion"]["run_dirs"]) == 1           # one conditional model
    rows = read_manifest(out / "balanced_data" / "manifest.csv")
    synthetic = {lab: sum(1 for r in rows if r.label == lab and r.generator == "ddim")
                 for lab in TRAIN}
    assert synthetic["c"] == synthetic["d"] == 0
    assert synthetic["a"] + synthetic["b"] == 10              # categories end equal: 20 and 20
    # classic_fill fills the same gap at the same counts per label and site, with the
    # preset of its section and stage 3's seed.
    classic = read_manifest(out / "classic_fill_data" / "manifest.csv")
    cells = Counter((r.label, r.site_id) for r in rows if r.generator == "ddim")
    assert Counter((r.label, r.site_id) for r in classic if r.generator == "classic_fill") \
        == cells
    classic_cfg = json.loads((out / "configs" / "classic_fill.json").read_text())
    assert classic_cfg["preset"] == "light"
    assert classic_cfg["seed"] == json.loads((out / "configs" / "augment.json").read_text())[
        "seed"]
    compare_cfg = json.loads((out / "configs" / "classify.json").read_text())
    assert compare_cfg["classic_fill_dir"] == str(out / "classic_fill_data")
    summary = pd.read_csv(out / "results" / "summary.csv")
    test_rows = summary[summary["set"] == "test"]
    assert set(test_rows["variant"]) == {"original", "rebalanced", "classic", "logit_adjusted",
                                         "crt", "classic_fill", "diffusion_fill"}
    assert set(test_rows["n"]) == {2}
    assert (out / "report.html").is_file()
    assert tree_hashes(data["train"]) == finished["inputs_before"]   # inputs untouched


def test_report_opens_in_headless_chromium_with_every_section(finished, tmp_path):
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium (make test installs Debian's chromium)")
        pytest.skip("no Chromium here: apt-get install chromium")
    report = finished["out"] / "report.html"
    text = report.read_text()
    assert "http://" not in text and "https://" not in text   # self-contained
    page = load_page(report, screenshot=tmp_path / "report.png", evaluate={
        "titles": "[...document.querySelectorAll('section h2')].map(e => e.textContent)",
        "images": "[...document.images].map(i => [i.naturalWidth, i.src.slice(0, 11)])",
        "tables": "document.querySelectorAll('table').length",
        "quality": "[...document.querySelectorAll('#quality table tr')].map("
                   "r => [...r.cells].map(c => c.textContent))",
        "quality_images": "document.querySelectorAll('#quality img').length",
        "comparison_h3": "[...document.querySelectorAll('#comparison h3')].map("
                         "e => e.textContent)",
        "recall": "[...document.querySelectorAll('#comparison h4 + table tr')].map("
                  "r => [...r.cells].map(c => c.textContent))",
        "convergence": "[...document.querySelectorAll('#comparison p.bad, #comparison p.good')]"
                       ".map(e => e.textContent)",
        "height": "document.body.scrollHeight"})
    assert page.errors == []
    assert page.external_requests == []
    assert page.values["titles"] == SECTION_TITLES
    images = page.values["images"]
    assert len(images) >= 6   # counts, stage-1 chart, contact sheets, comparison, confusions
    assert all(w > 0 and src == "data:image/" for w, src in images)
    assert page.values["tables"] >= 5
    # Generated image quality: per filled label, memorisation share, GAN-test beside the
    # real-test accuracy of the same classifier, and KID, all as numbers.
    header, *rows = page.values["quality"]
    by_label = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(by_label) == {"a", "b"}
    memorised = [h for h in header if h.startswith("memorised (")]
    assert memorised
    for row in by_label.values():
        for column in (*memorised, "GAN-test", "real test (same classifier)", "KID generated"):
            assert 0.0 <= float(row[column]) <= 1.0 or column == "KID generated", column
    assert page.values["quality_images"] == 1                  # the closest pairs
    # Stage 4: per-label recall (tail labels marked) and the convergence line, which names
    # exactly the arms with a run whose best epoch was the last of the budget.
    assert page.values["comparison_h3"][-2:] == ["Per-label recall (mean over seeds)",
                                                 "Convergence: validation curves"]
    results = finished["out"] / "results"
    tail = json.loads((results / "tail_labels.json").read_text())["tail"]
    assert tail == ["b"]                                       # 4 real images, the fewest
    header, *rows = page.values["recall"]
    assert header[:2] == ["label", "test images"] and len(header) == 2 + 7   # 7 arms
    assert [r[0] for r in rows] == ["a", "b (tail)", "c", "d"]
    assert {r[1] for r in rows} == {"4"}
    (line,) = page.values["convergence"]
    late = sorted({p.parent.parent.name for p in results.glob("*/seed*/metrics.json")
                   if json.loads(p.read_text())["best_epoch"]
                   == json.loads(p.read_text())["epochs_run"]})
    if late:
        assert line.startswith("Under-trained:") and all(f"{a} (" in line for a in late)
    else:
        assert line.startswith("Converged:")
    shot = np.asarray(Image.open(page.screenshot).convert("L"))
    assert shot.shape[0] == page.values["height"] > 1500
    assert shot.std() > 20                                     # not a blank page


def test_rerun_skips_every_finished_stage_and_changes_nothing(finished, data, capsys):
    out = finished["out"]
    before = tree_hashes(out / "balanced_data")
    state_before = (out / "pipeline_state.json").read_text()
    capsys.readouterr()
    assert run_pipeline.main(_argv(data, out)) == 0
    printed = capsys.readouterr().out
    for stage in ("balance", "diffusion", "augment", "classic_fill", "classify"):
        assert f"{stage}: done before, skipped" in printed
    assert "GAN-test of" not in printed                       # read back from its cache
    assert f"report: {out / 'report.html'}" in printed
    assert tree_hashes(out / "balanced_data") == before
    assert (out / "pipeline_state.json").read_text() == state_before
    # Where the jobs run is not what they compute: moving the run to Ray keeps every stage.
    assert run_pipeline.main(_argv(data, out, "--executor", "ray", "--task_cpus", "2")) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 5


@pytest.mark.slow
def test_changed_settings_stop_with_the_changed_key_and_redo_keeps_the_old_folder(
        finished, data, tmp_path, capsys):
    out = finished["out"]
    settings = json.loads(data["config"].read_text())
    settings["compare"]["number_epochs"] = 1
    settings["compare"].update(variants=["original"], seeds=[0])   # a short redo
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(settings))
    argv = ["--in_dir", str(data["train"]), "--test_dir", str(data["test"]),
            "--out_dir", str(out), "--config", str(changed)]
    capsys.readouterr()
    assert run_pipeline.main(argv) == 2
    err = capsys.readouterr().err
    assert "stage classify finished earlier with other settings" in err
    assert "number_epochs" in err and "--redo classify" in err
    results_before = tree_hashes(out / "results")
    assert run_pipeline.main([*argv, "--redo", "classify"]) == 0
    (old,) = list(out.glob("results_old_*"))
    assert tree_hashes(old) == results_before                 # nothing lost
    assert (out / "results" / "summary.csv").is_file()


def test_a_failing_stage_stops_the_run_with_its_cause(data, tmp_path, capsys):
    out = tmp_path / "run"
    foreign = out / "diffusion_data" / "notes.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("mine")
    assert run_pipeline.main(_argv(data, out, "--stages", "balance", "diffusion")) == 2
    err = capsys.readouterr().err
    assert "stage balance failed (exit status 2)" in err
    assert "error:" in err and "logs/balance.log" in err
    assert foreign.read_text() == "mine"
    assert not (out / "models").exists()                     # later stages did not start


def test_bad_settings_fail_before_any_work(data, tmp_path, capsys):
    settings = json.loads(data["config"].read_text())
    settings["diffusion"]["num_epoch"] = 3                     # typo
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(settings))
    out = tmp_path / "run"
    assert run_pipeline.main(["--in_dir", str(data["train"]), "--test_dir", str(data["test"]),
                              "--out_dir", str(out), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "section 'diffusion'" in err and "num_epoch" in err
    settings["diffusion"].pop("num_epoch")
    settings["augmentation"]["in_dir"] = "elsewhere"            # the runner's to set
    bad.write_text(json.dumps(settings))
    assert run_pipeline.main(["--in_dir", str(data["train"]), "--out_dir", str(out),
                              "--config", str(bad), "--stages", "balance"]) == 2
    assert "set by the pipeline runner" in capsys.readouterr().err
    assert not out.exists()


def test_dry_run_prints_the_plan_and_writes_nothing(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_pipeline.main(_argv(data, out, "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "labels stage 2 trains on: a, b, c, d" in printed  # one shared model
    assert "[balance] todo:" in printed and "train_all.py --config" in printed
    assert not out.exists()


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "configs").glob("*.json")),
                         ids=lambda p: p.name)
def test_every_shipped_config_passes_every_stage_check(config, tmp_path, capsys):
    """`make demo`'s settings (and any other shipped config) build and validate every stage:
    a rule added to a shared settings class must not break them. A preset without
    categories (configs/photos.json) runs with the default ones, as a user's --categories
    would replace them."""
    categories = json.loads(config.read_text()).get("pipeline", {}).get(
        "categories", PipelineConfig().categories)
    labels = {lab for cats in categories for lab in cats.split(",")}
    for split in ("train", "test"):
        for k, lab in enumerate(sorted(labels)):
            for n in range(2 + k):
                save_image(tmp_path / split / lab / f"S{n % 2 + 1}_{n:02d}.png",
                           np.full((20, 20, 3), 40 * k))
    out = tmp_path / "run"
    assert run_pipeline.main(["--in_dir", str(tmp_path / "train"), "--test_dir",
                              str(tmp_path / "test"), "--out_dir", str(out), "--config",
                              str(config), "--dry-run"]) == 0
    assert "error" not in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_an_interrupted_diffusion_stage_resumes_its_run(finished, data, capsys):
    out = finished["out"]
    state = json.loads((out / "pipeline_state.json").read_text())
    (run,) = state["diffusion"]["run_dirs"]
    run = Path(run)
    # As a kill after epoch 1 of 2 leaves it: the run's own state unfinished, the stage not
    # recorded as done, the attempt (settings hash and start) recorded.
    (run / "state.json").write_text(json.dumps({"epochs_done": 1, "finished": False}))
    record = state.pop("diffusion")
    state["diffusion_attempt"] = {"fingerprint": record["fingerprint"], "started": 0}
    (out / "pipeline_state.json").write_text(json.dumps(state))
    runs_before = sorted(p.name for p in (out / "models").iterdir())
    capsys.readouterr()
    assert run_pipeline.main(_argv(data, out, "--stages", "diffusion")) == 0
    assert f"diffusion: resuming {run}" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "models").iterdir()) == runs_before   # no new run
    run_state = json.loads((run / "state.json").read_text())
    assert run_state["epochs_done"] == 2 and run_state["finished"]
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["diffusion"]["run_dirs"] == [str(run)]
    assert "diffusion_attempt" not in state


def test_out_dir_inside_the_data_or_holding_other_files_is_refused(data, tmp_path, capsys):
    inside = data["train"] / "run"
    assert run_pipeline.main(_argv(data, inside, "--stages", "balance")) == 2
    assert "is inside --in_dir" in capsys.readouterr().err
    assert not inside.exists()                                 # the data is untouched
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "report.html").write_text("my own report")
    assert run_pipeline.main(_argv(data, busy, "--stages", "balance")) == 2
    assert "report.html" in capsys.readouterr().err
    assert [p.name for p in busy.iterdir()] == ["report.html"]
    assert (busy / "report.html").read_text() == "my own report"


def test_the_verdict_line_is_read_off_the_printed_interval():
    from pipeline.report import _verdict
    summary = [{"variant": "original", "balanced_accuracy_mean": 0.80},
               {"variant": "rebalanced", "balanced_accuracy_mean": 0.83},
               {"variant": "diffusion_fill", "balanced_accuracy_mean": 0.88}]

    def paired(p_holm, lo, hi, arm="diffusion_fill", level=0.975):
        return [{"variant": arm, "baseline": "rebalanced", "metric": "balanced_accuracy",
                 "mean_diff": (lo + hi) / 2, "ci_low": lo, "ci_high": hi, "ci_level": level,
                 "p_value": p_holm / 2, "p_holm": p_holm, "n": 5}]
    text = _verdict(summary, paired(0.01, 0.02, 0.08))
    assert "diffusion_fill helped" in text and "against rebalanced" in text
    assert "[+0.020, +0.080] (97.5%)" in text and "bootstrap p = 0.010" in text
    assert "no clear difference" in _verdict(summary, paired(0.2, -0.01, 0.08))
    assert "hurt" in _verdict(summary, paired(0.01, -0.08, -0.02))
    # No interval (no bootstrap), or an older comparison's 95% CI without its level: no
    # verdict, whatever its p says.
    nan = float("nan")
    assert "has no verdict" in _verdict(summary, paired(nan, nan, nan, level=nan))
    old = paired(0.01, 0.02, 0.08)[0]
    del old["ci_level"]
    assert "has no verdict" in _verdict(summary, [old]) and "helped" not in \
        _verdict(summary, [old])
    # Non-generative arms get no verdict line.
    assert _verdict(summary, paired(0.01, 0.02, 0.08, arm="original")) == ""


def test_gan_test_is_cached_and_missing_measurements_are_named(finished, data, tmp_path):
    from pipeline.image_quality import gan_test_table, quality_html
    from pipeline.stages import Layout
    from quality.recognisability import GAN_TEST_COLUMNS
    out = finished["out"]
    cached = pd.read_csv(out / "quality" / "gan_test.csv")
    assert list(cached.columns) == GAN_TEST_COLUMNS and set(cached["label"]) == {"a", "b"}
    meta = json.loads((out / "quality" / "gan_test.json").read_text())
    assert meta["seed"] == 0 and meta["classifier_run"].endswith("original/seed0")
    layout = Layout(out)
    table, note = gan_test_table(layout, data["test"])           # read back, not rerun
    assert table.equals(cached) and "seed 0" in note
    layout.results = tmp_path / "no_results"                         # stage 4 not run
    layout.quality = tmp_path / "quality"
    text = quality_html(layout, data["test"], [])
    assert "GAN-test: stage 4 has not run" in text and "memorised (" in text
    assert not layout.quality.exists()
    layout.balanced_data = tmp_path / "no_stage3"
    assert "Stage 3 has not run" in quality_html(layout, data["test"], [])


def _fake_results(results: Path, train: Path) -> None:
    """A finished stage 4 without training: arms x 2 seeds with history.csv, metrics.json
    and predictions on the in-distribution and an OOD test set, and the tables
    compare_tables makes of them. `classic` peaks at the last of 4 epochs in seed 1 (its
    budget was too short); the others peak at epoch 2 and stop early."""
    from classifier.comparison import compare_tables
    from classifier.metrics import classification_metrics
    names = ["a", "b", "c", "d"]
    y = np.repeat(np.arange(4), 5)
    acc = {"original": 0.5, "classic": 0.7, "diffusion_fill": 0.8}
    rows, preds = [], {}
    for arm, a in acc.items():
        for seed in (0, 1):
            run = results / arm / f"seed{seed}"
            run.mkdir(parents=True)
            tests = {}
            for k, test_set in enumerate(("test", "new_site")):
                r = np.random.default_rng(10 * seed + k).random(len(y))
                # Label d (the tail) is always right with diffusion_fill, never without.
                hit = (r < a) | ((y == 3) & (arm == "diffusion_fill"))
                p = np.where(hit & ((y != 3) | (arm == "diffusion_fill")), y, (y + 1) % 4)
                df = pd.DataFrame({"path": [f"{test_set}/{names[c]}/{i}.png"
                                            for i, c in enumerate(y)],
                                   "label": [names[c] for c in y],
                                   "predicted": [names[c] for c in p]})
                df.to_csv(run / f"predictions_{test_set}.csv", index=False)
                preds[(test_set, arm, seed)] = df
                tests[test_set] = classification_metrics(y, p, names)
            last = arm == "classic" and seed == 1
            epochs = 4 if last else 3
            best = 4 if last else 2
            values = [0.3 + 0.1 * e if e <= best else 0.45 for e in range(1, epochs + 1)]
            pd.DataFrame({"epoch": range(1, epochs + 1), "loss": 1.0, "val_loss": 1.0,
                          "val_macro_f1": values, "val_balanced_accuracy": values,
                          "best": [int(e == best) for e in range(1, epochs + 1)]}
                         ).to_csv(run / "history.csv", index=False)
            (run / "metrics.json").write_text(json.dumps({
                "class_names": names, "best_epoch": best, "epochs_run": epochs,
                "seconds": 1.0, "val": tests["test"], "tests": tests}))
            for test_set, m in [("val", tests["test"]), *tests.items()]:
                rows.append({"variant": arm, "seed": seed, "set": test_set,
                             "run_dir": str(run), "best_epoch": best, "epochs_run": epochs,
                             **{k: m[k] for k in ("accuracy", "balanced_accuracy",
                                                  "macro_f1", "weighted_f1")},
                             "tail_recall": m["per_class"]["d"]["recall"]})
    summary, paired = compare_tables(rows, preds, tail=["d"], n_boot=100)
    summary.to_csv(results / "summary.csv", index=False)
    paired.to_csv(results / "paired.csv", index=False)
    pd.DataFrame(rows).to_csv(results / "runs.csv", index=False)
    (results / "compare_config.json").write_text(json.dumps(
        {"train_dir": str(train), "evaluation_type": "f1", "number_epochs": 4,
         "tail_fraction": 0.25}))
    (results / "tail_labels.json").write_text(json.dumps({"tail": ["d"]}))


def test_report_shows_per_label_recall_side_by_side_and_names_under_trained_arms(
        data, tmp_path):
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium (make test installs Debian's chromium)")
        pytest.skip("no Chromium here: apt-get install chromium")
    from pipeline.report import build_report
    from pipeline.stages import Layout
    layout = Layout(tmp_path / "run")
    _fake_results(layout.results, data["train"])
    pcfg = PipelineConfig(in_dir=str(data["train"]), out_dir=str(layout.out_dir),
                          categories=["a,b", "c,d"])
    report = build_report(layout, pcfg, {})
    page = load_page(report, evaluate={
        "h3": "[...document.querySelectorAll('#comparison h3')].map(e => e.textContent)",
        "h4": "[...document.querySelectorAll('#comparison h4')].map(e => e.textContent)",
        # The two recall tables sit side by side: same top, the second to the right.
        "boxes": "[...document.querySelectorAll('#comparison h4')].map(e => "
                 "{const b = e.parentElement.getBoundingClientRect(); return [b.left, b.top]})",
        "recall": "[...document.querySelectorAll('#comparison h4 + table')].map(t => "
                  "[...t.rows].map(r => [...r.cells].map(c => c.textContent)))",
        "verdict": "[...document.querySelectorAll('#comparison p.bad, #comparison p.good')]"
                   ".map(e => e.textContent)",
        "curves": "[...document.querySelectorAll('#comparison figure')].map("
                  "f => [f.querySelector('img').naturalWidth, f.textContent])"})
    assert page.errors == [] and page.external_requests == []
    assert page.values["h3"] == ["in-distribution test set", "test set new_site",
                                 "Per-label recall (mean over seeds)",
                                 "Convergence: validation curves"]
    assert page.values["h4"] == ["in-distribution test set", "test set new_site"]
    (x1, y1), (x2, y2) = page.values["boxes"]
    assert y1 == y2 and x2 > x1
    for table in page.values["recall"]:
        header, *rows = table
        assert header[:2] == ["label", "test images"]
        assert header[2:] == ["original", "classic (reference)", "diffusion_fill"]
        assert [r[0] for r in rows] == ["a", "b", "c", "d (tail)"]
        d = dict(zip(header, rows[3]))
        # The tail label: always right with diffusion_fill, never with the others.
        assert d["classic (reference)"] == "0.000" and d["original"] == "0.000 (+0.000)"
        assert d["diffusion_fill"] == "1.000 (+1.000)"
    (line,) = page.values["verdict"]
    assert line.startswith("Under-trained:") and "classic (1 of 2 runs)" in line
    assert "original" not in line and "diffusion_fill" not in line and "(4 epochs)" in line
    (curves,) = [f for f in page.values["curves"] if "validation curves" in f[1]]
    assert curves[0] > 0
    assert (layout.assets / "convergence.png").is_file()
    # With classic's best epoch before its last, every arm converged.
    path = layout.results / "classic" / "seed1" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "best_epoch": 3}))
    text = build_report(layout, pcfg, {}).read_text()
    assert "Under-trained" not in text
    assert ("Converged: no run's best epoch was the last of the budget (4 epochs); 5 of 6 "
            "runs stopped early") in text.replace("&#39;", "'")


@pytest.mark.slow
def test_sdedit_fill_adds_a_paired_fill_and_its_arm(finished, data, tmp_path):
    out = finished["out"]
    settings = json.loads(data["config"].read_text())
    settings["sdedit"] = {"strength": 0.5}
    # the new arm against one reference, one seed: the other arms' runs are the fixture's
    settings["compare"].update(variants=["original", "sdedit_fill"], seeds=[0])
    config = tmp_path / "sdedit.json"
    config.write_text(json.dumps(settings))
    argv = ["--in_dir", str(data["train"]), "--test_dir", str(data["test"]),
            "--out_dir", str(out), "--config", str(config), "--sdedit_fill"]
    # The comparison would change (a new arm), so a plain re-run stops and names fill_dirs.
    assert run_pipeline.main(argv) == 2
    assert run_pipeline.main([*argv, "--redo", "classify"]) == 0
    stage3 = read_manifest(out / "balanced_data" / "manifest.csv")
    sdedit = read_manifest(out / "sdedit_fill_data" / "manifest.csv")
    added = [r for r in sdedit if r.generator == "sdedit"]
    # The same plan as stage 3: the same cells, each image a variation of a real image of
    # its own label and site, at the strength of the sdedit section.
    assert Counter((r.label, r.site_id) for r in added) == Counter(
        (r.label, r.site_id) for r in stage3 if r.generator == "ddim")
    for r in added:
        assert r.params["strength"] == 0.5
        source = Path(r.params["source"])
        assert source.parts[0] == r.label and source.name.startswith(r.site_id + "_")
    cfg = json.loads((out / "configs" / "sdedit.json").read_text())
    assert cfg["generator"] == "sdedit" and cfg["seed"] == json.loads(
        (out / "configs" / "augment.json").read_text())["seed"]
    summary = pd.read_csv(out / "results" / "summary.csv")
    assert "sdedit_fill" in set(summary[summary["set"] == "test"]["variant"])
    html = (out / "report.html").read_text()
    assert "SDEdit variations of real images" in html


@pytest.mark.slow
def test_sd_fill_edits_the_same_plan_with_a_pretrained_model(data, tmp_path):
    preset = tmp_path / "tiny_sd3"
    tiny_sd3("img2img").save_to_preset(str(preset))
    settings = json.loads(data["config"].read_text())
    settings["sd"] = {"sd_preset": str(preset), "generate_diffusion_steps": 2,
                      "prompt_template": "a {label} at {site}"}
    config = tmp_path / "sd.json"
    config.write_text(json.dumps(settings))
    out = tmp_path / "run"
    # no stage-2 model needed: the sd fill runs alone
    assert run_pipeline.main(["--in_dir", str(data["train"]), "--out_dir", str(out),
                              "--config", str(config), "--sd_fill", "--stages", "sd"]) == 0
    rows = read_manifest(out / "sd_fill_data" / "manifest.csv")
    edits = [r for r in rows if r.generator == "sd_img2img"]
    assert len(edits) == 10 and {r.label for r in edits} == {"a", "b"}  # the gap of stage 3
    assert all(r.params["prompt"] == f"a {r.label} at {r.site_id}" for r in edits)
    assert json.loads((out / "configs" / "sd.json").read_text())["generator"] == "sd_img2img"
    assert set(json.loads((out / "pipeline_state.json").read_text())) == {"sd"}


def test_report_shows_many_medium_few_accuracy_when_the_comparison_wrote_it(tmp_path):
    from classifier.shot_groups import shot_rows
    from pipeline.report import _shots_html
    from pipeline.stages import Layout
    layout = Layout(tmp_path / "run")
    layout.results.mkdir(parents=True)
    assert _shots_html(layout, ["original"]) == ""       # no shots.csv: no section
    preds = {("test", arm, seed): pd.DataFrame({"label": ["a", "a", "b", "c"],
                                                "predicted": ["a", p, "b", "a"]})
             for arm, p in [("original", "b"), ("crt", "a")] for seed in (0, 1)}
    pd.DataFrame(shot_rows(preds, {"a": 500, "b": 50, "c": 5})).to_csv(
        layout.results / "shots.csv", index=False)
    page = _shots_html(layout, ["original", "crt"])
    assert "Many / medium / few-shot accuracy" in page and "absolute split" in page
    assert "many (1 labels)" in page and "few (1 labels)" in page
    # original gets half of the head label right, crt all of it; the few label is missed.
    assert "<td>original</td><td>0.500</td><td>1.000</td><td>0.000</td>" in page.replace(
        " ± 0.000", "")


def test_report_shows_the_generated_features_quality_beside_the_images(tmp_path):
    from pipeline.report import _feature_quality_html
    from pipeline.stages import Layout
    layout = Layout(tmp_path / "run")
    layout.results.mkdir(parents=True)
    assert _feature_quality_html(layout) == ""           # no feature_fill arm ran
    for seed, kid in [(0, 0.10), (1, 0.30)]:
        run = layout.results / "feature_fill" / f"seed{seed}"
        run.mkdir(parents=True)
        pd.DataFrame({"label": ["boot", "bag", "shirt"], "n_fake": [40, 20, 0],
                      "kid": [kid, 0.5, float("nan")], "kid_real_baseline": [0.0, 0.1, 0.0],
                      "memorised_share": [0.1, 0.0, float("nan")]}
                     ).to_csv(run / "feature_quality.csv", index=False)
    page = _feature_quality_html(layout)
    assert "Generated features (feature_fill arms)" in page
    assert "<td>feature_fill</td><td>boot</td><td>2</td><td>40</td><td>0.200</td>" in page
    assert "10.0%" in page and "shirt" not in page and "nan" not in page


def test_report_shows_the_recipe_of_each_fill_and_where_it_was_chosen(tmp_path):
    import dataclasses

    from config import ClassifierConfig
    from pipeline.report import _recipes_html
    from pipeline.stages import Layout
    layout = Layout(tmp_path / "run")
    layout.results.mkdir(parents=True)
    fill = tmp_path / "fill"
    fill.mkdir()
    pd.DataFrame({"path": ["a/1.png", "a/2.png"], "generator": ["original", "ddim"]}).to_csv(
        fill / "manifest.csv", index=False)
    arms = {"original": {}, "diffusion_fill": dict(manifest=str(fill), synthetic_weight=0.5),
            "feature_fill": dict(feature_fill=True, finetune_head_epochs=10),
            "sdedit_fill+la": dict(manifest=str(fill), synthetic_bn="separate",
                                   logit_adjusted=True)}
    assert _recipes_html(layout, list(arms)) == ""         # no run folder yet
    for arm, changes in arms.items():
        run = layout.results / arm / "seed0"
        run.mkdir(parents=True)
        cfg = dataclasses.replace(ClassifierConfig(train_dir="t"), **changes)
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    (layout.results / "recipes.json").write_text(json.dumps({"diffusion_fill": {
        "synthetic_weight": 0.5}}))
    page = _recipes_html(layout, list(arms))
    assert "Recipe of each fill" in page and "<td>original</td>" not in page
    assert ("<td>diffusion_fill</td><td>ddim</td><td>synthetic_weight=0.5</td>"
            "<td>on validation runs") in page
    assert "generated features of its own encoder" in page
    assert "synthetic_bn=separate, logit_adjusted=True</td><td>fixed by the settings" in page
