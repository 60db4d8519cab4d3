"""Prompts: loaded from a JSON list or a `class;prompt` CSV, handed out in a fixed cycle.

Formats:
    JSON   ["a wooden log", "a red kayak"]  or  {"prompts": [...]}  (the original pipeline's file)
           or {"prompts": {"<class>": [...], "*": [...]}}
    CSV    one `class;prompt` per line (`*` = every class); blank lines and `#` comments
           are skipped, as is a first line `class;prompt`.

Image j of a class (in file order, among the images that class transforms) gets prompt
j mod n of that class's list (its own lines first, then the `*` lines), so the same folder
and seed always give the same prompt to the same image.

Example:
    >>> table = parse_prompt_csv("1;a wooden log\\n*;a plastic bottle\\n", "p.csv")
    >>> [prompt_for(table, "1", j) for j in range(3)]
    ['a wooden log', 'a plastic bottle', 'a wooden log']
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

ALL = "*"


class PromptError(ValueError):
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
