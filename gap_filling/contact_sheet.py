"""A contact sheet: a row of real images above a row of generated ones (and, when the
memorisation gate moved some aside, a row of those), for a quick look.

Example:
    >>> write_contact_sheet(real_paths[:8], fake_paths[:8], "balanced_data/contact_sheets/1.png")
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from dataset.atomic import atomic_path
from dataset.images import load_rgb


def write_contact_sheet(real: Sequence[Path], generated: Sequence[Path], path: str | Path,
                        cell: int = 96, title: str = "", aside: Sequence[Path] = ()) -> Path:
    """Writes a PNG with `real` images in the top row, `generated` ones below and, when
    given, the ones the memorisation gate moved `aside` in a third row: a person sees
    whether the recognisable images are only the copies.

    Args:
        real, generated, aside: image files (unreadable ones are left blank).
        path: output PNG (written atomically).
        cell: the side of each thumbnail in pixels (aspect kept, centred).
        title: text above the rows.
    """
    rows = [("real", real), ("generated", generated)] + ([("moved aside", aside)] if aside else [])
    cols = max(max(len(paths) for _, paths in rows), 1)
    margin, label_w, head = 4, 78, 22
    sheet = Image.new("RGB", (label_w + cols * (cell + margin) + margin,
                              head + len(rows) * (cell + margin) + margin), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((margin, 4), title, fill="black")
    for row, (name, paths) in enumerate(rows):
        y = head + row * (cell + margin)
        draw.text((margin, y + cell // 2 - 6), name, fill="black")
        for col, p in enumerate(paths):
            try:
                thumb = Image.fromarray(load_rgb(p, min_side=cell))
            except OSError:
                continue
            thumb.thumbnail((cell, cell), Image.LANCZOS if max(thumb.size) > cell else Image.NEAREST)
            if max(thumb.size) < cell:  # small generated images: enlarge for the eye
                scale = cell / max(thumb.size)
                thumb = thumb.resize((max(1, round(thumb.width * scale)),
                                      max(1, round(thumb.height * scale))), Image.NEAREST)
            x = label_w + margin + col * (cell + margin)
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)


