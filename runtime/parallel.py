"""Runs independent per-file work on all cores with a progress bar.

Example:
    >>> with worker_pool(workers=2) as pool:
    ...     sizes = list(parallel_imap(probe, paths, pool=pool, desc="checking images"))
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Callable, Iterator, Sequence, TypeVar

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
        # why: OpenCV is optional here: its thread count is set only where it is installed
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(item) for item in chunk]


@contextlib.contextmanager
def _one_opencv_thread() -> Iterator[None]:
    # Our workers already fill the cores; OpenCV's own pool would only add spinning threads.
    try:
        # why: OpenCV is optional here: its thread count is set only where it is installed
        import cv2
    except ImportError:
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


@contextlib.contextmanager
def worker_pool(workers: int | None = None, threads: bool = False) -> Iterator[Executor | None]:
    """A pool to share between the phases of a job.

    Yields None when `workers` is 1: the work then runs in this process (no pickling, easy
    debugging).

    Args:
        workers: pool size (default: all cores).
        threads: threads instead of processes. Right for work spent in code that releases
            the GIL (Pillow decode/encode, OpenCV, file I/O): the pool costs nothing to start,
            where each spawned process re-imports the modules (~0.3 s) and pickles every job,
            which on 2 cores made stage 1 slower than a plain loop. OpenCV is held to one
            thread of its own while the pool is open.

    Processes are spawned, not forked: a forked child inherits locks held by the parent's
    threads (OpenCV's pool, TensorFlow, tqdm's monitor) and can hang on them. A worker that
    dies (killed, out of memory) raises BrokenProcessPool here instead of hanging, as
    multiprocessing.Pool would. As with any spawn-based pool, a script calling this needs the
    `if __name__ == "__main__":` guard.

    Example:
        >>> with worker_pool(2, threads=True) as pool:
        ...     list(parallel_imap(probe, paths, pool=pool))
    """
    workers = workers or default_workers()
    if workers == 1:
        yield None
        return
    if threads:
        with _one_opencv_thread(), ThreadPoolExecutor(workers) as pool:
            yield pool
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        yield pool


def parallel_imap(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None,
                  desc: str | None = None, unit: str = "it",
                  weight: Callable[[R], int] | None = None, total: int | None = None,
                  chunksize: int = 4, pool: Executor | None = None,
                  initial: int = 0) -> Iterator[R]:
    """Yields `fn(item)` for every item, in any order, on all cores.

    Args:
        fn: a picklable (module-level) function.
        items: the work; each item must be picklable and small (paths, not pixels), so
            memory stays flat in the number of items.
        workers: process count when no `pool` is given; 1 runs in this process.
        desc, unit: progress-bar text; `desc=None` shows no bar.
        weight: how much progress one result counts (default 1), with `total` the sum.
        pool: an open `worker_pool` to reuse.
        initial: progress made before these items (counted in `total` too), so the bar
            counts everything the command writes.
    """
    bar = tqdm(total=total if total is not None else len(items) + initial, desc=desc,
               unit=unit, disable=desc is None, dynamic_ncols=True, initial=initial)
    try:
        with contextlib.ExitStack() as stack:
            if pool is None and len(items) > 1:
                pool = stack.enter_context(worker_pool(workers))
            if pool is None:
                chunks: Iterator[list[R]] = ([fn(item)] for item in items)
            else:
                futures = [pool.submit(_run_chunk, fn, items[i:i + chunksize])
                           for i in range(0, len(items), chunksize)]
                chunks = (f.result() for f in as_completed(futures))
            for chunk in chunks:
                for res in chunk:
                    bar.update(weight(res) if weight else 1)
                    yield res
    finally:
        bar.close()
