"""The Ray executor: a local Ray with 2 CPUs runs train_all.py and classifier.compare with the
same files as the local executor; a failed or killed task is reported by name while the others
finish, and a rerun does only the missing work."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

import run_diffusion  # noqa: E402
import train_all  # noqa: E402
import executor_jobs  # noqa: E402
from conftest import TINY_UNET_FLAGS, save_image, tree_hashes, write_class_images  # noqa: E402
from executor_jobs import die, double, fail, nap  # noqa: E402
from runtime.jobs import Job, JobLost, connect_ray, run_jobs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DIFFUSION_FLAGS = [*TINY_UNET_FLAGS, "--batch_size", "8", "--kid_every", "0",
                   "--sample_every", "0", "--learning_rate", "0.003", "--no-tensorboard"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for this module; the code under test joins it."""
    # The jobs live in test modules, which Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(executor_jobs)
    assert connect_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_each_failure_is_reported_by_name_and_the_others_finish(local_ray):
    jobs = [Job("a", double, (2,)), Job("broken", fail, ("no such label",)),
            Job("killed", die), Job("b", double, (5,))]
    out = run_jobs(jobs, "ray", keep_going=True)
    assert [(o.name, o.status) for o in out] == [("a", "ok"), ("broken", "failed"),
                                                  ("killed", "failed"), ("b", "ok")]
    assert [out[0].value, out[3].value] == [4, 10]
    assert isinstance(out[1].error, ValueError) and str(out[1].error) == "no such label"
    assert isinstance(out[2].error, JobLost) and "process died" in str(out[2].error)
    # The local executor reports the same outcomes (the kill left out: it is this process).
    local = run_jobs([jobs[0], jobs[1], jobs[3]], "local", keep_going=True)
    assert [(o.name, o.status, o.value) for o in local] == [
        ("a", "ok", 4), ("broken", "failed", None), ("b", "ok", 10)]


def test_without_keep_going_a_failure_cancels_the_rest(local_ray):
    start = time.monotonic()
    out = run_jobs([Job("slow", nap, (60,)), Job("broken", fail, ("bad",))], "ray")
    assert [o.status for o in out] == ["not run", "failed"]
    assert time.monotonic() - start < 40
    local = run_jobs([Job("broken", fail, ("bad",)), Job("slow", nap, (60,))], "local")
    assert [o.status for o in local] == ["failed", "not run"]


@pytest.fixture(scope="module")
def two_labels(tmp_path_factory) -> Path:
    return write_class_images(tmp_path_factory.mktemp("labels"), {"red": 12, "blue": 12},
                              seed=4)


def _report(out: Path) -> list[dict]:
    (path,) = sorted(out.glob("train_all_*.csv"))[-1:]
    with path.open() as f:
        return [{k: r[k] for k in ("label", "status", "epochs", "monitor")}
                for r in csv.DictReader(f)]


def _run_folders(out: Path) -> dict[str, Path]:
    return {p.name.split("_")[0]: p for p in out.iterdir() if p.is_dir()}


@pytest.mark.slow
def test_train_all_on_ray_writes_what_the_local_executor_writes(local_ray, two_labels,
                                                                 tmp_path):
    argv = ["--in_dir", str(two_labels), "--num_epochs", "2", *DIFFUSION_FLAGS]
    assert train_all.main([*argv, "--out_dir", str(tmp_path / "local")]) == 0
    assert train_all.main([*argv, "--out_dir", str(tmp_path / "ray"), "--executor",
                           "ray"]) == 0
    local, on_ray = _run_folders(tmp_path / "local"), _run_folders(tmp_path / "ray")
    assert set(local) == set(on_ray) == {"red", "blue"}
    assert _report(tmp_path / "local") == _report(tmp_path / "ray")
    for label in local:
        assert set(tree_hashes(local[label])) == set(tree_hashes(on_ray[label]))
        a, b = (json.loads((d[label] / "config.json").read_text()) for d in (local, on_ray))
        assert {k: v for k, v in a.items() if k != "out_dir"} == \
            {k: v for k, v in b.items() if k != "out_dir"}
        ha, hb = (pd.read_csv(d[label] / "history.csv") for d in (local, on_ray))
        assert list(ha.columns) == list(hb.columns) and len(ha) == len(hb) == 2


def _ray_task_pid(name: str) -> int | None:
    """The process Ray runs task `name` in (its title is ray::<name>)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().split(b"\0")[0].strip() == f"ray::{name}".encode():
                return int(cmdline.parent.name)
        except OSError:
            continue
    return None


@pytest.mark.slow
def test_a_killed_training_is_reported_and_a_rerun_finishes_only_it(two_labels, tmp_path,
                                                                     capsys):
    """The command as users type it: it starts its own local Ray."""
    out = tmp_path / "models"
    argv = ["--in_dir", str(two_labels), "--out_dir", str(out), "--num_epochs", "12",
            *DIFFUSION_FLAGS]
    proc = subprocess.Popen([sys.executable, "train_all.py", *argv, "--executor", "ray",
                             "--keep_going", "--ray_address", ""], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    pid = None
    while pid is None and time.monotonic() < deadline and proc.poll() is None:
        started = [p for p in out.glob("blue_*/state.json")] if out.exists() else []
        pid = _ray_task_pid("blue") if started else None
        time.sleep(0.1)
    assert pid is not None, "blue never started training"
    os.kill(pid, signal.SIGKILL)
    printed, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, printed
    rows = {r["label"]: r for r in _report(out)}
    assert rows["red"]["status"] == "ok" and rows["blue"]["status"] == "failed"
    assert "process died" in printed and "blue | failed" in printed
    runs = _run_folders(out)
    red_before = tree_hashes(runs["red"])
    # The rerun (here, by the local executor) keeps red and resumes blue.
    capsys.readouterr()
    assert train_all.main(argv) == 0
    printed = capsys.readouterr().out
    assert "[red] finished earlier with the same settings" in printed
    assert f"[blue] resuming {runs['blue']}" in printed
    assert _run_folders(out) == runs and tree_hashes(runs["red"]) == red_before
    assert json.loads((runs["blue"] / "state.json").read_text())["epochs_done"] == 12


@pytest.mark.slow
def test_compare_on_ray_gives_the_local_tables(local_ray, tmp_path):
    from classifier.compare import main as compare
    train = write_class_images(tmp_path / "train", {"red": 12, "green": 8, "blue": 6}, seed=1)
    test = write_class_images(tmp_path / "test", {"red": 5, "green": 5, "blue": 5}, seed=2)
    argv = ["--train_dir", str(train), "--test_dir", str(test), "--seeds", "0", "1",
            "--variants", "original", "rebalanced", "--number_epochs", "2",
            "--backbone", "small_cnn", "--input_shape", "16", "--batch_size", "8",
            "--workers", "1", "--bootstrap", "50", "--no-tensorboard"]
    assert compare([*argv, "--out_dir", str(tmp_path / "local")]) == 0
    assert compare([*argv, "--out_dir", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    tables = {}
    for name in ("local", "ray"):
        runs = pd.read_csv(tmp_path / name / "runs.csv").drop(columns=["seconds"])
        runs["run_dir"] = runs["run_dir"].str.replace(str(tmp_path / name), "OUT")
        tables[name] = runs
        assert sorted(p.relative_to(tmp_path / name).as_posix()
                      for p in (tmp_path / name).glob("*/seed*")) == [
            "original/seed0", "original/seed1", "rebalanced/seed0", "rebalanced/seed1"]
    assert len(tables["local"]) == 8     # 2 arms x 2 seeds x (validation, test)
    pd.testing.assert_frame_equal(tables["local"], tables["ray"])
    for a in ("original", "rebalanced"):
        for s in (0, 1):
            assert set(tree_hashes(tmp_path / "local" / a / f"seed{s}")) == \
                set(tree_hashes(tmp_path / "ray" / a / f"seed{s}"))


@pytest.mark.slow
def test_robustness_search_on_ray_probes_each_op_in_a_task_and_matches_local(local_ray,
                                                                            tmp_path):
    import keras
    import numpy as np

    from robustness.__main__ import main as robustness
    rng = np.random.default_rng(0)
    for label, base in (("dark", 80), ("light", 125)):
        for i in range(3):
            save_image(tmp_path / "imgs" / label / f"{i}.png", rng.normal(base, 20, (32, 32, 3)))
    inp = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(2, activation="softmax")
    keras.Model(inp, dense(keras.layers.GlobalAveragePooling2D()(inp))).save(
        tmp_path / "model.keras")
    ops = ["brightness_up", "gaussian_noise", "fog"]
    argv = ["search", "--model", str(tmp_path / "model.keras"), "--images",
            str(tmp_path / "imgs"), "--step", "0.25", "--ops", *ops]
    assert robustness([*argv, "--out_dir", str(tmp_path / "local")]) == 0
    assert robustness([*argv, "--out_dir", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local, on_ray = (json.loads((tmp_path / d / "search.json").read_text())
                     for d in ("local", "ray"))
    assert local["ops"] == on_ray["ops"]
    # Every probe ran in the op's own task: the search in this process only read the cache.
    assert on_ray["probes_this_run"] == 0 and local["probes_this_run"] > 0
    assert {p.stem for p in (tmp_path / "ray" / "cache").glob("*/*.json")} >= set(ops)


@pytest.mark.slow
def test_ray_starts_two_workers_that_train_one_model_and_only_the_chief_writes(
        two_labels, tmp_path, capsys, monkeypatch):
    """--distribute multiworker --executor ray: one command; Ray runs two worker processes
    on localhost CPUs and gives each its TF_CONFIG (what a hand-written TF_CONFIG does on
    each machine of a cluster)."""
    out = tmp_path / "models"
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    argv = ["--in_dir", str(two_labels), "--out_dir", str(out), "--conditional",
            "--num_epochs", "2", *DIFFUSION_FLAGS, "--kid_every", "1", "--kid_features",
            "random", "--kid_images", "8", "--kid_diffusion_steps", "3", "--sample_every",
            "1", "--generate_diffusion_steps", "4", "--distribute", "multiworker"]
    done = subprocess.run([sys.executable, "run_diffusion.py", *argv, "--executor", "ray",
                           "--num_workers", "2"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=400)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-5000:]
    assert "workers' exit codes: [0, 0]" in done.stdout
    assert "2 replica(s)" in printed                 # one model over both workers
    (run,) = out.iterdir()                           # written once, by the chief
    assert "run folder written by the chief worker" in printed
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 2 and history["val_kid"].notna().all()
    assert json.loads((run / "state.json").read_text())["finished"] is True
    assert json.loads((run / "config.json").read_text())["distribute"] == "multiworker"
    # Without TF_CONFIG and without Ray to make one, the flag is refused before any work.
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert run_diffusion.main([*argv[:3], str(tmp_path / "refused"), *argv[4:]]) == 2
    assert not (tmp_path / "refused").exists()
    assert "needs the TF_CONFIG environment variable" in capsys.readouterr().err
