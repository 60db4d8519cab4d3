"""The memorisation audit: each synthetic image's nearest real training image in a feature
space, judged against how close real held-out images come to the training set.

`audit_synthetic` is the one call stage 3's quality gate and the `python3 -m quality audit`
command share: paths in, one table row per synthetic image out (nothing is written).
`closest_pairs_sheet` draws the closest (synthetic | nearest real) pairs for a person to look
at; `summarise` gives the per-label memorisation shares.

Example:
    >>> space = pixel_space(32)
    >>> table = audit_synthetic(fake_paths, {"boot": boot_paths, "bag": bag_paths},
    ...                         test_paths=test_paths, space=space)
    >>> table[table.flagged].path.tolist()       # suspected copies
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from dataset.images import ImageLoadError, load_rgb
from quality.features import pixel_space
from quality_maths import neighbours

AUDIT_COLUMNS = ["path", "label", "space", "nearest_path", "nearest_label", "distance",
                 "threshold", "ratio", "flagged", "nearest_mirrored"]


def _flatten(paths_by_label: Mapping[str, Sequence[str | Path]]) -> tuple[list[str], list[str]]:
    paths, labels = [], []
    for label, items in paths_by_label.items():
        for p in items:
            paths.append(str(p))
            labels.append(str(label))
    return paths, labels


def _kept(features, ok, paths, labels, what: str):
    if len(ok) == 0:
        raise ValueError(f"none of the {len(paths)} {what} images could be read")
    return features, [paths[i] for i in ok], [labels[i] for i in ok]


def _nearest(query, train_f, mirror_f, metric: str, exclude_self: bool = False):
    """Each query's closest training image, among the images and (when `mirror_f` is given)
    their mirror images: (index, distance, matched the mirror image)."""
    idx, dist = neighbours.nearest(query, train_f, metric, exclude_self)
    if mirror_f is None:
        return idx, dist, np.zeros(len(idx), dtype=bool)
    # exclude_self here also keeps an image from matching its own mirror image
    m_idx, m_dist = neighbours.nearest(query, mirror_f, metric, exclude_self)
    mirrored = m_dist < dist
    return np.where(mirrored, m_idx, idx), np.minimum(dist, m_dist), mirrored


def audit_synthetic(synthetic_paths: Sequence[str | Path],
                    train_paths_by_label: Mapping[str, Sequence[str | Path]],
                    test_paths: Sequence[str | Path] | Mapping[str, Sequence[str | Path]]
                    | None = None,
                    space=None, *, synthetic_labels: Sequence[str] | None = None,
                    percentile: float = 5.0, metric: str = "cosine", min_reference: int = 5,
                    scope: str = "global", mirror: bool = True):
    """Flags synthetic images that lie closer to a training image than real test images do.

    The nearest neighbour is searched among ALL training images (a copy of another label's
    image is a copy too); `nearest_label` says whose it is.

    Args:
        synthetic_paths: the generated images.
        train_paths_by_label: the real training images, by label.
        test_paths: real held-out images (a list, or a mapping by label, needed for
            scope="label"). None: leave-one-out distances among the training images (each
            to its closest other training image) stand in for the test-to-train ones, as in
            stage 3 where no test set exists.
        space: a `quality.features.FeatureSpace`; default `pixel_space()`.
        synthetic_labels: one label per synthetic image; default its folder's name (the
            stage-3 layout `<label>/<name>.png`).
        percentile: of the reference distances that sets the threshold (5 = the issue's).
        metric: "cosine" or "l2", both on L2-normalised features.
        min_reference: fewer reference distances than this: the threshold is their minimum.
        scope: "global" (one threshold) or "label" (each label's own test images; labels
            with fewer than `min_reference` take the global one).
        mirror: a training image's mirror image counts as that image (stage 2 trains on
            flipped images, so a flipped copy is a copy), for the reference distances too.

    Returns:
        pandas DataFrame, one row per readable synthetic image, columns AUDIT_COLUMNS
        (`ratio` = distance / threshold: below 1 is flagged, 0 a copy; `nearest_mirrored`:
        the match was the training image's mirror image). `df.attrs` holds
        "rule" (how the threshold was made, per label), "reference" and "skipped"
        (messages for unreadable files).

    Raises:
        ValueError: no readable training images, no reference distances, bad settings.

    Example:
        >>> df = audit_synthetic(["out/boot/a.png"], {"boot": ["train/boot/1.png"]},
        ...                      ["test/boot/9.png"], pixel_space(32))
        >>> df.loc[0, "flagged"]
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    if scope not in ("global", "label"):
        raise ValueError(f"scope must be 'global' or 'label', got {scope!r}")
    if space is None:
        space = pixel_space()
    syn_paths = [str(p) for p in synthetic_paths]
    syn_labels = ([str(x) for x in synthetic_labels] if synthetic_labels is not None
                  else [Path(p).parent.name for p in syn_paths])
    if len(syn_labels) != len(syn_paths):
        raise ValueError("one label per synthetic image is needed")
    skipped: list[str] = []

    train_paths, train_labels = _flatten(train_paths_by_label)
    if mirror:
        f, mirror_f, ok, err = space.features_and_mirrored(train_paths)
    else:
        (f, ok, err), mirror_f = space.features(train_paths), None
    skipped += err
    train_f, train_paths, train_labels = _kept(f, ok, train_paths, train_labels, "training")

    if test_paths is None:
        if len(train_paths) < 2:
            raise ValueError("leave-one-out reference distances need at least 2 training "
                             "images; give real test images")
        _, ref_d, _ = _nearest(train_f, train_f, mirror_f, metric, exclude_self=True)
        ref_labels, reference = train_labels, "leave-one-out train-to-train"
    else:
        if isinstance(test_paths, Mapping):
            t_paths, t_labels = _flatten(test_paths)
        else:
            t_paths = [str(p) for p in test_paths]
            t_labels = [Path(p).parent.name for p in t_paths]
        f, ok, err = space.features(t_paths) if t_paths else (None, [], [])
        skipped += err
        if not ok:
            raise ValueError("no readable real test images: the threshold needs some (or "
                             "pass test_paths=None for leave-one-out distances)")
        _, ref_d, _ = _nearest(f, train_f, mirror_f, metric)
        ref_labels, reference = [t_labels[i] for i in ok], "test-to-train"

    labels = list(dict.fromkeys(syn_labels))
    if scope == "label":
        thresholds = neighbours.label_thresholds(ref_d, ref_labels, labels, percentile,
                                                 min_reference)
    else:
        one = neighbours.memorisation_threshold(ref_d, percentile, min_reference)
        thresholds = {label: one for label in labels}

    rows = pd.DataFrame(columns=AUDIT_COLUMNS)
    if syn_paths:
        f, ok, err = space.features(syn_paths)
        skipped += err
        if ok:
            idx, dist, mirrored = _nearest(f, train_f, mirror_f, metric)
            lab = [syn_labels[i] for i in ok]
            thr = np.array([thresholds[x].value for x in lab])
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(thr > 0, dist / np.where(thr > 0, thr, 1.0),
                                 np.where(dist > 0, np.inf, 0.0))
            rows = pd.DataFrame({
                "path": [syn_paths[i] for i in ok], "label": lab, "space": space.name,
                "nearest_path": [train_paths[j] for j in idx],
                "nearest_label": [train_labels[j] for j in idx],
                "distance": dist, "threshold": thr, "ratio": ratio,
                "flagged": neighbours.flag_memorised(dist, thr), "nearest_mirrored": mirrored})
    rows.attrs.update(rule={k: v.rule.replace("reference", reference)
                            for k, v in thresholds.items()}, reference=reference,
                      n_reference=int(len(ref_d)), metric=metric, percentile=percentile,
                      skipped=skipped, space=space.name)
    return rows


def summarise(table):
    """Per label and feature space: synthetic images, flagged, memorisation share, threshold,
    median distance; plus an "(all)" row per space.

    Example:
        >>> summarise(table)[["label", "space", "memorisation_share"]]
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    cols = ["label", "space", "n_synthetic", "n_flagged", "memorisation_share", "threshold",
            "median_distance", "min_distance"]
    if len(table) == 0:
        return pd.DataFrame(columns=cols)
    out = []
    for space, by_space in table.groupby("space", sort=False):
        groups = [(label, g) for label, g in by_space.groupby("label", sort=False)]
        for label, g in groups + [("(all)", by_space)]:
            out.append({"label": label, "space": space, "n_synthetic": len(g),
                        "n_flagged": int(g.flagged.sum()),
                        "memorisation_share": neighbours.memorisation_share(g.flagged),
                        "threshold": (float(g.threshold.iloc[0]) if g.threshold.nunique() == 1
                                      else float("nan")),
                        "median_distance": float(g.distance.median()),
                        "min_distance": float(g.distance.min())})
    return pd.DataFrame(out, columns=cols)


def closest_pairs(table, n: int = 16):
    """The `n` synthetic images closest to a training image relative to the threshold
    (smallest `ratio`), each image once (its closest space)."""
    if len(table) == 0:
        return table
    ordered = table.sort_values(["ratio", "distance"], kind="stable")
    return ordered.drop_duplicates("path", keep="first").head(n).reset_index(drop=True)


def _thumb(path: str, cell: int):
    try:
        img = Image.fromarray(load_rgb(path, min_side=cell))
    except ImageLoadError:
        return Image.new("RGB", (cell, cell), (200, 200, 200))
    img.thumbnail((cell, cell), Image.LANCZOS if max(img.size) > cell else Image.NEAREST)
    if max(img.size) < cell:  # small generated images: enlarge for the eye, no blur
        scale = cell / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.NEAREST)
    return img


def closest_pairs_sheet(table, n: int = 16, cell: int = 96, pairs_per_row: int = 4,
                        title: str = ""):
    """A PIL image of the closest pairs: synthetic (left) | nearest real (right), captioned
    with label, distance / threshold and FLAGGED where flagged.

    Example:
        >>> closest_pairs_sheet(table, n=8).save("closest_pairs.png")
    """
    pairs = closest_pairs(table, n)
    margin, cap, head = 6, 28, 22 if title else 4
    cols = max(1, min(pairs_per_row, len(pairs)))
    rows = max(1, int(np.ceil(len(pairs) / cols)))
    tile_w, tile_h = 2 * cell + 2, cell + cap
    sheet = Image.new("RGB", (margin + cols * (tile_w + margin),
                              head + rows * (tile_h + margin)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((margin, 4), title, fill="black")
    if len(pairs) == 0:
        draw.text((margin, head), "no synthetic images", fill="black")
    for k, row in enumerate(pairs.itertuples()):
        x = margin + (k % cols) * (tile_w + margin)
        y = head + (k // cols) * (tile_h + margin)
        mirrored = bool(getattr(row, "nearest_mirrored", False))
        for j, path in enumerate((row.path, row.nearest_path)):
            im = _thumb(path, cell)
            if j == 1 and mirrored:  # shown as it was matched
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            sheet.paste(im, (x + j * (cell + 2) + (cell - im.width) // 2,
                             y + (cell - im.height) // 2))
        colour = (180, 35, 24) if row.flagged else (40, 40, 40)
        draw.text((x, y + cell + 2), f"{row.label} | {row.nearest_label}"
                  + (" (mirror)" if mirrored else "") + f"  [{row.space}]", fill=colour)
        draw.text((x, y + cell + 14), f"d={row.distance:.4f} thr={row.threshold:.4f}"
                  + ("  FLAGGED" if row.flagged else ""), fill=colour)
    return sheet
