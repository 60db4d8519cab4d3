"""Robust image loading: every odd format becomes 8-bit RGB; bad files give one-line errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_image
from dataset.images import ImageLoadError, load_rgb, probe_image, save_rgb


def _rgb(h=8, w=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("RGBA", ".png"), ("P", ".png"),
                                          ("CMYK", ".jpg"), ("LA", ".png"), ("RGB", ".bmp"),
                                          ("RGB", ".tif"), ("RGB", ".webp"), ("1", ".png")])
def test_modes_become_uint8_rgb(tmp_path, mode, suffix):
    path = tmp_path / f"img{suffix}"
    Image.fromarray(_rgb()).convert(mode).save(path)
    img = load_rgb(path)
    assert img.shape == (8, 12, 3) and img.dtype == np.uint8
    assert probe_image(path) == (12, 8)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    img = load_rgb(path)
    assert img.dtype == np.uint8 and img[..., 0].min() == 0 and img[..., 0].max() == 255
    assert np.array_equal(img[..., 0], (ramp // 257).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path):
    arr = _rgb(8, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=100)
    assert load_rgb(path).shape == (20, 8, 3)
    assert probe_image(path) == (8, 20)


def _photo(h: int, w: int) -> np.ndarray:
    """A smooth colour photo-like image (JPEG's reduced decoding is exact on smooth areas)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return (np.stack([np.sin(6 * x), np.cos(5 * y), np.sin(4 * (x + y))], -1) * 100 + 128
            ).astype(np.uint8)


def test_min_side_decodes_big_jpegs_smaller_but_never_below_it(tmp_path):
    from classifier.data import resize_square
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1200x1600 landscape, shown as portrait
    path = tmp_path / "camera.jpg"
    Image.fromarray(_photo(1200, 1600)).save(path, exif=exif, quality=95)
    full = load_rgb(path)
    assert full.shape == (1600, 1200, 3)
    small = load_rgb(path, min_side=140)
    assert small.shape == (200, 150, 3)       # 1/8 scale still leaves 150 >= 140
    assert min(small.shape[:2]) >= 140
    a = resize_square(full, 140).astype(int)
    b = resize_square(small, 140).astype(int)
    assert np.abs(a - b).mean() < 2.0          # the same picture after the shrink
    png = tmp_path / "camera.png"
    Image.fromarray(_photo(400, 600)).save(png)
    assert load_rgb(png, min_side=50).shape == (400, 600, 3)   # only JPEGs are reduced
    assert load_rgb(path, min_side=1000).shape == (1600, 1200, 3)


def test_truncated_and_fake_images_raise_one_line_errors(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(_rgb(64, 64)).save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture")
    for path, reason in ((cut, "truncated"), (fake, "not an image"),
                         (tmp_path / "missing.png", "not found")):
        for fn in (load_rgb, probe_image):
            with pytest.raises(ImageLoadError, match=reason) as exc:
                fn(path)
            assert "\n" not in str(exc.value)


def test_save_is_atomic_and_lossless_for_png(tmp_path):
    arr = _rgb()
    path = save_rgb(tmp_path / "sub" / "a.png", arr)
    assert np.array_equal(load_rgb(path), arr)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.png"]  # no temp file left
    with pytest.raises(ValueError, match="unsupported"):
        save_rgb(tmp_path / "a.gif", arr)
    with pytest.raises(ValueError, match="uint8"):
        save_rgb(tmp_path / "b.png", arr.astype(np.float32))


def test_decoded_images_are_shared_until_the_file_changes(tmp_path):
    """The runs of one comparison decode each file once (classifier.data.DecodedCache)."""
    from classifier.data import DecodedCache, load_images
    paths = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(4)]
    cache = DecodedCache()
    first, ok, errors = load_images(paths[:3], 16, cache=cache)
    assert ok == [0, 1, 2] and errors == [] and len(cache.items) == 3
    again, _, _ = load_images(paths[:3], 16, cache=cache)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(load_images(paths[:3], 16, cache=None)[0], first)
    # A file written again is decoded again; a missing one is reported as without a cache.
    write_image(Path(paths[1]), seed=9)
    os.utime(paths[1], ns=(1, 1))
    changed, _, _ = load_images(paths[:3], 16, cache=cache)
    assert not np.array_equal(changed[1], first[1])
    np.testing.assert_array_equal(changed[0], first[0])
    Path(paths[2]).unlink()
    _, ok, errors = load_images(paths[:3], 16, cache=cache)
    assert ok == [0, 1] and len(errors) == 1
    # Bounded: the least recently used image goes first.
    small = DecodedCache(max_bytes=2 * first[0].nbytes)
    load_images(paths[:2], 16, cache=small)
    load_images(paths[:1], 16, cache=small)          # 0 is now the most recent
    load_images(paths[3:], 16, cache=small)
    assert [k[0] for k in small.items] == [paths[0], paths[3]]
    assert small.bytes == small.max_bytes
