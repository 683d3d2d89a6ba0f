"""Sweeps on a real local Ray instance: tasks run in parallel under their CPU requests, import
this checkout's badseg, and a failure inside a worker comes back with its traceback; and (slow)
the whole ``badseg sweep`` command on synthetic data, interrupted with Ctrl-C and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray.cloudpickle
import yaml
from rich.console import Console

import badseg
from badseg.data.io import write_json
from badseg.sweep import RayExecutor, load_sweep, run_sweep

SRC = Path(badseg.__file__).resolve().parent
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


def _probe(run, run_dir, base_dir, cwd, threads):
    import badseg as worker_badseg

    if run.cfg.seed == 2:
        raise ValueError("seed 2 is broken")
    (Path(run_dir) / "started").touch()
    deadline = time.time() + 120  # a busy machine starts the second worker late: wait for it
    while len(list(Path(run_dir).parent.glob("*/started"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    both = len(list(Path(run_dir).parent.glob("*/started"))) >= 2
    m = {"file": worker_badseg.__file__, "pid": os.getpid(), "both_running": both, "cwd": os.getcwd()}
    write_json(Path(run_dir) / "metrics.json", m)
    return m


def test_ray_tasks_run_in_parallel_import_this_checkout_and_report_worker_tracebacks(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"axes": {"seed": [0, 1, 2]}, "resources": {"cpus": 1}, "retries": 0}))
    executor = RayExecutor(num_cpus=2)
    try:
        result = run_sweep(load_sweep(path), tmp_path / "out", executor, Console(file=open(os.devnull, "w")),
                           task=_probe, poll_s=0.2)
    finally:
        executor.close()
    done = sorted((s for s in result.states if s.status == "done"), key=lambda s: s.run.cfg.seed)
    assert len(done) == 2
    a, b = (s.metrics for s in done)
    assert Path(a["file"]).resolve().parent == SRC and Path(b["file"]).resolve().parent == SRC
    assert a["pid"] != b["pid"] and a["both_running"] and b["both_running"]  # two 1-CPU tasks at once on 2 CPUs
    assert a["cwd"] == os.getcwd()
    failed = next(s for s in result.states if s.status == "failed")
    assert "ValueError: seed 2 is broken" in (failed.path / "failures" / "attempt-1.txt").read_text()


@pytest.mark.slow
def test_cli_sweep_on_local_ray_is_interrupted_resumes_and_tabulates(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "set": {"data.size": [32, 64], "data.train_length": 8, "data.test_length": 4,
                "model.name": "deeplabv3plus-mbv2", "train.epochs": 1, "train.batch_size": 4,
                "eval_batch_size": 4, "workers": 1, "figure_samples": 1},
        "axes": {"attack.rate": [0.25, 0.5], "seed": [0, 1]}, "resources": {"cpus": 1}}))
    badseg_cmd = [str(Path(sys.executable).parent / "badseg")]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    proc = subprocess.Popen([*badseg_cmd, "sweep", str(sweep), "--out", str(out), "--num-cpus", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 1200  # a busy 2-core machine can take minutes to start Ray and train one run
    while not list(out.glob("runs/*/metrics.json")):
        assert time.time() < deadline and proc.poll() is None, "no run finished"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    text = " ".join(proc.communicate(timeout=120)[0].split())
    assert proc.returncode == 130, text
    assert "interrupted:" in text and "run the same command again to resume" in text
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")}
    assert 1 <= len(finished) < 4
    again = subprocess.run([*badseg_cmd, "sweep", str(sweep), "--out", str(out), "--num-cpus", "2"], env=env,
                           capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{4 - len(finished)} run, {len(finished)} finished before, 0 failed" in " ".join(again.stdout.split())
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # finished runs were not redone
    table = subprocess.run([*badseg_cmd, "table", str(out), "--layout", "table23"], env=env, capture_output=True,
                           text=True)
    assert table.returncode == 0, table.stderr
    assert "| o2b |" in table.stdout and " 2 |" in table.stdout  # two seeds per cell
    rates = {json.loads((p.parent / "run.json").read_text())["axes"]["attack.rate"] for p in finished}
    assert rates <= {0.25, 0.5}
