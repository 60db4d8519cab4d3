"""The one-command pipeline on a tiny real dataset: stages 1-4 with tiny real models, resume,
settings changes, a failing stage, and report.html checked in a real headless Chromium."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import tree_hashes
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
    "compare": {"backbone": "small_cnn", "input_shape": 16, "number_epochs": 2,
                "batch_size": 8, "seeds": [0, 1], "workers": 1},
}
SECTION_TITLES = ["Stages", "Images per label and site", "Site balancing (stage 1)",
                  "Diffusion training (stage 2)", "Gap filling plan (stage 3)",
                  "Real vs generated images", "Classifier comparison (stage 4)",
                  "Confusion matrices", "Settings used"]


def _write_split(root: Path, layout: dict[str, dict[str, int]], seed: int) -> Path:
    """Label-coloured 20x20 photos with noise, so that a tiny classifier can learn them."""
    rng = np.random.default_rng(seed)
    for label, sites in layout.items():
        for site, count in sites.items():
            for n in range(count):
                img = np.clip(np.array(COLOURS[label]) + rng.normal(0, 25, (20, 20, 3)), 0, 255)
                path = root / label / f"{site}_{n:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img.astype(np.uint8)).save(path)
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
    assert set(state) == {"balance", "diffusion", "augment", "classify"}
    assert len(state["diffusion"]["run_dirs"]) == 1           # one conditional model
    rows = read_manifest(out / "balanced_data" / "manifest.csv")
    synthetic = {lab: sum(1 for r in rows if r.label == lab and r.generator == "ddim")
                 for lab in TRAIN}
    assert synthetic["c"] == synthetic["d"] == 0
    assert synthetic["a"] + synthetic["b"] == 10              # categories end equal: 20 and 20
    summary = pd.read_csv(out / "results" / "summary.csv")
    test_rows = summary[summary["set"] == "test"]
    assert set(test_rows["variant"]) == {"original", "rebalanced", "classic", "diffusion_fill"}
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
        "height": "document.body.scrollHeight"})
    assert page.errors == []
    assert page.external_requests == []
    assert page.values["titles"] == SECTION_TITLES
    images = page.values["images"]
    assert len(images) >= 6   # counts, stage-1 chart, contact sheets, comparison, confusions
    assert all(w > 0 and src == "data:image/" for w, src in images)
    assert page.values["tables"] >= 5
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
    for stage in ("balance", "diffusion", "augment", "classify"):
        assert f"{stage}: done before, skipped" in printed
    assert f"report: {out / 'report.html'}" in printed
    assert tree_hashes(out / "balanced_data") == before
    assert (out / "pipeline_state.json").read_text() == state_before


def test_changed_settings_stop_with_the_changed_key_and_redo_keeps_the_old_folder(
        finished, data, tmp_path, capsys):
    out = finished["out"]
    settings = json.loads(data["config"].read_text())
    settings["compare"]["number_epochs"] = 1
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


def test_the_verdict_claims_an_effect_only_when_corrected_p_and_ci_agree():
    from pipeline.report import _verdict
    summary = [{"variant": "original", "balanced_accuracy_mean": 0.80},
               {"variant": "rebalanced", "balanced_accuracy_mean": 0.83},
               {"variant": "diffusion_fill", "balanced_accuracy_mean": 0.88}]

    def paired(p_holm, lo, hi, arm="diffusion_fill"):
        return [{"variant": arm, "baseline": "rebalanced", "metric": "balanced_accuracy",
                 "mean_diff": (lo + hi) / 2, "ci_low": lo, "ci_high": hi,
                 "p_value": p_holm / 2, "p_holm": p_holm, "n": 5}]
    text = _verdict(summary, paired(0.01, 0.02, 0.08))
    assert "diffusion_fill helped" in text and "against rebalanced" in text
    assert "no clear difference" in _verdict(summary, paired(0.01, -0.01, 0.08))  # CI
    assert "no clear difference" in _verdict(summary, paired(0.2, 0.02, 0.08))    # p
    assert "no clear difference" in _verdict(summary, paired(float("nan"), 0.02, 0.08))
    assert "hurt" in _verdict(summary, paired(0.01, -0.08, -0.02))
    # Non-generative arms get no verdict line; old rows without p_holm/CI claim nothing.
    assert _verdict(summary, paired(0.01, 0.02, 0.08, arm="original")) == ""
    old = [{"variant": "diffusion_fill", "baseline": "rebalanced", "metric":
            "balanced_accuracy", "mean_diff": 0.05, "p_value": 0.001, "n": 3}]
    assert "no clear difference" in _verdict(summary, old)
