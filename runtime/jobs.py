"""Runs independent jobs (one training each) here, one after another, on a pool of worker
processes on this machine, or as Ray tasks on the cores, GPUs and machines of a Ray cluster.

The local executor is the default and needs nothing. `executor="pool"` runs the jobs on
this machine's cores, `cpus` cores (and TensorFlow threads) per job, in long-lived worker
processes: each imports TensorFlow and decodes a dataset once for all the jobs it runs
(`classifier.data.PROCESS_CACHE`), where a fresh process per job pays both every time. `executor="ray"` starts a local Ray for
the run (`ray_address=""`), or joins a running cluster (`"auto"`, `"ray://host:10001"`, or
the `RAY_ADDRESS` environment variable). Every task runs in a fresh worker process
(`max_calls=1`: TensorFlow never hands memory back, and devices can be chosen once per
process) and is not retried: a task whose process dies is reported, and a rerun of the same
command finishes only the missing work, because each job skips what its run folder says is
done. The repository must sit at the same path on every node (a shared filesystem), as the
outputs do.

Example:
    >>> outcomes = run_jobs([Job("bicycle", train_label, ("bicycle", cfg))], executor="ray")
    >>> [o.status for o in outcomes]
    ['ok']
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable, Sequence

EXECUTORS = ("local", "pool", "ray")
RAY_PIN = "ray==2.60.0"
_REPO = str(Path(__file__).resolve().parent.parent)


class JobLost(RuntimeError):
    """The process running a job died (killed, out of memory) before it reported back."""


class ExecutorError(RuntimeError):
    """Ray is missing or its cluster cannot be reached."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work: `fn(*args)` (a module-level function, so Ray can ship it)."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()


@dataclasses.dataclass
class Outcome:
    """What became of a job: status "ok" (with `value`), "failed" (with `error`), or
    "not run" (cancelled after another job failed)."""

    name: str
    status: str
    value: Any = None
    error: BaseException | None = None


def run_jobs(jobs: Sequence[Job], executor: str = "local", ray_address: str = "",
             cpus: float = 1.0, gpus: float | None = None, keep_going: bool = False,
             on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Runs every job and returns their outcomes in the order of `jobs`.

    Args:
        jobs: the work; each job's own errors are caught and reported in its outcome.
        executor: "local" (here, in order), "pool" (worker processes here, `cpus` cores
            each) or "ray" (all at once, as resources allow).
        ray_address: "" starts a local Ray for this call; "auto" or "ray://host:port" joins a
            cluster. A Ray already initialised in this process is used as it is.
        cpus, gpus: what each Ray task asks for; `gpus=None` asks for one GPU when the
            cluster has any, else none.
        keep_going: after a failure, run the rest; otherwise the jobs not yet finished are
            cancelled (status "not run"): locally and on the pool the ones not started (the
            pool's running ones finish), on Ray all still running.
        on_done: called with each outcome as it arrives (progress tables, logs).

    Raises:
        ExecutorError: unknown executor, Ray missing or its cluster unreachable.
        KeyboardInterrupt: passed on after cancelling what Ray still runs.
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    run = {"local": _run_local, "pool": _run_pool, "ray": _run_ray}[executor]
    return run(list(jobs), ray_address, cpus, gpus, keep_going, on_done or (lambda o: None))


def _run_local(jobs, _address, _cpus, _gpus, keep_going, on_done) -> list[Outcome]:
    outcomes = []
    for job in jobs:
        try:
            outcome = Outcome(job.name, "ok", value=job.fn(*job.args))
        except Exception as err:  # noqa: BLE001 - reported in the outcome
            outcome = Outcome(job.name, "failed", error=err)
        outcomes.append(outcome)
        on_done(outcome)
        if outcome.status == "failed" and not keep_going:
            break
    return outcomes + [Outcome(j.name, "not run") for j in jobs[len(outcomes):]]


def _thread_budget(threads: int) -> dict[str, str]:
    # A task's CPU share is its thread budget: TensorFlow would otherwise size its pools to
    # the whole node and the tasks sharing it would fight over the cores.
    return {"TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": str(min(threads, 2))}


def _pool_worker_start(threads: int) -> None:
    # Before anything imports TensorFlow in this process: its pools are sized once.
    for key, value in _thread_budget(threads).items():
        os.environ.setdefault(key, value)


def _in_worker(fn: Callable[..., Any], args: tuple, threads: int) -> Any:
    _pool_worker_start(threads)   # a Ray task's process is fresh too
    return fn(*args)


def pool_workers(cpus: float) -> int:
    """How many jobs the pool runs at once: this machine's cores over each job's share."""
    return max(1, int((os.cpu_count() or 1) // max(1, int(cpus))))


def _run_pool(jobs, _address, cpus, _gpus, keep_going, on_done) -> list[Outcome]:
    # why: only the pool executor needs them
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    outcomes: list[Outcome | None] = [None] * len(jobs)
    if not jobs:
        return []
    workers = min(pool_workers(cpus), len(jobs))

    def new_pool():
        # spawn, not fork: this process may hold TensorFlow's threads, which a fork breaks
        return ProcessPoolExecutor(max_workers=workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_pool_worker_start,
                                   initargs=(max(1, int(cpus)),))

    pool = new_pool()
    # Submitted one per free worker (the pool would queue ahead): after a failure without
    # keep_going nothing new starts.
    queue = list(enumerate(jobs))[::-1]
    running: dict = {}
    stop = broken = False
    try:
        while running or (queue and not stop):
            if broken and not running:
                # A dead worker breaks the whole pool: the rest start on a fresh one.
                pool.shutdown(wait=True)
                pool, broken = new_pool(), False
            while queue and not stop and not broken and len(running) < workers:
                i, job = queue.pop()
                running[pool.submit(job.fn, *job.args)] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=running.get):
                i = running.pop(future)
                try:
                    outcomes[i] = Outcome(jobs[i].name, "ok", value=future.result())
                except BrokenProcessPool:
                    broken = True
                    outcomes[i] = Outcome(jobs[i].name, "failed", error=JobLost(
                        "its worker process died before it finished (killed, or out of "
                        "memory?)"))
                except Exception as err:  # noqa: BLE001 - reported in the outcome
                    outcomes[i] = Outcome(jobs[i].name, "failed", error=err)
                on_done(outcomes[i])
                stop = stop or (outcomes[i].status == "failed" and not keep_going)
    except KeyboardInterrupt:
        # Ctrl-C reaches the workers too (one process group); every job resumes from its
        # run folder.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [o or Outcome(j.name, "not run") for o, j in zip(outcomes, jobs)]


def connect_ray(address: str = "", num_cpus: int | None = None) -> bool:
    """Initialises Ray for this process unless it already is; True when this call did it.

    Args:
        address: "" starts a local Ray (unless RAY_ADDRESS names a cluster); "auto" or
            "ray://host:port" joins a cluster.
        num_cpus: the cores a local Ray may use (default: all); ignored when joining.

    Raises:
        ExecutorError: Ray is not installed or the cluster cannot be reached.
    """
    try:
        # why: ray is optional (--executor ray) and slow to import
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray: pip install {RAY_PIN}") from None
    if ray.is_initialized():
        return False
    path = os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH", "")) if p)
    address = address or os.environ.get("RAY_ADDRESS", "")
    try:
        ray.init(address=address or "local", include_dashboard=False,
                 num_cpus=None if address else num_cpus,
                 logging_level="WARNING", runtime_env={"env_vars": {"PYTHONPATH": path}})
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ExecutorError(f"cannot reach the Ray cluster at {address!r}: "
                            f"{str(err).splitlines()[0] if str(err) else err}") from None
    return True


def _run_ray(jobs, address, cpus, gpus, keep_going, on_done) -> list[Outcome]:
    # why: ray is optional (--executor ray) and slow to import
    import ray
    started = connect_ray(address)
    try:
        gpus = _gpus_per_task(gpus)
        task = ray.remote(max_calls=1, max_retries=0)(_in_worker)
        threads = max(1, int(cpus))
        refs = {task.options(name=job.name, num_cpus=cpus, num_gpus=gpus).remote(
                    job.fn, job.args, threads): i for i, job in enumerate(jobs)}
        outcomes: list[Outcome | None] = [None] * len(jobs)
        pending = list(refs)
        cancelled: set = set()
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                i = refs[done[0]]
                try:
                    outcomes[i] = Outcome(jobs[i].name, "ok", value=ray.get(done[0]))
                except ray.exceptions.RayError as err:
                    outcomes[i] = _ray_failure(jobs[i].name, err, done[0] in cancelled)
                on_done(outcomes[i])
                if outcomes[i].status == "failed" and not keep_going:
                    # Killed, not interrupted: an interrupt waits for the task's Python code
                    # to run, which a long TensorFlow op or a sleep may not do for minutes.
                    # Every job resumes from its run folder.
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    cancelled.update(pending)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return [o or Outcome(j.name, "not run") for o, j in zip(outcomes, jobs)]
    finally:
        if started:
            ray.shutdown()


class _WorkerProcess:
    """A Ray actor that runs one worker of a multi-worker command as a child process."""

    def __init__(self):
        self.child = None

    def address(self) -> str:
        # why: ray is optional (--executor ray) and slow to import
        import ray
        with socket.socket() as sock:   # a free port on this node, for the TF server
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        return f"{ray.util.get_node_ip_address()}:{port}"

    def run(self, command: list[str], tf_config: str, threads: int, cwd: str) -> int:
        env = {**_thread_budget(threads), **os.environ, "TF_CONFIG": tf_config}
        self.child = subprocess.Popen(command, cwd=cwd, env=env)
        return self.child.wait()

    def stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()


def run_workers(command: Sequence[str], workers: int, ray_address: str = "",
                cpus: float = 1.0, gpus: float | None = None) -> list[int]:
    """Runs `command` as `workers` processes at once on Ray, each with a TF_CONFIG naming
    them all (worker 0 is the chief), as `tf.distribute.MultiWorkerMirroredStrategy` wants.

    Args:
        command: the argv to run (from the repository root, on every node).
        workers: how many processes; each asks Ray for `cpus` and `gpus` (as `run_jobs`).

    Returns:
        Each worker's exit code. When one fails, the others are stopped (they would wait
        for it forever) and report -9.

    Example:
        >>> run_workers([sys.executable, "run_diffusion.py", "--distribute", "multiworker",
        ...              "--in_dir", "/shared/data"], workers=4, gpus=1)
        [0, 0, 0, 0]
    """
    # why: ray is optional (--executor ray) and slow to import
    import ray
    started = connect_ray(ray_address)
    try:
        gpus = _gpus_per_task(gpus)
        actor = ray.remote(max_concurrency=2)(_WorkerProcess).options(num_cpus=cpus,
                                                                        num_gpus=gpus)
        actors = [actor.remote() for _ in range(workers)]
        cluster = {"worker": ray.get([a.address.remote() for a in actors])}
        refs = [a.run.remote(list(command), json.dumps({"cluster": cluster, "task": {
                    "type": "worker", "index": i}}), max(1, int(cpus)), _REPO)
                for i, a in enumerate(actors)]
        codes: dict = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                codes[done[0]] = ray.get(done[0])
            except ray.exceptions.RayError:
                codes[done[0]] = -9
            if codes[done[0]] != 0:
                ray.get([a.stop.remote() for a in actors])
        return [codes[r] for r in refs]
    finally:
        if started:
            ray.shutdown()


def _gpus_per_task(gpus: float | None) -> float:
    """`gpus`, or when None one GPU if the cluster has any (else none)."""
    # why: ray is optional (--executor ray) and slow to import
    import ray
    if gpus is not None:
        return gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _ray_failure(name: str, err: BaseException, cancelled: bool) -> Outcome:
    """The outcome of a Ray task that did not return."""
    # why: ray is optional (--executor ray) and slow to import
    from ray.exceptions import RayTaskError, TaskCancelledError
    if cancelled or isinstance(err, TaskCancelledError):
        # A cancelled task that was running dies with its worker, as Ray reports.
        return Outcome(name, "not run")
    if isinstance(err, RayTaskError):
        return Outcome(name, "failed", error=_cause(err))
    return Outcome(name, "failed", error=JobLost(
        f"its process died before it finished ({type(err).__name__}: killed, or out of "
        f"memory?)"))


def _cause(err: BaseException) -> BaseException:
    """The job's own exception inside Ray's wrapper (the wrapper when it has none)."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err


__all__ = ["Job", "Outcome", "run_jobs", "run_workers", "connect_ray", "pool_workers",
           "JobLost", "ExecutorError", "EXECUTORS"]
