"""Runs independent per-file work on all cores with a progress bar.

Example:
    >>> for result in parallel_imap(probe, paths, desc="checking images"):
    ...     ...
"""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may use (respects CPU affinity and containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    # One thread per process: the processes already fill the cores.
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass


def parallel_imap(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None,
                  desc: str | None = None, unit: str = "it",
                  weight: Callable[[R], int] | None = None, total: int | None = None,
                  chunksize: int = 4) -> Iterator[R]:
    """Yields `fn(item)` for every item, in any order, using `workers` processes.

    Args:
        fn: a picklable (module-level) function.
        items: the work; each item must be picklable and small (paths, not pixels), so
            memory stays flat in the number of items.
        workers: process count; 1 runs in this process (no pickling, easy debugging).
        desc, unit: progress-bar text; `desc=None` shows no bar.
        weight: how much progress one result counts (default 1), with `total` the sum.
    """
    workers = workers or default_workers()
    bar = tqdm(total=total if total is not None else len(items), desc=desc, unit=unit,
               disable=desc is None, dynamic_ncols=True)
    try:
        if workers == 1 or len(items) <= 1:
            results: Iterable[R] = map(fn, items)
            for res in results:
                bar.update(weight(res) if weight else 1)
                yield res
            return
        # spawn, not fork: a forked child inherits locks held by the parent's threads
        # (OpenCV's pool, TensorFlow, tqdm's monitor) and can hang forever on them.
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            for res in pool.imap_unordered(fn, items, chunksize=chunksize):
                bar.update(weight(res) if weight else 1)
                yield res
    finally:
        bar.close()
