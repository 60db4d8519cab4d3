"""What every generator of a trained run folder (DDIM U-Net or GAN) shares: loading the
runs, the class and site ids of a request, and the manifest fields of those settings.

Example:
    >>> gen = DdimSampler.load(["models/run1"], Settings(steps=50))   # a TrainedRunGenerator
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from diffusion.inference import load_model, require_method, sampling_runtime
from generators.base import Generator, Request, Settings
from generators.model_refs import ModelRef


class TrainedRunGenerator(Generator):
    """A generator that samples stage-2 run folders with one of the model's methods.

    Subclasses set `method` (the model method they call, checked at load) and `purpose`
    (what a model without it cannot do, for the error).
    """
    method = "generate"
    purpose = "generate"

    @classmethod
    def load(cls, model_dirs: Sequence[str], settings: Settings) -> "TrainedRunGenerator":
        """Loads each run folder once; devices and precision follow the first one's training.

        Raises:
            ConfigError: a damaged folder, or a model without `method` (a GAN cannot vary
                real images), named.
        """
        dirs = list(dict.fromkeys(model_dirs))
        if dirs:
            sampling_runtime(dirs[0])
        models = {}
        for model_dir in dirs:
            models[model_dir] = load_model(model_dir, settings.weights)[0]
            require_method(models[model_dir], cls.method, model_dir, cls.purpose)
        return cls(models, settings)

    def _one_model(self, request: Request):
        models = {ref.model_dir for ref in request.refs}
        if len(models) != 1:
            raise ValueError(f"one request, one model; got {sorted(models)}")
        return self.model(request.refs[0])

    def sampling_args(self, request: Request) -> dict:
        """The keyword arguments every sampling method of the models takes."""
        s = self.settings
        classes = [ref.class_index for ref in request.refs]
        ref = request.refs[0]
        sites = None
        if ref.site_names and request.sites is not None:
            # each image for its own cell; a site the model does not know: any site
            ids = [ref.site_index(site) for site in request.sites]
            sites = [len(ref.site_names) if i is None else i for i in ids]
        return dict(steps=s.steps, eta=s.eta, labels=None if classes[0] is None else classes,
                    guidance_scale=s.guidance_scale, guidance_rescale=s.guidance_rescale,
                    guidance_max_noise=s.guidance_max_noise, batch_size=s.batch_size,
                    sites=sites)

    def manifest_params(self, ref: ModelRef, site_id: str | None) -> dict:
        s = self.settings
        params = {**super().manifest_params(ref, site_id), "eta": s.eta}
        if Path(ref.model_dir).is_dir():
            # which file of the folder (a weights file names itself in "model")
            params.update(weights=s.weights)
        if ref.class_index is not None:
            params.update(class_index=ref.class_index, guidance_scale=s.guidance_scale,
                          guidance_rescale=s.guidance_rescale)
            if s.guidance_max_noise:
                params.update(guidance_max_noise=s.guidance_max_noise)
        if ref.site_names:  # the cell the image was generated for (None: any site)
            params.update(site_index=ref.site_index(site_id), guidance_scale=s.guidance_scale)
        return params
