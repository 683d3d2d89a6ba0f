"""Poisoning cost vs a plain copy (issue: "at most 1.3x a decode + re-encode copy").

Runs, side by side in one process and with the same worker count, (a) a plain copy of a
CamVid split that decodes every image and label and re-encodes them as PNG with the same
encoder settings, (b) ``export_poisoned`` with O2B car → road in badseg's own layout (every
image and label re-encoded, the same work as the copy plus poisoning) and (c) the same export
in the source's layout, as ``badseg poison`` writes it (unpoisoned files copied as they are).
The rate is over the applicable images, as when the goal was set. Each is repeated and the
best time is kept. Writes ``benchmarks/results/poison_speed.json``.

    python benchmarks/bench_poison.py --root ../shared/data/camvid --split train
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from badseg.attacks import build_attack
from badseg.data import load_dataset
from badseg.data.io import write_png
from badseg.poisoning import export_poisoned
from badseg.poisoning.dataset import chunks
from badseg.triggers import TriggerSpec


def _copy_chunk(args):
    dataset, indices, out = args
    for i in indices:
        s = dataset[i]
        write_png(out / "images" / f"{s.id}.png", s.image)
        write_png(out / "labels" / f"{s.id}.png", s.label.astype("uint8"))


def plain_copy(dataset, out: Path, workers: int) -> None:
    jobs = [(dataset, c, out) for c in chunks(len(dataset), workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_copy_chunk, jobs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "poison_speed.json"))
    args = ap.parse_args()
    ds = load_dataset("camvid", root=args.root, split=args.split)
    attack = build_attack("o2b", ds.spec, "car", "road", TriggerSpec("circle", 1 / 8, 0.4))
    copy_s, poison_s, dropin_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, times, fn in (
                ("copy", copy_s, lambda o: plain_copy(ds, o, args.workers)),
                ("poison", poison_s, lambda o: export_poisoned(ds, attack, args.rate, o, seed=0, workers=args.workers,
                                                               progress=False, rate_of="applicable")),
                ("dropin", dropin_s, lambda o: export_poisoned(ds, attack, args.rate, o, seed=0, workers=args.workers,
                                                               progress=False, rate_of="applicable",
                                                               source=args.root)),
            ):
                out = Path(tmp) / f"{name}{r}"
                t0 = time.perf_counter()
                fn(out)
                times.append(time.perf_counter() - t0)
                shutil.rmtree(out, ignore_errors=True)
    result = {
        "dataset": f"camvid/{args.split}", "n_images": len(ds), "workers": args.workers, "rate": args.rate,
        "copy_seconds_best": min(copy_s), "poison_seconds_best": min(poison_s),
        "ratio": min(poison_s) / min(copy_s), "copy_seconds": copy_s, "poison_seconds": poison_s,
        "images_per_s_poison": len(ds) / min(poison_s), "dropin_seconds_best": min(dropin_s),
        "dropin_ratio": min(dropin_s) / min(copy_s), "dropin_seconds": dropin_s,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
