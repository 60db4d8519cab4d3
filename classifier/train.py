"""CLI: train and evaluate one classifier.

    python3 -m classifier.train --train_dir data/train --test_dir data/test \
        --backbone small_cnn --number_epochs 20 --out_dir classifier_runs
"""
from __future__ import annotations

import sys

from classifier.training import plan_text, train_run
from cli.errors import EXIT_OK, one_line_errors
from cli.flags import format_config, parse_config
from config import ClassifierConfig


@one_line_errors
def main(argv=None) -> int:
    cfg, ns = parse_config(ClassifierConfig, argv, prog="python3 -m classifier.train")
    if ns._dry_run:
        print(format_config(cfg))
        print(plan_text(cfg))
        return EXIT_OK
    result = train_run(cfg)
    m = result.metrics
    print(f"best epoch {m['best_epoch']} of {m['epochs_run']} ({cfg.evaluation_type} = "
          f"{m['best_value']:.4f})")
    for name, s in [("val", m["val"]), *m["tests"].items()]:
        print(f"{name:>10}: accuracy {s['accuracy']:.4f}  balanced {s['balanced_accuracy']:.4f}"
              f"  macro-F1 {s['macro_f1']:.4f}  (n={s['n']})")
    print(f"run folder: {result.run_dir}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
