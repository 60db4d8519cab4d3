"""Command line: write the prompt file that `--generator sd_img2img` reads.

    python3 -m pretrained prompts --labels bicycle car motorcycle --per_class 8 \
        --out prompts.csv [--template "a photo of a {label}"] [--lm_preset DIR]

Without --lm_preset the prompts vary background, viewpoint, weather and time of day from
fixed lists (`pretrained.prompts.VARIATIONS`); with it a KerasHub causal language model
writes the variations. Edit the CSV as you like before generating. The file is never
overwritten. Bad settings are one `error:` line and exit 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from cli.errors import one_line_errors
from cli.flags import ConfigError
from cli.subcommands import dispatch, parse_or_plan
from config import PromptsConfig
from dataset.atomic import atomic_write_text
from pretrained.prompts import format_template, lm_prompts, prompt_csv_text, varied_prompts

USAGE = """usage: python3 -m pretrained prompts [flags]   (prompts --help lists them)
  prompts   write a class;prompt CSV for Stable Diffusion (--generator sd_img2img)"""


def load_causal_lm(preset: str, seed: int):
    """A KerasHub causal LM that samples (top-k, seeded); one clear line when it cannot load."""
    # why: keras_hub is optional and slow to import (TensorFlow, tensorflow-text)
    import keras_hub
    try:
        lm = keras_hub.models.CausalLM.from_preset(preset)
    except Exception as err:  # offline, gated, no such folder, not a causal LM
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise ConfigError(f"--lm_preset {preset} could not be loaded ({type(err).__name__}: "
                          f"{first}); leave it out to vary the prompts from fixed lists") from None
    lm.compile(sampler=keras_hub.samplers.TopKSampler(k=20, seed=seed))
    return lm


def prompts_main(argv: list[str]) -> int:
    cfg = parse_or_plan(PromptsConfig, argv, "python3 -m pretrained prompts",
                        lambda c: f"would write {c.per_class} prompt(s) for each of "
                                  f"{len(c.labels)} class(es) to {c.out}")
    if cfg is None:
        return 0
    out = Path(cfg.out)
    if out.exists():
        raise ConfigError(f"--out {out} already exists: choose another name (nothing changed)")
    blocking = next((d for d in out.parents if d.exists() and not d.is_dir()), None)
    if blocking is not None:   # else mkdir answers a bare "File exists"
        raise ConfigError(f"--out {out}: {blocking} is a file, not a folder")
    format_template(cfg.template, "x")  # a bad template fails before any model loads
    if cfg.lm_preset:
        lm = load_causal_lm(cfg.lm_preset, cfg.seed)
        table = {lab: lm_prompts(lm, lab, cfg.per_class, cfg.template, cfg.max_length)
                 for lab in cfg.labels}
    else:
        table = {lab: varied_prompts(lab, cfg.per_class, cfg.template, cfg.seed)
                 for lab in cfg.labels}
    atomic_write_text(out, prompt_csv_text(table))
    print(f"wrote {sum(map(len, table.values()))} prompt(s) for {len(table)} class(es) to {out}")
    return 0


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    return dispatch(argv, {"prompts": prompts_main}, USAGE, default="prompts")


if __name__ == "__main__":
    sys.exit(main())
