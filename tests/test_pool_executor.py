"""The pool executor: long-lived worker processes on this machine, each with its thread
budget; outcomes as the local executor reports them, a killed worker reported by name, and a
comparison on the pool writes the local executor's tables."""
from __future__ import annotations

import os

import pandas as pd

from executor_jobs import die, double, fail, nap, worker
from runtime.jobs import Job, JobLost, pool_workers, run_jobs


def test_outcomes_come_in_job_order_and_failures_by_name():
    jobs = [Job("a", double, (2,)), Job("broken", fail, ("no such label",)),
            Job("b", double, (5,))]
    out = run_jobs(jobs, "pool", keep_going=True)
    assert [(o.name, o.status, o.value) for o in out] == [
        ("a", "ok", 4), ("broken", "failed", None), ("b", "ok", 10)]
    assert isinstance(out[1].error, ValueError) and str(out[1].error) == "no such label"
    assert [(o.name, o.status, o.value) for o in out] == [
        (o.name, o.status, o.value) for o in run_jobs(jobs, "local", keep_going=True)]


def test_workers_live_for_many_jobs_with_their_thread_budget():
    n = pool_workers(1) + 4
    out = run_jobs([Job(str(i), worker) for i in range(n)], "pool", cpus=1)
    pids = {o.value[0] for o in out}
    assert 1 <= len(pids) <= pool_workers(1) < n          # reused, not one per job
    assert os.getpid() not in pids and {o.value[1] for o in out} == {"1"}
    assert pool_workers(1) == (os.cpu_count() or 1) and pool_workers(1024) == 1


def test_without_keep_going_the_jobs_not_started_are_not_run():
    # One worker (all cores per job): the failure comes first, the nap never starts.
    out = run_jobs([Job("broken", fail, ("bad",)), Job("slow", nap, (60,)),
                    Job("later", double, (1,))], "pool", cpus=os.cpu_count() or 1)
    assert [o.status for o in out] == ["failed", "not run", "not run"]


def test_a_killed_worker_is_a_lost_job_and_the_rest_run_on_a_fresh_pool():
    out = run_jobs([Job("killed", die), Job("after", double, (3,))], "pool", keep_going=True,
                   cpus=os.cpu_count() or 1)
    assert out[0].status == "failed" and isinstance(out[0].error, JobLost)
    assert "worker process died" in str(out[0].error)
    assert (out[1].status, out[1].value) == ("ok", 6)


def test_compare_on_the_pool_gives_the_local_tables(tmp_path):
    from classifier.compare import main as compare
    from conftest import tree_hashes, write_class_images
    train = write_class_images(tmp_path / "train", {"red": 12, "green": 8, "blue": 6}, seed=1)
    test = write_class_images(tmp_path / "test", {"red": 5, "green": 5, "blue": 5}, seed=2)
    argv = ["--train_dir", str(train), "--test_dir", str(test), "--seeds", "0",
            "--variants", "original", "rebalanced", "--number_epochs", "2",
            "--backbone", "small_cnn", "--input_shape", "16", "--batch_size", "8",
            "--workers", "1", "--bootstrap", "0", "--no-tensorboard"]
    assert compare([*argv, "--out_dir", str(tmp_path / "local")]) == 0
    assert compare([*argv, "--out_dir", str(tmp_path / "pool"), "--executor", "pool"]) == 0
    tables = {}
    for name in ("local", "pool"):
        runs = pd.read_csv(tmp_path / name / "runs.csv").drop(columns=["seconds"])
        runs["run_dir"] = runs["run_dir"].str.replace(str(tmp_path / name), "OUT")
        tables[name] = runs
    assert len(tables["local"]) == 4     # 2 arms x 1 seed x (validation, test)
    pd.testing.assert_frame_equal(tables["local"], tables["pool"])
    for arm in ("original", "rebalanced"):
        assert set(tree_hashes(tmp_path / "local" / arm / "seed0")) == \
            set(tree_hashes(tmp_path / "pool" / arm / "seed0"))
