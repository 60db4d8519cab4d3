"""python3 -m robustness search|report|synthesize|evaluate|ops [flags]

    python3 -m robustness search --model classifier_runs/small_cnn_... --images photos
    python3 -m robustness report --model m.keras --images photos --reference_model ref.keras
    python3 -m robustness synthesize --model m.keras --images photos --count 200 --realism 0.5
    python3 -m robustness evaluate --model new.keras --before_model m.keras \
        --images robustness_synthetic
    python3 -m robustness ops                      # the corruptions and their units

Defaults live in config.py (Robustness*Config); `python3 -m robustness search --help` lists
every flag.
"""
from __future__ import annotations

import sys

import config as C
from cli.errors import one_line_errors
from cli.subcommands import dispatch, parse_or_plan
from robustness import runs
from robustness.ops import resolve_ops
from robustness.runs import describe_ops
from robustness.search import grid

USAGE = ("usage: python3 -m robustness {search,report,synthesize,evaluate,ops} [flags]\n"
         "       python3 -m robustness search --help")


def _run(command: str, argv: list[str]) -> int:
    classes = {"search": C.RobustnessSearchConfig, "report": C.RobustnessReportConfig,
               "synthesize": C.RobustnessSynthesizeConfig,
               "evaluate": C.RobustnessEvaluateConfig}
    cfg = parse_or_plan(classes[command], argv, f"python3 -m robustness {command}",
                        lambda c: _plan(command, c))
    if cfg is None:
        return 0
    try:
        if command == "search":
            result, _, _ = runs.run_search_cmd(cfg)
            fragile = sorted(result.curves.values(),
                             key=lambda c: (c.limit if c.limit is not None else 2, c.name))[:5]
            print(f"{len(result.curves)} ops: {result.probes} probes made, {result.reused} "
                  f"reused from the cache")
            print("most fragile: " + ", ".join(f"{c.name} (limit {c.limit:.2f})"
                                               for c in fragile))
            print(f"written to {cfg.out_dir}/search.json and curves.csv")
        elif command == "report":
            path = runs.run_report_cmd(cfg)
            print(f"written to {path}")
        elif command == "synthesize":
            res = runs.run_synthesize_cmd(cfg)
            if res["made"] < res["requested"]:
                print(f"could make only {res['made']} of {res['requested']} images within "
                      f"{res['attempts']} attempts ({res['rejected']} rejected by the error "
                      f"window [{cfg.min_error:g}, {cfg.max_error:g}]); widen the window or "
                      f"raise --max_attempts")
            else:
                print(f"made {res['made']} images ({res['attempts']} attempts, "
                      f"{res['rejected']} rejected)")
            print(f"written to {res['out_dir']} (manifest.csv, preview.html)")
        else:
            metrics, out = runs.run_evaluate_cmd(cfg)
            for name, m in metrics["models"].items():
                o = m["overall"]
                acc = "n/a" if o["accuracy"] is None else f"{o['accuracy']:.4f}"
                print(f"{name}: accuracy {acc}  error vs clean {o['error_vs_clean']:.4f}  "
                      f"label changed {o['label_changed']:.4f}  (n={o['n']})")
            print(f"written to {out}/metrics.json and evaluation.html")
    except ValueError as err:  # a bad combination the config classes cannot see
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _ops(argv: list[str]) -> int:
    print(describe_ops())
    return 0


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    commands = {c: (lambda a, c=c: _run(c, a))
                for c in ("search", "report", "synthesize", "evaluate")}
    return dispatch(argv, {**commands, "ops": _ops}, USAGE, help_text=__doc__.strip())

def _plan(command: str, cfg) -> str:
    if command == "evaluate":
        return (f"evaluate {cfg.model}" + (f" and {cfg.before_model}" if cfg.before_model
                                           else "") + f" on {cfg.images}; write to {cfg.out_dir}")
    try:
        ops = resolve_ops(cfg.ops, cfg.exclude_ops)
    except ValueError as err:
        return f"error: {err}"
    home = cfg.search_dir if command == "synthesize" else cfg.out_dir
    text = (f"{command}: {len(ops)} ops x ({len(grid(cfg.step))} steps + 5 severities) per "
            f"image of {cfg.images}; probe cache in {cfg.cache_dir or home + '/cache'}")
    if command == "synthesize":
        text += (f"\nthen {cfg.count} synthetic images at realism {cfg.realism:g} into "
                 f"{cfg.out_dir}")
    return text


if __name__ == "__main__":
    sys.exit(main())
