"""A sheet of sample triples, original | mask | result, one row each, for a quick look.

Example:
    >>> write_triples([("in/1/a.jpg", "out/masks/x/1/a_1f.png", "out/x/1/a_ddim_1f.png")],
    ...               "out/samples.png", title="inpaint_box")
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from dataset.atomic import atomic_path
from dataset.images import load_rgb

COLUMNS = ("original", "mask", "result")


def _thumb(path: str | Path, cell: int) -> Image.Image | None:
    try:
        img = Image.fromarray(load_rgb(path))
    except OSError:
        return None
    scale = cell / max(img.size)
    # small test images are enlarged without smoothing, so single pixels stay visible
    resample = Image.LANCZOS if scale < 1 else Image.NEAREST
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                      resample)


def write_triples(rows: Sequence[tuple[str | Path, str | Path, str | Path]], path: str | Path,
                  cell: int = 160, title: str = "") -> Path:
    """Writes a PNG with one row per (original, mask, result) triple (atomically).

    Args:
        rows: file triples; unreadable files are left blank.
        path: the output PNG.
        cell: side of each thumbnail in pixels (aspect kept, centred).
        title: text above the rows.
    """
    margin, head, caption = 6, 20, 14
    width = len(COLUMNS) * (cell + margin) + margin
    height = head + caption + max(1, len(rows)) * (cell + margin) + margin
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((margin, 4), title, fill="black")
    for col, name in enumerate(COLUMNS):
        draw.text((margin + col * (cell + margin), head), name, fill="black")
    for r, triple in enumerate(rows):
        y = head + caption + r * (cell + margin)
        for col, p in enumerate(triple):
            thumb = _thumb(p, cell)
            if thumb is not None:
                x = margin + col * (cell + margin)
                sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
