"""Random chains of ops bounded by the search, and replaying them exactly (pure; no files).

The `realism` knob turns an op's two boundaries from the search, `safe` (the model does not
notice changes up to here) and `limit` (the last intensity before the model fails), into the
range an intensity is drawn from:

    realism  1  ->  [0, safe]           changes the model does not notice: safe, realistic
    realism  0  ->  [safe, limit]       noticeable but not yet failing: the edge of failure
    realism -1  ->  [limit, 1]          beyond the edge: images the current model gets wrong

with linear blending in between (0.5 -> [0.5 * safe, (safe + limit) / 2]); values above 1
act as 1 and below -1 as -1. Each op may have its own realism and weight.

A chain holds 3-6 ops by default, at most one per contradiction group (brightness up and
down, two blurs, two noises, ...), applied in the order light meets them (geometry, weather,
colour, blur, noise, digital). Every op records its intensity and its own seed, so
`replay(params, image)` rebuilds the image bit for bit.

Example:
    >>> bounds = op_bounds({"fog": (0.2, 0.5), "jpeg": (0.4, 0.9)}, realism=0.5)
    >>> chain = sample_chain(np.random.default_rng([42, 0]), bounds, min_augs=1, max_augs=2)
    >>> out = apply_chain(image, chain)
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from robustness.data import load_fitted
from robustness.ops import OPS, apply_op


def realism_bounds(safe: float, limit: float, realism: float) -> tuple[float, float]:
    """The (low, high) intensity range of one op for a realism value (see module doc)."""
    safe, limit = float(safe), float(max(limit, safe))
    r = float(np.clip(realism, -1.0, 1.0))
    if r >= 0:
        return (1.0 - r) * safe, safe + (1.0 - r) * (limit - safe)
    s = -r
    return safe + s * (limit - safe), limit + s * (1.0 - limit)


def op_bounds(boundaries: Mapping[str, tuple[float, float]], realism: float,
              op_realism: Mapping[str, float] | None = None) -> dict[str, tuple[float, float]]:
    """{op: (low, high)} for every op with boundaries; `op_realism` overrides per op."""
    op_realism = op_realism or {}
    return {name: tuple(round(v, 4) for v in realism_bounds(safe, limit,
                                                            op_realism.get(name, realism)))
            for name, (safe, limit) in boundaries.items()}


def sample_chain(rng: np.random.Generator, bounds: Mapping[str, tuple[float, float]],
                 min_augs: int = 3, max_augs: int = 6,
                 weights: Mapping[str, float] | None = None) -> list[dict]:
    """Draws one chain: a length in [min_augs, max_augs], ops by weight without repeats and
    without two of one group, an intensity uniform in each op's bounds and a seed per op.

    Ops whose range is [0, 0] (they would do nothing) or whose weight is 0 are never drawn;
    when fewer ops are available than the drawn length, the chain is shorter.

    Returns:
        [{"op": name, "intensity": x, "seed": s}, ...] in the order they are applied.
    """
    weights = dict(weights or {})
    length = int(rng.integers(min_augs, max_augs + 1))
    names = [n for n in bounds if bounds[n][1] > 0 and weights.get(n, OPS[n].weight) > 0]
    w = np.array([weights.get(n, OPS[n].weight) for n in names], dtype=float)
    chosen: list[str] = []
    groups: set[str] = set()
    # Gumbel-top-k: a weighted order without replacement from one draw per op.
    keys = np.log(rng.random(len(names)) + 1e-300) / np.maximum(w, 1e-300) if names else []
    for i in np.argsort(-np.asarray(keys)):
        name = names[i]
        group = OPS[name].group
        if group is not None and group in groups:
            continue
        chosen.append(name)
        if group is not None:
            groups.add(group)
        if len(chosen) == length:
            break
    chosen.sort(key=lambda n: (OPS[n].stage, list(OPS).index(n)))
    chain = []
    for name in chosen:
        lo, hi = bounds[name]
        chain.append({"op": name, "intensity": round(float(rng.uniform(lo, hi)), 4),
                      "seed": int(rng.integers(0, 2**31 - 1))})
    return chain


def apply_chain(image: np.ndarray, chain: Sequence[Mapping], targets: dict | None = None,
                label_format=None):
    """Applies the chain's ops in order; with `targets`, boxes/masks follow geometric ops.

    Returns:
        The image, or (image, targets) when targets are given.
    """
    out = image
    for step in chain:
        if targets is None:
            out = apply_op(step["op"], out, step["intensity"], step["seed"])
        else:
            out, targets = apply_op(step["op"], out, step["intensity"], step["seed"],
                                    targets=targets, label_format=label_format)
    if out is image:
        out = image.copy()
    return out if targets is None else (out, targets)


def replay(params: Mapping, image: np.ndarray | None = None) -> np.ndarray:
    """Rebuilds a synthetic image from its manifest params.

    Args:
        params: the manifest row's params: {"ops": chain, "image_size": [h, w],
            "origin": path, ...}.
        image: the origin at the working size; default: loaded from params["origin"] and
            resized to params["image_size"] as the synthesis did.

    Example:
        >>> row = read_manifest("robustness_synthetic/manifest.csv")[0]
        >>> np.array_equal(replay(row.params), load_rgb("robustness_synthetic/" + row.path))
        True
    """
    if image is None:
        image = load_fitted(params["origin"], tuple(params["image_size"]))
    return apply_chain(image, params["ops"])
