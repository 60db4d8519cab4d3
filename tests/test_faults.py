"""Fault catalogue: bad input and I/O faults through the commands, each a one-line error with
exit status 2, the input's bytes unchanged and no half-written file left behind.

Faults are injected in-process where the machine cannot make them (tests run as root, so a
chmod'ed folder stays writable; a real full disk needs a mount): `os.replace`, the last step
of every atomic write, raises ENOSPC, and `Path.mkdir` / `open` for writing below the out_dir
raise EROFS.
"""
from __future__ import annotations

import builtins
import errno
import json
import os
import re
from pathlib import Path

import pytest

from conftest import TINY_UNET_FLAGS, make_dataset, tree_hashes, write_image

TINY_DIFFUSION = [*TINY_UNET_FLAGS, "--batch_size", "4", "--num_epochs", "1",
                  "--kid_every", "0", "--sample_every", "0", "--kid_features", "random"]


def _balancer(data, out):
    from site_id_balancer import main
    return main(["--in_dir", str(data["train"]), "--out_dir", str(out), "--workers", "1"])


def _classic_fill(data, out):
    from classic_fill.__main__ import main
    return main(["--in_dir", str(data["train"]), "--out_dir", str(out), "--categories",
                 "a,b", "c,d", "--workers", "1"])


def _classifier(data, out):
    from classifier.train import main
    return main(["--train_dir", str(data["train"]), "--test_dir", str(data["test"]),
                 "--out_dir", str(out), "--backbone", "small_cnn", "--input_shape", "16",
                 "--number_epochs", "1", "--batch_size", "8", "--workers", "1"])


def _diffusion(data, out):
    from run_diffusion import main
    return main(["--in_dir", str(data["train"] / "c"), "--out_dir", str(out),
                 *TINY_DIFFUSION])


def _gap_fill(data, out):
    from diffusion_augmentation import main
    return main(["--in_dir", str(data["train"]), "--out_dir", str(out), "--categories",
                 "a,b", "c,d", "--weight_paths", str(data["model"]),
                 "--generate_diffusion_steps", "2", "--batch_size", "8"])


def _pipeline(data, out):
    from run_pipeline import main
    return main(["--in_dir", str(data["train"]), "--test_dir", str(data["test"]),
                 "--out_dir", str(out), "--categories", "a,b", "c,d"])


def _inpainting(data, out):
    from inpainting.__main__ import main
    return main(["generate", "--test_dir", str(data["train"]), "--out_dir", str(out),
                 "--backend", "ddim", "--model_dir", str(data["model"]), "--mask_mode", "box",
                 "--num_steps", "2", "--jump_length", "1", "--jump_n_sample", "1"])


def _robustness(data, out):
    from robustness.__main__ import main
    return main(["search", "--model", str(data["classifier"]), "--images", str(data["train"]),
                 "--out_dir", str(out), "--step", "0.5", "--ops", "brightness_up"])


COMMANDS = {"site_id_balancer": _balancer, "classic_fill": _classic_fill,
            "classifier.train": _classifier, "run_diffusion": _diffusion,
            "diffusion_augmentation": _gap_fill, "run_pipeline": _pipeline,
            "inpainting": _inpainting, "robustness": _robustness}
LAYOUT = {"a": {"S1": 3, "S2": 2}, "b": {"S1": 4}, "c": {"S1": 6, "S2": 4}, "d": {"S1": 8}}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny conditional model of the four labels (stage 3 needs one)."""
    import train_all
    root = tmp_path_factory.mktemp("faults_model")
    train = make_dataset(root / "train", LAYOUT)
    assert train_all.main(["--in_dir", str(train), "--out_dir", str(root / "models"),
                           "--conditional", *TINY_DIFFUSION]) == 0
    (run,) = [p for p in (root / "models").iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny classifier run of the four labels (robustness probes one)."""
    from classifier.train import main
    root = tmp_path_factory.mktemp("faults_classifier")
    train = make_dataset(root / "train", LAYOUT)
    assert main(["--train_dir", str(train), "--out_dir", str(root / "runs"), "--backbone",
                 "small_cnn", "--input_shape", "16", "--number_epochs", "1", "--batch_size",
                 "8", "--workers", "1"]) == 0
    (run,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return run


@pytest.fixture
def data(tmp_path, model, classifier):
    train = make_dataset(tmp_path / "train", LAYOUT)
    test = make_dataset(tmp_path / "test", {lab: {"T": 2} for lab in "abcd"})
    return {"train": train, "test": test, "root": tmp_path, "model": model,
            "classifier": classifier}


def _full_disk(monkeypatch, out: Path):
    def replace(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))
    monkeypatch.setattr(os, "replace", replace)


def _read_only(monkeypatch, out: Path):
    out = out.resolve()
    real_mkdir, real_open = Path.mkdir, builtins.open

    def below(path) -> bool:
        p = Path(path).resolve()
        return p == out or out in p.parents

    def mkdir(self, *a, **k):
        if below(self):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, Path)) and any(c in mode for c in "wax+") and below(file):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *a, **k)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)


def _assert_clean_failure(code, capsys, data, before, out: Path, expected: str):
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], err[-2000:]
    assert tree_hashes(data["train"]) == before
    leftovers = [p for p in out.rglob(".tmp-*")] if out.exists() else []
    assert leftovers == []


@pytest.mark.parametrize("fault, message", [("full_disk", "no space left on the device"),
                                            ("read_only", "read-only file system")])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_io_fault_is_a_one_line_error_and_leaves_no_partial_file(
        command, fault, message, data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    before = tree_hashes(data["train"])
    (_full_disk if fault == "full_disk" else _read_only)(monkeypatch, out)
    code = COMMANDS[command](data, out)
    monkeypatch.undo()
    _assert_clean_failure(code, capsys, data, before, out, message)
    if fault == "read_only":
        assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_dir_inside_the_input_is_refused(command, data, capsys):
    out = data["train"] / "c" / "out"
    before = tree_hashes(data["train"])
    code = COMMANDS[command](data, out)
    _assert_clean_failure(code, capsys, data, before, out, "is inside --")
    assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_input_folder_is_a_one_line_error(command, data, tmp_path, capsys):
    out = tmp_path / "out"
    missing = {**data, "train": tmp_path / "nowhere"}
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere").rmdir()
    before = tree_hashes(data["train"])
    code = COMMANDS[command](missing, out)
    _assert_clean_failure(code, capsys, data, before, out, "nowhere")
    assert not out.exists() or not any(out.rglob("*"))


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs (a real full disk), where the machine lets the tests mount one."""
    import subprocess
    mount = tmp_path / "small_disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root in a machine that allows it)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_really_full_disk_during_diffusion_training_is_an_error_not_a_crash(data, small_disk):
    """h5py swallows write errors on a full disk and the process later segfaults (exit 139):
    the weights' space is checked before they are written."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    before = tree_hashes(data["train"])
    out = small_disk / "models"
    proc = subprocess.run([sys.executable, "run_diffusion.py", "--in_dir",
                           str(data["train"] / "c"), "--out_dir", str(out), *TINY_DIFFUSION],
                          cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    # (the error line follows Keras' progress bar on the same terminal line)
    errors = re.findall(r"\berror: (.*)", proc.stderr)
    assert len(errors) == 1 and errors[0].startswith("no space left on the device")
    assert "Traceback" not in proc.stderr
    assert list(out.rglob(".tmp-*")) == [] and tree_hashes(data["train"]) == before


KILLABLE = {
    "site_id_balancer": lambda d, o: ["site_id_balancer.py", "--in_dir", str(d), "--out_dir",
                                      str(o), "--workers", "1"],
    "classic_fill": lambda d, o: ["-m", "classic_fill", "--in_dir", str(d), "--out_dir",
                                  str(o), "--categories", "a", "b", "--workers", "1"],
}


def _outputs(out: Path) -> dict[str, str]:
    """What a finished run made (config.json names its out_dir; charts are pictures of the
    counts, which summary.txt and the manifest hold)."""
    return {k: v for k, v in tree_hashes(out).items()
            if k != "config.json" and not k.endswith("_counts.png")}


@pytest.mark.parametrize("command", KILLABLE)
@pytest.mark.parametrize("after_files", [1, 12, 40])
def test_kill_9_mid_run_then_rerun_gives_the_same_outputs(command, after_files, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    repo = Path(__file__).resolve().parents[1]
    data = make_dataset(tmp_path / "in", {"a": {"S1": 20, "S2": 4}, "b": {"S1": 6, "S2": 2}},
                        size=(64, 48))
    before = tree_hashes(data)
    run = lambda out: subprocess.run([sys.executable, *KILLABLE[command](data, out)],  # noqa: E731
                                     cwd=repo, capture_output=True, text=True, timeout=300)
    clean = tmp_path / "clean"
    assert run(clean).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *KILLABLE[command](data, killed)], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if killed.is_dir() and sum(1 for p in killed.rglob("*") if p.is_file()) >= after_files:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    if after_files <= 12:     # the kill landed mid-run, not after the end
        assert proc.returncode == -signal.SIGKILL
    rerun = run(killed)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _outputs(killed) == _outputs(clean)
    assert tree_hashes(data) == before


def _kill_when(cmd: list[str], repo: Path, ready) -> int:
    """Starts `cmd`, SIGKILLs it once `ready()` holds; returns its exit status."""
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, *cmd], cwd=repo, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    return proc.wait()


@pytest.mark.slow
def test_kill_9_during_diffusion_training_then_rerun_resumes_the_same_run(tmp_path):
    """train_all.py: the rerun finds the killed run (same settings) and continues it."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    data = make_dataset(tmp_path / "in", LAYOUT)
    out = tmp_path / "models"
    flags = list(TINY_DIFFUSION)
    # enough epochs that the kill lands mid-run even when the test process is descheduled
    flags[flags.index("--num_epochs") + 1] = "10"
    cmd = ["train_all.py", "--in_dir", str(data), "--out_dir", str(out), "--conditional",
           *flags]
    code = _kill_when(cmd, repo, lambda: any(out.glob("*/last.weights.h5")))
    assert code == -9
    done = subprocess.run([sys.executable, *cmd], cwd=repo, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout, done.stdout[-2000:]
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] and state["epochs_done"] == 10
    assert list(out.rglob(".tmp-*")) == []


@pytest.mark.slow
def test_kill_9_during_gap_filling_then_rerun_completes_the_plan(data, tmp_path):
    import subprocess
    import sys
    from dataset.manifest import read_manifest
    repo = Path(__file__).resolve().parents[1]
    before = tree_hashes(data["train"])
    args = lambda out: ["diffusion_augmentation.py", "--in_dir", str(data["train"]),  # noqa: E731
                        "--out_dir", str(out), "--categories", "a,b", "c,d", "--weight_paths",
                        str(data["model"]), "--generate_diffusion_steps", "2",
                        "--batch_size", "2"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert subprocess.run([sys.executable, *args(clean)], cwd=repo, capture_output=True,
                          timeout=300).returncode == 0
    code = _kill_when(args(killed), repo, lambda: len(list(killed.rglob("*_ddim_*"))) >= 2)
    assert code == -9
    assert subprocess.run([sys.executable, *args(killed)], cwd=repo, capture_output=True,
                          timeout=300).returncode == 0
    rows = lambda out: sorted((r.path, r.label, r.site_id, r.seed)  # noqa: E731
                              for r in read_manifest(out / "manifest.csv"))
    assert rows(killed) == rows(clean)
    assert all((killed / path).is_file() for path, *_ in rows(killed))
    assert list(killed.rglob(".tmp-*")) == [] and tree_hashes(data["train"]) == before


# Settings that must never reach a run (issue 37): a non-finite number passes every min/max
# comparison, and a name with a separator climbs out of its output folder. Each is refused
# while the flags are read, before anything is written.
def _cli(module: str):
    import importlib
    return importlib.import_module(module).main


BAD_SETTINGS = {
    "site_id_balancer --theta nan": ("site_id_balancer", ["--in_dir", "{train}", "--theta",
                                                          "nan"], "--theta must be a finite"),
    "site_id_balancer --labels /abs": ("site_id_balancer", ["--in_dir", "{train}", "--labels",
                                                            "{root}"], "--labels must be one"),
    "run_diffusion --learning_rate nan": ("run_diffusion", ["--in_dir", "{train}",
                                                            "--learning_rate", "nan"],
                                          "--learning_rate must be a finite"),
    "train_all --learning_rate inf": ("train_all", ["--in_dir", "{train}", "--learning_rate",
                                                    "inf"], "--learning_rate must be a finite"),
    "diffusion_augmentation --eta nan": ("diffusion_augmentation",
                                         ["--in_dir", "{train}", "--categories", "a,b", "c,d",
                                          "--eta", "nan"], "--eta must be a finite"),
    "diffusion_augmentation --strength nan": ("diffusion_augmentation",
                                              ["--in_dir", "{train}", "--categories", "a,b",
                                               "c,d", "--generator", "sdedit", "--strength",
                                               "nan"], "--strength must be a finite"),
    "inpainting generate --eta nan": ("inpainting.__main__",
                                      ["generate", "--test_dir", "{train}", "--backend", "ddim",
                                       "--model_dir", "{root}", "--eta", "nan"],
                                      "--eta must be a finite"),
    "classifier.train --learning_rate nan": ("classifier.train",
                                             ["--train_dir", "{train}", "--learning_rate",
                                              "nan"], "--learning_rate must be a finite"),
    "classifier.train --run_name ../..": ("classifier.train",
                                          ["--train_dir", "{train}", "--out_dir", "{root}/o",
                                           "--run_name", "../../train/evil"],
                                          "--run_name must be one plain name"),
    "classifier.train --run_name /abs": ("classifier.train",
                                         ["--train_dir", "{train}", "--out_dir", "{root}/o",
                                          "--run_name", "{train}"],
                                         "--run_name must be one plain name"),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_a_non_finite_number_or_a_climbing_name_is_refused_before_any_write(
        case, tmp_path, capsys):
    module, argv, expected = BAD_SETTINGS[case]
    train = make_dataset(tmp_path / "train", LAYOUT)
    before = tree_hashes(tmp_path)
    argv = [a.format(train=train, root=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exc:
        _cli(module)(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and expected in err and "Traceback" not in err, err
    assert tree_hashes(tmp_path) == before


@pytest.mark.parametrize("config", [{"guidance_scale": float("nan")},
                                    {"augmentation": {"eta": float("inf")}}])
def test_a_nan_in_a_pipeline_config_is_refused_by_the_dry_run(config, tmp_path, capsys):
    from run_pipeline import main
    train = make_dataset(tmp_path / "train", LAYOUT)
    path = tmp_path / "c.json"
    section = config if "augmentation" in config else {"augmentation": config}
    path.write_text(json.dumps(section))        # json writes NaN / Infinity, as a user might
    code = main(["--in_dir", str(train), "--test_dir", str(train), "--out_dir",
                 str(tmp_path / "o"), "--categories", "a,b", "c,d", "--config", str(path),
                 "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "must be a finite number" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("grid, expected", [
    ("out_dir=a,b", "--grid cannot vary out_dir"),
    ("run_name=a,b", "--grid cannot vary run_name"),
    ("seed=1,2", "--grid cannot vary seed"),
    ("learning_rate=1e-3,nan", "--learning_rate must be a finite number"),
])
def test_a_grid_cannot_set_the_run_folders_or_a_non_finite_number(grid, expected, tmp_path,
                                                                  capsys):
    from classifier.grid_search import main
    train = make_dataset(tmp_path / "train", LAYOUT)
    code = main(["--train_dir", str(train), "--out_dir", str(tmp_path / "g"), "--grid", grid,
                 "--dry-run"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "g").exists()


def _poison_losses_after(monkeypatch, model_class, steps: int) -> None:
    """From optimizer step `steps` on, every loss the model reports is NaN (as a run whose
    weights blew up reports them)."""
    from keras import ops
    original = model_class.train_step

    def train_step(self, data):
        logs = original(self, data)
        late = self.optimizer.iterations > steps
        return {k: ops.where(late, float("nan"), v) if k.endswith("loss") else v
                for k, v in logs.items()}
    monkeypatch.setattr(model_class, "train_step", train_step)


@pytest.mark.parametrize("model", ["ddim", "gan"])
def test_a_nan_loss_stops_training_marks_the_label_failed_and_keeps_no_nan_weights(
        model, tmp_path, monkeypatch, capsys):
    import train_all
    from diffusion_model import DiffusionModel
    from gan_model import ConditionalGan
    train = make_dataset(tmp_path / "train", LAYOUT)
    # label c: 10 images, 8 for training at batch 4 = 2 steps per epoch; epoch 2 goes NaN
    _poison_losses_after(monkeypatch, ConditionalGan if model == "gan" else DiffusionModel, 2)
    code = train_all.main(["--in_dir", str(train), "--out_dir", str(tmp_path / "models"),
                           "--labels", "c", "--model", model, *TINY_DIFFUSION,
                           "--num_epochs", "3"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err, err[-3000:]
    assert re.search(r"\[c\] failed: training loss [\w, ]+ became nan in epoch 2", err), err
    assert "c | failed |" in out
    (run,) = (tmp_path / "models").glob("c_*")
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 1 and not state["finished"]
    assert "became nan in epoch 2" in state["failed"]
    assert state["best_epoch"] in (None, 1)          # a GAN's best needs KID (off here)
    assert len((run / "history.csv").read_text().splitlines()) == 2   # header + epoch 1


def test_run_diffusion_with_a_nan_loss_is_one_error_line_and_exit_status_1(
        tmp_path, monkeypatch, capsys):
    from diffusion_model import DiffusionModel
    from run_diffusion import main
    train = make_dataset(tmp_path / "train", {"c": {"S1": 10}})
    _poison_losses_after(monkeypatch, DiffusionModel, 0)
    code = main(["--in_dir", str(train / "c"), "--out_dir", str(tmp_path / "runs"),
                 *TINY_DIFFUSION])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "became nan in epoch 1 (step 1); no weights kept" in lines[0]
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "best.weights.h5").exists() and not (run / "last.weights.h5").exists()


# Loaders (issue 37): a run folder of the wrong kind, or a config.json that is not JSON, is
# one line naming the folder, whichever command loads it.
def _damaged_copy(run: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(run, dst)
    (dst / "config.json").write_text("{not json")
    return dst


def _evaluate(run: Path, data, out: Path) -> int:
    from classifier.evaluate import main
    return main(["--model", str(run), "--test_dir", str(data["test"]), "--out_dir", str(out)])


def _sample(run: Path, data, out: Path) -> int:
    from run_diffusion import main
    return main(["--runtime", "inference", "--model_dir", str(run), "--out_dir", str(out),
                 "--images_to_generate", "1", "--generate_diffusion_steps", "2"])


@pytest.mark.parametrize("command, wrong, expected", [
    (_evaluate, "model", "is a diffusion run folder; this needs a classifier run folder"),
    (_evaluate, "damaged", "config.json is not valid JSON"),
    (_sample, "classifier", "is a classifier run folder; this needs a diffusion run folder"),
    (_sample, "damaged", "config.json is not valid JSON"),
], ids=["evaluate-diffusion-run", "evaluate-damaged", "sample-classifier-run",
        "sample-damaged"])
def test_a_run_folder_of_the_wrong_kind_or_damaged_is_one_line(command, wrong, expected,
                                                                 data, capsys):
    if wrong == "damaged":
        own = data["classifier"] if command is _evaluate else data["model"]
        run = _damaged_copy(own, data["root"] / "damaged_run")
    else:
        run = data[wrong]
    out = data["root"] / "out"
    code = command(run, data, out)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert expected in lines[0] and str(run) in lines[0], lines
    assert not out.exists()


# Outputs inside inputs (issue 37): test folders and model folders are inputs too.
def _evaluate_into(data, out):
    from classifier.evaluate import main
    return main(["--model", str(data["classifier"]), "--test_dir", str(data["test"]),
                 "--out_dir", str(out)])


def _sample_into(data, out):
    return _sample(data["model"], data, out)


def _inpaint_into(data, out):
    from inpainting.__main__ import main
    return main(["generate", "--test_dir", str(data["test"]), "--out_dir", str(out),
                 "--backend", "ddim", "--model_dir", str(data["model"]), "--mask_mode", "box",
                 "--num_steps", "2", "--jump_length", "1", "--jump_n_sample", "1"])


@pytest.mark.parametrize("command, inside, flag", [
    (_evaluate_into, "test", "--test_dir"),
    (_evaluate_into, "classifier", "--model"),
    (_sample_into, "model", "--model_dir"),
    (_gap_fill, "model", "--weight_paths"),
    (_inpaint_into, "model", "--model_dir"),
], ids=["evaluate-in-test", "evaluate-in-run", "sample-in-model", "gap-fill-in-model",
        "inpaint-in-model"])
def test_an_out_dir_inside_a_test_or_model_folder_is_refused(command, inside, flag, data,
                                                             capsys):
    before = tree_hashes(data[inside])
    out = data[inside] / "e"
    code = command(data, out)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert f"is inside {flag}" in lines[0], lines
    assert tree_hashes(data[inside]) == before and not out.exists()


def test_an_evaluation_may_go_below_the_runs_own_evaluations_folder(data, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(data["classifier"], run)
    assert _evaluate_into({**data, "classifier": run}, run / "evaluations" / "mine") == 0
    assert (run / "evaluations" / "mine" / "metrics.json").is_file()


# Messages (issue 37): each names the real problem; progress bars count what is written.
def test_the_classic_fill_progress_bar_counts_every_image_it_writes(tmp_path, capsys):
    from classic_fill.__main__ import main
    train = make_dataset(tmp_path / "train", LAYOUT)
    assert main(["--in_dir", str(train), "--out_dir", str(tmp_path / "out"), "--categories",
                 "a,b", "c,d", "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    written = int(re.search(r"wrote (\d+) augmented image", out).group(1))
    done, total = map(int, re.findall(r"(\d+)/(\d+) ", err)[-1])
    assert written > 1 and done == total == written, (written, err[-500:])


@pytest.mark.parametrize("argv, expected", [
    (["--labels", "a\nb"], "cannot hold a line break"),
    (["--labels", "a;b"], "cannot hold ';'"),
    (["--labels", "a", "--out", "{file}/p.csv"], "is a file, not a folder"),
])
def test_a_prompt_file_error_names_the_real_problem(argv, expected, tmp_path, capsys):
    from pretrained.__main__ import main
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = [a.format(file=afile) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "p.csv")]
    code = main(["prompts", *argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow
def test_a_conditional_train_all_leaves_out_an_empty_label_and_says_so(tmp_path, capsys):
    import train_all
    train = make_dataset(tmp_path / "train", {"a": {"S1": 6}, "c": {"S1": 6}})
    (train / "b").mkdir()
    code = train_all.main(["--in_dir", str(train), "--out_dir", str(tmp_path / "models"),
                           "--conditional", *TINY_DIFFUSION])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "left out 1 label folder(s) without images" in out and "  b: no images in" in out
    (run,) = (tmp_path / "models").glob("conditional_*")
    assert json.loads((run / "config.json").read_text())["_class_names"] == ["a", "c"]


def test_a_named_empty_label_or_a_stray_image_gets_advice_that_fits(tmp_path, capsys):
    import train_all
    from run_diffusion import main
    train = make_dataset(tmp_path / "train", {"a": {"S1": 3}, "c": {"S1": 3}})
    (train / "b").mkdir()
    assert train_all.main(["--in_dir", str(train), "--conditional", "--labels", "a", "b",
                           "--dry-run"]) == 2
    assert "label b: no images in" in capsys.readouterr().err
    write_image(train / "stray.jpg")
    assert main(["--in_dir", str(train), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "move the stray image(s) (stray.jpg) or the sub-folders away" in err
    assert "train_all.py" not in err


# The fault catalogue (issue 37, tests/fault_catalogue.py): every command with the faults a
# new user makes. Here the cases answered before any training or sampling, in-process;
# `python -m tests.fault_catalogue --table` runs all of them as subprocesses.
@pytest.fixture(scope="module")
def catalogue_workspace(tmp_path_factory, model, classifier):
    from fault_catalogue import build_workspace
    return build_workspace(tmp_path_factory.mktemp("catalogue"), model, classifier,
                           full=False)


def _catalogue_params():
    from fault_catalogue import CASES
    return [pytest.param(c, id=c.id) for c in CASES if c.fast]


@pytest.mark.parametrize("case", _catalogue_params())
def test_the_fault_catalogue(case, catalogue_workspace, tmp_path):
    from fault_catalogue import run_case
    outcome = run_case(case, catalogue_workspace, tmp_path, in_process=True)
    assert outcome.problems() == [], outcome.output[-3000:]
