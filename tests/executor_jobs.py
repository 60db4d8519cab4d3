"""Jobs the executor tests run: module-level functions, so a pool worker can import them by
name and Ray can pickle them (tests/ is on sys.path of the tests and of their workers)."""
from __future__ import annotations

import os
import signal
import time


def double(x: int) -> int:
    return 2 * x


def fail(message: str) -> None:
    raise ValueError(message)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def worker() -> tuple[int, str]:
    """This worker's process id and thread budget."""
    return os.getpid(), os.environ.get("TF_NUM_INTRAOP_THREADS", "")
