"""Stage 2 models: U-Net, DiffusionModel training, sampling, eta, save/load, RePaint,
class conditioning, mixed precision. Tiny models (16x16, widths [8, 16]) on real files."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import TINY_UNET, save_image  # noqa: E402
from diffusion.data import find_label_images, load_image, make_dataset  # noqa: E402
from diffusion_maths.schedule import (ddim_sigma, ddim_step, diffusion_schedule,  # noqa: E402
                                      renoise)
from diffusion_model import DiffusionModel  # noqa: E402
from u_net_backbone import (SinusoidalEmbedding, SpatialSelfAttention, UNetConfigError,  # noqa: E402
                            build_unet)

TINY = dict(TINY_UNET, attention_in_bottleneck=True)
COLOURS = {"red": (220, 40, 40), "blue": (30, 60, 210)}


def write_label_images(folder, colour, n, rng):
    """Checkerboards in one colour with random brightness, as PNG and JPEG of odd sizes."""
    for i in range(n):
        yy, xx = np.mgrid[:20, :24]
        img = np.empty((20, 24, 3), np.uint8)
        img[:] = np.clip(np.array(colour) * rng.uniform(0.7, 1.0), 0, 255)
        img[(yy // 4 + xx // 4 + i) % 2 == 0] //= 3
        save_image(folder / f"S{i % 3}_{i}.{'png' if i % 2 else 'jpg'}", img)


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        write_label_images(root / name, colour, 24, rng)
    return root


@pytest.fixture(scope="module")
def trained(image_dirs):
    """An unconditional tiny model trained 45 steps; returns (model, history)."""
    keras.utils.set_random_seed(0)
    ds = make_dataset(find_label_images(image_dirs / "red"), None, (16, 16), 8, True,
                      seed=0, flip=True)
    model = DiffusionModel(**TINY, seed=1, ema=0.9)  # short run: EMA must keep up
    model.adapt_normalizer(ds)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3, weight_decay=1e-4))
    history = model.fit(ds, epochs=15, verbose=0, shuffle=False)
    return model, history.history


def test_training_really_lowers_the_loss(trained):
    model, hist = trained
    loss = hist["n_loss"]
    assert loss[0] > 0.75  # zero-initialised output: predicts no noise, MAE ~ E|N(0,1)|
    assert np.mean(loss[-3:]) < 0.85 * np.mean(loss[:3]), loss
    # the EMA weights follow the trained weights, lagging behind them
    ema_w, w = model.ema_network.get_weights()[0], model.network.get_weights()[0]
    assert not np.array_equal(ema_w, w)
    assert np.abs(ema_w - w).mean() < 0.5 * np.abs(w).mean()


def test_normalizer_uses_image_statistics(trained, image_dirs):
    model, _ = trained
    imgs = np.stack([load_image(p, (16, 16)) for p in find_label_images(image_dirs / "red")])
    mean = keras.ops.convert_to_numpy(model.pixel_mean)
    assert mean[0] > mean[2] + 0.1  # red images
    np.testing.assert_allclose(mean, imgs.reshape(-1, 3).mean(0), atol=0.08)  # flips/jpeg


def test_unet_and_layers_roundtrip_through_config():
    net = build_unet((16, 16), [8, 16], 1, embedding_dims=8, attention_in_bottleneck=True,
                     attention_in_up_down_sample=True, num_classes=3)
    rng = np.random.default_rng(0)
    # give the zero-initialised output conv weights so the comparison means something
    net.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.1
                     for w in net.get_weights()])
    inputs = [rng.standard_normal((2, 16, 16, 3)).astype("float32"),
              np.full((2, 1, 1, 1), 0.3, "float32"), np.array([0, 3], "int32"),
              np.zeros((2, 8), "float32")]
    clone = keras.Model.from_config(net.get_config())
    clone.set_weights(net.get_weights())
    np.testing.assert_allclose(clone(inputs), net(inputs), atol=1e-5)
    assert any(isinstance(layer, SpatialSelfAttention) for layer in net.layers)
    emb = SinusoidalEmbedding.from_config(SinusoidalEmbedding(8).get_config())
    assert emb.embedding_dims == 8 and emb(np.ones((1, 1, 1, 1))).shape == (1, 1, 1, 8)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_modulated_group_norm_is_group_norm_then_scale_and_shift(policy):
    """The fused layer of the prenorm block computes what GroupNormalization followed by
    FeatureModulation computes (float32 statistics, also under bf16)."""
    from u_net_backbone import FeatureModulation, ModulatedGroupNorm
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (3, 8, 8, 32)).astype("float32")
    params = rng.normal(0.0, 0.5, (3, 1, 1, 64)).astype("float32")
    gamma, beta = rng.normal(1, .3, 32).astype("float32"), rng.normal(0, .3, 32).astype("float32")
    norm = keras.layers.GroupNormalization(groups=8)
    norm.build(x.shape)
    norm.set_weights([gamma, beta])
    expected = np.asarray(FeatureModulation()([norm(x), params]))
    keras.config.set_dtype_policy(policy)
    try:
        fused = ModulatedGroupNorm(groups=8)
        fused([x, params])
        fused.set_weights([gamma, beta])
        got = np.asarray(keras.ops.cast(fused([x, params]), "float32"))
        plain = np.asarray(keras.ops.cast(fused(x), "float32"))
    finally:
        keras.config.set_dtype_policy("float32")
    # bf16 rounds the output (8 bits of mantissa): about 1% of values near 5.
    np.testing.assert_allclose(got, expected, atol=1e-4 if policy == "float32" else 0.08)
    np.testing.assert_allclose(plain, np.asarray(norm(x)), atol=1e-4 if policy == "float32" else 0.08)


def test_every_residual_block_builds_with_its_norms_and_kernels():
    prenorm, lean, postnorm = (build_unet((16, 16), [8, 16], 1, embedding_dims=8,
                                          num_classes=2, residual_block=b)
                               for b in ("prenorm", "lean", "postnorm"))
    kinds = lambda net: {type(layer).__name__ for layer in net.layers}  # noqa: E731
    assert "ModulatedGroupNorm" in kinds(prenorm) and "GroupNormalization" not in kinds(prenorm)
    assert "GroupNormalization" in kinds(postnorm)
    # lean: the second convolution is 1x1, and the up block's 3x3 runs after the width change
    kernel = lambda net, name: net.get_layer(name).kernel.shape  # noqa: E731
    assert kernel(prenorm, "up0_0_conv2")[:2] == (3, 3) and kernel(lean, "up0_0_conv2")[:2] == (1, 1)
    assert kernel(prenorm, "up0_0_conv1")[2] == 16 + 8 and kernel(lean, "up0_0_conv1")[2] == 8
    assert lean.count_params() < 0.7 * prenorm.count_params()
    out = lean([np.ones((2, 16, 16, 3), "float32"), np.full((2, 1, 1, 1), 0.5, "float32"),
                np.array([0, 1]), np.zeros((2, 8), "float32")])
    assert out.shape == (2, 16, 16, 3)
    with pytest.raises(UNetConfigError, match="residual_block"):
        build_unet((16, 16), [8, 16], 1, residual_block="fast")


@pytest.mark.parametrize("block", ["prenorm", "lean", "postnorm"])
def test_unet_dropout_acts_while_training_only(block):
    def build(rate):
        keras.utils.set_random_seed(3)
        return build_unet((16, 16), [8, 16], 1, embedding_dims=8, num_classes=2,
                          residual_block=block, dropout=rate)
    plain, dropped = build(0.0), build(0.5)
    assert not any(type(la).__name__ == "Dropout" for la in plain.layers)
    assert sum(type(la).__name__ == "Dropout" for la in dropped.layers) == 3  # one a block
    dropped.set_weights(plain.get_weights())   # dropout adds no weights
    # the zero-initialised output layer would hide any difference
    head = dropped.get_layer("pred_noise")
    head.kernel.assign(np.random.default_rng(0).normal(size=head.kernel.shape))
    plain.get_layer("pred_noise").kernel.assign(head.kernel)
    x = [np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32"),
         np.full((2, 1, 1, 1), 0.5, "float32"), np.array([0, 1]), np.zeros((2, 8), "float32")]
    np.testing.assert_allclose(dropped(x, training=False), plain(x, training=False), atol=1e-5)
    assert np.abs(np.asarray(dropped(x, training=True)) - np.asarray(plain(x))).max() > 1e-2
    with pytest.raises(UNetConfigError, match="dropout"):
        build_unet((16, 16), [8, 16], 1, dropout=1.0)


def test_unet_rejects_bad_shapes():
    with pytest.raises(UNetConfigError, match="multiple of the 8"):
        build_unet((16, 16), [8, 12], 1)
    with pytest.raises(UNetConfigError, match="does not divide"):
        build_unet((18, 16), [8, 16, 32], 1)
    net = build_unet((8, 24), [8, 16], 1, embedding_dims=8)  # non-square
    assert net.output.shape == (None, 8, 24, 3)


def test_diffusion_model_config_roundtrip(trained):
    model, _ = trained
    clone = DiffusionModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert len(clone.weights) == len(model.weights)


def test_eta_zero_deterministic_and_eta_positive_random(trained):
    model, _ = trained
    a = model.generate(4, steps=8, eta=0.0, seed=5)
    b = model.generate(4, steps=8, eta=0.0, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 16, 16, 3) and a.min() >= 0 and a.max() <= 1
    c = model.generate(4, steps=8, eta=1.0, seed=5)
    assert np.abs(c - a).mean() > 1e-3  # eta changes the result (the reference's did not)
    d = model.generate(4, steps=8, eta=0.0, seed=6)
    assert np.abs(d - a).mean() > 1e-3


def test_per_image_seeds_and_batching(trained):
    model, _ = trained
    full = model.generate(5, steps=6, eta=0.5, seed=3, batch_size=2)
    alone = model.generate(1, steps=6, eta=0.5, seed=3, start_index=3)
    np.testing.assert_allclose(alone[0], full[3], atol=1e-5)
    big = model.generate(5, steps=6, eta=0.5, seed=3, batch_size=5)
    np.testing.assert_allclose(big, full, atol=1e-5)


def test_sampling_step_variance_on_known_case():
    """An untrained model predicts exactly zero noise (zero-init output), so one compiled
    DDIM step is x_next = (s_next / s_t) * x_t + sigma * z: check mean and std. (x_t / s_t
    stays inside the data range [0, 1] of an unadapted normaliser, so nothing is clipped.)"""
    model = DiffusionModel(**TINY)
    step = model._step_fn(False)
    n = 64
    x_t = np.full((n, 16, 16, 3), 0.3, "float32")
    z = np.random.default_rng(0).standard_normal(x_t.shape).astype("float32")
    labels, lnoise = np.zeros(n, "int32"), np.zeros((n, 8), "float32")
    t, t_next, eta = 0.6, 0.5, 0.8
    nxt, pred = step(x_t, np.float32(t), np.float32(t_next), np.float32(eta), z, labels, labels,
                     lnoise, np.float32(1), np.float32(0))
    _, s_t = diffusion_schedule(np.float64(t))
    _, s_next = diffusion_schedule(np.float64(t_next))
    sigma = ddim_sigma(s_t, s_next, eta)
    np.testing.assert_allclose(pred.numpy(), x_t / s_t, rtol=1e-5)
    np.testing.assert_allclose(nxt.numpy(), s_next / s_t * x_t + sigma * z, rtol=1e-4, atol=1e-5)
    assert np.std(nxt.numpy()) == pytest.approx(sigma, rel=0.05)
    # and the backend version of the maths agrees with numpy on the same inputs
    kx = keras.ops.convert_to_numpy(ddim_step(keras.ops.convert_to_tensor(x_t), keras.ops.zeros_like(x_t),
                                              keras.ops.convert_to_tensor(np.float32(s_t)),
                                              keras.ops.convert_to_tensor(np.float32(s_next)), eta,
                                              keras.ops.convert_to_tensor(z)))
    np.testing.assert_allclose(kx, ddim_step(x_t, np.zeros_like(x_t), s_t, s_next, eta, z),
                               rtol=1e-4, atol=1e-5)
    kr = keras.ops.convert_to_numpy(renoise(keras.ops.convert_to_tensor(x_t), np.float32(s_next),
                                            np.float32(s_t), keras.ops.convert_to_tensor(z)))
    np.testing.assert_allclose(kr, renoise(x_t, s_next, s_t, z), rtol=1e-4, atol=1e-5)


def test_sampling_clips_the_clean_estimate_into_the_data_range():
    """x_t / s_t = 1.43 lies above pixel value 1: the step uses x0 = 1 and the noise that,
    with it, explains x_t exactly (ADM's clip_denoised), so no over-exposure is carried on."""
    model = DiffusionModel(**TINY)
    n, t, t_next = 4, 0.6, 0.5
    x_t = np.full((n, 16, 16, 3), 0.7, "float32")
    zeros = np.zeros_like(x_t)
    ids, lnoise = np.zeros(n, "int32"), np.zeros((n, 8), "float32")
    nxt, pred = model._step_fn(False)(x_t, np.float32(t), np.float32(t_next), np.float32(0),
                                      zeros, ids, ids, lnoise, np.float32(1), np.float32(0))
    n_t, s_t = diffusion_schedule(np.float64(t))
    _, s_next = diffusion_schedule(np.float64(t_next))
    assert 0.7 / s_t > 1.2
    np.testing.assert_allclose(pred.numpy(), 1.0)
    eps = (0.7 - s_t * 1.0) / n_t
    np.testing.assert_allclose(nxt.numpy(), ddim_step(1.0, eps, s_t, s_next, 0.0), rtol=1e-5)
    samples = model.generate(2, steps=3, seed=0)
    assert samples.min() >= 0.0 and samples.max() <= 1.0


def test_save_load_gives_identical_samples(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    loaded = DiffusionModel.from_config(model.get_config())
    loaded.load_weights(path)  # no "unbuilt model" error
    np.testing.assert_array_equal(loaded.generate(3, steps=5, eta=0.7, seed=9),
                                  model.generate(3, steps=5, eta=0.7, seed=9))


def test_repaint_keeps_known_region(trained, image_dirs):
    model, _ = trained
    paths = find_label_images(image_dirs / "red")[:3]
    images = np.stack([load_image(p, (16, 16)) for p in paths])
    masks = np.zeros((3, 16, 16), "float32")
    masks[:, 4:12, 4:12] = 1
    out = model.inpaint(images, masks, steps=6, jump_length=2, jump_n_sample=2, eta=1.0, seed=1)
    keep = masks == 0
    np.testing.assert_array_equal(out[keep], images[keep])
    assert np.abs(out[~keep] - images[~keep]).mean() > 1e-3
    again = model.inpaint(images, masks, steps=6, jump_length=2, jump_n_sample=2, eta=1.0, seed=1)
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match="masks"):
        model.inpaint(images, masks[:, :8], steps=2)


@pytest.fixture(scope="module")
def conditional(image_dirs):
    """A 2-label (red/blue) conditional tiny model trained 120 steps."""
    keras.utils.set_random_seed(0)
    paths, labels = [], []
    for i, name in enumerate(COLOURS):
        found = find_label_images(image_dirs / name)
        paths += found
        labels += [i] * len(found)
    ds = make_dataset(paths, labels, (16, 16), 8, True, seed=0)
    model = DiffusionModel(**TINY, num_classes=2, label_dropout=0.2, seed=2, ema=0.9)
    model.adapt_normalizer(ds)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3, weight_decay=1e-4))
    hist = model.fit(ds, epochs=20, verbose=0, shuffle=False)
    return model, hist.history


def _predicted_images(model, images, labels, t=0.9):
    """The EMA network's clean-image estimate (pixels in [0, 1]) at time t for `labels`."""
    x0 = keras.ops.convert_to_numpy(model.normalize(images))
    eps = np.random.default_rng(0).standard_normal(x0.shape).astype("float32")
    noise_rate, signal_rate = diffusion_schedule(np.float32(t))
    noisy = signal_rate * x0 + noise_rate * eps
    pred_noise = model.ema_network([noisy, np.full((len(x0), 1, 1, 1), noise_rate ** 2, "float32"),
                                    np.broadcast_to(np.asarray(labels, "int32"), len(x0)),
                                    np.zeros((len(x0), model.embedding_dims), "float32")])
    pred_x0 = (noisy - noise_rate * keras.ops.convert_to_numpy(pred_noise)) / signal_rate
    return keras.ops.convert_to_numpy(model.denormalize(pred_x0))


def test_conditional_model_uses_its_labels(conditional, image_dirs):
    model, hist = conditional
    assert np.mean(hist["n_loss"][-3:]) < np.mean(hist["n_loss"][:3])
    images = np.concatenate([np.stack([load_image(p, (16, 16)) for p in
                                       find_label_images(image_dirs / name)])
                             for name in COLOURS])
    truth = np.repeat([0, 1], len(images) // 2)
    as_red, as_blue = (_predicted_images(model, images, lab) for lab in (0, 1))
    # from the same very noisy inputs, label "red" yields redder images than label "blue"
    redness = lambda x: (x[..., 0] - x[..., 2]).mean()  # noqa: E731
    assert redness(as_red) > redness(as_blue) + 0.05
    # and the true label explains the images better than the swapped one
    pick = lambda lab_is_red: np.where(lab_is_red[:, None, None, None], as_red, as_blue)  # noqa: E731
    assert np.abs(pick(truth == 0) - images).mean() < np.abs(pick(truth == 1) - images).mean()


def test_conditional_model_samples_per_label(conditional):
    model, _ = conditional
    red = model.generate(4, steps=6, seed=0, labels=0, guidance_scale=2.0)
    blue = model.generate(4, steps=6, seed=0, labels=1, guidance_scale=2.0)
    assert red.shape == blue.shape == (4, 16, 16, 3)
    # same noise, different label: clearly different images (red vs blue pixels)
    assert (red[..., 0] - red[..., 2]).mean() > (blue[..., 0] - blue[..., 2]).mean() + 0.1
    mixed = model.generate(2, steps=4, seed=0, labels=[0, 1])
    noisy = model.generate(2, steps=4, seed=0, labels=[0, 1], label_noise_std=1.0)
    assert np.abs(mixed - noisy).mean() > 1e-4  # label-embedding noise changes samples
    # guidance in a limited interval: a bound below every step's noise level is no guidance
    kw = dict(steps=6, eta=0.0, seed=0, labels=[0, 1])
    none = model.generate(2, guidance_scale=2.0, guidance_max_noise=1e-3, **kw)
    np.testing.assert_allclose(none, model.generate(2, **kw), atol=1e-5)
    every = model.generate(2, guidance_scale=2.0, guidance_max_noise=1e3, **kw)
    np.testing.assert_allclose(every, model.generate(2, guidance_scale=2.0, **kw), atol=1e-5)
    some = model.generate(2, guidance_scale=2.0, guidance_max_noise=3.0, **kw)
    assert np.abs(some - every).mean() > 1e-4 and np.abs(some - none).mean() > 1e-4
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        model.generate(1, steps=2, labels=2)
    with pytest.raises(ValueError, match="needs labels"):
        model.generate(1, steps=2)


@pytest.mark.slow
def test_mixed_bfloat16_policy_builds_bf16_network_with_float32_output():
    from runtime.precision import set_precision
    set_precision("mixed_bfloat16")
    model = DiffusionModel(**TINY)
    conv = model.network.get_layer("down0_0_conv1")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert model.network.get_layer("pred_noise").compute_dtype == "float32"
    images = np.random.default_rng(0).random((8, 16, 16, 3)).astype("float32")
    model.adapt_normalizer(images)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    hist = model.fit(images, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(hist.history["n_loss"]).all()
    assert model.generate(2, steps=3, seed=0).dtype == np.float32
