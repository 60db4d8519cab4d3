"""report.html: what the pipeline did and whether the synthetic images helped, in one file.

Sections: the stages (status, time), counts per label and site before and after each stage,
site balancing, diffusion training (curves, KID, samples), the stage-3 plan, real vs
generated images, the generated images' quality per label (memorisation share, GAN-test
beside real-test accuracy, KID, closest pairs; `pipeline.image_quality`), the classifier
comparison (every arm with CIs, paired differences, the recipe of each fill, per-label
recall per test set, the validation curves with the arms whose best epoch was the last
named), confusion matrices, and the settings used. Every picture is inlined, so the page works from a file:// URL with
no network. The PNGs and numbers behind it are kept in `report_assets/`, the GAN-test table
in `quality/`.

Example:
    >>> build_report(Layout("pipeline_run"), pcfg, state)
    PosixPath('pipeline_run/report.html')
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from classifier.arms import is_generative
from classifier.comparison import (VERDICT_METRIC, VERDICT_RULE, ci_text, convergence_summary,
                                   recall_by_label, tail_labels_of)
from classifier.report import plot_confusion
from classifier.shot_groups import GROUPS, shot_summary
from classifier.statistics import NO_VERDICT
from classifier.statistics import verdict as decide
from config import (PIPELINE_STAGES, RECIPE_FIELDS, AugmentationConfig, ClassifierConfig,
                    PipelineConfig)
from dataset.scan import natural_key
from pipeline import charts, evidence, image_quality
from pipeline.stages import EXTRA_FILLS, Layout, extra_fills
from reporting.html import (figure_data_uri, html_table, img_tag, png_data_uri, render_page,
                            write_page)

SECTIONS = [("stages", "Stages"), ("counts", "Counts"), ("balancing", "Site balancing"),
            ("diffusion", "Diffusion training"), ("plan", "Gap filling"),
            ("generated", "Real vs generated"), ("quality", "Image quality"),
            ("comparison", "Classifier comparison"),
            ("confusion", "Confusion matrices"), ("config", "Settings")]
_COMPARE_METRICS = ("balanced_accuracy", "macro_f1", "tail_recall")


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def _missing(what: str) -> str:
    return f'<p class="note">{html.escape(what)}</p>'


def _stage_config(layout: Layout, stage: str) -> dict:
    path = layout.stage_config(stage)
    return json.loads(path.read_text()) if path.is_file() else {}


def _stages_html(state: dict, pcfg: PipelineConfig) -> str:
    rows = []
    for stage in PIPELINE_STAGES[:-1]:
        if stage in EXTRA_FILLS and stage not in extra_fills(pcfg):
            continue
        rec = state.get(stage)
        rows.append({"stage": stage, "status": "done" if rec else
                     ("not run" if stage in pcfg.stages else "not selected"),
                     "seconds": rec.get("seconds") if rec else None,
                     "finished": rec.get("finished", "") if rec else ""})
    return html_table(rows, digits=1)


def _ci(lo, hi, signed: bool = False) -> str:
    if lo is None or hi is None or lo != lo or hi != hi:
        return ""
    return f" [{lo:+.3f}, {hi:+.3f}]" if signed else f" [{lo:.3f}, {hi:.3f}]"


def _verdict(summary: list[dict], paired: list[dict]) -> str:
    """One line per generative arm: helped / hurt / no clear difference against the
    strongest non-generative arm (the `baseline` of the paired rows), on test balanced
    accuracy, by the comparison's rule (`classifier.comparison.VERDICT_RULE`): read off the
    printed interval of the difference, at the level of the arm's Holm step. Rows without
    that interval (no bootstrap, or an older comparison without `ci_level`, whose 95% CI
    did not match Holm's step) get no verdict."""

    by_arm = {r["variant"]: r for r in summary}
    nan = float("nan")
    lines = []
    for p in paired:
        if p.get("metric") != VERDICT_METRIC or not is_generative(p["variant"]):
            continue
        arm, ref = p["variant"], p.get("baseline")
        if arm not in by_arm or ref not in by_arm:
            continue
        p_holm = p.get("p_holm")
        p_holm = None if p_holm is None or p_holm != p_holm else float(p_holm)
        level = p.get("ci_level", nan)
        level = nan if level is None else float(level)
        low, high = (p.get("ci_low", nan), p.get("ci_high", nan)) if level == level \
            else (nan, nan)
        word, cls = {"better": ("helped", "good"), "worse": ("hurt", "bad"),
                     NO_VERDICT: ("has no verdict (no bootstrap interval)", "neutral")}.get(
            decide(low, high), ("made no clear difference", "neutral"))
        a, b = by_arm[arm], by_arm[ref]
        m = f"{VERDICT_METRIC}_mean"
        p_text = (f", Holm-corrected bootstrap p = {p_holm:.3f}" if p_holm is not None
                  else "") + f" over {int(p['n'])} seeds"
        lines.append(
            f'<p class="{cls}"><b>{html.escape(arm)} {word}</b> against '
            f'{html.escape(ref)}, the strongest non-generative arm: test balanced accuracy '
            f'{a[m]:.3f}{_ci(a.get("balanced_accuracy_ci_low"), a.get("balanced_accuracy_ci_high"))}'
            f' vs {b[m]:.3f}{_ci(b.get("balanced_accuracy_ci_low"), b.get("balanced_accuracy_ci_high"))}'
            f' (difference {p["mean_diff"]:+.3f}{ci_text(low, high, level)}{p_text}).</p>')
    return "".join(lines)


def _counts_html(layout: Layout, pcfg: PipelineConfig, site_rule: dict) -> str:
    rows = evidence.count_rows(pcfg.in_dir, "original", site_rule.get("site_regex"),
                               site_rule.get("site_csv"))
    if (layout.diffusion_data / "manifest.csv").is_file():
        rows += evidence.manifest_count_rows(layout.diffusion_data, "balanced_sites")
    if (layout.balanced_data / "manifest.csv").is_file():
        rows += evidence.manifest_count_rows(layout.balanced_data, "gap_filled")
    fig = charts.counts_figure(rows, [("original", "original data"),
                                      ("balanced_sites", "after site balancing (stage 1)"),
                                      ("gap_filled", "after gap filling (stage 3)")])
    totals = {}
    for r in rows:
        t = totals.setdefault(r["label"], {"label": r["label"]})
        t[r["stage"]] = t.get(r["stage"], 0) + r["n"]
    names = {"original": "original", "balanced_sites": "after stage 1",
             "gap_filled": "after stage 3"}
    table = html_table([{names.get(k, k): v for k, v in t.items()} for t in
                        sorted(totals.values(), key=lambda t: natural_key(t["label"]))],
                       ["label", *names.values()])
    return (img_tag(figure_data_uri(fig)) +
            '<p class="note">Bars are stacked by site; hatched parts are synthetic images. '
            'Stage 1 feeds the diffusion models only; stage 3 starts again from the original '
            'data.</p>' + table)


def _diffusion_html(state: dict) -> str:
    run_dirs = state.get("diffusion", {}).get("run_dirs", [])
    if not run_dirs:
        return _missing("No diffusion model was trained in this run.")
    parts = []
    for run in map(Path, run_dirs):
        meta = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() \
            else {}
        name = ", ".join(meta.get("_class_names") or []) or meta.get("_label") or run.name
        parts.append(f"<h3>{html.escape(run.name)} (labels: {html.escape(str(name))})</h3>")
        history = run / "history.csv"
        if history.is_file():
            # why: pandas is slow to import and only the tables need it
            import pandas as pd
            df = pd.read_csv(history)
            last = df.iloc[-1].to_dict()
            kid = df["val_kid"].dropna() if "val_kid" in df else []
            parts.append(html_table([{
                "epochs": len(df), "val noise loss (last)": last.get("val_n_loss"),
                "val noise loss (best)": df["val_n_loss"].min() if "val_n_loss" in df else None,
                "val KID (last)": kid.iloc[-1] if len(kid) else None,
                "val KID (best)": kid.min() if len(kid) else None}], digits=4))
        for png, caption in (("curves.png", "training curves and KID"),
                             ("samples/final.png", "samples after training")):
            if (run / png).is_file():
                parts.append(img_tag(png_data_uri(run / png), caption, width=520))
        if (run / "logs").is_dir():
            parts.append(f"<p>Live curves and sample grids: <code>tensorboard --logdir "
                         f"{html.escape(str(run / 'logs'))}</code></p>")
    return "".join(parts)


def _generated_html(layout: Layout) -> str:
    parts = []
    for folder, what in ((layout.balanced_data, "generated"),
                         *((layout.fill_data[s], f.caption) for s, f in EXTRA_FILLS.items())):
        sheets = sorted((folder / "contact_sheets").glob("*.png"),
                        key=lambda p: natural_key(p.stem))
        parts += [img_tag(png_data_uri(p), f"label {p.stem}: real (top) vs {what} (below)")
                  for p in sheets]
    if not parts:
        return _missing("No synthetic images were generated in this run.")
    # The sheet names its own rows, so a sheet from an older stage 3 (two rows) reads right.
    return "".join(parts) + _missing(
        'A row named "moved aside" holds images the memorisation gate took out of the fill '
        "(not used for training). KID, memorisation and GAN-test per label: see Generated "
        "image quality below.")


def _kid(layout: Layout, pcfg: PipelineConfig, assets: Path) -> tuple[list[dict], str]:
    """(KID rows per label, a sentence on the features used or why there are none); the rows
    are also kept in report_assets/kid.json."""
    if not pcfg.test_dir or not (layout.balanced_data / "manifest.csv").is_file() \
            or not image_quality.generated_images(layout.balanced_data):
        return [], ""  # the quality section says what is missing
    rows, kind = evidence.synthetic_kid(layout.balanced_data, pcfg.test_dir)
    (assets / "kid.json").write_text(json.dumps({"features": kind, "rows": rows}, indent=2))
    if not rows:
        return [], "KID: no label has 2 or more generated and real test images."
    return rows, (f'KID against real test images, features: {kind}. "KID real train" is the '
                  'KID of real training images of the label against the same test images: '
                  'about what a perfect generator would get with this little data.'
                  + (' The random-network features (offline fallback) compare colour and '
                     'texture statistics; they are not comparable with published KID.'
                     if kind == "random" else ""))


def _arm_cell(r: dict, m: str) -> str:
    mean, std = r.get(f"{m}_mean"), r.get(f"{m}_std")
    if mean is None or mean != mean:
        return ""
    text = f"{mean:.3f}" + ("" if std is None or std != std else f" ± {std:.3f}")
    return text + _ci(r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high"))


def _recall_html(layout: Layout, sets: list[str], references: dict[str, str],
                 arms: list[str]) -> str:
    """Per test set, side by side: per label (tail labels marked), each arm's test recall
    averaged over seeds, and its difference to the set's reference arm."""
    preds = evidence.run_predictions(layout.results)
    tail = set(tail_labels_of(layout.results))
    blocks = []
    for test_set in [s for s in sets if s in preds]:
        ref = references.get(test_set)
        rows = []
        for r in recall_by_label(preds[test_set], arms):
            row = {"label": r["label"] + (" (tail)" if r["label"] in tail else ""),
                   "test images": r["test images"]}
            for arm in arms:
                v, column = r.get(arm), arm + (" (reference)" if arm == ref else "")
                if v is None or v != v:
                    row[column] = ""
                elif arm == ref or ref not in r or r[ref] != r[ref]:
                    row[column] = f"{v:.3f}"
                else:
                    row[column] = f"{v:.3f} ({v - r[ref]:+.3f})"
            rows.append(row)
        title = "in-distribution test set" if test_set == "test" else f"test set {test_set}"
        blocks.append(f'<div><h4>{html.escape(title)}</h4>{html_table(rows)}</div>')
    if not blocks:
        return _missing("No per-image test predictions (predictions_<set>.csv) in the runs.")
    return ('<div style="display:flex;flex-wrap:wrap;column-gap:28px">' + "".join(blocks)
            + '</div><p class="note">Test recall per label, mean over seeds; in brackets the '
            'difference to the reference arm (the strongest non-generative arm of that test '
            'set), so gains and losses per label show. "(tail)": the labels with the fewest '
            'real training images, whose mean recall is the tail recall.</p>')


def _convergence_html(layout: Layout, arms: list[str], assets: Path) -> str:
    """Validation curves per arm (the metric that picked the best epoch) and a plain line
    naming the arms whose best epoch was the last of the budget."""
    metric, curves = evidence.validation_curves(layout.results)
    if not curves:
        return _missing("No per-epoch validation history (history.csv) in the runs.")
    fig = charts.convergence_figure(curves, metric, arms)
    fig.savefig(assets / "convergence.png", dpi=90)
    chart = img_tag(figure_data_uri(fig), "validation curves per arm: thin = one seed, bold "
                    "= mean over seeds, dots = each seed's best epoch, dashed = epoch budget")
    chart += (f"<p>Every run's loss and validation metrics per epoch, for TensorBoard: "
              f"<code>tensorboard --logdir {html.escape(str(layout.results))}</code></p>")
    rows = sorted(convergence_summary(curves),
                  key=lambda r: arms.index(r["arm"]) if r["arm"] in arms else len(arms))
    budget = max((r["max_epochs"] or 0) for r in rows)
    table = html_table([{
        "arm": r["arm"], "runs": r["runs"],
        "best epoch (median, range)": f"{r['best_epoch_median']:g} "
                                      f"({r['best_epoch_min']}-{r['best_epoch_max']})",
        "epochs run (median)": f"{r['epochs_run_median']:g}",
        "stopped early": f"{r['stopped_early']} of {r['runs']}",
        "best epoch = last epoch": f"{r['best_is_last']} of {r['runs']}"} for r in rows])
    under = [r for r in rows if r["best_is_last"]]
    name = metric.replace("val_", "validation ").replace("_", " ")
    if under:
        listed = ", ".join(f"{html.escape(r['arm'])} ({r['best_is_last']} of {r['runs']} "
                           f"runs)" for r in under)
        line = (f'<p class="bad"><b>Under-trained:</b> the best epoch was the last one for '
                f'{listed}: their {name} was still rising when the budget '
                f'({budget} epochs) ended. Raise the budget (number_epochs or '
                f'steps_per_epoch) before trusting a comparison that involves them.</p>')
    else:
        stopped = sum(r["stopped_early"] for r in rows)
        line = (f'<p class="good">Converged: no run\'s best epoch was the last of the budget '
                f'({budget} epochs); {stopped} of {sum(r["runs"] for r in rows)} runs stopped '
                f'early when validation stopped improving.</p>')
    return line + chart + table


def _feature_quality_html(layout: Layout) -> str:
    """Per feature-fill arm and label: KID and memorised share of the generated features
    against the real ones (mean over seeds), from each run's feature_quality.csv; "" when
    no feature_fill arm ran."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    frames = [pd.read_csv(p).assign(arm=p.parent.parent.name)
              for p in sorted(layout.results.glob("*/seed*/feature_quality.csv"))]
    if not frames:
        return ""
    df = pd.concat(frames)
    df = df[df["n_fake"] > 0]       # the largest label needs no fill: nothing to judge
    table = (df.groupby(["arm", "label"], sort=False)
             .agg(seeds=("kid", "size"), generated=("n_fake", "mean"), kid=("kid", "mean"),
                  kid_real=("kid_real_baseline", "mean"),
                  memorised=("memorised_share", "mean")).reset_index())
    rows = [{"arm": r.arm, "label": r.label, "seeds": int(r.seeds),
             "generated per run": f"{r.generated:.0f}", "KID generated": f"{r.kid:.3f}",
             "KID real halves": f"{r.kid_real:.3f}", "memorised": f"{r.memorised:.1%}"}
            for r in table.itertuples()]
    return ("<h3>Generated features (feature_fill arms)</h3>" + html_table(rows)
            + '<p class="note">The feature fill generates penultimate features of the arm\'s '
              'own encoder, not images: KID of the generated against the real training '
              'features of the label (per dimension standardised; "real halves" is two halves '
              'of the real features against each other), and the share of generated vectors '
              'nearer to a real one than the real vectors\' own 5th-percentile neighbour '
              'distance (likely copies).</p>')


def _generators_of(manifest: str) -> str:
    """The generators named in a fill folder's manifest.csv (its synthetic rows), or the
    folder's name when the manifest cannot be read from here."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    path = Path(manifest) / "manifest.csv"
    try:
        names = pd.read_csv(path, usecols=["generator"])["generator"].dropna().astype(str)
    except (OSError, ValueError):
        return Path(manifest).name
    return ", ".join(sorted(set(names) - {"original"})) or "none"


def _recipes_html(layout: Layout, arms: list[str]) -> str:
    """Per generative arm: what it trained on and how (the synthetic-aware settings that
    differ from the classifier's defaults), and whether that recipe was chosen on validation
    runs (recipes.json) or fixed by the settings; "" without generative arms."""
    chosen = {}
    if (layout.results / "recipes.json").is_file():
        chosen = json.loads((layout.results / "recipes.json").read_text())
    defaults = ClassifierConfig(train_dir=".")
    rows = []
    for arm in (a for a in arms if is_generative(a)):
        configs = sorted((layout.results / arm).glob("seed*/config.json"))
        if not configs:
            continue
        cfg = json.loads(configs[0].read_text())
        source = ("generated features of its own encoder" if cfg.get("feature_fill")
                  else _generators_of(cfg["manifest"]) if cfg.get("manifest") else "-")
        changed = {f: cfg[f] for f in (*RECIPE_FIELDS, "logit_adjusted")
                   if f in cfg and cfg[f] != getattr(defaults, f)}
        rows.append({"arm": arm, "synthetic data": source,
                     "recipe": ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults",
                     "chosen": ("on validation runs (recipe seed, never a reported seed)"
                                if arm in chosen else "fixed by the settings")})
    if not rows:
        return ""
    return ("<h3>Recipe of each fill</h3>" + html_table(rows)
            + '<p class="note">How each generative arm used its synthetic data '
              '(docs/longtail.md); every run\'s config.json holds all its settings, and '
              'results/compare.md the validation score of every recipe tried.</p>')


def _shots_html(layout: Layout, arms: list[str]) -> str:
    """Many / medium / few-shot accuracy on the in-distribution test set, when the
    comparison wrote shots.csv (it does for long-tailed training data)."""
    path = layout.results / "shots.csv"
    if not path.is_file():
        return ""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    rows = [r for r in pd.read_csv(path).to_dict("records") if r["set"] == "test"]
    summary = shot_summary(rows, arms)
    cell = {(r["split"], r["variant"], r["group"]): r for r in summary}
    out = ""
    for split in dict.fromkeys(r["split"] for r in summary):
        table = []
        for arm in dict.fromkeys(r["variant"] for r in summary if r["split"] == split):
            row = {"arm": arm}
            for g in GROUPS:
                r = cell.get((split, arm, g))
                row[f"{g} ({r['labels'] if r else 0} labels)"] = (
                    "n/a" if r is None or r["mean"] != r["mean"] else
                    f"{r['mean']:.3f}" + ("" if r["std"] != r["std"] else f" ± {r['std']:.3f}"))
            table.append(row)
        out += f"<h4>{html.escape(split)} split</h4>" + html_table(table)
    return ("<h3>Many / medium / few-shot accuracy (test, mean ± std over seeds)</h3>" + out
            + '<p class="note">Labels grouped by their real training images: absolute split '
              'many &gt; 100, few &lt; 20; relative split: thirds of the labels by count '
              '(results/compare.md names the labels of each group).</p>')


def _comparison_html(layout: Layout, assets: Path) -> tuple[str, str, str]:
    """(comparison section, confusion section, verdict)."""
    if not (layout.results / "summary.csv").is_file():
        msg = _missing("The classifier comparison has not run.")
        return msg, msg, ""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    nan = float("nan")
    sets = [s for s in dict.fromkeys(pd.read_csv(layout.results / "summary.csv")["set"])
            if s != "val"]
    body, verdict = "", ""
    references, arms = {}, []
    for test_set in sets:
        summary, paired = evidence.comparison(layout.results, test_set)
        arms += [r["variant"] for r in summary if r["variant"] not in arms]
        references.update({test_set: r["variant"] for r in summary
                           if r.get("reference") in (True, "True")})
        rows = [{"arm": r["variant"] + (" (reference)" if r.get("reference") in (True, "True")
                                        else ""),
                 "kind": r.get("kind", ""), "seeds": r["n"],
                 **{m.replace("_", " "): _arm_cell(r, m) for m in _COMPARE_METRICS}}
                for r in summary]
        title = "in-distribution test set" if test_set == "test" else f"test set {test_set}"
        body += f"<h3>{html.escape(title)}</h3>" + html_table(rows)
        if test_set == sets[0]:
            body += img_tag(figure_data_uri(charts.comparison_figure(summary)))
            verdict = _verdict(summary, paired)
        if paired:
            body += html_table([{
                "arm": p["variant"], "vs": p.get("baseline", ""), "metric": p["metric"],
                "mean diff [interval] (level)": f"{p['mean_diff']:+.3f}"
                + ci_text(p.get("ci_low", nan), p.get("ci_high", nan), p.get("ci_level", nan)),
                "wins/ties/losses": f"{p['wins']}/{p['ties']}/{p['losses']}",
                "bootstrap p": p.get("p_value"), "Holm p": p.get("p_holm"),
                "verdict": p.get("verdict", ""),
                "seeds: p (test)": p.get("seed_p"), "seed test": p.get("seed_test", "")}
                for p in paired if p["metric"] in _COMPARE_METRICS])
    body += ('<p class="note">Mean ± std over seeds [95% bootstrap CI over seeds and test '
             'images]. Every arm trains the same classifier for the same steps on the same '
             'seeds; the paired rows compare each arm with the strongest non-generative arm '
             '(original, rebalanced, classic, logit_adjusted, crt or classic_fill, by mean '
             'balanced accuracy). '
             + html.escape(VERDICT_RULE) + ' The seed-level test is shown to read and decides '
             'nothing. Tail recall: mean recall of the labels with the fewest real training '
             'images (results/compare.md names them).</p>')
    body += _recipes_html(layout, arms)
    body += _shots_html(layout, arms)
    body += ("<h3>Per-label recall (mean over seeds)</h3>"
             + _recall_html(layout, sets, references, arms))
    body += ("<h3>Convergence: validation curves</h3>"
             + _convergence_html(layout, arms, assets))
    figures = []
    for arm, cm in evidence.summed_confusions(layout.results).items():
        png = plot_confusion(cm["matrix"], cm["class_names"], assets / f"confusion_{arm}.png",
                             title=f"{arm} (test, {cm['seeds']} seeds summed)")
        figures.append(img_tag(png_data_uri(png), arm, width=360))
    return body, "".join(figures) or _missing("No confusion matrices."), verdict


def build_report(layout: Layout, pcfg: PipelineConfig, state: dict) -> Path:
    """Writes `layout.report` (report.html) from whatever stages have run; returns its path."""
    assets = layout.assets
    assets.mkdir(parents=True, exist_ok=True)
    balance_cfg = _stage_config(layout, "balance")
    site_rule = {k: balance_cfg.get(k) for k in ("site_regex", "site_csv")}
    comparison, confusion, verdict = _comparison_html(layout, assets)
    chart = layout.diffusion_data / "balance_counts.png"
    categories = AugmentationConfig(in_dir=".", categories=list(pcfg.categories)).category_labels()
    plan = (html_table(evidence.gap_plan_rows(layout.balanced_data, categories))
            if (layout.balanced_data / "manifest.csv").is_file()
            else _missing("Stage 3 has not run."))
    summary_txt = layout.balanced_data / "summary.txt"
    if summary_txt.is_file():
        plan += f"<details><summary>summary.txt</summary><pre>{html.escape(summary_txt.read_text())}</pre></details>"
    settings = "".join(
        f"<details><summary>{html.escape(name)}</summary><pre>"
        f"{html.escape(layout.stage_config(name).read_text())}</pre></details>"
        for name in ("pipeline", *PIPELINE_STAGES) if layout.stage_config(name).is_file())
    body = "".join([
        _section("stages", "Stages", verdict + _stages_html(state, pcfg)),
        _section("counts", "Images per label and site", _counts_html(layout, pcfg, site_rule)),
        _section("balancing", "Site balancing (stage 1)",
                 img_tag(png_data_uri(chart), "images per site before and after")
                 if chart.is_file() else _missing("Stage 1 has not run.")),
        _section("diffusion", "Diffusion training (stage 2)", _diffusion_html(state)),
        _section("plan", "Gap filling plan (stage 3)", plan),
        _section("generated", "Real vs generated images", _generated_html(layout)),
        _section("quality", "Generated image quality",
                 image_quality.quality_html(layout, pcfg.test_dir, *_kid(layout, pcfg, assets))
                 + _feature_quality_html(layout)),
        _section("comparison", "Classifier comparison (stage 4)", comparison),
        _section("confusion", "Confusion matrices", confusion),
        _section("config", "Settings used", settings or _missing("No settings recorded.")),
    ])
    page = render_page("Diffusion augmentation report", body,
                       subtitle=f"data: {pcfg.in_dir} · test: {pcfg.test_dir or '-'} · "
                                f"run: {layout.out_dir}", sections=SECTIONS)
    return write_page(layout.report, page)
