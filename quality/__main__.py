"""python3 -m quality audit|recognisability [flags]

    python3 -m quality audit --balanced_dir run/balanced_data --test_dir data/test \
        --train_dir data/train --out_dir quality_audit [--classifier_run RUN]
    python3 -m quality recognisability --balanced_dir run/balanced_data \
        --train_dir data/train --test_dir data/test --out_dir quality_recog \
        [--classifier_run RUN] [--backbone small_cnn --number_epochs 10]

`python3 -m quality audit --help` lists every flag; the defaults live in quality/config.py.
"""
from __future__ import annotations

import sys

from cli.errors import one_line_errors
from cli.subcommands import dispatch, parse_or_plan
from cli.tables import format_table
from quality import run
from quality.config import AuditConfig, RecognisabilityConfig

USAGE = ("usage: python3 -m quality {audit,recognisability} [flags]\n"
         "       python3 -m quality audit --help")


def _plan(command: str, cfg) -> str:
    spaces = [s for s in (cfg.kid_features != "none" and f"kid ({cfg.kid_features})",
                          cfg.classifier_run and f"classifier {cfg.classifier_run}") if s] \
        if command == "audit" else []
    train = cfg.train_dir or "the manifest's real rows"
    if command == "audit":
        return (f"audit the synthetic images of {cfg.balanced_dir}/manifest.csv against "
                f"{train} in {', '.join(spaces)}; threshold: {cfg.percentile:g}th percentile "
                f"of test-to-train distances ({cfg.test_dir}); write to {cfg.out_dir}")
    gt = (f"GAN-test with {cfg.classifier_run}" if cfg.classifier_run
          else f"train a real-only classifier on {train}, then GAN-test")
    gtr = ("; GAN-train: a classifier on the synthetic images only" +
           (" and the real baseline" if cfg.real_baseline else "")) if cfg.gan_train else ""
    return f"{gt}{gtr}; tested on {cfg.test_dir}; write to {cfg.out_dir}"


def _run(command: str, config_class, argv: list[str]) -> int:
    cfg = parse_or_plan(config_class, argv, f"python3 -m quality {command}",
                        lambda c: _plan(command, c))
    if cfg is None:
        return 0
    try:
        if command == "audit":
            res = run.run_audit(cfg)
            print(f"{res['n_flagged']} of {res['n_synthetic']} synthetic images flagged as "
                  f"closer to a training image than real test images come "
                  f"(memorisation share {res['share']:.1%}; spaces: "
                  f"{', '.join(res['spaces'])})")
            print(f"written to {res['out_dir']} (audit.csv, audit_summary.txt, "
                  f"closest_pairs.png)")
        else:
            res = run.run_recognisability(cfg)
            for name in ("gan_test", "gan_train"):
                df = res.get(name)
                if df is not None:
                    rows = [{k: (f"{v:.3f}" if isinstance(v, float) else v)
                             for k, v in r.items()} for r in df.to_dict("records")]
                    print(f"{name}:\n{format_table(rows, list(df.columns))}")
            if res["gan_train_note"]:
                print(f"GAN-train not run: {res['gan_train_note']}")
            print(f"written to {res['out_dir']} (gan_test.csv, gan_train.csv, "
                  f"recognisability.json)")
    except ValueError as err:  # a bad combination the config classes cannot see
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    return dispatch(argv, {"audit": lambda a: _run("audit", AuditConfig, a),
                           "recognisability": lambda a: _run("recognisability",
                                                             RecognisabilityConfig, a)},
                    USAGE, help_text=__doc__.strip())

if __name__ == "__main__":
    sys.exit(main())
