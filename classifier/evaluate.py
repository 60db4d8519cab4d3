"""CLI and function: evaluate a saved classifier on a test folder.

    python3 -m classifier.evaluate --model classifier_runs/small_cnn_..._ab12 --test_dir new_site/
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from classifier.report import plot_confusion, write_json
from classifier.runs import load_run
from classifier.training import evaluate_folder
from cli.errors import EXIT_OK, one_line_errors
from cli.flags import format_config, parse_config
from config import EvaluateConfig
from dataset.out_dir import check_location
from dataset.scan import DatasetError


def _new_folder(model_path: Path, test_dir: str) -> Path:
    base = (model_path if model_path.is_dir() else model_path.parent) / "evaluations"
    name = Path(test_dir).resolve().name or "test"
    out, k = base / name, 1
    while out.exists():
        k += 1
        out = base / f"{name}_{k}"
    return out


def check_evaluation_folder(out_dir: str | Path, model_path: str | Path,
                            test_dir: str | Path) -> None:
    """Refuses an out_dir inside the test folder (the next evaluation would meet its folder
    as an unknown class) or inside the run folder, except its evaluations/ (the default).

    Raises:
        DatasetError: one line naming the folder it lies in.

    Example:
        >>> check_evaluation_folder("data/test/e", "runs/r1", "data/test")
        Traceback (most recent call last):
        DatasetError: --out_dir data/test/e is inside --test_dir data/test: ...
    """
    if not Path(model_path).exists():   # else its parent counts as the run folder
        raise DatasetError(f"--model {model_path} does not exist")
    check_location(out_dir, test_dir, "--test_dir")
    run = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    out = Path(out_dir).resolve()
    evaluations = (run / "evaluations").resolve()
    if out != evaluations and evaluations not in out.parents:
        check_location(out_dir, run, "--model")


def evaluate_model(model_path: str | Path, test_dir: str | Path, out_dir: str | Path = "",
                   batch_size: int = 64, workers: int | None = None) -> tuple[dict, Path]:
    """Evaluates a saved run on `test_dir`; writes metrics.json and confusion.png.

    Returns:
        (metrics, output folder).

    Raises:
        DatasetError: the model or folder is unusable, or the folder has a class the model
            does not know.
    """
    if not Path(test_dir).is_dir():
        raise DatasetError(f"--test_dir {test_dir} is not a folder")
    if out_dir:
        check_evaluation_folder(out_dir, model_path, test_dir)
    model, cfg, classes = load_run(model_path)
    cfg = dataclasses.replace(cfg, workers=workers)
    left_out: list[str] = []
    metrics = evaluate_folder(model, test_dir, classes, cfg, batch_size=batch_size,
                              skipped=left_out)
    if left_out:     # never silently: the metrics are of fewer images than the folder holds
        print(f"left out {len(left_out)} item(s) of {test_dir} (metrics.json lists them):")
        for line in left_out[:20]:
            print(f"  {line}")
    metrics["left_out"] = left_out
    out = Path(out_dir) if out_dir else _new_folder(Path(model_path), str(test_dir))
    if out.exists() and (out / "metrics.json").exists():
        raise DatasetError(f"--out_dir {out} already holds a metrics.json: choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    metrics["model"] = str(model_path)
    write_json(out / "metrics.json", metrics)
    plot_confusion(metrics["confusion_matrix"], classes, out / "confusion.png",
                   f"{Path(test_dir).name}")
    return metrics, out


@one_line_errors
def main(argv=None) -> int:
    cfg, ns = parse_config(EvaluateConfig, argv, prog="python3 -m classifier.evaluate")
    if ns._dry_run:
        print(format_config(cfg))
        print(f"evaluate {cfg.model} on {cfg.test_dir}; write metrics.json + confusion.png to "
              f"{cfg.out_dir or _new_folder(Path(cfg.model), cfg.test_dir)}")
        return EXIT_OK
    m, out = evaluate_model(cfg.model, cfg.test_dir, cfg.out_dir, cfg.batch_size, cfg.workers)
    print(f"accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}  macro-F1 "
          f"{m['macro_f1']:.4f}  weighted-F1 {m['weighted_f1']:.4f}  (n={m['n']})")
    print(f"written to {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
