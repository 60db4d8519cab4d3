"""OOD inpainting, pure parts: masks, prompts, crop/paste maths, seeds, image choice, tables.
No Keras; numpy and real files only."""
from __future__ import annotations

import json

import numpy as np
import pytest

import config
from dataset.scan import scan_labelled_dir
from inpainting import crops
from inpainting import masks as mk
from inpainting.compare import drop_table, format_markdown
from pretrained.prompts import (PromptError, check_classes, load_prompts, parse_prompt_csv,
                                prompt_for)
from inpainting.run import choose_images, image_seed

from conftest import make_dataset


@pytest.mark.parametrize("region", sorted(mk.REGIONS))
def test_region_share_is_the_share_of_the_region_mask(region):
    """The share config.py checks --mask_area against is what the region's mask covers."""
    assert mk.region_mask((120, 120), region).mean() == pytest.approx(mk.region_share(region),
                                                                       abs=0.01)


@pytest.mark.parametrize("mode", ["box", "blob"])
@pytest.mark.parametrize("region", ["all", "lower_third", "left", "center"])
def test_generated_masks_are_seeded_sized_and_inside_their_region(mode, region):
    shape = (60, 90)
    area = 0.08
    a = mk.generate_mask(shape, mode, area, region, np.random.default_rng([5, 1]))
    b = mk.generate_mask(shape, mode, area, region, np.random.default_rng([5, 1]))
    c = mk.generate_mask(shape, mode, area, region, np.random.default_rng([6, 1]))
    assert a.shape == shape and a.dtype == bool
    np.testing.assert_array_equal(a, b)             # same seed, same mask
    assert not np.array_equal(a, c)                 # another image, another mask
    y0, y1, x0, x1 = mk.region_box(shape, region)
    inside = np.zeros(shape, bool)
    inside[y0:y1, x0:x1] = True
    assert not (a & ~inside).any()
    assert abs(a.sum() / a.size - area) < 0.02
    if mode == "blob":
        assert a.sum() == round(area * a.size)      # thresholded at the exact quantile


def test_region_mask_is_the_whole_region():
    m = mk.generate_mask((90, 40), "region", 0.5, "lower_third", np.random.default_rng(0))
    assert m[60:].all() and not m[:60].any()


def test_fit_mask_keeps_resizes_or_rejects_with_the_file_and_both_sizes():
    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:20] = True
    same, note = mk.fit_mask(mask, (20, 30), "m.png")
    assert note is None and same is mask
    big, note = mk.fit_mask(mask, (40, 60), "m.png")   # same aspect: resized, noted
    assert big.shape == (40, 60) and big[10:20, 10:40].all() and big.sum() == 4 * mask.sum()
    assert note == "mask m.png is 30x20 px, the image 60x40 px: resized (nearest)"
    with pytest.raises(mk.MaskError, match=r"mask m.png is 30x20 px but the image is 30x30 px"):
        mk.fit_mask(mask, (30, 30), "m.png")
    with pytest.raises(mk.MaskError, match="all black"):
        mk.fit_mask(np.zeros((20, 30), bool), (20, 30), "m.png")


def test_feather_blends_a_band_and_leaves_far_pixels_exactly_zero():
    mask = np.zeros((40, 40), bool)
    mask[15:25, 15:25] = True
    hard = mk.feather(mask, 0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    soft = mk.feather(mask, 2.0)
    assert soft[20, 20] > 0.9 and soft[:5].max() == 0 and soft[:, 35:].max() == 0
    band = (soft > 0) & (soft < 1)
    assert band.sum() > mask.sum() // 2
    np.testing.assert_array_equal(soft, mk.quantise(soft))  # exactly what the 8-bit file holds
    np.testing.assert_array_equal(mk.to_uint8_mask(soft) / np.float32(255), soft)

def test_feather_never_erases_a_small_mask():
    mask = np.zeros((80, 80), bool)
    mask[40, 40] = True                      # blurred alone it rounds to 0 everywhere
    soft = mk.feather(mask, 10.0)
    assert soft[40, 40] >= np.float32(1 / 255)
    assert crops.bounding_box(soft) is not None
    win = crops.crop_window(soft.shape, crops.bounding_box(soft), (16, 16))
    assert win[0] <= 40 < win[1] and win[2] <= 40 < win[3]
    far = np.ones_like(mask)
    far[40 - 30:40 + 31, 40 - 30:40 + 31] = False  # outside the 3-sigma band: exactly 0
    assert soft[far].max() == 0
    np.testing.assert_array_equal(soft, mk.quantise(soft))
    image = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    out = crops.paste_back(image, soft, win, np.ones((16, 16, 3), np.float32))
    np.testing.assert_array_equal(out[soft == 0], image[soft == 0])



def test_crop_window_contains_the_mask_has_model_aspect_and_stays_inside():
    assert crops.crop_window((20, 30), (2, 5, 2, 5), (32, 32)) == (0, 20, 0, 30)  # small: all
    win = crops.crop_window((600, 800), (400, 520, 100, 300), (64, 64))
    assert win == (335, 585, 75, 325)
    y0, y1, x0, x1 = crops.crop_window((100, 400), (90, 100, 380, 400), (32, 64))
    assert (x1 - x0) == 2 * (y1 - y0)                     # the model's aspect
    assert 0 <= y0 <= 90 and y1 == 100 and x1 == 400      # shifted inside, box covered
    y0, y1, x0, x1 = crops.crop_window((50, 300), (10, 40, 0, 300), (32, 32))
    assert (y0, y1, x0, x1) == (0, 50, 0, 300)            # clipped to the image


def test_paste_back_changes_only_masked_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    mask = np.zeros((50, 70), bool)
    mask[20:30, 40:55] = True
    weights = mk.feather(mask, 1.5)
    win = crops.crop_window(image.shape[:2], crops.bounding_box(weights), (16, 16))
    model_in, model_mask = crops.to_model(image, weights, win, (16, 16))
    assert model_in.shape == (16, 16, 3) and model_in.dtype == np.float32
    assert model_mask.shape == (16, 16) and model_mask.sum() > 0
    out = crops.paste_back(image, weights, win, np.ones((16, 16, 3), np.float32))
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[weights == 0], image[weights == 0])
    assert (out[weights == 1] == 255).all()
    band = (weights > 0) & (weights < 1)
    expect = np.rint(image[band] * (1 - weights[band, None]) + 255 * weights[band, None])
    np.testing.assert_array_equal(out[band], expect)
    with pytest.raises(ValueError, match="does not cover"):
        crops.paste_back(image, weights, (0, 10, 0, 10), np.ones((16, 16, 3), np.float32))


def test_prompt_files_load_and_cycle_per_class(tmp_path):
    ref = tmp_path / "prompts.json"   # the reference's format
    ref.write_text(json.dumps({"prompts": ["a log", "a kayak"]}))
    table = load_prompts(ref)
    assert [prompt_for(table, "x", j) for j in range(3)] == ["a log", "a kayak", "a log"]
    plain = tmp_path / "list.json"
    plain.write_text('["only"]')
    assert prompt_for(load_prompts(plain), "y", 5) == "only"
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("class;prompt\n# comment\n1;a log; half sunk\n2;a heron\n1;a tyre\n"
                        "*;foam\n")
    table = load_prompts(csv_file)
    assert [prompt_for(table, "1", j) for j in range(4)] == ["a log; half sunk", "a tyre",
                                                             "foam", "a log; half sunk"]
    assert [prompt_for(table, "3", j) for j in range(2)] == ["foam", "foam"]
    check_classes(table, ["1", "2", "3"], "p.csv")
    with pytest.raises(PromptError, match="no prompt for class"):
        check_classes(parse_prompt_csv("1;a log\n", "q.csv"), ["1", "2"], "q.csv")
    with pytest.raises(PromptError, match="does not exist"):
        load_prompts(tmp_path / "missing.json")
    with pytest.raises(PromptError, match="line 1"):
        parse_prompt_csv("no separator here\n", "bad.csv")


def test_image_seeds_and_the_seeded_choice_of_images(tmp_path):
    assert image_seed(42, "1/a.jpg") == image_seed(42, "1/a.jpg")
    assert len({image_seed(42, "1/a.jpg"), image_seed(42, "1/b.jpg"),
                image_seed(43, "1/a.jpg")}) == 3
    assert 0 <= image_seed(10**12, "x") < 2**31
    scan = scan_labelled_dir(make_dataset(tmp_path / "t", {"a": {"S": 7}, "b": {"S": 4},
                                                           "c": {"S": 1}}))
    for p, counts in [(0.5, {"a": 4, "b": 2, "c": 1}), (0.3, {"a": 2, "b": 1, "c": 0}),
                      (0.0, {"a": 0, "b": 0, "c": 0}), (1.0, {"a": 7, "b": 4, "c": 1})]:
        chosen = choose_images(scan, p, seed=1)
        got = {lab: sum(1 for r in scan.images if r.label == lab and r.relpath in chosen)
               for lab in counts}
        assert got == counts
        assert chosen == choose_images(scan, p, seed=1)
    assert choose_images(scan, 0.5, 1) != choose_images(scan, 0.5, 2)


def test_drop_table_and_markdown():
    def metrics(recalls, f1s, bal, macro):
        names = list(recalls)
        return {"class_names": names, "n": 10, "balanced_accuracy": bal, "macro_f1": macro,
                "per_class": {k: {"recall": recalls[k], "f1": f1s[k], "support": 5}
                              for k in names}}
    rows = drop_table(metrics({"a": 1.0, "b": 0.8}, {"a": 0.9, "b": 0.8}, 0.9, 0.85),
                      metrics({"a": 0.6, "b": 0.8}, {"a": 0.7, "b": 0.5}, 0.7, 0.6))
    assert [r["class"] for r in rows][:2] == ["a", "b"]
    assert rows[0]["recall_drop"] == pytest.approx(0.4)
    assert rows[1]["f1_drop"] == pytest.approx(0.3)
    assert rows[2]["recall_drop"] == pytest.approx(0.2)
    assert rows[2]["f1_drop"] == pytest.approx(0.25)
    md = format_markdown(rows, "t")
    assert "| a | 5 | 5 | 1.000 | 0.600 | 0.400 |" in md and md.startswith("## t")


def test_config_rejects_contradictions():
    from cli.flags import ConfigError, validate_config
    base = dict(test_dir="t", prompt_dir="p.json")
    for bad, match in [(dict(mask_path="m.png", mask_mode="box"), "one mask source"),
                       (dict(mask_mode="box", mask_area=0.5, mask_region="lower_third"),
                        "larger than"),
                       (dict(backend="ddim", prompt_dir=""), "needs --model_dir"),
                       (dict(prompt_dir=""), "needs --prompt_dir"),
                       (dict(guidance_scale=0.5), ">= 1"),
                       (dict(model_dir=["m"]), "are for --backend ddim"),
                       (dict(augm_type="masks"), "plain folder name")]:
        with pytest.raises(ConfigError, match=match):
            validate_config(config.InpaintingConfig(**{**base, **bad}))
    cfg = config.InpaintingConfig(**base, mode="img2img").resolved()
    assert cfg.augm_type == "img2img" and cfg.strength == 0.5 and cfg.mask_kind() == "none"
    cfg = config.InpaintingConfig(**base, mask_mode="region", mask_region="lower_third")
    assert cfg.resolved().augm_type == "inpaint_lower_third"
    assert config.InpaintingConfig(**base).resolved().augm_type == "inpaint_box"
    assert config.InpaintingConfig(**base, mask_dir="m").resolved().augm_type == "inpaint_masks"


def test_sd3_masks_cover_whole_latent_cells():
    from generators.sd3 import latent_aligned
    mask = np.zeros((32, 32), np.float32)
    mask[9, 2] = 1                      # one pixel: KerasHub's nearest shrink could miss it
    mask[20:22, 17:30] = 1
    grown = latent_aligned(mask)
    assert grown.shape == mask.shape and (grown >= mask).all()
    assert grown[8:16, 0:8].all() and grown[16:24, 16:32].all() and grown.sum() == 64 * 3
    assert (grown.reshape(4, 8, 4, 8).min(axis=(1, 3)) == grown.reshape(4, 8, 4, 8).max(
        axis=(1, 3))).all()             # every 8x8 cell is all in or all out


def test_compare_refuses_an_out_dir_inside_the_generate_run_that_holds_the_ood_set(tmp_path):
    from dataset.scan import DatasetError
    from inpainting.compare import compare_ood
    run = tmp_path / "ood_run"                 # what inpainting generate wrote
    (run / "inpaint_box" / "cat").mkdir(parents=True)
    (run / "masks").mkdir()
    (run / "manifest.csv").write_text("path,label,site_id,origin,generator,seed,params\n")
    (tmp_path / "test" / "cat").mkdir(parents=True)
    cfg = config.InpaintingCompareConfig(model=str(tmp_path / "model"),
                                         test_dir=str(tmp_path / "test"),
                                         ood_dir=str(run / "inpaint_box"),
                                         out_dir=str(run / "compare"))
    with pytest.raises(DatasetError, match="inside the inpainting run that holds --ood_dir"):
        compare_ood(cfg)
    assert sorted(p.name for p in run.iterdir()) == ["inpaint_box", "manifest.csv", "masks"]
