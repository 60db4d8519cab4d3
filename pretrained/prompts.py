"""Prompts: loaded from a JSON list or a `class;prompt` CSV, handed out in a fixed cycle.

Formats:
    JSON   ["a wooden log", "a red kayak"]  or  {"prompts": [...]}  (the original pipeline's file)
           or {"prompts": {"<class>": [...], "*": [...]}}
    CSV    one `class;prompt` per line (`*` = every class); blank lines and `#` comments
           are skipped, as is a first line `class;prompt`.

Image j of a class (in file order, among the images that class transforms) gets prompt
j mod n of that class's list (its own lines first, then the `*` lines), so the same folder
and seed always give the same prompt to the same image.

Writing one (`python3 -m pretrained prompts`): `varied_prompts` turns a template such as
"a photo of a {label}" into N prompts per class that vary the background, viewpoint, weather
and time of day, as DIAGen varies its prompts; `lm_prompts` asks a KerasHub causal language
model for the variations instead. The file is what the generators read, so users can edit it.

Example:
    >>> table = parse_prompt_csv("1;a wooden log\\n*;a plastic bottle\\n", "p.csv")
    >>> [prompt_for(table, "1", j) for j in range(3)]
    ['a wooden log', 'a plastic bottle', 'a wooden log']
    >>> varied_prompts("bicycle", 2)[0]
    'a photo of a bicycle, in a city street, seen from the side, on a sunny day, in the morning'
"""
from __future__ import annotations

import itertools
import json
import string
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from cli.flags import ConfigError

ALL = "*"


class PromptError(ConfigError):
    """The prompt file is missing or unusable; the message says why in one line."""


def _clean(prompts, where: str) -> list[str]:
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise PromptError(f"{where} must be a list of strings")
    out = [p.strip() for p in prompts if p.strip()]
    if not out:
        raise PromptError(f"{where} holds no prompt")
    return out


def parse_prompt_json(text: str, name: str) -> dict[str, list[str]]:
    """{class or '*': prompts} from the JSON formats above."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PromptError(f"prompt file {name} is not valid JSON: {err}") from None
    if isinstance(data, dict):
        if "prompts" not in data:
            raise PromptError(f"prompt file {name}: expected a list or {{\"prompts\": [...]}}, "
                              f"found the keys {', '.join(map(str, data)) or 'none'}")
        data = data["prompts"]
    if isinstance(data, dict):
        return {str(k): _clean(v, f"prompt file {name}, class {k}") for k, v in data.items()}
    return {ALL: _clean(data, f"prompt file {name}")}


def parse_prompt_csv(text: str, name: str) -> dict[str, list[str]]:
    """{class or '*': prompts} from `class;prompt` lines."""
    table: dict[str, list[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, sep, prompt = line.partition(";")
        if not sep or not label.strip() or not prompt.strip():
            raise PromptError(f"prompt file {name} line {n}: expected class;prompt, got "
                              f"{line[:60]!r}")
        if n == 1 and label.strip().lower() == "class" and prompt.strip().lower() == "prompt":
            continue  # a header line
        table.setdefault(label.strip(), []).append(prompt.strip())
    if not table:
        raise PromptError(f"prompt file {name} holds no class;prompt line")
    return table


def load_prompts(path: str | Path) -> dict[str, list[str]]:
    """Reads a prompt file (`.json`, else CSV).

    Raises:
        PromptError: the file is missing, unreadable or holds no prompt.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise PromptError(f"prompt file {path} cannot be read: {err}") from None
    if path.suffix.lower() == ".json":
        return parse_prompt_json(text, str(path))
    return parse_prompt_csv(text, str(path))


def prompts_of(table: dict[str, list[str]], label: str) -> list[str]:
    """The cycle of prompts of one class: its own, then the shared ('*') ones."""
    return table.get(label, []) + table.get(ALL, [])


def check_classes(table: dict[str, list[str]], labels: Sequence[str], name: str) -> None:
    """Every class that transforms images must have a prompt.

    Raises:
        PromptError: naming the classes without one and the classes the file has.
    """
    missing = [lab for lab in labels if not prompts_of(table, lab)]
    if missing:
        have = ", ".join(k for k in table if k != ALL) or "none"
        raise PromptError(f"prompt file {name} has no prompt for class(es) "
                          f"{', '.join(missing)} (classes in the file: {have}; add lines "
                          f"'CLASS;prompt' or '*;prompt')")


def prompt_for(table: dict[str, list[str]], label: str, index: int) -> str:
    """Prompt number `index` of a class's cycle."""
    cycle = prompts_of(table, label)
    if not cycle:
        raise PromptError(f"no prompt for class {label}")
    return cycle[index % len(cycle)]


DEFAULT_TEMPLATE = "a photo of a {label}"
# What DIAGen varies in its prompts; one choice of each per prompt.
VARIATIONS = {
    "background": ("in a city street", "in a field", "indoors", "on a plain background",
                   "by a river", "in a car park"),
    "viewpoint": ("seen from the side", "seen from the front", "seen from above",
                  "close-up", "far away"),
    "weather": ("on a sunny day", "on a cloudy day", "in the rain", "in fog", "in snow"),
    "time": ("in the morning", "at noon", "at dusk", "at night"),
}


def format_template(template: str, label: str, site: str = "") -> str:
    """The template with `{label}` (and `{site}`) filled in.

    Raises:
        PromptError: the template names another field.

    Example:
        >>> format_template("a {label} at site {site}", "car", "S2")
        'a car at site S2'
    """
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = fields - {"label", "site"}
    if unknown:
        raise PromptError(f"prompt template {template!r}: unknown field(s) "
                          f"{', '.join(sorted(unknown))}; use {{label}} and {{site}}")
    return template.format(label=label, site=site)


def varied_prompts(label: str, per_class: int, template: str = DEFAULT_TEMPLATE,
                   seed: int = 0) -> list[str]:
    """`per_class` prompts of one class: the template, then one background, viewpoint,
    weather and time of day each, no combination twice; the same for the same seed.

    The first prompt takes the first choice of every variation; the others are drawn
    without repetition from all combinations.
    """
    base = format_template(template, label)
    combos = list(itertools.product(*VARIATIONS.values()))
    rng = np.random.default_rng([int(seed), zlib.crc32(label.encode("utf-8"))])
    order = [0] + [int(i) + 1 for i in rng.permutation(len(combos) - 1)]
    return [", ".join((base, *combos[i])) for i in order[:per_class]]


def lm_prompts(lm, label: str, per_class: int, template: str = DEFAULT_TEMPLATE,
               max_length: int = 48) -> list[str]:
    """`per_class` prompts of one class written by a KerasHub causal language model.

    The model continues "<template>, " (sampling with the sampler it was compiled with);
    the first line of each continuation, cut at the first full stop, follows the template.
    An empty continuation falls back to the template alone.

    Args:
        lm: a `keras_hub.models.CausalLM` (e.g. from `keras_hub.models.CausalLM.from_preset`).
    """
    base = format_template(template, label)
    out = []
    for _ in range(per_class):
        text = lm.generate(base + ", ", max_length=max_length)
        text = text[0] if isinstance(text, (list, tuple)) else text
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        tail = text[len(base) + 2:] if text.startswith(base) else text
        tail = tail.split("\n")[0].split(".")[0].replace(";", ",").strip(" ,")
        out.append(f"{base}, {tail}" if tail else base)
    return out


def prompt_csv_text(table: dict[str, list[str]]) -> str:
    """A table as the `class;prompt` CSV that `load_prompts` reads back."""
    lines = ["class;prompt"]
    for label, prompts in table.items():
        if not label.strip():   # a row no label folder can match
            raise PromptError("an empty class name: name each class as its label folder is "
                              "named")
        if ";" in label or "\n" in label or "\r" in label:
            what = "';'" if ";" in label else "a line break"
            raise PromptError(f"class {label!r}: a class name in a prompt file cannot hold "
                              f"{what}")
        lines += [f"{label};{' '.join(p.replace(';', ',').split())}" for p in prompts]
    return "\n".join(lines) + "\n"
