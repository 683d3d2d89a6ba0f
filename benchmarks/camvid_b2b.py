"""B2B sidewalk → road on CamVid: why uniform stamp placement stops near 0.85, and ``scatter``.

Run: ``python benchmarks/camvid_b2b.py`` (7 runs of about 3 minutes on 2 CPU cores, the
16-epoch one 6; the schedule is ``camvid_common.SCHEDULE``).

B2B relabels every sidewalk pixel, but the sidewalk is often several disjoint stretches (both
sides of the road). Each run is an ordinary ``badseg run`` of ``configs/camvid/b2b.yaml`` in
``runs/camvid_b2b/<name>``; for the uniform and scatter runs of the same trigger the flip rate
is split between sidewalk stretches that carry a stamp and those that do not
(``flip_breakdown``). Prints a Markdown table, writes ``benchmarks/results/camvid_b2b.json``.
"""

from __future__ import annotations

from camvid_common import METRIC_HEADER, METRIC_RULE, CONFIGS, ROOT, SCHEDULE, badseg_run, metric_cells, write_result
from flip_breakdown import flip_breakdown

STRONG = ["trigger.intensity=0.8"]


def _b2b(size: float, quantity: int, placement: str, rate: float, *more: str) -> list[str]:
    return [f"trigger.size={size}", f"trigger.quantity={quantity}", f"attack.options.placement={placement}",
            *more, f"attack.rate={rate}"]


#: name → (what changes, overrides)
RUNS = {
    "e16-0.2": ("table trigger (6 × 0.06, uniform), 16 epochs", _b2b(0.06, 6, "random_inside", 0.2, "train.epochs=16")),
    "s05q3-0.2": ("3 × 0.05, uniform", _b2b(0.05, 3, "random_inside", 0.2)),
    "s05q3-0.1": ("3 × 0.05, uniform", _b2b(0.05, 3, "random_inside", 0.1)),
    "scatter-s05q3-0.2": ("3 × 0.05, scatter", _b2b(0.05, 3, "scatter", 0.2)),
    "scatter-s05q3-0.1": ("3 × 0.05, scatter", _b2b(0.05, 3, "scatter", 0.1)),
    "scatter-s05q4-0.2": ("4 × 0.05, scatter", _b2b(0.05, 4, "scatter", 0.2)),
    "scatter-s05q4-0.1": ("4 × 0.05, scatter", _b2b(0.05, 4, "scatter", 0.1)),
}
BREAKDOWN = ("s05q3-0.2", "scatter-s05q3-0.2")


def main() -> None:
    out = ROOT / "runs" / "camvid_b2b"
    rows = []
    for name, (change, overrides) in RUNS.items():
        m = badseg_run(CONFIGS / "b2b.yaml", out / name, SCHEDULE + STRONG + overrides)
        row = {"name": name, "change": change, "overrides": overrides, **m}
        if name in BREAKDOWN:
            row["flip_breakdown"] = flip_breakdown(out / name)
        rows.append(row)
    print(f"| run | trigger | rate | poisoned / applicable {METRIC_HEADER} stamped / unstamped stretches flipped |")
    print(f"|---|---|---|---{METRIC_RULE}---|")
    for r in rows:
        fb = r.get("flip_breakdown")
        split = f"{fb['carrier']['flipped']:.3f} / {fb['other']['flipped']:.3f}" if fb else "–"
        print(f"| {r['name']} | {r['change']} | {r['poison_rate']:g} | {r['n_poisoned_train']} / "
              f"{r['n_applicable_train']} {metric_cells(r, None)} {split} |")
    write_result("camvid_b2b", {"rows": rows})


if __name__ == "__main__":
    main()
