"""Realistic synthetic images from the search's boundaries: random op chains, optionally kept
only when the model's error on them falls in a window, written with their provenance.

Candidate k always uses the generator `np.random.default_rng([seed, k])` and the origin
image `order[k % N]` (a seeded permutation), so a run is reproducible and resumable; a
candidate's params (ops, intensities, per-op seeds, origin, working size) rebuild it
exactly with `chains.replay`. The number of candidates tried is bounded (`max_attempts`,
default 10 x count): with a window the model never meets, the run stops and says how many
images it could make, never loops for ever.

Example:
    >>> for cand in generate(model, image_set, bounds, count=10, seed=1):
    ...     print(cand.index, cand.params["ops"], cand.error)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from robustness.chains import apply_chain, sample_chain
from robustness.errors import batch_errors, resolve_error
from robustness.predict import load_predictor
from robustness.search import as_targets, from_targets

GENERATOR = "robustness"


@dataclass
class Candidate:
    """One accepted synthetic image: its candidate index, origin index, pixels, params and
    the model's error on it against the origin's clean output."""
    index: int
    origin: int
    image: np.ndarray
    params: dict
    error: float


@dataclass
class SynthesisStats:
    """How a generation went: images made, candidates tried, rejected by the window."""
    made: int = 0
    attempts: int = 0
    rejected: int = 0
    next_candidate: int = 0
    requested: int = 0
    errors: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.made >= self.requested


def origin_order(n: int, seed: int) -> np.ndarray:
    """The seeded order in which origin images are used (round robin)."""
    return np.random.default_rng([seed, 7919]).permutation(n)


def generate(model: Any, images: Any, bounds: Mapping[str, tuple[float, float]], count: int,
             seed: int = 42, min_augs: int = 3, max_augs: int = 6,
             op_weights: Mapping[str, float] | None = None, min_error: float = 0.0,
             max_error: float = 1.0, max_attempts: int | None = None,
             diff_error: str | Callable | None = None, batch_size: int = 32,
             stats: SynthesisStats | None = None, start: int = 0,
             origin_paths: list | None = None, label_format: Any = None
             ) -> Iterator[Candidate]:
    """Yields accepted candidates until `count` are made or `max_attempts` are spent.

    Args:
        model: a Predictor / model path / keras.Model / batch function.
        images: uint8 (N, H, W, 3) or an ImageSet (its paths go into the params).
        bounds: {op: (low, high)} intensity ranges, from `chains.op_bounds`.
        count: images wanted.
        min_error, max_error: keep a candidate only when the model's error on it (against
            its origin's clean output) lies in this window; (0, 1) keeps all.
        max_attempts: candidates tried at most (default 10 x count).
        stats: filled in as the generation goes (made, attempts, rejected).
        start: the first candidate index (to resume a run).
        origin_paths: recorded as each candidate's origin (default: the ImageSet's paths).
        label_format: as for `run_search`: the clean output (boxes, mask) follows the
            chain's geometric ops before it is compared. Your ground truth follows the same
            way: `apply_chain(image, cand.params["ops"], targets, label_format)`.

    Raises:
        ValueError: no op has a non-empty range (nothing could change an image).
    """
    predictor = load_predictor(model)
    diff = resolve_error(diff_error, label_format)
    arr = images.images if hasattr(images, "images") else np.asarray(images)
    paths = origin_paths or [str(p) for p in getattr(images, "paths", [])] or [""] * len(arr)
    if not any(hi > 0 for _, hi in bounds.values()):
        raise ValueError("no op can change the images at this realism: every op's intensity "
                         "range is [0, 0] (lower --realism, or check the search)")
    stats = stats if stats is not None else SynthesisStats()
    stats.requested = count
    budget = max_attempts if max_attempts is not None else 10 * count
    order = origin_order(len(arr), seed)
    clean = predictor(arr)
    k = start
    while stats.made < count and stats.attempts < budget:
        n = min(batch_size, budget - stats.attempts)
        if min_error <= 0.0 and max_error >= 1.0:
            n = min(n, count - stats.made)  # no window: every candidate is kept
        batch, metas = [], []
        for idx in range(k, k + n):
            origin = int(order[idx % len(arr)])
            chain = sample_chain(np.random.default_rng([seed, idx]), bounds, min_augs,
                                 max_augs, op_weights)
            batch.append(apply_chain(arr[origin], chain))
            metas.append((idx, origin, chain))
        outs = predictor(np.stack(batch))
        origins = [m[1] for m in metas]
        if label_format is not None:
            ref = [from_targets(apply_chain(arr[o], chain, as_targets(clean[o], label_format),
                                          label_format)[1], label_format)
                   for _, o, chain in metas]
        elif isinstance(clean, np.ndarray):
            ref = clean[origins]
        else:
            ref = [clean[o] for o in origins]
        errs = batch_errors(diff, ref, outs)
        k += n
        for (idx, origin, chain), img, err in zip(metas, batch, errs):
            if stats.made >= count:
                break
            stats.attempts += 1
            stats.next_candidate = idx + 1
            if not (min_error <= err <= max_error) or not chain:
                stats.rejected += 1
                continue
            stats.made += 1
            stats.errors.append(float(err))
            params = {"ops": chain, "origin": paths[origin],
                      "image_size": [int(arr.shape[1]), int(arr.shape[2])], "candidate": idx}
            yield Candidate(idx, origin, img, params, float(err))


def candidate_name(stem: str, params: dict) -> str:
    """`<origin stem>_rb<k>_<hash>.png`: the origin's site prefix is kept and the params'
    hash makes names collision-free."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"{stem}_rb{params['candidate']:05d}_{digest}.png"
