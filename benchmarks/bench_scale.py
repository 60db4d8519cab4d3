"""Benchmark of the Ray executor (runtime/jobs.py) against the local one, in one run:

1. N independent tiny diffusion trainings (train_all.py's job, `diffusion.per_label`), here
   one after another vs as Ray tasks on a local Ray with this machine's cores: wall time and
   the ratio.
2. The overhead Ray adds per task: N empty tasks, and N tasks that only import TensorFlow
   (every task gets a fresh process), against calling the same function here.
3. What a 4-GPU node and a 4-node cluster run at once: a simulated cluster on this machine
   (`ray.cluster_utils.Cluster`: one raylet per "node", GPUs declared, not real) gets 8 tasks
   of 1 GPU each; the table gives the peak number running together, from each task's own
   start and end times.

    python3 benchmarks/bench_scale.py [--tasks 4] [--steps 30] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import TrainAllConfig  # noqa: E402
from runtime.jobs import Job, connect_ray, run_jobs  # noqa: E402


def write_labels(root: Path, n: int) -> None:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for k in range(n):
        (root / f"label{k}").mkdir(parents=True)
        for i in range(16):
            img = np.full((16, 16, 3), rng.integers(0, 256, 3), np.uint8)
            img[:: 2 + k % 3] //= 2
            Image.fromarray(img).save(root / f"label{k}" / f"{i}.png")


def training_jobs(data: Path, out: Path, steps: int, runtime=None) -> list[Job]:
    from diffusion.per_label import per_label_configs, train_label
    cfg = TrainAllConfig(in_dir=str(data), out_dir=str(out), image_size=[16, 16],
                         widths=[8, 16], block_depth=1, embedding_dims=8, batch_size=8,
                         train_steps=steps, kid_every=0, sample_every=0, tensorboard=False,
                         early_stop_patience=0, validation_split=0.2)
    return [Job(label, train_label, (label, dcfg, None, runtime))
            for label, dcfg in per_label_configs(cfg)]


def nothing() -> int:
    return os.getpid()


def import_tensorflow() -> int:
    import tensorflow  # noqa: F401 - the cost of a fresh process that trains
    return os.getpid()


def stamped_nap(seconds: float) -> tuple[float, float, str]:
    import ray
    start = time.time()
    time.sleep(seconds)
    return start, time.time(), ray.get_runtime_context().get_node_id()


def peak_overlap(spans: list[tuple[float, float, str]]) -> int:
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=4, help="independent trainings")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per training")
    ap.add_argument("--quick", action="store_true", help="2 trainings of 10 steps")
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.steps = 2, 10
    import ray
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_labels(data, args.tasks)
        # 1. trainings; the local executor first warms TensorFlow up in this process, as a
        # real train_all.py run would (its import counted in the local wall time below).
        def local():
            from diffusion.training import setup_runtime
            jobs = training_jobs(data, Path(tmp) / "local", args.steps)
            runtime = setup_runtime(jobs[0].args[1])
            return run_jobs(training_jobs(data, Path(tmp) / "local", args.steps, runtime),
                            "local")
        local_s, out = timed(local)
        assert all(o.status == "ok" for o in out), out
        connect_ray(num_cpus=cores)
        ray_s, out = timed(lambda: run_jobs(training_jobs(data, Path(tmp) / "ray", args.steps),
                                            "ray", cpus=1))
        assert all(o.status == "ok" for o in out), [o.error for o in out]
        rows.append(("trainings", f"{args.tasks} x {args.steps} steps", local_s, ray_s))
        # 2. overhead per task
        for name, fn in (("empty task", nothing), ("task importing TensorFlow",
                                                  import_tensorflow)):
            jobs = [Job(f"{name} {i}", fn) for i in range(args.tasks)]
            here, _ = timed(lambda: run_jobs(jobs, "local"))
            there, out = timed(lambda: run_jobs(jobs, "ray", cpus=1))
            assert len({o.value for o in out}) == args.tasks   # a fresh process each
            rows.append((name, f"{args.tasks} tasks", here, there))
        ray.shutdown()

    print(f"\nRay executor vs local, {cores} cores, {args.tasks} independent jobs, "
          f"Ray {ray.__version__}\n")
    print("| work | size | local s | Ray s | Ray / local | Ray core-s per task |")
    print("|---|---|---|---|---|---|")
    slots = min(cores, args.tasks)
    for name, size, here, there in rows:
        # an in-process call costs ~0 s: no ratio for the overhead rows
        ratio = f"{there / here:.2f}" if here > 0.5 else "-"
        print(f"| {name} | {size} | {here:.1f} | {there:.1f} | {ratio} | "
              f"{there * slots / args.tasks:.2f} |")

    from ray.cluster_utils import Cluster
    print("\nWhat runs at once: 8 tasks asking for 1 GPU each (sleep 3 s), simulated "
          "clusters on this machine (GPUs declared, not real)\n")
    print("| cluster | GPUs | tasks | peak running together | nodes used | wall s |")
    print("|---|---|---|---|---|---|")
    for name, nodes, gpus_each in (("one node with 4 GPUs", 1, 4), ("4 nodes x 1 GPU", 4, 1)):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4,
                                                                "num_gpus": gpus_each})
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=4, num_gpus=gpus_each)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        wall, out = timed(lambda: run_jobs([Job(f"gpu task {i}", stamped_nap, (3.0,))
                                            for i in range(8)], "ray", cpus=0.1, gpus=1))
        spans = [o.value for o in out]
        print(f"| {name} | {nodes * gpus_each} | 8 | {peak_overlap(spans)} | "
              f"{len({n for _, _, n in spans})} | {wall:.1f} |")
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
