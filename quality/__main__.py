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


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from cli.flags import ConfigError, format_config, parse_config
    from dataset.scan import DatasetError
    from quality.config import AuditConfig, RecognisabilityConfig

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() if argv else USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    classes = {"audit": AuditConfig, "recognisability": RecognisabilityConfig}
    if command not in classes:
        print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    cfg, ns = parse_config(classes[command], rest, prog=f"python3 -m quality {command}")
    if ns._dry_run:
        print(format_config(cfg))
        print(_plan(command, cfg))
        print("dry run: nothing written")
        return 0
    from quality import run
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
            from cli.tables import format_table
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
    except (DatasetError, ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
