"""Which settings decide what a command writes: the ones a resumed output folder must share
with the run that made it (`dataset.out_dir.check_out_dir`).

Derived from the config dataclass, so a new setting counts unless it is excluded by name:

Example:
    >>> resume_keys(AugmentationConfig, exclude=("in_dir", "out_dir", "batch_size"))
    ('categories', 'balance', ...)
"""
from __future__ import annotations

import dataclasses
from typing import Sequence


def resume_keys(config_cls, exclude: Sequence[str]) -> tuple[str, ...]:
    """Every field of `config_cls` not in `exclude`, in declaration order.

    Raises:
        ValueError: `exclude` names a field the class does not have (a stale list).
    """
    names = [f.name for f in dataclasses.fields(config_cls)]
    stale = sorted(set(exclude) - set(names))
    if stale:
        raise ValueError(f"{config_cls.__name__} has no field(s) {', '.join(stale)}")
    return tuple(n for n in names if n not in exclude)
