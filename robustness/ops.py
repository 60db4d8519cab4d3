"""Corruptions as pure functions: `op(image, intensity, rng) -> image`.

Every op takes an HxWx3 uint8 RGB array (RGB in memory throughout; OpenCV is only used on
arrays, never to read or write files), an intensity in [0, 1] and a numpy Generator, and
returns a new uint8 RGB array of the same size. The same function serves the boundary
search and the synthesis, so an intensity means the same thing everywhere:

- intensity 0 is the identity (a copy);
- the change grows monotonically with the intensity for a fixed rng: every op draws its
  random numbers (noise fields, flake positions, a rotation's sign, a crop's position)
  before looking at the intensity, and the intensity only scales what was drawn (such ops
  are a `prepare` + `render` pair; `prepare_op` draws once and renders any intensity, as
  the search does for its curves);
- intensity 1 is about ImageNet-C's severity 5 where there is a counterpart (each spec's
  `severities` are the intensities of ImageNet-C's five severities), otherwise a strong
  but recognisable change;
- sizes (blur radii, displacements) are relative to the image's shorter side, calibrated
  on 224 px, so an intensity means the same at 32 px and at 1000 px.

Geometric ops (rotation, random_sized_crop, elastic) run through albumentations so that
boxes, masks and keypoints follow the image (`apply_op(..., targets=...)`).

Example:
    >>> rng = np.random.default_rng(0)
    >>> darker = OPS["brightness_down"].fn(image, 0.3, rng)
    >>> curve = [prepare_op("fog", image, seed=3)(x) for x in (0.1, 0.2, 0.3)]
    >>> out, targets = apply_op("rotation", image, 0.1, seed=7,
    ...                         targets={"mask": mask}, label_format="mask")
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from PIL import Image

OpFn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

# Linear severities where ImageNet-C has no counterpart.
LINEAR_SEVERITIES = (0.2, 0.4, 0.6, 0.8, 1.0)
# ITU-R BT.601 luma weights in RGB order (our arrays are RGB, not OpenCV's BGR).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _f32(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _side(image: np.ndarray) -> int:
    return int(min(image.shape[:2]))


def _grey(x: np.ndarray) -> np.ndarray:
    return (x * _LUMA).sum(-1, keepdims=True)


def _two_phase(prepare):
    """Builds an op from `prepare(image, rng) -> state` (every random draw, independent of
    the intensity) and the decorated `render(image, state, intensity) -> image`.

    The op itself is the plain `op(image, intensity, rng)`; the search prepares once per
    image and renders every intensity from the same draws (`prepare_op`), which is both
    faster and what makes the change grow with the intensity.
    """
    def wrap(render):
        def op(image, intensity, rng):
            state = prepare(image, rng)
            if intensity <= 0:
                return image.copy()
            return render(image, state, float(intensity))
        op.prepare, op.render = prepare, render
        op.__name__ = op.__qualname__ = render.__name__.lstrip("_")
        op.__doc__ = render.__doc__
        return op
    return wrap


# ---------------------------------------------------------------- colour


def brightness_up(image, intensity, rng):
    """Adds up to half the range (+127 grey levels, ImageNet-C brightness 5) to every channel."""
    if intensity <= 0:
        return image.copy()
    return _u8(_f32(image) + 127.5 * intensity)


def brightness_down(image, intensity, rng):
    """Scales the exposure down to 20 % at intensity 1 (an under-exposed photo)."""
    if intensity <= 0:
        return image.copy()
    return _u8(_f32(image) * (1.0 - 0.8 * intensity))


def _contrast(image, factor):
    x = _f32(image)
    mean = float(_grey(x).mean())
    return _u8((x - mean) * factor + mean)


def contrast_up(image, intensity, rng):
    """Stretches around the mean grey level, up to 3x at intensity 1."""
    return image.copy() if intensity <= 0 else _contrast(image, 1.0 + 2.0 * intensity)


def contrast_down(image, intensity, rng):
    """Compresses around the mean grey level, down to 5 % (ImageNet-C contrast 5)."""
    return image.copy() if intensity <= 0 else _contrast(image, 1.0 - 0.95 * intensity)


def _saturation(image, factor):
    x = _f32(image)
    g = _grey(x)
    return _u8(g + (x - g) * factor)


def saturation_up(image, intensity, rng):
    """Pushes colours away from their grey value, up to 4x at intensity 1."""
    return image.copy() if intensity <= 0 else _saturation(image, 1.0 + 3.0 * intensity)


def saturation_down(image, intensity, rng):
    """Pulls colours towards their grey value; grey at intensity 1."""
    return image.copy() if intensity <= 0 else _saturation(image, 1.0 - intensity)


def _hue(image, degrees):
    # Float HSV keeps the hue in degrees [0, 360) (8-bit HSV quantises it to 2-degree steps).
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + degrees, 360.0)
    return _u8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0)


def hue_plus(image, intensity, rng):
    """Rotates every hue forward, up to 180 degrees."""
    return image.copy() if intensity <= 0 else _hue(image, 180.0 * intensity)


def hue_minus(image, intensity, rng):
    """Rotates every hue backward, up to 180 degrees."""
    return image.copy() if intensity <= 0 else _hue(image, -180.0 * intensity)


def _channel_shift(image, channel, sign, intensity):
    if intensity <= 0:
        return image.copy()
    x = _f32(image)
    x[..., channel] += sign * 102.0 * intensity  # up to 40 % of the range
    return _u8(x)


def more_red(image, intensity, rng):
    """Adds up to 102 levels to the R channel (index 0 of RGB)."""
    return _channel_shift(image, 0, +1, intensity)


def less_red(image, intensity, rng):
    """Removes up to 102 levels from the R channel."""
    return _channel_shift(image, 0, -1, intensity)


def more_green(image, intensity, rng):
    """Adds up to 102 levels to the G channel."""
    return _channel_shift(image, 1, +1, intensity)


def less_green(image, intensity, rng):
    """Removes up to 102 levels from the G channel."""
    return _channel_shift(image, 1, -1, intensity)


def more_blue(image, intensity, rng):
    """Adds up to 102 levels to the B channel (index 2 of RGB)."""
    return _channel_shift(image, 2, +1, intensity)


def less_blue(image, intensity, rng):
    """Removes up to 102 levels from the B channel."""
    return _channel_shift(image, 2, -1, intensity)


# ---------------------------------------------------------------- geometric (albumentations)


def compose_kwargs(label_format: Any) -> dict:
    """albumentations.Compose arguments for a label format.

    Args:
        label_format: None or "mask" (nothing extra), {"bbox": "pascal_voc" | "coco" |
            "yolo" | "albumentations"} (targets `bboxes` + `labels`), {"keypoints": "xy"}
            (targets `keypoints`), or a dict of Compose arguments (`bbox_params`,
            `keypoint_params`, ...) passed through as they are.
    """
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    if label_format is None or label_format == "mask":
        return {}
    if not isinstance(label_format, dict):
        raise ValueError(f"label_format must be None, 'mask' or a dict, got {label_format!r}")
    out = {k: v for k, v in label_format.items() if k not in ("bbox", "keypoints")}
    if "bbox" in label_format:
        out["bbox_params"] = A.BboxParams(format=label_format["bbox"], label_fields=["labels"])
    if "keypoints" in label_format:
        out["keypoint_params"] = A.KeypointParams(format=label_format["keypoints"],
                                                  remove_invisible=False)
    return out


def _rotation_state(image, rng):
    return 1.0 if rng.random() < 0.5 else -1.0


def _rotation_transforms(shape, sign, intensity):
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    angle = sign * 180.0 * intensity
    # Reflected borders: black corners would be a second corruption on top of the rotation.
    return [A.Rotate(limit=(angle, angle), border_mode=cv2.BORDER_REFLECT_101, p=1.0)], 0


def _crop_state(image, rng):
    return rng.random(2)


def _crop_transforms(shape, u, intensity):
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    h, w = shape[:2]
    frac = 1.0 - 0.6 * intensity  # the crop keeps 40 % of each side at intensity 1
    ch, cw = max(1, int(round(h * frac))), max(1, int(round(w * frac)))
    y0, x0 = int(round(u[0] * (h - ch))), int(round(u[1] * (w - cw)))
    return [A.Crop(x_min=x0, y_min=y0, x_max=x0 + cw, y_max=y0 + ch, p=1.0),
            A.Resize(h, w, p=1.0)], 0


def _elastic_state(image, rng):
    return int(rng.integers(0, 2**31 - 1))


def _elastic_transforms(shape, seed, intensity):
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    side = float(min(shape[:2]))
    # albumentations blurs a max-normalised noise field with `sigma`, so the displacement
    # grows with alpha/sigma; alpha ~ side^2 keeps the mean displacement near 3 % of the
    # side at intensity 1 for any image size (measured at 32, 96 and 224 px).
    return [A.ElasticTransform(alpha=0.05 * side * side * intensity, sigma=0.08 * side,
                               border_mode=cv2.BORDER_REFLECT_101, p=1.0)], seed


def _run_geometric(make, image, state, intensity, targets=None, label_format=None):
    """Applies the albumentations transforms `make(shape, state, intensity)` to the image
    and, when given, to the targets (boxes, masks, keypoints) with them."""
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    transforms, seed = make(image.shape, state, intensity)
    compose = A.Compose(transforms, seed=seed, **compose_kwargs(label_format))
    data = compose(image=image, **(targets or {}))
    out = np.ascontiguousarray(data.pop("image"))
    return out, ({k: data[k] for k in targets} if targets else targets)


def _geometric(prepare, make, doc):
    def render(image, state, intensity):
        return _run_geometric(make, image, state, intensity)[0]
    render.__doc__ = doc
    op = _two_phase(prepare)(render)
    op.make_transforms = make
    return op


rotation = _geometric(_rotation_state, _rotation_transforms,
                      "Rotates by up to 180 degrees (sign drawn from rng), borders reflected.")
random_sized_crop = _geometric(_crop_state, _crop_transforms,
                               "Crops a window of (1 - 0.6 * intensity) of each side at an "
                               "rng-drawn position and stretches it back to full size.")
elastic = _geometric(_elastic_state, _elastic_transforms,
                     "Elastic warp; mean displacement about 3 % of the shorter side at 1.")
for _op, _name in ((rotation, "rotation"), (random_sized_crop, "random_sized_crop"),
                   (elastic, "elastic")):
    _op.__name__ = _op.__qualname__ = _name


# ---------------------------------------------------------------- blur / sharpen


def _filter(image, kernel):
    out = cv2.filter2D(_f32(image), -1, kernel.astype(np.float32),
                       borderType=cv2.BORDER_REFLECT_101)
    return _u8(out)


def gaussian_blur(image, intensity, rng):
    """Gaussian blur, sigma up to 6 px at 224 px (ImageNet-C gaussian_blur 5)."""
    sigma = 6.0 / 224.0 * _side(image) * intensity
    if sigma < 1e-3:
        return image.copy()
    k = 2 * math.ceil(3 * sigma) + 1
    return _u8(cv2.GaussianBlur(_f32(image), (k, k), sigma, borderType=cv2.BORDER_REFLECT_101))


@_two_phase(lambda image, rng: rng.uniform(0.0, math.pi))
def _motion_blur(image, angle, intensity):
    """Linear camera-shake blur at an rng-drawn angle, up to 12 % of the side long."""
    length = 0.12 * _side(image) * intensity
    if length < 1e-3:
        return image.copy()
    half = length / 2.0
    r = math.ceil(half) + 1
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    # Anti-aliased line: many samples along the segment, each splatted bilinearly, so the
    # kernel grows smoothly with the length instead of in whole pixels.
    t = np.linspace(-half, half, 8 * math.ceil(length) + 2)
    x, y = r + t * math.cos(angle), r + t * math.sin(angle)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                      (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    return _filter(image, kernel / kernel.sum())


motion_blur = _motion_blur


def defocus_blur(image, intensity, rng):
    """Out-of-focus disk blur, radius up to 10 px at 224 px (ImageNet-C defocus_blur 5)."""
    radius = 10.0 / 224.0 * _side(image) * intensity
    if radius < 1e-3:
        return image.copy()
    r = math.ceil(radius)
    # Pixel coverage of the disk by 8x8 supersampling: smooth in the radius.
    sub = (np.arange(8) + 0.5) / 8.0 - 0.5
    grid = np.arange(-r, r + 1)
    yy = (grid[:, None, None, None] + sub[None, None, :, None])
    xx = (grid[None, :, None, None] + sub[None, None, None, :])
    kernel = ((xx ** 2 + yy ** 2) <= max(radius, 0.5) ** 2).mean(axis=(2, 3))
    if radius < 0.5:  # below half a pixel: blend the disk in gradually
        centre = np.zeros_like(kernel)
        centre[r, r] = 1.0
        kernel = centre * (1 - 2 * radius) + kernel / kernel.sum() * 2 * radius
    return _filter(image, kernel / kernel.sum())


def zoom_blur(image, intensity, rng):
    """Average of the image zoomed about its centre by up to 1.31x (ImageNet-C zoom_blur 5)."""
    top = 0.31 * intensity
    if top < 1e-4:
        return image.copy()
    h, w = image.shape[:2]
    x = _f32(image)
    acc = x.copy()
    zooms = 1.0 + top * np.arange(1, 9) / 8.0
    for z in zooms:
        m = np.array([[z, 0, (1 - z) * (w - 1) / 2], [0, z, (1 - z) * (h - 1) / 2]], np.float32)
        acc += cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    return _u8(acc / (len(zooms) + 1))


def sharpen(image, intensity, rng):
    """Unsharp mask: image + 2 * intensity * (image - blurred)."""
    if intensity <= 0:
        return image.copy()
    x = _f32(image)
    sigma = max(0.7, _side(image) / 100.0)
    k = 2 * math.ceil(3 * sigma) + 1
    blurred = cv2.GaussianBlur(x, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
    return _u8(x + 2.0 * intensity * (x - blurred))


# ---------------------------------------------------------------- noise


def _normal_field(image, rng):
    return rng.standard_normal(image.shape, dtype=np.float32)


@_two_phase(_normal_field)
def gaussian_noise(image, n, intensity):
    """Additive Gaussian noise, std up to 0.38 of the range (ImageNet-C gaussian_noise 5)."""
    return _u8(_f32(image) + n * (0.38 * 255.0 * intensity))


@_two_phase(_normal_field)
def shot_noise(image, n, intensity):
    """Photon (signal-dependent) noise: variance proportional to the pixel value, as
    Poisson(x * c) / c with c = 3 / intensity (ImageNet-C shot_noise 5 at c = 3); drawn as
    its Gaussian approximation so that a larger intensity scales the same noise field."""
    x = _f32(image)
    return _u8(x + n * np.sqrt(x * (255.0 * intensity / 3.0)))


@_two_phase(lambda image, rng: (rng.random(image.shape, dtype=np.float32),
                                rng.random(image.shape, dtype=np.float32) < 0.5))
def impulse_noise(image, state, intensity):
    """Salt-and-pepper noise on up to 27 % of the values (ImageNet-C impulse_noise 5)."""
    hit, salt = state
    out = image.copy()
    mask = hit < 0.27 * intensity  # the same values are hit, and more of them, as it grows
    out[mask] = np.where(salt[mask], 255, 0)
    return out


@_two_phase(_normal_field)
def multiplicative_noise(image, n, intensity):
    """Speckle noise x * (1 + n), n ~ N(0, 0.6 * intensity) (ImageNet-C speckle_noise 5)."""
    x = _f32(image)
    return _u8(x * (1.0 + n * (0.6 * intensity)))


@_two_phase(lambda image, rng: rng.random(image.shape[:2], dtype=np.float32))
def pixel_dropout(image, u, intensity):
    """Sets up to half of the pixels to black (dead pixels, dropped packets)."""
    out = image.copy()
    out[u < 0.5 * intensity] = 0
    return out


# ---------------------------------------------------------------- digital


def jpeg(image, intensity, rng):
    """JPEG re-encoding, quality 100 * 0.07^intensity (7 at 1, ImageNet-C jpeg 5)."""
    if intensity <= 0:
        return image.copy()
    quality = int(np.clip(round(100.0 * 0.07 ** intensity), 1, 100))
    buf = io.BytesIO()
    # PIL encodes RGB arrays as RGB (cv2.imencode would take them for BGR).
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _blocks(image, block, up):
    """Block means of `block` x `block` pixels (edges reflected), scaled back up to the image
    size by nearest neighbour (up="nearest") or bilinearly (up="linear")."""
    h, w = image.shape[:2]
    if block <= 1:
        return _f32(image)
    ph, pw = -h % block, -w % block
    x = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT_101) if ph or pw else image
    H, W = x.shape[:2]
    small = x.reshape(H // block, block, W // block, block, 3).astype(np.float32).mean((1, 3))
    if up == "nearest":
        big = np.repeat(np.repeat(small, block, 0), block, 1)
    else:
        # Sample centres of the small image sit at block centres of the large one.
        big = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    return big[:h, :w]


def _resample(image, frac, up):
    # A continuous block size: a blend of the two integer block sizes around 1/frac. Plain
    # resizing by 0.9 aliases more than by 0.5 (sample phases drift across the image), so
    # the change would not grow with the intensity.
    size = 1.0 / frac
    b0 = int(math.floor(size))
    t = size - b0
    out = _blocks(image, b0, up)
    if t > 1e-6:
        out = out * (1 - t) + _blocks(image, b0 + 1, up) * t
    return _u8(out)


def pixelate(image, intensity, rng):
    """Blocks: block means of 1 / (1 - 0.75 * intensity) pixels, up to 4x4 at 1 (ImageNet-C
    pixelate 5 resizes to 0.25), shown by nearest neighbour."""
    return image.copy() if intensity <= 0 else _resample(image, 1.0 - 0.75 * intensity,
                                                         "nearest")


def downscale(image, intensity, rng):
    """Low resolution: block means of 1 / (1 - 0.85 * intensity) pixels (6.7 at 1), scaled
    back up bilinearly."""
    return image.copy() if intensity <= 0 else _resample(image, 1.0 - 0.85 * intensity,
                                                         "linear")


def _segments(image, rng, n_grid=8, iterations=2):
    """SLIC-like superpixels: k-means in (x, y, colour) from a jittered 8x8 grid of seeds,
    computed at <= 48 px and scaled back (nearest) so the cost does not grow with the image."""
    h, w = image.shape[:2]
    scale = min(1.0, 48.0 / max(h, w))
    small = image if scale >= 1.0 else cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    jitter = rng.uniform(-0.3, 0.3, (n_grid * n_grid, 2))
    gy, gx = np.meshgrid((np.arange(n_grid) + 0.5) / n_grid, (np.arange(n_grid) + 0.5) / n_grid,
                         indexing="ij")
    seeds_xy = np.stack([(gy.ravel() + jitter[:, 0] / n_grid) * sh,
                         (gx.ravel() + jitter[:, 1] / n_grid) * sw], axis=1)
    yy, xx = np.mgrid[0:sh, 0:sw]
    pix_xy = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float32)
    pix_c = small.reshape(-1, 3).astype(np.float32)
    iy = np.clip(seeds_xy[:, 0].astype(int), 0, sh - 1)
    ix = np.clip(seeds_xy[:, 1].astype(int), 0, sw - 1)
    seeds_c = small[iy, ix].astype(np.float32)
    spacing = max(sh, sw) / n_grid
    weight = (10.0 / spacing) ** 2  # SLIC compactness 10 on the 0..255 colour scale
    # One feature space: colour and sqrt(weight)-scaled position. Distances feature by
    # feature (pixels x seeds each): no BLAS call, whose threads would fight TensorFlow's
    # for the cores while a search predicts.
    feats = np.concatenate([pix_c, pix_xy * math.sqrt(weight)], 1)
    centres = np.concatenate([seeds_c, seeds_xy.astype(np.float32) * math.sqrt(weight)], 1)
    for _ in range(iterations + 1):
        d = np.zeros((len(feats), len(centres)), np.float32)
        for c in range(feats.shape[1]):
            d += (feats[:, c, None] - centres[None, :, c]) ** 2
        lab = d.argmin(1)
        counts = np.bincount(lab, minlength=len(centres))
        keep = counts > 0
        for c in range(feats.shape[1]):
            centres[keep, c] = np.bincount(lab, feats[:, c], len(centres))[keep] / counts[keep]
    lab = lab.reshape(sh, sw).astype(np.int32)
    if (sh, sw) != (h, w):
        lab = cv2.resize(lab.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        lab = lab.astype(np.int32)
    return lab, n_grid * n_grid


def _superpixel_state(image, rng):
    labels, k = _segments(image, rng)
    u = rng.random(k)
    flat = labels.ravel()
    pix = image.reshape(-1, 3).astype(np.float64)
    counts = np.bincount(flat, minlength=k)
    means = np.stack([np.bincount(flat, pix[:, c], minlength=k) for c in range(3)], 1)
    return labels, u, _u8(means / np.maximum(counts, 1)[:, None])


@_two_phase(_superpixel_state)
def superpixels(image, state, intensity):
    """Replaces a share `intensity` of 64 superpixels by their mean colour."""
    labels, u, means = state
    out = image.copy()
    # The replaced cells are nested: a larger intensity replaces the same cells and more.
    replace = (u < intensity)[labels]
    out[replace] = means[labels[replace]]
    return out


# ---------------------------------------------------------------- weather


def _plasma(shape, rng, octaves=5, persistence=0.55, first=1):
    """Fractal noise in [0, 1]: random grids of 2^k + 1 points, smoothly upsampled, summed."""
    h, w = shape[:2]
    acc = np.zeros((h, w), np.float32)
    amp = 1.0
    for k in range(first, first + octaves):
        n = 2 ** k + 1
        grid = rng.random((n, n), dtype=np.float32)
        acc += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    acc -= acc.min()
    return acc / max(float(acc.max()), 1e-6)


def _blend(image, colour, t):
    x = _f32(image)
    return _u8(x + (np.asarray(colour, np.float32) - x) * t[..., None])


@_two_phase(lambda image, rng: _plasma(image.shape, rng))
def fog(image, m, intensity):
    """Patchy fog: blends towards light grey with a fractal density, up to 75 %."""
    return _blend(image, (215, 215, 215), 0.75 * intensity * (0.35 + 0.65 * m))


def _frost_state(image, rng):
    h, w = image.shape[:2]
    tex = _plasma(image.shape, rng, octaves=4, persistence=0.8, first=3)
    streaks = np.zeros((h, w), np.float32)
    side = min(h, w)
    for _ in range(40):
        y, x = rng.random(2) * (h, w)
        a = rng.uniform(0, math.pi)
        ln = rng.uniform(0.03, 0.12) * side
        p2 = (int(x + ln * math.cos(a)), int(y + ln * math.sin(a)))
        cv2.line(streaks, (int(x), int(y)), p2, 1.0, 1, cv2.LINE_AA)
    return np.clip(np.clip((tex - 0.45) * 2.5, 0, 1) + 0.6 * streaks, 0, 1)


@_two_phase(_frost_state)
def frost(image, crystals, intensity):
    """Frost on the lens: bluish-white ice crystals (fine fractal texture plus streaks)."""
    return _blend(image, (220, 232, 245), 0.85 * intensity * crystals)


def _snow_state(image, rng):
    h, w = image.shape[:2]
    u = rng.random((h, w), dtype=np.float32)
    angle = rng.uniform(math.pi / 3, 2 * math.pi / 3)
    length = max(1.0, 0.04 * min(h, w))
    r = math.ceil(length / 2) + 1
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    for t in np.linspace(-length / 2, length / 2, 4 * math.ceil(length) + 2):
        kernel[int(round(r + t * math.sin(angle))), int(round(r + t * math.cos(angle)))] = 1.0
    x = _f32(image)
    whitened = np.minimum(np.maximum(x, _grey(x) * 1.5 + 0.25 * 255.0), 255.0)
    return u, kernel / kernel.sum() * 2.0, whitened


@_two_phase(_snow_state)
def snow(image, state, intensity):
    """Falling snow: flakes (nested in density, streaked at an rng-drawn angle) over a
    whitened scene, as ImageNet-C snow mixes max(x, 1.5 * grey) into the image."""
    u, kernel, whitened = state
    flakes = (u < 0.07 * intensity).astype(np.float32)
    streaks = np.clip(np.maximum(cv2.filter2D(flakes, -1, kernel), flakes), 0, 1)
    x = _f32(image)
    w_mix = 0.5 * intensity
    base = x * (1 - w_mix) + whitened * w_mix
    return _u8(base + (255.0 - base) * streaks[..., None])


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class OpSpec:
    """One corruption: its function and how the search, the synthesis and the reports
    treat it.

    name: the op's name on the command line.
    fn: `fn(image_uint8_rgb, intensity, rng) -> image`.
    family: colour, geometric, blur, noise, digital or weather (reports group by it).
    group: ops of one group contradict or duplicate each other (brightness up and down, two
        blurs): a synthetic chain holds at most one op per group.
    stage: order in a chain (geometry, weather, colour, blur, noise, digital: the order
        light passes through a scene, a lens, a sensor and an encoder).
    weight: default relative chance of being picked for a chain.
    unit: the physical meaning of an intensity, for tables.
    severities: the five intensities of the ImageNet-C style severity table.
    version: bumped when the maths changes (invalidates cached search results).
    """

    name: str
    fn: OpFn
    family: str
    group: str | None
    stage: int
    weight: float
    unit: Callable[[float], str]
    severities: tuple[float, ...] = LINEAR_SEVERITIES
    version: int = 1

    @property
    def geometric(self) -> bool:
        """Moves pixels: boxes, masks and keypoints must follow."""
        return hasattr(self.fn, "make_transforms")


def _sev(values: Sequence[float], at_one: float) -> tuple[float, ...]:
    """Intensities of ImageNet-C's five severities, given each severity's parameter and the
    parameter at intensity 1."""
    return tuple(round(v / at_one, 3) for v in values)


_S = "px at 224 px"
_SPECS = [
    OpSpec("brightness_up", brightness_up, "colour", "brightness", 2, 0.5,
           lambda i: f"+{127.5 * i:.0f} levels"),
    OpSpec("brightness_down", brightness_down, "colour", "brightness", 2, 0.5,
           lambda i: f"x{1 - 0.8 * i:.2f} exposure"),
    OpSpec("contrast_up", contrast_up, "colour", "contrast", 2, 0.5,
           lambda i: f"x{1 + 2 * i:.2f} contrast"),
    OpSpec("contrast_down", contrast_down, "colour", "contrast", 2, 0.5,
           lambda i: f"x{1 - 0.95 * i:.2f} contrast",
           severities=tuple(round((1 - c) / 0.95, 3) for c in (0.4, 0.3, 0.2, 0.1, 0.05))),
    OpSpec("saturation_up", saturation_up, "colour", "saturation", 2, 0.5,
           lambda i: f"x{1 + 3 * i:.2f} saturation"),
    OpSpec("saturation_down", saturation_down, "colour", "saturation", 2, 0.5,
           lambda i: f"x{1 - i:.2f} saturation"),
    OpSpec("hue_plus", hue_plus, "colour", "hue", 2, 0.5, lambda i: f"+{180 * i:.0f} deg hue"),
    OpSpec("hue_minus", hue_minus, "colour", "hue", 2, 0.5, lambda i: f"-{180 * i:.0f} deg hue"),
    OpSpec("more_red", more_red, "colour", "red", 2, 1 / 3, lambda i: f"R +{102 * i:.0f}"),
    OpSpec("less_red", less_red, "colour", "red", 2, 1 / 3, lambda i: f"R -{102 * i:.0f}"),
    OpSpec("more_green", more_green, "colour", "green", 2, 1 / 3, lambda i: f"G +{102 * i:.0f}"),
    OpSpec("less_green", less_green, "colour", "green", 2, 1 / 3, lambda i: f"G -{102 * i:.0f}"),
    OpSpec("more_blue", more_blue, "colour", "blue", 2, 1 / 3, lambda i: f"B +{102 * i:.0f}"),
    OpSpec("less_blue", less_blue, "colour", "blue", 2, 1 / 3, lambda i: f"B -{102 * i:.0f}"),
    OpSpec("rotation", rotation, "geometric", None, 0, 1.0, lambda i: f"{180 * i:.0f} deg"),
    OpSpec("random_sized_crop", random_sized_crop, "geometric", None, 0, 1.0,
           lambda i: f"keeps {100 - 60 * i:.0f}% of each side"),
    OpSpec("elastic", elastic, "geometric", None, 0, 1.0,
           lambda i: f"~{3 * i:.1f}% displacement"),
    OpSpec("gaussian_blur", gaussian_blur, "blur", "blur", 3, 0.25,
           lambda i: f"sigma {6 * i:.1f} {_S}", severities=_sev((1, 2, 3, 4, 6), 6)),
    OpSpec("motion_blur", motion_blur, "blur", "blur", 3, 0.25,
           lambda i: f"{12 * i:.0f}% of the side",
           severities=_sev((3, 5, 8, 12, 15), 15)),
    OpSpec("defocus_blur", defocus_blur, "blur", "blur", 3, 0.25,
           lambda i: f"radius {10 * i:.1f} {_S}", severities=_sev((3, 4, 6, 8, 10), 10)),
    OpSpec("zoom_blur", zoom_blur, "blur", "blur", 3, 0.25, lambda i: f"zoom to {1 + 0.31 * i:.2f}",
           severities=_sev((0.11, 0.16, 0.21, 0.26, 0.31), 0.31)),
    OpSpec("sharpen", sharpen, "blur", "blur", 3, 0.5, lambda i: f"unsharp amount {2 * i:.2f}"),
    OpSpec("gaussian_noise", gaussian_noise, "noise", "noise", 4, 0.3,
           lambda i: f"std {0.38 * i:.2f}", severities=_sev((.08, .12, .18, .26, .38), .38)),
    OpSpec("shot_noise", shot_noise, "noise", "noise", 4, 0.3,
           lambda i: "none" if i <= 0 else f"photons c={3 / i:.0f}",
           severities=_sev((1 / 60, 1 / 25, 1 / 12, 1 / 5, 1 / 3), 1 / 3)),
    OpSpec("impulse_noise", impulse_noise, "noise", "noise", 4, 0.3,
           lambda i: f"{27 * i:.0f}% of values", severities=_sev((.03, .06, .09, .17, .27), .27)),
    OpSpec("multiplicative_noise", multiplicative_noise, "noise", "noise", 4, 0.3,
           lambda i: f"speckle std {0.6 * i:.2f}", severities=_sev((.15, .2, .35, .45, .6), .6)),
    OpSpec("pixel_dropout", pixel_dropout, "noise", "resolution", 4, 0.4,
           lambda i: f"{50 * i:.0f}% of pixels"),
    OpSpec("superpixels", superpixels, "digital", "resolution", 5, 0.4,
           lambda i: f"{100 * i:.0f}% of 64 segments"),
    OpSpec("downscale", downscale, "digital", "resolution", 5, 0.4,
           lambda i: f"{1 / (1 - 0.85 * i):.1f} px blocks, smooth"),
    OpSpec("pixelate", pixelate, "digital", "resolution", 5, 0.4,
           lambda i: f"{1 / (1 - 0.75 * i):.1f} px blocks",
           severities=tuple(round((1 - c) / 0.75, 3) for c in (0.6, 0.5, 0.4, 0.3, 0.25))),
    OpSpec("jpeg", jpeg, "digital", None, 6, 0.5,
           lambda i: f"quality {int(np.clip(round(100 * 0.07 ** i), 1, 100))}",
           severities=tuple(round(math.log(q / 100) / math.log(0.07), 3)
                            for q in (25, 18, 15, 10, 7))),
    OpSpec("fog", fog, "weather", "weather", 1, 0.3, lambda i: f"density {75 * i:.0f}%"),
    OpSpec("frost", frost, "weather", "weather", 1, 0.3, lambda i: f"cover {85 * i:.0f}%"),
    OpSpec("snow", snow, "weather", "weather", 1, 0.3, lambda i: f"flakes {7 * i:.1f}%"),
]
OPS: dict[str, OpSpec] = {s.name: s for s in _SPECS}
FAMILIES = ("colour", "geometric", "blur", "noise", "digital", "weather")


def resolve_ops(names: Sequence[str] | None = None,
                exclude: Sequence[str] | None = None) -> list[str]:
    """The op names to use, in table order: `names` (default all) minus `exclude`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    for n in list(names or []) + list(exclude or []):
        if n not in OPS:
            raise ValueError(f"unknown op {n!r}; known ops: {', '.join(OPS)}")
    chosen = [n for n in OPS if (not names or n in names) and n not in (exclude or ())]
    if not chosen:
        raise ValueError("no ops left to use (check --ops / --exclude_ops)")
    return chosen


def apply_op(name: str, image: np.ndarray, intensity: float, seed: int,
             targets: dict | None = None, label_format: Any = None):
    """Applies op `name` with its own generator `np.random.default_rng(seed)`.

    Args:
        name: a key of OPS.
        image: HxWx3 uint8 RGB.
        intensity: in [0, 1] (values above 1 extrapolate the op's scale).
        seed: the op's seed; the same seed gives the same noise field at every intensity.
        targets: albumentations targets that must follow geometric ops, e.g.
            {"mask": m}, {"bboxes": b, "labels": l}, {"keypoints": k}; pixel ops leave them
            as they are.
        label_format: see `compose_kwargs`.

    Returns:
        The image, or (image, targets) when `targets` is given.

    Example:
        >>> out = apply_op("fog", image, 0.4, seed=3)
    """
    spec = OPS[name]
    rng = np.random.default_rng(seed)
    if targets is None:
        return spec.fn(image, float(intensity), rng)
    if spec.geometric:
        state = spec.fn.prepare(image, rng)
        if intensity <= 0:
            return image.copy(), targets
        return _run_geometric(spec.fn.make_transforms, image, state, float(intensity),
                              targets, label_format)
    return spec.fn(image, float(intensity), rng), targets


def prepare_op(name: str, image: np.ndarray, seed: int) -> Callable[[float], np.ndarray]:
    """`render(intensity)` equal to `apply_op(name, image, intensity, seed)` for every
    intensity, with the op's random draws (noise fields, superpixels, textures) made once.

    Example:
        >>> render = prepare_op("fog", image, seed=3)
        >>> curve = [render(x) for x in (0.1, 0.2, 0.3)]
    """
    fn = OPS[name].fn
    rng = np.random.default_rng(seed)
    if not hasattr(fn, "prepare"):
        # Deterministic ops draw nothing: the generator is never consumed.
        return lambda x: fn(image, float(x), rng)
    state = fn.prepare(image, rng)
    return lambda x: image.copy() if x <= 0 else fn.render(image, state, float(x))
