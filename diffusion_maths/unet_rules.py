"""Which U-Net settings can build a network (keras-free, so flags are checked instantly).

Example:
    >>> validate_unet_args((200, 600), [32, 64, 96, 128], 2, 32)   # fine: 200/8, 600/8
    >>> validate_unet_args((30, 30), [8, 16, 32], 1, 32)
    Traceback (most recent call last):
    UNetConfigError: image height 30 does not divide by 4 = 2^(levels-1) for 3 widths; ...
"""
from __future__ import annotations

from typing import Sequence

MAX_ATTENTION_POSITIONS = 32 * 32  # attention cost grows with positions squared
MAX_BOTTLENECK_ATTENTION_POSITIONS = 64 * 64


class UNetConfigError(ValueError):
    """The U-Net settings cannot build a network; the message says which and why."""


def _nearest_multiples(n: int, m: int) -> str:
    lo = (n // m) * m
    return f"{lo} or {lo + m}" if lo > 0 else f"{m}"


def validate_unet_args(image_size: Sequence[int], widths: Sequence[int], block_depth: int,
                       embedding_dims: int, groups: int = 8,
                       attention_in_bottleneck: bool = False, num_classes: int = 0) -> None:
    """Raises UNetConfigError with a one-line reason when the settings cannot work."""
    if len(image_size) != 2 or min(image_size) < 1:
        raise UNetConfigError(f"image_size must be two positive numbers (H W), got {image_size}")
    if len(widths) < 2:
        raise UNetConfigError(f"widths needs at least 2 values (one per level), got {list(widths)}")
    if block_depth < 1:
        raise UNetConfigError(f"block_depth must be >= 1, got {block_depth}")
    if groups < 1:
        raise UNetConfigError(f"groups must be >= 1, got {groups}")
    bad = [w for w in widths if w < 1 or w % groups]
    if bad:
        raise UNetConfigError(f"every width must be a multiple of the {groups} GroupNorm groups; "
                              f"{bad} are not (widths {list(widths)})")
    if embedding_dims < 2 or embedding_dims % 2:
        raise UNetConfigError(f"embedding_dims must be even and >= 2, got {embedding_dims}")
    factor = 2 ** (len(widths) - 1)
    h, w = image_size
    for name, n in (("height", h), ("width", w)):
        if n % factor:
            raise UNetConfigError(
                f"image {name} {n} does not divide by {factor} = 2^(levels-1) for {len(widths)} "
                f"widths; use {_nearest_multiples(n, factor)} (or fewer widths)")
    positions = (h // factor) * (w // factor)
    if attention_in_bottleneck and positions > MAX_BOTTLENECK_ATTENTION_POSITIONS:
        raise UNetConfigError(
            f"bottleneck attention at {h // factor}x{w // factor} is too large (max "
            f"{MAX_BOTTLENECK_ATTENTION_POSITIONS} positions); add a level to widths or turn "
            f"attention_in_bottleneck off")
    if num_classes < 0:
        raise UNetConfigError(f"num_classes must be >= 0, got {num_classes}")


def attention_levels(image_size: Sequence[int], widths: Sequence[int]) -> list[int]:
    """Down/up levels whose feature maps are small enough (<= 32*32 positions) for attention."""
    h, w = image_size
    return [i for i in range(len(widths) - 1)
            if (h >> i) * (w >> i) <= MAX_ATTENTION_POSITIONS]
