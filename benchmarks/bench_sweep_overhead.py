"""Sweep overhead: N short runs as one ``badseg sweep`` on k local Ray workers (1 CPU each)
against N/k times one ``badseg run`` of the same kind alone on 1 CPU, side by side.

Run: ``python benchmarks/bench_sweep_overhead.py [--n 4 --k 2 --images 48 --epochs 1]`` (a few
minutes on 2 idle cores). The single run is timed before and after the sweep (the mean of the two
is the reference) as a whole command, imports included, with one torch thread, as a Ray worker
has; the sweep is the whole ``badseg sweep`` command, Ray start-up included. Ray's own start and
stop (``ray.init`` + ``ray.shutdown`` with nothing run) is timed separately, since it is a fixed
cost a longer sweep amortises. Writes ``benchmarks/results/sweep_overhead[-TAG].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUN = {"data.size": [64, 128], "data.train_length": 48, "data.test_length": 16, "model.name": "fpn-effl0",
       "model.pretrained": "imagenet", "train.epochs": 1, "train.batch_size": 4, "workers": 1,
       "figure_samples": 1, "attack.rate": 0.2}


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - t


RAY_START_STOP = ("import ray, time; t = time.perf_counter(); "
                  "ray.init(address='local', num_cpus={k}, include_dashboard=False, log_to_driver=False); "
                  "ray.shutdown(); print(time.perf_counter() - t)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=4, help="runs in the sweep")
    ap.add_argument("--k", type=int, default=2, help="local Ray workers (CPUs)")
    ap.add_argument("--images", type=int, default=RUN["data.train_length"], help="training images per run")
    ap.add_argument("--epochs", type=int, default=RUN["train.epochs"], help="epochs per run")
    ap.add_argument("--tag", default="", help="suffix of the result file")
    args = ap.parse_args()
    RUN.update({"data.train_length": args.images, "train.epochs": args.epochs})
    (ROOT / "runs").mkdir(exist_ok=True)
    badseg = str(Path(sys.executable).parent / "badseg")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(dir=ROOT / "runs", prefix="sweep-overhead-") as tmp:
        tmp = Path(tmp)
        sets = [a for k, v in RUN.items() for a in ("--set", f"{k}={json.dumps(v)}")]
        base = tmp / "base.yaml"
        base.write_text("{}\n")
        alone = [_timed([badseg, "run", str(base), "--out", str(tmp / "alone-a"), *sets, "--set", "seed=100"], env)]
        sweep = tmp / "sweep.yaml"
        sweep.write_text(yaml.safe_dump({"_base_": "base.yaml", "set": RUN, "axes": {"seed": list(range(args.n))},
                                         "resources": {"cpus": 1}}))
        swept = _timed([badseg, "sweep", str(sweep), "--out", str(tmp / "sweep"), "--num-cpus", str(args.k)], env)
        alone.append(_timed([badseg, "run", str(base), "--out", str(tmp / "alone-b"), *sets, "--set", "seed=101"], env))
    ray_fixed = float(subprocess.run([sys.executable, "-c", RAY_START_STOP.format(k=args.k)], env=env,
                                     capture_output=True, text=True, check=True).stdout.split()[-1])
    load.append(os.getloadavg()[0])
    reference = sum(alone) / len(alone) * args.n / args.k
    result = {"n": args.n, "k": args.k, "run": RUN, "single_run_s": alone, "sweep_s": swept,
              "reference_s": reference, "ratio": swept / reference, "ray_start_stop_s": ray_fixed,
              "ratio_without_ray_start_stop": (swept - ray_fixed) / reference,
              "load_average_1min": load, "cpus": os.cpu_count()}
    print(f"one run alone: {alone[0]:.1f} s / {alone[1]:.1f} s; N/k × alone = {reference:.1f} s; "
          f"sweep of {args.n} on {args.k} workers: {swept:.1f} s; ratio {swept / reference:.3f} "
          f"(Ray start + stop {ray_fixed:.1f} s of it; load average {load[0]:.1f} → {load[1]:.1f} "
          f"on {os.cpu_count()} CPUs)")
    dest = ROOT / "benchmarks" / "results" / f"sweep_overhead{'-' + args.tag if args.tag else ''}.json"
    dest.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
