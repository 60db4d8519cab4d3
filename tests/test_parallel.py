"""runtime.parallel: the thread pool stage 1 runs on gives what one process gives."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2

from runtime.parallel import parallel_imap, worker_pool


def _square(x: int) -> int:
    return x * x


def test_thread_pool_gives_the_serial_results_and_restores_opencv_threads():
    before = cv2.getNumThreads()
    with worker_pool(2, threads=True) as pool:
        assert isinstance(pool, ThreadPoolExecutor)
        assert cv2.getNumThreads() == 1  # our threads fill the cores, not OpenCV's
        threaded = sorted(parallel_imap(_square, list(range(50)), pool=pool))
    assert cv2.getNumThreads() == before
    assert threaded == [x * x for x in range(50)]
    with worker_pool(1, threads=True) as pool:
        assert pool is None  # one worker: this process, no pool
