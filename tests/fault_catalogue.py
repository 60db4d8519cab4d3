"""The fault catalogue (issue 37): every command run as a new user would run it, with the
faults a new user makes, and what each must answer.

A case is one command line with placeholders for a shared workspace of tiny inputs
(`{train}`, `{test}`, `{model}`, `{classifier}`, ...) and a fresh output path (`{out}`). Each
case is judged on four counts that must all be zero, and on whether it answered as expected:

- traceback: a Python traceback, or a crash (exit status other than 0, 1, 2);
- writes into inputs: any file of the workspace's inputs (data, test, model and classifier
  run folders) added, changed or removed;
- NaN run reported ok: a non-finite setting or loss that ends with exit status 0;
- silent drop: an input the command left out (an empty label, a stray or corrupt image)
  that its output does not name.

`python -m tests.fault_catalogue --table` runs every case in a subprocess (as a new user
would) and prints the table; the pytest suite runs the cases marked `fast` in-process
(tests/test_faults.py).

Example:
    >>> ws = build_workspace(Path("/tmp/ws"))
    >>> outcome = run_case(CASES[0], ws, Path("/tmp/case0"))
    >>> outcome.problems()
    []
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_UNET = ["--image_size", "16", "16", "--widths", "8", "16", "--block_depth", "1",
             "--embedding_dims", "8"]
TINY_DIFFUSION = [*TINY_UNET, "--batch_size", "4", "--num_epochs", "1", "--kid_every", "0",
                  "--sample_every", "0", "--kid_features", "random"]
TINY_CLASSIFIER = ["--backbone", "small_cnn", "--input_shape", "16", "--number_epochs", "1",
                   "--batch_size", "8", "--workers", "1"]
LAYOUT = {"a": {"S1": 3, "S2": 2}, "b": {"S1": 4}, "c": {"S1": 6, "S2": 4}, "d": {"S1": 8}}
# The weights of another architecture wait for the ModelFolder loader (issue 38).
PENDING_ARCH = "weights of another architecture: the ModelFolder loader (issue 38)"
# The commands that check the run folder they load before any other work (the pytest
# suite runs their loader cases; the others read images or a second model first).
QUICK_LOADERS = ("run_diffusion.py inference", "diffusion_augmentation.py",
                 "classifier.evaluate", "inpainting compare", "robustness search")
ALL_DATA_FAULTS = ("train_empty_label", "train_stray", "train_corrupt", "train_not_image")
# Faults of the one settings reader every command shares (cli/flags.py: flags, --config),
# tried on a command of each family only.
CONFIG_FILE_COMMANDS = ("site_id_balancer.py", "train_all.py", "classifier.train",
                        "inpainting generate", "quality audit", "robustness search",
                        "pretrained prompts")


@dataclasses.dataclass(frozen=True)
class Case:
    """One command line and what it must answer.

    Args:
        command: the table's row (e.g. "classifier.train").
        fault: what is wrong, in a few words.
        argv: the arguments after the interpreter (a script or `-m MODULE`), with
            placeholders filled by `Workspace.fill`.
        expect: "refused" (exit 2, one `error:` line), "failed" (exit 1, one `error:` line:
            the run started and stopped), "ok" (exit 0) or "kept" (exit 0 or refused, and
            the files already in `{foreign}` unchanged).
        says: text the error line (refused / failed) or the output (ok) must hold.
        nan: a non-finite setting or loss: exit 0 counts as a NaN run reported ok.
        drop: the input the command leaves out, which its output must name.
        fast: cheap enough for the pytest suite (answered before any training or sampling).
        pending: the work this case waits for; reported, and expected to pass once it lands.
    """
    command: str
    fault: str
    argv: tuple[str, ...]
    expect: str = "refused"
    says: str = ""
    nan: bool = False
    drop: str = ""
    fast: bool = False
    pending: str = ""

    @property
    def id(self) -> str:
        return f"{self.command}: {self.fault}"


@dataclasses.dataclass(frozen=True)
class Command:
    """A command of the project and how to make faults of it.

    Args:
        argv: a valid command line that finishes quickly on the workspace.
        inputs: (flag, placeholder) of the folders it reads.
        out_flag: the flag of its output ("" for none).
        float_flag, int_flag: a float and an int setting to spoil.
        data_flag: the flag of its labelled image folder ("" for none).
        data_faults: the faulty variants of that folder tried (each a run: kept few where
            a run is slow).
        run_flag, run_kind: the flag of a run folder it loads and its kind.
        dry: whether the valid line is already a --dry-run (else one is added as a case).
        cheap: whether the valid line itself is fast enough for the pytest suite.
        dry_names_drops: whether its --dry-run already names what it leaves out (then the
            data faults that need no decoding are tried as dry runs).
        full_only: reads an output only a full workspace has (none of its cases is fast).
    """
    argv: tuple[str, ...]
    inputs: tuple[tuple[str, str], ...] = ()
    out_flag: str = "--out_dir"
    float_flag: str = ""
    int_flag: str = ""
    data_flag: str = ""
    data_faults: tuple[str, ...] = ("train_empty_label", "train_corrupt")
    run_flag: str = ""
    run_kind: str = ""
    dry: bool = False
    cheap: bool = False
    dry_names_drops: bool = False
    full_only: bool = False


def _m(*argv: str) -> tuple[str, ...]:
    return ("-m", *argv)


COMMANDS: dict[str, Command] = {
    "site_id_balancer.py": Command(
        ("site_id_balancer.py", "--in_dir", "{train}", "--out_dir", "{out}", "--workers", "1"),
        (("--in_dir", "{train}"),), float_flag="--theta", int_flag="--multiplier",
        data_flag="--in_dir", data_faults=ALL_DATA_FAULTS, cheap=True),
    "train_all.py": Command(
        ("train_all.py", "--in_dir", "{train}", "--out_dir", "{out}", "--conditional",
         *TINY_DIFFUSION), (("--in_dir", "{train}"),), float_flag="--learning_rate",
        int_flag="--num_epochs", data_flag="--in_dir", data_faults=ALL_DATA_FAULTS,
        dry_names_drops=True),
    "run_diffusion.py": Command(
        ("run_diffusion.py", "--in_dir", "{train}/c", "--out_dir", "{out}", *TINY_DIFFUSION),
        (("--in_dir", "{train}/c"),), float_flag="--learning_rate", int_flag="--batch_size"),
    "run_diffusion.py inference": Command(
        ("run_diffusion.py", "--runtime", "inference", "--model_dir", "{model}", "--out_dir",
         "{out}", "--images_to_generate", "1", "--generate_diffusion_steps", "2"),
        (("--model_dir", "{model}"),), float_flag="--eta", int_flag="--images_to_generate",
        run_flag="--model_dir", run_kind="diffusion"),
    "diffusion_augmentation.py": Command(
        ("diffusion_augmentation.py", "--in_dir", "{train}", "--out_dir", "{out}",
         "--categories", "a,b", "c,d", "--weight_paths", "{model}",
         "--generate_diffusion_steps", "2", "--batch_size", "8"),
        (("--in_dir", "{train}"), ("--weight_paths", "{model}")), float_flag="--eta",
        int_flag="--batch_size", data_flag="--in_dir", data_faults=ALL_DATA_FAULTS,
        dry_names_drops=True, run_flag="--weight_paths",
        run_kind="diffusion"),
    "run_pipeline.py": Command(
        ("run_pipeline.py", "--in_dir", "{train}", "--test_dir", "{test}", "--out_dir",
         "{out}", "--categories", "a,b", "c,d", "--dry-run"),
        (("--in_dir", "{train}"), ("--test_dir", "{test}")), float_flag="--task_cpus",
        int_flag="--seed", data_flag="--in_dir", data_faults=(), dry=True, cheap=True),
    "classifier.train": Command(
        _m("classifier.train", "--train_dir", "{train}", "--test_dir", "{test}", "--out_dir",
           "{out}", *TINY_CLASSIFIER),
        (("--train_dir", "{train}"), ("--test_dir", "{test}")), float_flag="--learning_rate",
        int_flag="--number_epochs", data_flag="--train_dir", data_faults=ALL_DATA_FAULTS),
    "classifier.evaluate": Command(
        _m("classifier.evaluate", "--model", "{classifier}", "--test_dir", "{test}",
           "--out_dir", "{out}"),
        (("--model", "{classifier}"), ("--test_dir", "{test}")), int_flag="--batch_size",
        data_flag="--test_dir", data_faults=("train_empty_label", "train_corrupt"),
        run_flag="--model", run_kind="classifier"),
    "classifier.grid_search": Command(
        _m("classifier.grid_search", "--train_dir", "{train}", "--out_dir", "{out}", "--grid",
           "learning_rate=1e-3,3e-3", *TINY_CLASSIFIER, "--dry-run"),
        (("--train_dir", "{train}"),), float_flag="--learning_rate", int_flag="--repeats",
        data_flag="--train_dir", data_faults=(), dry=True, cheap=True),
    "classifier.compare": Command(
        _m("classifier.compare", "--train_dir", "{train}", "--test_dir", "{test}", "--out_dir",
           "{out}", *TINY_CLASSIFIER, "--dry-run"),
        (("--train_dir", "{train}"), ("--test_dir", "{test}")), float_flag="--tail_fraction",
        int_flag="--seeds", data_flag="--train_dir", data_faults=(), dry=True, cheap=True),
    "inpainting generate": Command(
        _m("inpainting", "generate", "--test_dir", "{test}", "--out_dir", "{out}", "--backend",
           "ddim", "--model_dir", "{model}", "--mask_mode", "box", "--num_steps", "2",
           "--jump_length", "1", "--jump_n_sample", "1"),
        (("--test_dir", "{test}"), ("--model_dir", "{model}")), float_flag="--eta",
        int_flag="--num_steps", data_flag="--test_dir", data_faults=("train_corrupt",),
        run_flag="--model_dir",
        run_kind="diffusion"),
    "inpainting compare": Command(
        _m("inpainting", "compare", "--model", "{classifier}", "--test_dir", "{test}",
           "--ood_dir", "{ood}/inpaint_box", "--out_dir", "{out}"),
        (("--model", "{classifier}"), ("--test_dir", "{test}"), ("--ood_dir", "{ood}")),
        int_flag="--batch_size", run_flag="--model", run_kind="classifier"),
    "quality audit": Command(
        _m("quality", "audit", "--balanced_dir", "{balanced}", "--test_dir", "{test}",
           "--train_dir", "{train}", "--out_dir", "{out}", "--classifier_run", "{classifier}"),
        (("--balanced_dir", "{balanced}"), ("--test_dir", "{test}"), ("--train_dir", "{train}"),
         ("--classifier_run", "{classifier}")), float_flag="--percentile",
        int_flag="--min_reference", run_flag="--classifier_run", run_kind="classifier"),
    "quality recognisability": Command(
        _m("quality", "recognisability", "--balanced_dir", "{balanced}", "--test_dir",
           "{test}", "--train_dir", "{train}", "--out_dir", "{out}", "--classifier_run",
           "{classifier}"),
        (("--balanced_dir", "{balanced}"), ("--test_dir", "{test}"), ("--train_dir", "{train}"),
         ("--classifier_run", "{classifier}")), int_flag="--number_epochs",
        run_flag="--classifier_run", run_kind="classifier"),
    "pretrained prompts": Command(
        _m("pretrained", "prompts", "--labels", "a", "b", "--out", "{out}/p.csv"),
        out_flag="--out", int_flag="--per_class", cheap=True),
    "classic_fill": Command(
        _m("classic_fill", "--in_dir", "{train}", "--out_dir", "{out}", "--categories", "a,b",
           "c,d", "--workers", "1"),
        (("--in_dir", "{train}"),), int_flag="--seed", data_flag="--in_dir",
        data_faults=ALL_DATA_FAULTS, cheap=True),
    "robustness search": Command(
        _m("robustness", "search", "--model", "{classifier}", "--images", "{train}",
           "--out_dir", "{out}", "--step", "0.5", "--ops", "brightness_up"),
        (("--model", "{classifier}"), ("--images", "{train}")), float_flag="--step",
        int_flag="--max_images", data_flag="--images", data_faults=("train_corrupt",),
        run_flag="--model",
        run_kind="classifier"),
    "robustness report": Command(
        _m("robustness", "report", "--model", "{classifier}", "--images", "{train}",
           "--reference_model", "{classifier}", "--out_dir", "{out}", "--step", "0.5", "--ops",
           "brightness_up"),
        (("--model", "{classifier}"), ("--images", "{train}")), float_flag="--step",
        int_flag="--max_images", run_flag="--reference_model", run_kind="classifier"),
    "robustness synthesize": Command(
        _m("robustness", "synthesize", "--model", "{classifier}", "--images", "{train}",
           "--out_dir", "{out}", "--count", "2", "--ops", "brightness_up", "--step", "0.5"),
        (("--model", "{classifier}"), ("--images", "{train}")), float_flag="--realism",
        int_flag="--count", run_flag="--model", run_kind="classifier"),
    "robustness evaluate": Command(
        _m("robustness", "evaluate", "--model", "{classifier}", "--images", "{synth}",
           "--before_model", "{classifier}", "--out_dir", "{out}"),
        (("--model", "{classifier}"), ("--images", "{synth}")), int_flag="--batch_size",
        run_flag="--before_model", run_kind="classifier", full_only=True),
    "sample_data": Command(
        _m("sample_data", "--out_dir", "{out}", "--size", "16"),
        float_flag="--imbalance", int_flag="--size"),
}


def _replace(argv: tuple[str, ...], flag: str, *values: str) -> tuple[str, ...]:
    """`argv` with `flag`'s value(s) replaced by `values` (appended when absent)."""
    argv = list(argv)
    if flag not in argv:
        return (*argv, flag, *values)
    i = argv.index(flag) + 1
    j = i
    while j < len(argv) and not argv[j].startswith("--"):
        j += 1
    return (*argv[:i], *values, *argv[j:])


def _no_dry(argv: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a for a in argv if a != "--dry-run")


def _dry(argv: tuple[str, ...]) -> tuple[str, ...]:
    return argv if "--dry-run" in argv else (*argv, "--dry-run")


def _cases_of(name: str, c: Command) -> list[Case]:
    """The generic faults of one command: settings, inputs, outputs, data and run folders."""
    def case(fault, argv, expect="refused", says="", **kw):
        return Case(name, fault, tuple(argv), expect, says, **kw)
    # a refusal that comes before any work is cheap whatever the command
    quick = _dry(c.argv) if name != "sample_data" else c.argv
    cases = [case("valid run" if not c.dry else "valid dry run", c.argv, "ok", fast=c.cheap)]
    if not c.dry and name != "sample_data":
        cases.append(case("valid dry run", _dry(c.argv), "ok", fast=True))
    for flag in [c.float_flag] if c.float_flag else []:
        for value in ("nan", "inf"):
            cases.append(case(f"{flag} {value}", _replace(c.argv, flag, value),
                              says="finite", nan=True, fast=True))
    if name in CONFIG_FILE_COMMANDS:
        cases.append(case(f"{c.int_flag} abc", _replace(quick, c.int_flag, "abc"),
                          says=c.int_flag, fast=True))
        cases.append(case("unknown flag", (*quick, "--no_such_flag", "1"),
                          says="--no_such_flag", fast=True))
        cases.append(case("--config not JSON", (*quick, "--config", "{notjson}"),
                          says="{notjson}", fast=True))
        cases.append(case("--config binary", (*quick, "--config", "{binary}"),
                          says="{binary}", fast=True))
        cases.append(case("--config a folder", (*quick, "--config", "{empty}"),
                          says="{empty}", fast=True))
        cases.append(case("--config missing", (*quick, "--config", "{root}/nowhere.json"),
                          says="nowhere.json", fast=True))
    # input and output faults of a real run: refused before any work, but only a command
    # whose valid line is cheap runs them in the pytest suite (the others load TensorFlow
    # or a model first; the script runs them all)
    # (a dry run checks the flags only, so these faults are tried on a real run)
    early, real = c.cheap and not c.dry, _no_dry(c.argv)
    for flag, value in c.inputs:
        cases.append(case(f"{flag} missing", _replace(real, flag, "{root}/nowhere"),
                          says="nowhere", fast=early))
        cases.append(case(f"{flag} a file", _replace(real, flag, "{afile}"), says="afile",
                          fast=early))
        if c.out_flag:
            cases.append(case(f"{c.out_flag} inside {flag}",
                              _replace(real, c.out_flag, f"{value}/out"),
                              says=f"is inside {flag}", fast=early))
    if c.data_flag:
        data = dict(c.inputs)[c.data_flag]
        cases.append(case(f"{c.data_flag} an empty folder", _replace(real, c.data_flag,
                                                                   "{empty}"),
                          says="{empty}", fast=early))
        dropped_by = {"train_empty_label": "e", "train_stray": "stray.jpg",
                      "train_corrupt": "S1_bad.jpg", "train_not_image": "notes.txt"}
        for variant in c.data_faults:
            dropped = dropped_by[variant]
            dry = c.dry_names_drops and variant != "train_corrupt"
            argv = _replace(quick if dry else c.argv, c.data_flag, data.replace("{train}", f"{{{variant}}}")
                            .replace("{test}", f"{{{variant}}}"))
            cases.append(case(f"{c.data_flag} with {variant.split('_', 1)[1].replace('_', ' ')}",
                              argv, "ok", dropped, drop=dropped, fast=dry or c.cheap))
    if c.out_flag:
        out = "{afile}/sub" if c.out_flag == "--out_dir" else "{afile}/p.csv"
        cases.append(case(f"{c.out_flag} below a file", _replace(real, c.out_flag, out),
                          says="is a file, not a folder", fast=early))
        if c.out_flag == "--out_dir":
            cases.append(case(f"{c.out_flag} a file", _replace(real, c.out_flag, "{afile}"),
                              says="afile", fast=early))
            # refused, or a new run folder beside the files: never a change to them
            if c.cheap or c.dry or name in ("train_all.py", "classifier.train",
                                            "diffusion_augmentation.py"):
                cases.append(case(f"{c.out_flag} holds other files",
                                  _replace(c.argv, c.out_flag, "{foreign}"), "kept",
                                  fast=c.cheap or c.dry))
    if c.run_flag:
        other = "classifier" if c.run_kind == "diffusion" else "model"
        own = "model" if c.run_kind == "diffusion" else "classifier"
        runs = [("a run of the other kind", f"{{{other}}}", f"needs a {c.run_kind} run", ""),
                ("config.json not JSON", f"{{{own}_badjson}}", "not valid JSON", ""),
                ("config.json missing", f"{{{own}_noconfig}}", "config.json", ""),
                ("without weights", f"{{{own}_noweights}}", "weights", ""),
                ("weights of another architecture", f"{{{own}_otherarch}}",
                 "cannot be loaded", PENDING_ARCH)]
        for fault, folder, says, pending in runs:
            cases.append(case(f"{c.run_flag} {fault}", _replace(c.argv, c.run_flag, folder),
                              says=says, fast=not pending and name in QUICK_LOADERS,
                              pending=pending))
    if c.full_only:
        cases = [dataclasses.replace(x, fast=False) for x in cases]
    return cases


def _special_cases() -> list[Case]:
    """Faults that belong to one command: names that climb, grids, NaN losses, prompts."""
    tc, ta = COMMANDS["classifier.train"], COMMANDS["train_all.py"]
    grid, cmp_ = COMMANDS["classifier.grid_search"], COMMANDS["classifier.compare"]
    cases = []
    for name, c in (("classifier.train", tc), ("classifier.grid_search", grid),
                    ("classifier.compare", cmp_)):
        for fault, value in (("--run_name ../..", "../../train/evil"),
                             ("--run_name absolute", "{train}/evil"),
                             ("--run_name a/b", "a/b"), ("--run_name ..", "..")):
            cases.append(Case(name, fault, _replace(_dry(c.argv), "--run_name", value),
                              says="--run_name must be one plain name", fast=True))
    for grid_value, says in (("out_dir=a,b", "cannot vary out_dir"),
                             ("run_name=a,b", "cannot vary run_name"),
                             ("seed=1,2", "cannot vary seed"),
                             ("learning_rate=1e-3,nan", "finite"),
                             ("dropout=0.1,inf", "finite"),
                             ("no_such=1,2", "no_such")):
        cases.append(Case("classifier.grid_search", f"--grid {grid_value}",
                          _replace(grid.argv, "--grid", grid_value), says=says,
                          nan="nan" in grid_value or "inf" in grid_value, fast=True))
    # a learning rate that would make the loss overflow is refused by its range (a loss
    # that does go NaN stops the run: tests/test_faults.py poisons one in-process)
    cases += [
        Case("classifier.train", "--learning_rate 1e30 (would overflow)",
             _replace(tc.argv, "--learning_rate", "1e30"), says="must be <= 1.0", nan=True),
        Case("train_all.py", "--learning_rate 1e30 (would overflow)",
             _replace(ta.argv, "--learning_rate", "1e30"), says="must be <= 1.0", nan=True),
        Case("run_diffusion.py", "--learning_rate 1e30 (would overflow)",
             _replace(COMMANDS["run_diffusion.py"].argv, "--learning_rate", "1e30"),
             says="must be <= 1.0", nan=True),
        Case("classifier.grid_search", "--grid learning_rate=1e30 (would overflow)",
             _replace(_no_dry(grid.argv), "--grid", "learning_rate=1e30"),
             says="must be <= 1.0", nan=True),
    ]
    # a setting that is NaN in a JSON config (json writes NaN, as a user's script might)
    for name, key in (("classifier.train", "learning_rate"), ("train_all.py", "learning_rate"),
                      ("site_id_balancer.py", "theta"), ("diffusion_augmentation.py", "eta")):
        cases.append(Case(name, f"--config {{{key}: NaN}}",
                          (*_dry(COMMANDS[name].argv), "--config", f"{{nan_{key}}}"),
                          says="finite", nan=True, fast=True))
    cases.append(Case("run_pipeline.py", "--config {augmentation: {guidance_scale: NaN}}",
                      (*COMMANDS["run_pipeline.py"].argv, "--config", "{nan_pipeline}"),
                      says="finite", nan=True, fast=True))
    cases += [
        Case("diffusion_augmentation.py", "--strength nan (sdedit)",
             (*_replace(COMMANDS["diffusion_augmentation.py"].argv, "--strength", "nan"),
              "--generator", "sdedit"), says="finite", nan=True, fast=True),
        Case("site_id_balancer.py", "--labels an absolute path",
             _replace(COMMANDS["site_id_balancer.py"].argv, "--labels", "{test}"),
             says="--labels must be one", fast=True),
        Case("site_id_balancer.py", "--labels ..",
             _replace(COMMANDS["site_id_balancer.py"].argv, "--labels", ".."),
             says="--labels must be one", fast=True),
        Case("train_all.py", "--conditional with an empty label",
             _replace(_dry(ta.argv), "--in_dir", "{train_empty_label}"), "ok", "e", drop="e",
             fast=True),
        Case("train_all.py", "--conditional --labels naming an empty label",
             (*_replace(_dry(ta.argv), "--in_dir", "{train_empty_label}"), "--labels", "a",
              "e"), says="label e: no images", fast=True),
        Case("run_diffusion.py", "--in_dir a labelled root with a stray image",
             _replace(_dry(COMMANDS["run_diffusion.py"].argv), "--in_dir", "{train_stray}"),
             says="stray.jpg", fast=True),
        Case("pretrained prompts", "--labels with a newline",
             _replace(COMMANDS["pretrained prompts"].argv, "--labels", "a\nb"),
             says="cannot hold a line break", fast=True),
        Case("pretrained prompts", "--labels with ';'",
             _replace(COMMANDS["pretrained prompts"].argv, "--labels", "a;b"),
             says="cannot hold ';'", fast=True),
        Case("pretrained prompts", "--labels empty",
             _replace(COMMANDS["pretrained prompts"].argv, "--labels", ""),
             says="an empty class name",
             fast=True),
        Case("classic_fill", "progress bar counts what is written", COMMANDS["classic_fill"].argv,
             "ok", "wrote", fast=True),
        Case("classifier.evaluate", "--out_dir inside the run's evaluations/ (allowed)",
             _replace(COMMANDS["classifier.evaluate"].argv, "--out_dir",
                      "{classifier_copy}/evaluations/mine"), "ok", "balanced"),
        Case("sample_data", "--out_dir a file", _replace(COMMANDS["sample_data"].argv,
                                                         "--out_dir", "{afile}"),
             says="afile", fast=True),
        Case("sample_data", "--out_dir below a file",
             _replace(COMMANDS["sample_data"].argv, "--out_dir", "{afile}/sub"),
             says="is a file, not a folder", fast=True),
    ]
    return cases


def all_cases() -> list[Case]:
    """The catalogue: every command's generic faults, then the special ones."""
    cases = [case for name, c in COMMANDS.items() for case in _cases_of(name, c)]
    return cases + _special_cases()


CASES = all_cases()


# ---------------------------------------------------------------------------------------
# The workspace: tiny inputs shared by every case (only read, never written)
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Workspace:
    """Paths of the shared inputs by placeholder name, and `inputs`, the folder that holds
    every one of them (hashed before and after each case)."""
    paths: dict[str, Path]
    inputs: Path

    def fill(self, argv, out: Path, root: Path) -> list[str]:
        names = {k: str(v) for k, v in self.paths.items()} | {
            "out": str(out), "root": str(root), "foreign": str(root / "foreign")}
        return [a.format(**names) for a in argv]


def _write_dataset(root: Path, layout: dict, size=(24, 16)) -> Path:
    from PIL import Image
    import numpy as np
    seed = 0
    for label, sites in layout.items():
        for site, count in sites.items():
            for n in range(count):
                seed += 1
                rng = np.random.default_rng(seed)
                pixels = rng.integers(30, 226, size=(size[1], size[0], 3)).astype("uint8")
                path = root / label / f"{site}_{n:03d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    return root


def _python(argv: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _only_folder(parent: Path) -> Path:
    (run,) = [p for p in parent.iterdir() if p.is_dir()]
    return run


def _spoiled_runs(ws: dict[str, Path], own: str, base: Path, foreign_weights: Path) -> None:
    """Copies of run folder `base`: config.json not JSON, config.json missing, no weights,
    and every weights file replaced by `foreign_weights` (another network's)."""
    inputs = base.parent
    for name in ("badjson", "noconfig", "noweights", "otherarch"):
        ws[f"{own}_{name}"] = shutil.copytree(base, inputs / f"{own}_{name}")
    (ws[f"{own}_badjson"] / "config.json").write_text("{not json")
    (ws[f"{own}_noconfig"] / "config.json").unlink()
    for weights in [*ws[f"{own}_noweights"].rglob("*.weights.h5"),
                    *ws[f"{own}_noweights"].rglob("*.keras")]:
        weights.unlink()
    for weights in ws[f"{own}_otherarch"].rglob("*.weights.h5"):
        shutil.copyfile(foreign_weights, weights)


def build_workspace(root: Path, model: Path | None = None, classifier: Path | None = None,
                    full: bool = True) -> Workspace:
    """Writes the tiny inputs below root/inputs.

    Args:
        root: an empty folder.
        model, classifier: finished tiny runs to copy (None: trained here, in a subprocess).
        full: also make the outputs other commands read (stage 3's balanced folder, an
            inpainted test set); without, those are stand-ins good for refusals only.
    """
    inputs = root / "inputs"
    saved = root / "workspace.json"
    if saved.is_file():      # built by an earlier run with --keep
        paths = {k: Path(v) for k, v in json.loads(saved.read_text()).items()}
        return Workspace(paths, inputs)
    ws: dict[str, Path] = {}
    ws["train"] = _write_dataset(inputs / "train", LAYOUT)
    ws["test"] = _write_dataset(inputs / "test", {lab: {"T": 2} for lab in "abcd"})
    for variant in ("train_empty_label", "train_stray", "train_corrupt", "train_not_image"):
        ws[variant] = shutil.copytree(ws["train"], inputs / variant)
    (ws["train_empty_label"] / "e").mkdir()
    shutil.copy(ws["train"] / "a" / "S1_000.jpg", ws["train_stray"] / "stray.jpg")
    (ws["train_corrupt"] / "a" / "S1_bad.jpg").write_bytes(b"\xff\xd8 not a picture")
    (ws["train_not_image"] / "a" / "notes.txt").write_text("field notes\n")
    ws["afile"] = inputs / "afile"
    ws["afile"].write_text("a file, not a folder\n")
    ws["empty"] = inputs / "empty"
    ws["empty"].mkdir()
    ws["notjson"] = inputs / "notjson.json"
    ws["notjson"].write_text('{"seed": 1,,}')
    ws["binary"] = inputs / "binary.json"
    ws["binary"].write_bytes(bytes(range(256)))
    for key in ("learning_rate", "theta", "eta"):
        ws[f"nan_{key}"] = inputs / f"nan_{key}.json"
        ws[f"nan_{key}"].write_text(json.dumps({key: float("nan")}))
    ws["nan_pipeline"] = inputs / "nan_pipeline.json"
    ws["nan_pipeline"].write_text(json.dumps({"augmentation": {"guidance_scale": float("nan")}}))
    if model is None:
        done = _python(["train_all.py", "--in_dir", str(ws["train"]), "--out_dir",
                        str(root / "made" / "models"), "--conditional", *TINY_DIFFUSION])
        assert done.returncode == 0, done.stderr[-3000:]
        model = _only_folder(root / "made" / "models")
    if classifier is None:
        done = _python(["-m", "classifier.train", "--train_dir", str(ws["train"]), "--out_dir",
                        str(root / "made" / "runs"), *TINY_CLASSIFIER])
        assert done.returncode == 0, done.stderr[-3000:]
        classifier = _only_folder(root / "made" / "runs")
    ws["model"] = shutil.copytree(model, inputs / "model")
    ws["classifier"] = shutil.copytree(classifier, inputs / "classifier")
    ws["classifier_copy"] = shutil.copytree(classifier, root / "classifier_copy")
    _spoiled_runs(ws, "model", ws["model"], ws["classifier"] / "best.weights.h5")
    _spoiled_runs(ws, "classifier", ws["classifier"], ws["model"] / "best.weights.h5")
    if full:
        done = _python(["diffusion_augmentation.py", "--in_dir", str(ws["train"]), "--out_dir",
                        str(inputs / "balanced"), "--categories", "a,b", "c,d",
                        "--weight_paths", str(ws["model"]), "--generate_diffusion_steps", "2",
                        "--batch_size", "8"])
        assert done.returncode == 0, done.stderr[-3000:]
        done = _python(["-m", "inpainting", "generate", "--test_dir", str(ws["test"]),
                        "--out_dir", str(inputs / "ood"), "--backend", "ddim", "--model_dir",
                        str(ws["model"]), "--mask_mode", "box", "--num_steps", "2",
                        "--jump_length", "1", "--jump_n_sample", "1"])
        assert done.returncode == 0, done.stderr[-3000:]
        done = _python(["-m", "robustness", "synthesize", "--model", str(ws["classifier"]),
                        "--images", str(ws["train"]), "--out_dir", str(inputs / "synth"),
                        "--count", "2", "--ops", "brightness_up", "--step", "0.5"])
        assert done.returncode == 0, done.stderr[-3000:]
        ws["balanced"], ws["ood"], ws["synth"] = (inputs / "balanced", inputs / "ood",
                                                  inputs / "synth")
    else:       # a classic fill stands in for stage 3's folder (a manifest, added images)
        done = _python(["-m", "classic_fill", "--in_dir", str(ws["train"]), "--out_dir",
                        str(inputs / "balanced"), "--categories", "a,b", "c,d", "--workers",
                        "1"])
        assert done.returncode == 0, done.stderr[-3000:]
        ws["balanced"] = inputs / "balanced"
        ws["ood"] = inputs / "ood"      # as inpainting generate lays it out
        shutil.copytree(ws["test"], ws["ood"] / "inpaint_box")
        ws["synth"] = ws["empty"]
    saved.write_text(json.dumps({k: str(v) for k, v in ws.items()}))
    return Workspace(ws, inputs)


# ---------------------------------------------------------------------------------------
# Running a case and judging it
# ---------------------------------------------------------------------------------------
def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below root (and every folder, as 'dir'), by relative path."""
    return {p.relative_to(root).as_posix(): ("dir" if p.is_dir() else
                                             hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*"))}


@dataclasses.dataclass
class Outcome:
    case: Case
    code: int | None
    output: str
    seconds: float
    inputs_changed: list[str]
    expect_says: str
    dry_run_wrote: bool = False
    foreign_kept: bool = True

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.output or \
            self.code not in (0, 1, 2)

    @property
    def nan_ok(self) -> bool:
        return self.case.nan and self.code == 0

    @property
    def silent_drop(self) -> bool:
        return bool(self.case.drop) and self.code == 0 and not _names(self.output,
                                                                      self.case.drop)

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.output.splitlines() if "error:" in ln]

    @property
    def as_expected(self) -> bool:
        if self.case.expect == "kept":
            return self.foreign_kept and (self.code == 0 or self.code == 2 and
                                          len(self.error_lines) == 1)
        want = {"ok": 0, "failed": 1, "refused": 2}[self.case.expect]
        if self.code != want:
            return False
        if self.case.expect == "ok":
            return self.expect_says in self.output
        lines = self.error_lines
        return len(lines) == 1 and self.expect_says in lines[0]

    def problems(self) -> list[str]:
        """What is wrong with this outcome (empty: nothing)."""
        found = [name for name, bad in (("traceback", self.traceback),
                                        ("wrote into inputs", bool(self.inputs_changed)),
                                        ("NaN run reported ok", self.nan_ok),
                                        ("silent drop", self.silent_drop)) if bad]
        if self.dry_run_wrote:
            found.append("a dry run wrote its output")
        if not self.as_expected:
            found.append(f"expected {self.case.expect} saying {self.expect_says!r}")
        return found


def _names(output: str, item: str) -> bool:
    """Whether the output names a left-out item (as a path component, not inside a word)."""
    import re
    return re.search(rf"(^|[\s/'\"(]){re.escape(item)}($|[\s/:'\",)])", output,
                     re.M) is not None


def _in_process(argv: list[str]) -> tuple[int | None, str]:
    """Runs a command's main() in this process (pytest's way): (exit status, output). An
    exception that escapes main() is a traceback, as it would be in a user's terminal."""
    import importlib
    import importlib.util
    import traceback
    if argv[0] == "-m":
        module, args = argv[1], argv[2:]
        if importlib.util.find_spec(module).submodule_search_locations is not None:
            module += ".__main__"
    else:
        module, args = argv[0].removesuffix(".py"), argv[1:]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            code = importlib.import_module(module).main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception:  # noqa: BLE001 - a traceback is what the catalogue counts
            traceback.print_exc(file=buffer)
            code = None
    return code, buffer.getvalue()


def run_case(case: Case, ws: Workspace, root: Path, in_process: bool = False) -> Outcome:
    """Runs one case with a fresh output path below `root` and judges what it did."""
    shutil.rmtree(root, ignore_errors=True)      # a case run again starts afresh
    root.mkdir(parents=True)
    out = root / "out"
    foreign = root / "foreign"        # somebody's folder, named as an output
    foreign.mkdir(exist_ok=True)
    (foreign / "thesis.txt").write_text("somebody's work\n")
    argv = ws.fill(case.argv, out, root)
    says = ws.fill([case.says], out, root)[0]
    before = tree_hashes(ws.inputs)
    start = time.perf_counter()
    if in_process:
        code, output = _in_process(argv)
    else:
        try:
            done = _python(argv)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as err:
            code, output = None, f"timed out after {err.timeout} s"
    seconds = time.perf_counter() - start
    after = tree_hashes(ws.inputs)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    (root / "output.txt").write_text(f"{argv!r}\nexit {code}\ninputs changed: {changed!r}\n"
                                     f"seconds {seconds:.1f}\n{output}")
    return _judge(case, ws, root, argv, code, output, seconds, changed)


def _judge(case: Case, ws: Workspace, root: Path, argv: list[str], code: int | None,
           output: str, seconds: float, changed: list[str]) -> Outcome:
    """The outcome of a finished case, from what it printed and left in its folder."""
    says = ws.fill([case.says], root / "out", root)[0]
    thesis = root / "foreign" / "thesis.txt"
    kept = thesis.is_file() and thesis.read_text() == "somebody's work\n"
    return Outcome(case, code, output, seconds, changed, says,
                   "--dry-run" in argv and (root / "out").exists(), kept)


def judge_folder(root: Path, ws: Workspace, cases: list[Case]) -> dict[str, Outcome]:
    """Judges again, with today's expectations, the cases an earlier run left in
    root/cases (each folder's output.txt; a case run twice counts with its latest run).

    Returns:
        case id -> outcome, for the `cases` that have a folder.
    """
    import ast
    found: dict[str, tuple[float, Outcome]] = {}
    for record in sorted((root / "cases").glob("*/output.txt")):
        folder = record.parent
        lines = record.read_text().split("\n")
        argv = ast.literal_eval(lines[0])
        code = None if lines[1] == "exit None" else int(lines[1].split()[1])
        changed = ast.literal_eval(lines[2].split(": ", 1)[1])
        seconds, rest = (float(lines[3].split()[1]), lines[4:]) \
            if lines[3].startswith("seconds ") else (0.0, lines[3:])
        for case in cases:
            if ws.fill(case.argv, folder / "out", folder) == argv:
                when = record.stat().st_mtime
                if case.id not in found or found[case.id][0] < when:
                    found[case.id] = (when, _judge(case, ws, folder, argv, code,
                                                   "\n".join(rest), seconds, changed))
    return {k: v for k, (_, v) in found.items()}


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------
COLUMNS = ("cases", "tracebacks", "writes into inputs", "NaN runs reported ok",
           "silent drops", "unexpected answer", "pending")


def table(outcomes: list[Outcome]) -> str:
    """A Markdown table: per command, the cases and the counts that must be zero."""
    rows: dict[str, list[int]] = {}
    for o in outcomes:
        row = rows.setdefault(o.case.command, [0] * len(COLUMNS))
        counts = (1, o.traceback, bool(o.inputs_changed), o.nan_ok, o.silent_drop,
                  not o.as_expected and not o.case.pending, bool(o.case.pending))
        for i, n in enumerate(counts):
            row[i] += int(n)
    total = [sum(r[i] for r in rows.values()) for i in range(len(COLUMNS))]
    lines = ["| command | " + " | ".join(COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(map(str, r)) + " |" for name, r in rows.items()]
    lines.append("| **all** | " + " | ".join(f"**{n}**" for n in total) + " |")
    return "\n".join(lines)


def _print_problems(o: Outcome) -> None:
    if o.problems():
        last = (o.error_lines or o.output.strip().splitlines() or [""])[-1]
        print(f"- {o.case.id}: {', '.join(o.problems())} (exit {o.code}, {o.seconds:.0f} s; "
              f"{last.strip()[:300]})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault_catalogue",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="run every case, print the table")
    parser.add_argument("--only", default="", help="run the cases whose id holds one of "
                        "these texts (comma-separated); earlier cases' folders are kept")
    parser.add_argument("--fast", action="store_true", help="only the pytest suite's cases")
    parser.add_argument("--workers", type=int, default=2, help="cases run at once")
    parser.add_argument("--keep", default="", help="build the workspace here and keep it "
                        "(a folder kept by an earlier run is used again)")
    parser.add_argument("--missing", action="store_true",
                        help="with --keep: run only the cases the folder holds no run of")
    parser.add_argument("--judge", action="store_true",
                        help="with --keep: run nothing, judge the cases the folder holds")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if any(o in c.id for o in args.only.split(","))
             and (c.fast or not args.fast)]
    if args.judge:
        root = Path(args.keep)
        judged = judge_folder(root, build_workspace(root), cases)
        outcomes = [judged[c.id] for c in cases if c.id in judged]
        for o in outcomes:
            _print_problems(o)
        for c in cases:
            if c.id not in judged:
                print(f"- {c.id}: not run")
        print(table(outcomes))
        return 1 if any(o.problems() and not o.case.pending for o in outcomes) else 0
    if not args.table:
        for c in cases:
            print(f"{c.id}  [{c.expect}{' fast' if c.fast else ''}]")
        print(f"{len(cases)} case(s)")
        return 0
    import tempfile
    from concurrent.futures import ThreadPoolExecutor, as_completed
    start = time.perf_counter()
    root = Path(args.keep or tempfile.mkdtemp(prefix="fault_catalogue_"))
    ws = build_workspace(root)
    if args.missing:
        done = judge_folder(root, ws, cases)
        cases = [c for c in cases if c.id not in done]
    print(f"workspace built in {time.perf_counter() - start:.0f} s ({root})", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        if not args.only and not args.missing:
            shutil.rmtree(root / "cases", ignore_errors=True)
        # the slow cases first, so that the quick ones fill the gaps at the end
        order = sorted(range(len(cases)), key=lambda i: cases[i].fast)
        folder = lambda c: root / "cases" / hashlib.sha1(c.id.encode()).hexdigest()[:12]  # noqa: E731
        futures = [pool.submit(run_case, cases[i], ws, folder(cases[i])) for i in order]
        outcomes = []
        for future in as_completed(futures):
            outcomes.append(future.result())
            _print_problems(outcomes[-1])
    outcomes.sort(key=lambda o: cases.index(o.case))
    print(table(outcomes))
    print(f"{len(outcomes)} cases in {time.perf_counter() - start:.0f} s "
          f"(workspace {root})")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    bad = [o for o in outcomes if o.problems() and not o.case.pending]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
