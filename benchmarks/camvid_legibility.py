"""Why the CamVid table's ASR stops near 0.7: the trigger stamp's width at the model's input.

Run: ``python benchmarks/camvid_legibility.py`` after ``benchmarks/camvid_table.py`` (about
15 seconds per model on 2 CPU cores; no training).

For every backdoored model of the CamVid table (``runs/camvid_table/<vector>-<rate>``):

1. its ASR on its own poisoned test set, broken down by the width of the trigger stamp once the
   360×480 image is shrunk to the 144×192 input (``asr_by_stamp_px``, ``badseg.metrics.stamp_width``);
2. its ASR on the poisoned test set rebuilt with a stamp-width floor of ``FLOOR_PX`` native
   pixels (10 px at the input): the same model, only the test images whose victim object can
   hold a legible stamp, stamped at least that wide.

Prints Markdown tables and writes ``benchmarks/results/camvid_legibility.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from camvid_common import CONFIGS, ROOT, SCHEDULE, evaluate_checkpoint, fmt, write_result
from camvid_table import TRIGGERS
from badseg.metrics.stamp_width import STAMP_PX_BINS

#: Stamp-width floor in native CamVid pixels: 25 of 480 → 10 of the 192-pixel-wide input.
FLOOR_PX = 25
VECTORS = ("o2o", "o2b", "b2o", "ins")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "camvid_table")
    ap.add_argument("--rates", nargs="+", default=["0.2", "0.1"])
    args = ap.parse_args()
    rows = []
    for rate in args.rates:
        for vector in VECTORS:
            ckpt = args.runs / f"{vector}-{rate}" / "backdoored" / "last.pt"
            base = SCHEDULE + TRIGGERS[vector]
            own = evaluate_checkpoint(ckpt, CONFIGS / f"{vector}.yaml", base)
            legible = evaluate_checkpoint(ckpt, CONFIGS / f"{vector}.yaml", base + [f"trigger.min_size_px={FLOOR_PX}"])
            rows.append({"vector": vector, "rate": float(rate), "asr": own["asr"], "n_images": own["n_images"],
                         "asr_by_stamp_px": own["asr_by_stamp_px"], "legible_asr": legible["asr"],
                         "legible_pba": legible["pba"], "legible_images": legible["n_images"]})
    edges = [(lo, None if hi == float("inf") else hi) for lo, hi in zip(STAMP_PX_BINS[:-1], STAMP_PX_BINS[1:])]
    head = " | ".join(f"{lo:g}–{hi:g} px" if hi is not None else f"≥ {lo:g} px" for lo, hi in edges)
    print(f"| vector | rate | ASR (all) | {head} | ASR, stamps ≥ {FLOOR_PX} native px (images) |")
    print("|---|---|---|" + "---|" * len(edges) + "---|")
    for r in rows:
        cells = {tuple(b["stamp_px"]): b for b in r["asr_by_stamp_px"]}
        bins = " | ".join(f"{fmt(cells[e]['asr'])} ({cells[e]['images']})" if e in cells else "–" for e in edges)
        print(f"| {r['vector']} | {r['rate']:g} | {fmt(r['asr'])} ({r['n_images']}) | {bins} "
              f"| {fmt(r['legible_asr'])} ({r['legible_images']}) |")
    write_result("camvid_legibility", {"floor_native_px": FLOOR_PX, "rows": rows})


if __name__ == "__main__":
    main()
