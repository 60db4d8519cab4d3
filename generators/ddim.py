"""`ddim`: images sampled from noise by a trained run: a DDIM U-Net, or the GAN (its run
folder says which; a GAN ignores the diffusion settings).

Example:
    >>> gen = DdimSampler.load(["models/run1"], Settings(steps=50, eta=1.0))
    >>> images = gen.generate(Request((ref,) * 4, seed=123, start_index=8))  # images 8..11
"""
from __future__ import annotations

import numpy as np

from generators.base import Request
from generators.trained import TrainedRunGenerator


class DdimSampler(TrainedRunGenerator):
    """Samples from noise: image k of a request draws from default_rng([seed, start_index + k])."""
    name = "ddim"

    def generate(self, request: Request) -> np.ndarray:
        if not isinstance(request.seed, (int, np.integer)):
            raise ValueError("ddim draws image k from [seed, start_index + k]: give one int seed")
        return self._one_model(request).generate(
            request.count, seed=request.seed, start_index=request.start_index,
            **self.sampling_args(request))
