"""Grid search bookkeeping: parse and expand a parameter grid, name runs, summarise results.

A grid is given as `NAME=V1,V2,...` strings over fields of `ClassifierConfig`; every value
is checked by the field's type and range before any run starts (the original pipeline's grid set a
batch size that training then ignored; here each combination becomes the run's config).

Example:
    >>> grid = parse_grid(["learning_rate=1e-3,1e-4", "batch_size=16,32"], ClassifierConfig)
    >>> [c["batch_size"] for c in expand_grid(grid)]
    [16, 32, 16, 32]
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import typing
from typing import Any, Sequence

from cli.flags import ConfigError, _scalar_parser, _unwrap_optional


def parse_grid(specs: Sequence[str] | None, cls) -> dict[str, list[Any]]:
    """Parses `NAME=V1,V2` specs into {name: [typed values]} (insertion order kept).

    Raises:
        ConfigError: unknown or list-valued field, empty or badly typed value, repeated name.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    grid: dict[str, list[Any]] = {}
    for spec in specs or []:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not values.strip():
            raise ConfigError(f"--grid expects NAME=V1,V2,..., got {spec!r}")
        if name not in names:
            raise ConfigError(f"--grid: {name!r} is not a setting of {cls.__name__}")
        if name in grid:
            raise ConfigError(f"--grid: {name} is given twice")
        tp, optional = _unwrap_optional(hints[name])
        if typing.get_origin(tp) in (list, tuple):
            raise ConfigError(f"--grid: {name} takes a list; grid over scalar settings only")
        convert = _scalar_parser(tp, optional)
        try:
            grid[name] = [convert(v.strip()) for v in values.split(",") if v.strip()]
        except Exception as err:  # argparse.ArgumentTypeError carries the reason
            raise ConfigError(f"--grid {name}: {err}") from None
        if len(set(map(repr, grid[name]))) != len(grid[name]):
            raise ConfigError(f"--grid {name}: a value is repeated")
    return grid


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (the last name varies fastest); [{}] if empty."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def combo_name(params: dict[str, Any]) -> str:
    """A readable, file-safe, stable folder name for one combination, e.g.
    `batch_size=16_learning_rate=0.001`; long names are shortened with a hash."""
    if not params:
        return "default"
    text = "_".join(f"{k}={v}" for k, v in params.items())
    safe = re.sub(r"[^A-Za-z0-9_=.+-]+", "-", text)
    if len(safe) > 80:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        safe = f"{safe[:70]}-{digest}"
    return safe


def run_seed(seed: int, repeat: int) -> int:
    """The training seed of repeat `repeat` of base seed `seed` (distinct, reproducible)."""
    return seed + 1000 * repeat


def summarize(df, group_cols: Sequence[str], metric_cols: Sequence[str]):
    """Mean, standard deviation (ddof=1) and count of `metric_cols` per group.

    Returns:
        A pandas DataFrame with columns group_cols + `<metric>_mean`, `<metric>_std`, `n`.
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    rows = []
    for key, sub in df.groupby(list(group_cols), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(group_cols, key))
        for m in metric_cols:
            row[f"{m}_mean"] = float(sub[m].mean())
            row[f"{m}_std"] = float(sub[m].std(ddof=1)) if len(sub) > 1 else float("nan")
        row["n"] = int(len(sub))
        rows.append(row)
    return pd.DataFrame(rows)
