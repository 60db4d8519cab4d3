"""The Generator interface: the registry covers every generator a tool can name, a request
reaches the model as the tools called it before (same seeds, classes, sites: the same
pixels), and the hand-kept resume lists are derived from the config fields."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from config import AugmentationConfig, InpaintingConfig
from dataset.resume import resume_keys
from generators.base import Request, Settings
from generators.model_refs import ModelRef
from generators.registry import GENERATORS, generator_class
from inpainting.backends import GENERATORS as OOD_GENERATORS


def _choices(cls, name: str) -> tuple[str, ...]:
    return next(f.metadata["choices"] for f in dataclasses.fields(cls) if f.name == name)


def test_every_generator_a_tool_can_name_is_registered():
    assert set(_choices(AugmentationConfig, "generator")) <= set(GENERATORS)
    assert {OOD_GENERATORS[(b, m)] for b in _choices(InpaintingConfig, "backend")
            for m in _choices(InpaintingConfig, "mode")} <= set(GENERATORS)
    assert [n for n, c in GENERATORS.items() if c.varies_sources] == [
        "sdedit", "sd_img2img", "repaint", "sd3_img2img", "sd3_inpaint"]
    assert not generator_class("sd_img2img").trained_models
    with pytest.raises(Exception, match="unknown generator 'gan'.*known: ddim"):
        generator_class("gan")


def test_resume_keys_come_from_the_fields_and_a_stale_exclude_fails():
    import gap_filling.run as stage3
    # the 28 settings stage 3 resumed on when they were a hand-kept list
    assert set(stage3._RESUME_KEYS) == {
        "weight_paths", "label_models", "categories", "balance", "split_sites",
        "generate_diffusion_steps", "eta", "guidance_scale", "guidance_rescale",
        "sample_weights", "guidance_max_noise", "seed", "site_regex", "site_csv", "min_size",
        "generator", "strength", "audit_features", "audit_percentile", "audit_scope",
        "memorisation_gate", "gate_rounds", "sd_preset", "sd_image_size", "sd_dtype",
        "prompt_template", "prompt_file", "prompt_noise_std"}
    with pytest.raises(ValueError, match="no field.*no_such_setting"):
        resume_keys(AugmentationConfig, exclude=("out_dir", "no_such_setting"))


@pytest.fixture(scope="module")
def tiny_model():
    """A tiny untrained DDIM conditioned on 2 classes and 2 sites (the maths is the same
    trained or not)."""
    keras = pytest.importorskip("keras")
    from config import DiffusionConfig
    from diffusion.training import build_model
    cfg = DiffusionConfig(image_size=(16, 16), widths=[8, 16], block_depth=1,
                          embedding_dims=8, conditional=True, site_conditioning=True,
                          use_mix_precision=False, channels="3")
    keras.utils.set_random_seed(0)
    return build_model(cfg, 2, 2)


def test_a_request_reaches_the_model_as_stage3_called_it(tiny_model):
    from generators.ddim import DdimSampler
    from generators.sdedit import SdEdit
    settings = Settings(steps=2, eta=0.5, guidance_scale=2.0, guidance_rescale=0.3,
                        batch_size=2, strength=0.5)
    ref = ModelRef("m", 1, ("S1", "S2"))
    common = dict(steps=2, eta=0.5, labels=1, guidance_scale=2.0, guidance_rescale=0.3,
                  guidance_max_noise=0.0, batch_size=2, sites=[1, 2])  # S9: any site (2)
    # from noise: images 3 and 4 of a label's stream
    got = DdimSampler({"m": tiny_model}, settings).generate(
        Request([ref] * 2, seed=7, start_index=3, sites=["S2", "S9"]))
    want = tiny_model.generate(2, seed=7, start_index=3, **common)
    np.testing.assert_array_equal(got, want)
    # variations of real images, each from its own seed
    sources = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    got = SdEdit({"m": tiny_model}, settings).generate(
        Request([ref] * 2, seed=[11, 12], sites=["S2", "S9"], sources=sources))
    want = tiny_model.img2img(sources, strength=0.5, seed=[11, 12], **common)
    np.testing.assert_array_equal(got, want)


def test_manifest_fields_say_what_matters_for_the_model(tiny_model, tmp_path):
    from generators.ddim import DdimSampler
    from generators.sd3 import Sd3Img2Img
    settings = Settings(steps=3, eta=1.0, guidance_scale=3.0, strength=0.6,
                        prompt_noise_std=0.1)
    plain = DdimSampler({}, settings).manifest_params(ModelRef(str(tmp_path), None), "S1")
    assert plain == {"steps": 3, "eta": 1.0, "model": str(tmp_path.resolve()),
                     "weights": "best"}
    cond = DdimSampler({}, settings).manifest_params(ModelRef("w.h5", 0, ("S1",)), "S2")
    assert cond["class_index"] == 0 and cond["site_index"] is None and "weights" not in cond
    sd = Sd3Img2Img({}, settings).manifest_params(ModelRef("preset", None), "S1")
    assert sd == {"steps": 3, "model": "preset", "strength": 0.6, "guidance_scale": 3.0,
                  "prompt_noise_std": 0.1}
