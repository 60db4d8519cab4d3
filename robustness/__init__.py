"""Robustness analysis: where does a model's output change under corruptions, and realistic
synthetic images bounded by that.

    python3 -m robustness search|report|synthesize|evaluate|ops --help

Python API (layers: `ops` and `chains` are pure; `predict` adapts models; `search`,
`synthesize` and `evaluate` work in memory; `runs` reads and writes folders):

    >>> from robustness import load_predictor, load_image_set, run_search, op_bounds
    >>> predict = load_predictor("classifier_runs/small_cnn_...")
    >>> images = load_image_set("photos", predict.input_size)
    >>> result = run_search(predict, images, step=0.05, cache_dir="robustness/cache")
    >>> bounds = op_bounds(result.boundaries(), realism=0.5)
"""
from robustness.chains import apply_chain, op_bounds, realism_bounds, replay, sample_chain
from robustness.data import ImageSet, load_image_set
from robustness.errors import (box_error, confidence_aware, label_change, mask_disagreement,
                               total_variation)
from robustness.evaluate import evaluate_synthetic
from robustness.ops import OPS, OpSpec, apply_op, resolve_ops
from robustness.predict import Predictor, load_predictor
from robustness.search import SearchResult, run_search
from robustness.synthesize import generate

__all__ = ["OPS", "OpSpec", "apply_op", "resolve_ops", "Predictor", "load_predictor",
           "ImageSet", "load_image_set", "run_search", "SearchResult", "op_bounds",
           "realism_bounds", "sample_chain", "apply_chain", "replay", "generate",
           "evaluate_synthetic", "label_change", "total_variation", "confidence_aware",
           "mask_disagreement", "box_error"]
