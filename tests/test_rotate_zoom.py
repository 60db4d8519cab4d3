"""The zoom computed from angle and aspect ratio leaves no black corner and crops no more."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from balancing.rotate_zoom import cover_zoom, rotate_zoom


@pytest.mark.parametrize("theta", [0.5, 5, 10, 17.5, 30, 45, -12])
@pytest.mark.parametrize("h, w", [(200, 600), (600, 200), (64, 64), (33, 47), (16, 300)])
def test_no_black_pixels_left(theta, h, w):
    white = np.full((h, w, 3), 255, np.uint8)
    for flip in (False, True):
        out = rotate_zoom(white, theta, flip, border_mode=cv2.BORDER_CONSTANT)
        assert out.shape == white.shape and out.dtype == np.uint8
        assert out.min() >= 254, f"dark pixels at theta={theta} size={h}x{w}"


@pytest.mark.parametrize("theta, h, w", [(5, 200, 600), (30, 64, 64), (10, 100, 300)])
def test_zoom_is_the_least_that_works(theta, h, w):
    """2% less zoom than computed must already show black: nothing extra is cropped."""
    white = np.full((h, w), 255, np.uint8)
    less = cover_zoom(theta, h, w) * 0.98
    out = rotate_zoom(white, theta, zoom=less, border_mode=cv2.BORDER_CONSTANT)
    assert out.min() < 200


def test_reference_case_and_square():
    assert cover_zoom(5, 200, 600) == pytest.approx(math.cos(math.radians(5)) + 3 * 599 / 599
                                                    * math.sin(math.radians(5)), rel=1e-2)
    assert cover_zoom(0, 50, 80) == pytest.approx(1.0)
    assert cover_zoom(45, 64, 64) == pytest.approx(math.sqrt(2))


def test_flip_and_explicit_fact():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(rotate_zoom(img, 0, flip=True), img[:, ::-1])
    assert np.array_equal(rotate_zoom(img, 0, flip=False), img)
    zoomed = rotate_zoom(img, 5, zoom=1.3)
    assert not np.array_equal(zoomed, rotate_zoom(img, 5))


@pytest.mark.parametrize("theta", [5, -20])
def test_flip_inside_the_warp_equals_flipping_first(theta):
    img = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    a = rotate_zoom(img, theta, flip=True).astype(int)
    b = rotate_zoom(np.ascontiguousarray(img[:, ::-1]), theta).astype(int)
    assert np.abs(a - b).max() <= 1
