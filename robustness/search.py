"""Where does the model break? Raise each op's intensity step by step over a set of images and
measure how far the model's output moves from its own clean prediction.

For every op the images are corrupted at every step (default 5 %) and at the op's five
severities, all in memory and predicted in large batches, and each image's error against its
clean output is kept. The mean error per step is the op's curve; from it:

- `first_noticeable`: the first step whose mean error exceeds `noticeable_error` (2 %);
- `safe`: the last step before it (the model does not notice changes up to here);
- `first_critical`: the first step whose mean error reaches `critical_error` (0.5: half the
  images changed their answer, the lowest level that still means something for a binary
  classifier);
- `limit`: the last step before it, the last non-critical intensity (the edge of failure).

Each image keeps its own seed per op at every intensity (common random numbers), so a curve
shows the effect of the intensity, not of fresh noise at every step. Results go through
`ProbeCache`, so a search resumes and a repeated one makes no probe.

Example:
    >>> result = run_search(model, images, ops=["brightness_up", "gaussian_blur"], step=0.1)
    >>> result.curves["brightness_up"].limit
    0.4
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from robustness.cache import ProbeCache, intensity_key
from robustness.errors import batch_errors, error_fingerprint, resolve_error
from robustness.ops import OPS, apply_op, prepare_op, resolve_ops
from robustness.predict import Predictor, load_predictor


def op_seed(seed: int, op: str, index: int) -> int:
    """The seed of op `op` on image `index`: fixed across intensities and runs."""
    return int(np.random.SeedSequence([seed, zlib.crc32(op.encode()), index])
               .generate_state(1)[0])


def grid(step: float) -> list[float]:
    """Intensities step, 2*step, ... up to and including 1."""
    n = int(np.floor(1.0 / step + 1e-9))
    xs = [round(k * step, 4) for k in range(1, n + 1)]
    if xs[-1] < 1.0 - 1e-9:
        xs.append(1.0)
    return xs


@dataclass
class OpCurve:
    """One op's search result.

    intensities, errors: the curve (mean error per probed step, ascending).
    per_image: (N, steps) errors of each image.
    severities, severity_errors, severity_per_image: the same at the five fixed severities.
    severity_pred: (N, 5) predicted class per image (classifiers), else None.
    first_noticeable, first_critical: intensities, None when never reached.
    safe, limit: see the module docstring (None without a curve).
    """

    name: str
    intensities: np.ndarray
    errors: np.ndarray
    per_image: np.ndarray
    severities: tuple[float, ...]
    severity_errors: np.ndarray
    severity_per_image: np.ndarray
    severity_pred: np.ndarray | None
    first_noticeable: float | None = None
    first_critical: float | None = None
    safe: float | None = None
    limit: float | None = None


@dataclass
class SearchResult:
    """All ops' curves plus what the run did (`probes` made now, `reused` from the cache)."""

    curves: dict[str, OpCurve]
    step: float
    noticeable_error: float
    critical_error: float
    n_images: int
    probes: int
    reused: int
    model_fingerprint: str
    cache_key: str
    clean_pred: np.ndarray | None = None
    truth: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    def boundaries(self) -> dict[str, tuple[float, float]]:
        """{op: (safe, limit)} for every op with a curve."""
        return {k: (c.safe, c.limit) for k, c in self.curves.items() if c.safe is not None}

    def clean_top1_error(self) -> float | None:
        if self.truth is None or self.clean_pred is None:
            return None
        return float(np.mean(self.clean_pred != self.truth))

    def to_dict(self) -> dict:
        """The summary written as search.json (curves as means; per-image data stays in the
        cache)."""
        ops = {}
        for name, c in self.curves.items():
            spec = OPS[name]
            top1 = (None if c.severity_pred is None or self.truth is None else
                    [round(float(v), 4) for v in (c.severity_pred != self.truth[:, None]).mean(0)])
            ops[name] = {
                "family": spec.family,
                "first_noticeable": c.first_noticeable, "safe": c.safe,
                "safe_means": spec.unit(c.safe) if c.safe is not None else None,
                "first_critical": c.first_critical, "limit": c.limit,
                "limit_means": spec.unit(c.limit) if c.limit is not None else None,
                "curve": [[float(i), round(float(e), 4)] for i, e in
                          zip(c.intensities, c.errors)],
                "severities": [[float(i), round(float(e), 4)] for i, e in
                               zip(c.severities, c.severity_errors)],
                "severity_top1_error": top1,
            }
        return {"step": self.step, "noticeable_error": self.noticeable_error,
                "critical_error": self.critical_error, "n_images": self.n_images,
                "probes_this_run": self.probes, "probes_reused": self.reused,
                "model_fingerprint": self.model_fingerprint, "cache_key": self.cache_key,
                "clean_top1_error": self.clean_top1_error(), **self.settings, "ops": ops}


def summarise(intensities: Sequence[float], errors: Sequence[float], noticeable_error: float,
              critical_error: float) -> dict[str, float | None]:
    """first_noticeable, safe, first_critical and limit of one curve (see the module doc)."""
    xs, es = list(intensities), list(errors)
    if not xs:
        return {"first_noticeable": None, "safe": None, "first_critical": None, "limit": None}
    noticeable = next((x for x, e in zip(xs, es) if e > noticeable_error), None)
    critical = next((x for x, e in zip(xs, es) if e >= critical_error), None)

    def before(x):
        return max([0.0] + [v for v in xs if v < x - 1e-9])
    return {"first_noticeable": noticeable,
            "safe": before(noticeable) if noticeable is not None else xs[-1],
            "first_critical": critical,
            "limit": before(critical) if critical is not None else xs[-1]}


def _classes(outputs) -> np.ndarray | None:
    """Predicted class per image for classifier outputs, else None."""
    if isinstance(outputs, np.ndarray):
        if outputs.ndim == 2:
            return outputs.argmax(1)
        if outputs.ndim == 1 and np.issubdtype(outputs.dtype, np.integer):
            return outputs
    return None


def as_targets(output: Any, label_format: Any) -> dict:
    """A clean output as albumentations targets (so geometric ops can move it)."""
    if label_format == "mask":
        return {"mask": np.asarray(output)}
    if not isinstance(output, dict):
        raise ValueError("with a bbox/keypoint label_format, predict must return one dict "
                         "per image (e.g. {'bboxes': ..., 'labels': ...})")
    return dict(output)


def from_targets(targets: dict, label_format: Any):
    return targets["mask"] if label_format == "mask" else targets


def probe(predictor: Predictor, images: np.ndarray, clean, op: str,
          intensities: Sequence[float], seeds: Sequence[int], diff_error: Callable,
          label_format: Any = None, max_batch: int = 1024) -> tuple[np.ndarray, np.ndarray | None]:
    """Errors (N, K) of every image at every intensity, and predicted classes (or None).

    Images are corrupted in memory and predicted in batches of up to `max_batch` probes.
    With a label format, geometric ops move the clean output (boxes, masks) along with the
    image before comparing.
    """
    spec = OPS[op]
    n, k = len(images), len(intensities)
    errors = np.zeros((n, k))
    preds = None
    per_chunk = max(1, max_batch // k)
    move = label_format is not None and spec.geometric
    for start in range(0, n, per_chunk):
        idx = list(range(start, min(n, start + per_chunk)))
        batch, refs = [], []
        # Each image's random draws are made once and rendered at every intensity.
        render = {} if move else {j: prepare_op(op, images[j], seeds[j]) for j in idx}
        for x in intensities:
            for j in idx:
                if move:
                    img, tgt = apply_op(op, images[j], x, seeds[j],
                                        targets=as_targets(clean[j], label_format),
                                        label_format=label_format)
                    refs.append(from_targets(tgt, label_format))
                else:
                    img = render[j](x)
                batch.append(img)
        outs = predictor(np.stack(batch))
        if move:
            ref = refs
        elif isinstance(clean, np.ndarray):
            ref = np.concatenate([clean[idx]] * k)
        else:
            ref = [clean[j] for _ in intensities for j in idx]
        e = batch_errors(diff_error, ref, outs).reshape(k, len(idx)).T
        errors[idx] = e
        cls = _classes(outs)
        if cls is not None:
            if preds is None:
                preds = np.zeros((n, k), dtype=np.int64)
            preds[idx] = cls.reshape(k, len(idx)).T
    return errors, preds


def run_search(model: Any, images: Any, ops: Sequence[str] | None = None, step: float = 0.05,
               noticeable_error: float = 0.02, critical_error: float = 0.5,
               diff_error: str | Callable | None = None, label_format: Any = None,
               truth: np.ndarray | None = None, cache_dir: str | None = None, seed: int = 42,
               full_curve: bool = True, curves: bool = True, max_batch: int = 1024,
               progress: bool = False) -> SearchResult:
    """Probes every op over the images; returns the curves and boundaries.

    Args:
        model: a Predictor, a model path, a keras.Model or a batch function.
        images: uint8 (N, H, W, 3) or an ImageSet, at the model's input size.
        ops: op names (default all of OPS).
        step: intensity step of the curve.
        noticeable_error, critical_error: thresholds on the mean error (see module doc).
        diff_error: "confidence" (default for classifiers), "label", "tv", or a function
            diff_error(original_output, augmented_output) -> [0, 1].
        label_format: None (classification), "mask", {"bbox": fmt} or {"keypoints": fmt}.
        truth: class index per image (ground truth), for top-1 errors per severity.
        cache_dir: where the probe cache lives (None: memory only).
        seed: seed of the ops' random numbers.
        full_curve: probe every step up to 1; False stops an op's curve at its first
            critical step (faster; the severities are always probed).
        curves: False probes the severities only (e.g. a reference model).
        max_batch: probes per prediction batch (memory bound).
        progress: show a progress bar.

    Returns:
        SearchResult.

    Example:
        >>> r = run_search("model.keras", image_set, step=0.1, cache_dir="robustness/cache")
        >>> r.curves["fog"].safe, r.curves["fog"].limit
    """
    predictor = load_predictor(model)
    arr = images.images if hasattr(images, "images") else np.asarray(images)
    if arr.ndim != 4 or arr.dtype != np.uint8 or len(arr) == 0:
        raise ValueError(f"images must be a non-empty uint8 (N, H, W, 3) array, got "
                         f"{arr.dtype} {arr.shape}")
    names = resolve_ops(ops)
    diff_fn = resolve_error(diff_error, label_format)
    ifp = hashlib.sha256(str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes())
    cache = ProbeCache(cache_dir, {"model": predictor.fingerprint, "images": ifp.hexdigest(),
                                   "seed": seed, "error": error_fingerprint(diff_fn),
                                   "label_format": repr(label_format)})
    state: dict[str, Any] = {}

    def clean():
        if "clean" not in state:
            state["clean"] = predictor(arr)
        return state["clean"]

    steps = grid(step) if curves else []
    probes = reused = 0
    curves_out: dict[str, OpCurve] = {}
    bar = tqdm(names, desc="probing ops", unit="op", disable=not progress, dynamic_ncols=True)
    for name in bar:
        bar.set_postfix_str(name)
        spec = OPS[name]
        results = cache.load_op(name, spec.version)
        seeds = [op_seed(seed, name, j) for j in range(len(arr))]
        changed = False

        def run(xs):
            nonlocal probes, changed
            todo = [x for x in xs if intensity_key(x) not in results]
            if not todo:
                return
            errs, preds = probe(predictor, arr, clean(), name, todo, seeds, diff_fn,
                                label_format, max_batch)
            for col, x in enumerate(todo):
                results[intensity_key(x)] = {
                    "errors": [round(float(v), 5) for v in errs[:, col]],
                    "pred": None if preds is None else [int(v) for v in preds[:, col]]}
            probes += len(todo) * len(arr)
            changed = True

        def mean(x):
            return float(np.mean(results[intensity_key(x)]["errors"]))

        used = list(steps) + [s for s in spec.severities if intensity_key(s) not in
                              {intensity_key(x) for x in steps}]
        reused += sum(intensity_key(x) in results for x in used) * len(arr)
        if full_curve:
            run(used)
            probed = list(steps)
        else:
            # Steps in chunks (still batched), stopping after the first critical step.
            probed = []
            chunk = max(1, min(len(steps), max_batch // max(1, len(arr))))
            for s in range(0, len(steps), chunk):
                part = steps[s:s + chunk]
                run(part)
                for x in part:
                    probed.append(x)
                    if mean(x) >= critical_error:
                        break
                if probed and mean(probed[-1]) >= critical_error:
                    break
            run(spec.severities)
        if changed:
            cache.save_op(name, spec.version, results)
        per_image = (np.array([results[intensity_key(x)]["errors"] for x in probed]).T
                     if probed else np.zeros((len(arr), 0)))
        sev = np.array([results[intensity_key(x)]["errors"] for x in spec.severities]).T
        sev_pred = [results[intensity_key(x)]["pred"] for x in spec.severities]
        curve = OpCurve(name, np.array(probed, dtype=float), per_image.mean(0), per_image,
                        tuple(spec.severities), sev.mean(0), sev,
                        None if any(p is None for p in sev_pred) else np.array(sev_pred).T)
        s = summarise(probed, curve.errors, noticeable_error, critical_error)
        curve.first_noticeable, curve.safe = s["first_noticeable"], s["safe"]
        curve.first_critical, curve.limit = s["first_critical"], s["limit"]
        curves_out[name] = curve
    bar.close()
    clean_pred = None
    if truth is not None:
        # Cached too, so that a repeated search does not call the model at all.
        stored = cache.load_op("_clean", 1)
        if "0.0000" not in stored:
            cls = _classes(clean())
            stored["0.0000"] = {"errors": [0.0] * len(arr),
                                "pred": None if cls is None else [int(v) for v in cls]}
            cache.save_op("_clean", 1, stored)
        pred = stored["0.0000"]["pred"]
        clean_pred = None if pred is None else np.array(pred)
    return SearchResult(curves_out, step, noticeable_error, critical_error, len(arr), probes,
                        reused, predictor.fingerprint, cache.key, clean_pred, truth,
                        {"seed": seed, "full_curve": full_curve,
                         "error": error_fingerprint(diff_fn)})
