"""Throughput of the synthetic street-scene generator (images/s on one core).

Run: ``python benchmarks/bench_synthetic.py [--n 300]``. Prints the numbers and writes
``benchmarks/results/synthetic_throughput.json``. Sprites are cached on first use, so a short
warm-up runs before timing; the best of three timed passes is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from badseg.data.synthetic import SyntheticStreets


def images_per_second(height: int, width: int, n: int, repeats: int = 3) -> float:
    ds = SyntheticStreets(split="train", length=n + 50, height=height, width=width)
    for i in range(n, n + 50):  # warm-up: noise bank and sprite caches
        ds[i]
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n):
            ds[i]
        best = max(best, n / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300, help="images per timed pass")
    args = ap.parse_args()
    results = {}
    for h, w in ((128, 256), (256, 512)):
        ips = images_per_second(h, w, args.n if h == 128 else max(args.n // 3, 20))
        results[f"{h}x{w}"] = round(ips, 1)
        print(f"synthetic {h}x{w}: {ips:.1f} images/s")
    out = Path(__file__).resolve().parent / "results" / "synthetic_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"images_per_second": results, "n": args.n, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "note": "single process, one core"}
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
