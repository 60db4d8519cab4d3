"""`sdedit`: each image a variation of a real image (SDEdit: noised to `strength`, then
denoised by a trained DDIM run).

Example:
    >>> gen = SdEdit.load(["models/run1"], Settings(steps=50, strength=0.6))
    >>> out = gen.generate(Request((ref,) * 2, seed=[11, 12], sources=images))
"""
from __future__ import annotations

import numpy as np

from generators.base import Request
from generators.model_refs import ModelRef
from generators.trained import TrainedRunGenerator


class SdEdit(TrainedRunGenerator):
    """`DiffusionModel.img2img` over the request's sources, each image from its own seed."""
    name = "sdedit"
    varies_sources = True
    method = "img2img"
    purpose = "vary real images (sdedit)"

    def generate(self, request: Request) -> np.ndarray:
        return self._one_model(request).img2img(
            request.sources, strength=self.settings.strength, seed=[int(v) for v in request.seed],
            **self.sampling_args(request))

    def manifest_params(self, ref: ModelRef, site_id: str | None) -> dict:
        return {**super().manifest_params(ref, site_id), "strength": self.settings.strength}
