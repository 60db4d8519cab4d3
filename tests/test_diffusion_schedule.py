"""Pure maths of stage 2 (no TensorFlow): schedule, DDIM step with eta, RePaint path, KID,
U-Net rules, label balance, config flags, precision choice."""
from __future__ import annotations

import numpy as np
import pytest

from diffusion.kid import kid_from_features, polynomial_kernel
from diffusion_maths.label_balance import label_repeats
from diffusion_maths.schedule import (clip_denoised, ddim_sigma, ddim_step, diffusion_schedule,
                                      renoise, repaint_schedule, sampling_times)
from diffusion_maths.unet_rules import UNetConfigError, attention_levels, validate_unet_args

MIN_S, MAX_S = 0.02, 0.95


def test_schedule_matches_cosine_formula_and_ends():
    t = np.linspace(0, 1, 11)
    noise, signal = diffusion_schedule(t, MIN_S, MAX_S)
    angles = np.arccos(MAX_S) + t * (np.arccos(MIN_S) - np.arccos(MAX_S))
    np.testing.assert_allclose(signal, np.cos(angles), rtol=1e-12)
    np.testing.assert_allclose(noise, np.sin(angles), rtol=1e-12)
    np.testing.assert_allclose(noise ** 2 + signal ** 2, 1.0, rtol=1e-12)
    assert signal[0] == pytest.approx(MAX_S) and signal[-1] == pytest.approx(MIN_S)
    assert np.all(np.diff(signal) < 0)  # less signal as time grows


def test_sigma_formula_and_eta_zero():
    _, s_t = diffusion_schedule(np.array(0.6), MIN_S, MAX_S)
    _, s_prev = diffusion_schedule(np.array(0.5), MIN_S, MAX_S)
    a_t, a_prev = s_t ** 2, s_prev ** 2
    ddpm = np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    assert ddim_sigma(s_t, s_prev, 1.0) == pytest.approx(ddpm)
    assert ddim_sigma(s_t, s_prev, 0.5) == pytest.approx(0.5 * ddpm)
    assert ddim_sigma(s_t, s_prev, 0.0) == 0.0
    assert ddpm > 0.01  # the reference's variance was <= 0 here, so its eta did nothing


def test_eta_zero_step_is_deterministic_and_exact():
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((2, 4, 4, 3))
    _, s_t = diffusion_schedule(np.array(0.7))
    _, s_prev = diffusion_schedule(np.array(0.6))
    out1 = ddim_step(x0, eps, s_t, s_prev, 0.0, rng.standard_normal(x0.shape))
    out2 = ddim_step(x0, eps, s_t, s_prev, 0.0, rng.standard_normal(x0.shape))
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_allclose(out1, s_prev * x0 + np.sqrt(1 - s_prev ** 2) * eps)


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_eta_step_keeps_marginal_and_has_sigma_variance(eta):
    """With a perfect prediction, x_prev - s_prev*x0 must have variance 1 - a_prev for any
    eta, and the fresh-noise part variance sigma^2 (fixed x_t)."""
    rng = np.random.default_rng(1)
    n = 200_000
    x0 = rng.standard_normal(n)
    eps = rng.standard_normal(n)
    z = rng.standard_normal(n)
    _, s_t = diffusion_schedule(np.array(0.8))
    _, s_prev = diffusion_schedule(np.array(0.7))
    x_prev = ddim_step(x0, eps, s_t, s_prev, eta, z)
    assert np.var(x_prev - s_prev * x0) == pytest.approx(1 - s_prev ** 2, rel=0.02)
    sigma = ddim_sigma(s_t, s_prev, eta)
    fixed = ddim_step(np.full(n, 0.3), np.full(n, -0.2), s_t, s_prev, eta, z)
    assert np.std(fixed) == pytest.approx(sigma, rel=0.02)
    assert not np.allclose(fixed, fixed[0])


def test_renoise_is_forward_diffusion():
    rng = np.random.default_rng(2)
    n = 200_000
    x0 = rng.standard_normal(n)
    n_t, s_t = diffusion_schedule(np.array(0.3))
    n_u, s_u = diffusion_schedule(np.array(0.5))
    x_t = s_t * x0 + n_t * rng.standard_normal(n)
    x_u = renoise(x_t, s_t, s_u, rng.standard_normal(n))
    # x_u should be s_u * x0 + n_u * eps'
    assert np.mean(x_u * x0) == pytest.approx(s_u, rel=0.02)
    assert np.var(x_u - s_u * x0) == pytest.approx(n_u ** 2, rel=0.02)


def test_sampling_times():
    np.testing.assert_allclose(sampling_times(4), [1, 0.75, 0.5, 0.25, 0])
    with pytest.raises(ValueError):
        sampling_times(0)


@pytest.mark.parametrize("steps,jl,jn", [(4, 2, 2), (50, 10, 10), (20, 3, 4), (7, 1, 1)])
def test_repaint_schedule_shape(steps, jl, jn):
    path = repaint_schedule(steps, jl, jn)
    assert path[0] == steps and path[-1] == 0
    assert all(abs(b - a) == 1 for a, b in zip(path, path[1:]))
    ups = sum(b > a for a, b in zip(path, path[1:]))
    n_jump_points = len(range(0, steps - jl, jl))
    assert ups == n_jump_points * (jn - 1) * jl
    assert min(path) == 0 and max(path) == steps


def test_repaint_schedule_example_and_no_jumps():
    assert repaint_schedule(4, 2, 2) == [4, 3, 2, 1, 0, 1, 2, 1, 0]
    assert repaint_schedule(5, 10, 10) == [5, 4, 3, 2, 1, 0]
    with pytest.raises(ValueError):
        repaint_schedule(5, 0, 1)


def test_kid_zero_for_same_distribution_positive_for_different():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 16))
    b = rng.standard_normal((300, 16))
    c = rng.standard_normal((300, 16)) + 0.5
    assert abs(kid_from_features(a, b)) < 0.01
    assert kid_from_features(a, c) > 0.05
    # unbiased: the mean over many same-distribution pairs is ~0 (a biased MMD is > 0)
    vals = [kid_from_features(rng.standard_normal((20, 4)), rng.standard_normal((20, 4)))
            for _ in range(200)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals))
    np.testing.assert_allclose(polynomial_kernel(a[:2], a[:2]), (a[:2] @ a[:2].T / 16 + 1) ** 3)
    with pytest.raises(ValueError):
        kid_from_features(a[:1], b)


def test_unet_rules():
    validate_unet_args((200, 600), [32, 64, 96, 128], 2, 32)  # non-square works
    with pytest.raises(UNetConfigError, match="multiple of the 8 GroupNorm"):
        validate_unet_args((64, 64), [8, 12], 1, 32)
    with pytest.raises(UNetConfigError, match="use 24 or 32"):
        validate_unet_args((30, 32), [8, 16, 32, 64], 1, 32)
    with pytest.raises(UNetConfigError, match="even"):
        validate_unet_args((32, 32), [8, 16], 1, 7)
    with pytest.raises(UNetConfigError, match="bottleneck attention"):
        validate_unet_args((1024, 1024), [8, 16], 1, 32, attention_in_bottleneck=True)
    assert attention_levels((64, 64), [8, 16, 32, 64]) == [1, 2]
    assert attention_levels((200, 600), [32, 64, 96, 128]) == []


def test_config_flags_give_clear_errors(capsys):
    from cli.flags import parse_config
    from config import DiffusionConfig
    cfg, _ = parse_config(DiffusionConfig, ["--in_dir", "x", "--image_size", "200", "600",
                                            "--widths", "16", "32", "64", "128"])
    assert cfg.image_size == (200, 600) and cfg.widths == [16, 32, 64, 128]
    for argv, msg in [(["--in_dir", "x", "--widths", "12", "24"], "multiple of the 8 GroupNorm"),
                      (["--in_dir", "x", "--image_size", "63", "64"], "does not divide by 8"),
                      (["--runtime", "inference"], "needs --model_dir"),
                      ([], "--in_dir is required"),
                      (["--in_dir", "x", "--eta", "1.5"], "--eta must be <= 1.0")]:
        with pytest.raises(SystemExit) as exc:
            parse_config(DiffusionConfig, argv)
        assert exc.value.code == 2
        assert msg in capsys.readouterr().err


def test_precision_choice():
    from runtime.precision import cpu_has_bf16, resolve_precision
    assert resolve_precision("auto", use_gpu=True) == "mixed_float16"
    cpu = resolve_precision("auto", use_gpu=False)
    assert cpu == ("mixed_bfloat16" if cpu_has_bf16() else "float32")
    assert resolve_precision("float32", use_gpu=True) == "float32"
    with pytest.raises(ValueError):
        resolve_precision("fp8")


def test_guidance_rescale_restores_the_conditional_spread_per_image():
    from diffusion_maths.schedule import guided_output
    rng = np.random.default_rng(0)
    cond = rng.normal(0, 1, (3, 4, 4, 1)) * np.array([1.0, 2.0, 0.5])[:, None, None, None]
    uncond = rng.normal(0, 1, (3, 4, 4, 1)) * 0.3
    plain = guided_output(cond, uncond, 3.0)
    np.testing.assert_allclose(plain, uncond + 3.0 * (cond - uncond))
    np.testing.assert_allclose(guided_output(cond, uncond, 3.0, 0.0), plain)
    full = guided_output(cond, uncond, 3.0, 1.0)
    np.testing.assert_allclose(full.std(axis=(1, 2, 3)), cond.std(axis=(1, 2, 3)), rtol=1e-5)
    half = guided_output(cond, uncond, 3.0, 0.5)
    assert np.all(cond.std(axis=(1, 2, 3)) < half.std(axis=(1, 2, 3)))
    assert np.all(half.std(axis=(1, 2, 3)) < plain.std(axis=(1, 2, 3)))


def test_guidance_at_guides_only_up_to_the_noise_bound():
    from diffusion_maths.schedule import diffusion_schedule, guidance_at
    times = np.linspace(0.0, 1.0, 51)
    noise, signal = diffusion_schedule(times)
    ratio = noise / signal
    scales = np.array([guidance_at(t, 3.0, 3.0) for t in times])
    assert set(scales[ratio <= 3.0]) == {3.0} and set(scales[ratio > 3.0]) == {1.0}
    assert scales[0] == 3.0 and scales[-1] == 1.0  # clean end guided, pure noise not
    assert {guidance_at(t, 3.0, 0.0) for t in times} == {3.0}  # 0: every step


def test_clip_denoised_clips_and_keeps_the_pair_consistent():
    rng = np.random.default_rng(0)
    x0 = rng.normal(0, 2, (3, 4, 4, 1))
    noisy = rng.normal(0, 1, x0.shape)
    n, s = diffusion_schedule(np.array([0.2, 0.5, 0.9]).reshape(3, 1, 1, 1))
    eps, clipped = clip_denoised(noisy, x0, n, s, -1.0, 1.5)
    assert clipped.min() >= -1.0 and clipped.max() <= 1.5
    inside = (x0 >= -1.0) & (x0 <= 1.5)
    np.testing.assert_array_equal(clipped[inside], x0[inside])
    np.testing.assert_allclose(s * clipped + n * eps, noisy, atol=1e-12)


@pytest.mark.parametrize("counts", [{0: 300, 1: 200, 2: 120, 3: 60, 4: 40, 5: 20},
                                    {0: 44, 1: 20, 2: 21}, {0: 7, 1: 3}])
@pytest.mark.parametrize("balance", [0.0, 0.3, 0.5, 1.0])
def test_label_repeats_give_each_label_its_share_within_ten_percent(counts, balance):
    """Label i's share of the repeated images goes as counts[i] ** (1 - balance): at 1
    every label is drawn about equally often, at 0 nothing is repeated."""
    reps = label_repeats(counts, balance)
    assert set(reps) == set(counts) and min(reps.values()) >= 1
    got = np.array([counts[k] * reps[k] for k in counts], float)
    want = np.array([counts[k] ** (1 - balance) for k in counts], float)
    np.testing.assert_allclose(got / got.sum(), want / want.sum(), rtol=0.2)
    if balance == 0:
        assert set(reps.values()) == {1}


def test_label_repeats_edges():
    assert label_repeats({}, 1.0) == {}
    assert label_repeats({0: 5, 1: 0}, 1.0) == {0: 1}
    assert label_repeats({0: 300, 1: 20}, 1.0) == {0: 1, 1: 15}
    with pytest.raises(ValueError, match="between 0 and 1"):
        label_repeats({0: 3}, 1.5)
