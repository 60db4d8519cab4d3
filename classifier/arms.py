"""The arms of `classifier.compare`: which one is the strongest non-generative arm that
generated images have to beat (pure, no Keras).

The arm names and their grammar (`normalise_arm`, `is_generative`, `starts_from`,
`parse_fill_dirs`, ...) live below config.py in `setting_rules.arm_names`, so that config.py
can check `--variants` without importing stage 4; they are re-exported here, where the
classifier code has always found them.

Example:
    >>> normalise_arm("synthetic+diagen")
    'diffusion_fill+diagen'
    >>> strongest_non_generative([{"variant": "classic", "balanced_accuracy_mean": 0.8}])
    'classic'
"""
from __future__ import annotations

import math
from typing import Sequence

from setting_rules.arm_names import (ALIASES, BASE_ARMS, FEATURE_ARMS, FILL_ARMS,
                                     NON_GENERATIVE, STARTS_FROM, SUFFIXES, ArmError,
                                     is_generative, normalise_arm, parse_fill_dirs, split_arm,
                                     starts_from, uses_classic)

__all__ = ["ALIASES", "BASE_ARMS", "FEATURE_ARMS", "FILL_ARMS", "NON_GENERATIVE",
           "STARTS_FROM", "SUFFIXES", "ArmError", "is_generative", "normalise_arm",
           "parse_fill_dirs", "split_arm", "starts_from", "strongest_non_generative",
           "uses_classic"]



def strongest_non_generative(summary: Sequence[dict], metric: str = "balanced_accuracy"
                             ) -> str | None:
    """The non-generative arm with the highest mean `metric` in summary rows
    ({variant, <metric>_mean}); ties go to the arm listed first. None when there is none.

    Example:
        >>> strongest_non_generative([{"variant": "original", "balanced_accuracy_mean": 0.7},
        ...                           {"variant": "classic", "balanced_accuracy_mean": 0.8},
        ...                           {"variant": "diffusion_fill",
        ...                            "balanced_accuracy_mean": 0.9}])
        'classic'
    """
    best, best_value = None, -math.inf
    for row in summary:
        value = row.get(f"{metric}_mean")
        if is_generative(row["variant"]) or value is None or value != value:
            continue
        if value > best_value:
            best, best_value = row["variant"], value
    return best
