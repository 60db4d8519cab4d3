"""Are generated feature vectors like the real ones? Per label: KID and the memorisation
share, with the project's own quality code (numpy only, no Keras).

KID (diffusion/kid.py) is taken after standardising every dimension by the mean and std of
all real vectors (the std floored at a tenth of the mean std: a dimension dead in the real
vectors must not blow up any generated value in it): the polynomial kernel depends on scale, and a ReLU encoder's features can
be of any size, so raw values would not compare across encoders. The real-vs-real baseline
is the KID between two halves of the label's real vectors (even and odd rows): the value
a generator as good as fresh real data would score, and the noise of a KID at that size.

Memorisation (quality_maths/neighbours.py): a generated vector is flagged when it lies closer
(cosine distance) to a real vector of its label than `percentile` % of the label's real
vectors lie to their nearest other real vector (leave-one-out), or is a copy.

Example:
    >>> rows = feature_quality(real, real_labels, fake, fake_labels)
    >>> rows[0]
    {'label': 'cat', 'n_real': 40, 'n_fake': 200, 'kid': 0.01, 'kid_real_baseline': 0.002,
     'memorised_share': 0.04, ...}
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from diffusion.kid import kid_from_features
from quality_maths.neighbours import (flag_memorised, memorisation_share, memorisation_threshold,
                                      nearest)


def _kid_or_nan(a: np.ndarray, b: np.ndarray) -> float:
    return kid_from_features(a, b) if len(a) >= 2 and len(b) >= 2 else float("nan")


def feature_quality(real: np.ndarray, real_labels: Sequence[str], fake: np.ndarray,
                    fake_labels: Sequence[str], percentile: float = 5.0,
                    metric: str = "cosine") -> list[dict]:
    """Per label (real labels first, in order of appearance, then labels only generated):

        label, n_real, n_fake,
        kid                KID of the generated vs the real vectors (NaN below 2 of either)
        kid_real_baseline  KID between two halves of the real vectors (NaN below 4 real)
        memorised_share    share of generated vectors flagged as near-copies (NaN without
                           generated vectors or below 2 real)
        threshold          the distance below which a vector is flagged, and
        threshold_rule     how it was chosen (quality_maths.neighbours.memorisation_threshold)
        nn_fake_median     median distance of a generated vector to its nearest real one
        nn_real_median     median leave-one-out distance of a real vector to its nearest

    Args:
        real, fake: (n, D) and (m, D) feature vectors in the same (original) scale.
        real_labels, fake_labels: one label name per row.
        percentile: of the real-to-real distances, the memorisation threshold.
        metric: "cosine" or "l2" (on L2-normalised vectors).

    Raises:
        ValueError: shapes or label counts do not match.
    """
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64).reshape(-1, real.shape[1] if real.ndim == 2 else 0)
    if real.ndim != 2 or len(real) < 2:
        raise ValueError(f"real features must be (n >= 2, D), got {real.shape}")
    real_labels = np.asarray(list(real_labels), dtype=object)
    fake_labels = np.asarray(list(fake_labels), dtype=object)
    if len(real_labels) != len(real) or len(fake_labels) != len(fake):
        raise ValueError(f"one label per row is needed: {len(real_labels)} labels for "
                         f"{len(real)} real rows, {len(fake_labels)} for {len(fake)} generated")
    mean, std = real.mean(0), real.std(0)
    # A ReLU dimension (almost) never active in the real reference would otherwise divide
    # by ~0: one generated value of 0.5 there became 1e5 std units and the cubic kernel
    # turned the KID into millions. Every dimension counts at least a tenth of the typical
    # spread.
    std = np.maximum(std, max(0.1 * float(std.mean()), 1e-6))
    real_z, fake_z = (real - mean) / std, (fake - mean) / std
    order = list(dict.fromkeys([*real_labels.tolist(), *fake_labels.tolist()]))
    rows = []
    for label in order:
        r, f = real_labels == label, fake_labels == label
        rz, fz = real_z[r], fake_z[f]
        row = {"label": str(label), "n_real": int(r.sum()), "n_fake": int(f.sum()),
               "kid": _kid_or_nan(rz, fz),
               "kid_real_baseline": _kid_or_nan(rz[0::2], rz[1::2]) if len(rz) >= 4
               else float("nan"),
               "memorised_share": float("nan"), "threshold": float("nan"),
               "threshold_rule": "", "nn_fake_median": float("nan"),
               "nn_real_median": float("nan")}
        if r.sum() >= 2:
            ref = nearest(real[r], real[r], metric=metric, exclude_self=True)[1]
            t = memorisation_threshold(ref, percentile)
            row.update(threshold=t.value, threshold_rule=t.rule,
                       nn_real_median=float(np.median(ref)))
            if f.sum():
                dist = nearest(fake[f], real[r], metric=metric)[1]
                row.update(memorised_share=memorisation_share(flag_memorised(dist, t.value)),
                           nn_fake_median=float(np.median(dist)))
        rows.append(row)
    return rows
