"""IBA eligible trigger positions: ``influencer_positions`` vs a port of the reference code.

The IBA reference implementation finds where a ``size`` x ``size`` trigger may go by
"eroding" masks with shift-and-multiply loops: for every non-victim class, the class mask is
multiplied by its own shifts 1..size//2 to the left and right (zero padding), then up and
down; the union over classes is the single-class area. For NNI, the non-victim mask is
eroded the same way by L and by U (one padding) to keep the pixels whose chessboard distance
to the victim lies in (L, U]. ``reference_eligible`` below is our straightforward NumPy port
of that loop (written from its description, on the CPU, with the bugs left out: labels are
never resized, and there is no edge crop).

``influencer_positions`` computes the same set with running sums over the class-boundary
maps (``uniform_boxes``) and, for a chessboard band, two square dilations of the victim mask
(``in_band``; the euclidean band of the paper uses the exact distance transform, timed too).
This script checks that both give identical masks on real CamVid labels (centre-indexed,
metric ``chessboard``), times both, and writes ``benchmarks/results/iba_eligibility.json``.

    python benchmarks/bench_iba_eligibility.py --root ../shared/data/camvid --split val
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from badseg.attacks.placement import influencer_positions
from badseg.data import load_dataset


def _shift_product(base: np.ndarray, steps: int, pad: float, axis: int) -> np.ndarray:
    """``base`` times its copies shifted by 1..steps both ways along ``axis`` (padded with ``pad``)."""
    out = base.astype(np.float32).copy()
    h, w = base.shape
    for step in range(1, steps + 1):
        if axis == 1:
            fill = np.full((h, step), pad, np.float32)
            before = np.column_stack((base[:, step:], fill))
            after = np.column_stack((fill, base[:, :-step]))
        else:
            fill = np.full((step, w), pad, np.float32)
            before = np.vstack((base[step:, :], fill))
            after = np.vstack((fill, base[:-step, :]))
        out *= before * after
    return out


def reference_eligible(label: np.ndarray, victim: int, num_classes: int, size: int,
                       band: tuple[int, int] | None) -> np.ndarray:
    """Eligible trigger centres, bool (H, W), the way the reference code computes them."""
    h, w = label.shape
    steps = min((size - 1) // 2, h, w)
    boundary = np.zeros((h, w), np.float32)
    for c in range(num_classes):
        if c == victim:
            continue
        area = (label == c).astype(np.float32)
        if not area.any():
            continue
        eroded = _shift_product(_shift_product(area, steps, 0.0, axis=1), steps, 0.0, axis=0)
        boundary[eroded == 1] = 1
    if band is None:
        return boundary == 1
    free = 1.0 - (label == victim).astype(np.float32)
    lower, upper = (min(b, h, w) for b in band)
    near_lower = _shift_product(_shift_product(free, lower, 1.0, axis=1), lower, 1.0, axis=0) == 0
    near_upper = _shift_product(_shift_product(free, upper, 1.0, axis=1), upper, 1.0, axis=0) == 0
    return (boundary == 1) & ~near_lower & near_upper


def ours_eligible(label: np.ndarray, victim: int, size: int, band: tuple[int, int] | None,
                  metric: str = "chessboard") -> np.ndarray:
    """``influencer_positions`` moved from top-left corners to centres, bool (H, W)."""
    eligible = influencer_positions(label, victim, size, band, metric)
    out = np.zeros(label.shape, bool)
    c = size // 2
    out[c:c + eligible.shape[0], c:c + eligible.shape[1]] = eligible
    return out


def _time(fn, labels, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for label in labels:
            fn(label)
        best = min(best, time.perf_counter() - t0)
    return best / len(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--victim", default="car")
    ap.add_argument("--size", type=int, default=29, help="trigger size in px, odd (0.06 x 480)")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "iba_eligibility.json"))
    args = ap.parse_args()
    if args.size % 2 == 0:
        raise SystemExit("--size must be odd: the reference code centres a (2k+1)-pixel trigger")
    ds = load_dataset("camvid", root=args.root, split=args.split)
    victim = ds.spec.class_id(args.victim)
    labels = []
    for i in np.linspace(0, len(ds) - 1, len(ds)).astype(int):
        label, _ = ds.load_labels(int(i))
        if (label == victim).sum() >= 64:
            labels.append(label)
        if len(labels) == args.images:
            break
    cases = {"baseline (single class, no band)": None, "NNI band (0, 60]": (0, 60), "long distance (60, 90]": (60, 90)}
    rows = []
    for name, band in cases.items():
        n_eligible = 0
        for label in labels:
            ref = reference_eligible(label, victim, ds.spec.num_classes, args.size, band)
            ours = ours_eligible(label, victim, args.size, band)
            assert np.array_equal(ref, ours), f"{name}: masks differ on a {label.shape} label"
            n_eligible += int(ours.sum())
        t_ref = _time(lambda lb: reference_eligible(lb, victim, ds.spec.num_classes, args.size, band), labels, 1)
        t_ours = _time(lambda lb: ours_eligible(lb, victim, args.size, band), labels, args.repeats)
        t_edt = _time(lambda lb: ours_eligible(lb, victim, args.size, band, "euclidean"), labels, args.repeats)
        rows.append({"case": name, "band": band, "identical": True, "mean_eligible_positions": n_eligible / len(labels),
                     "reference_ms_per_image": 1e3 * t_ref, "ours_ms_per_image": 1e3 * t_ours,
                     "ours_euclidean_ms_per_image": 1e3 * t_edt, "speedup": t_ref / t_ours})
    result = {"dataset": f"camvid/{args.split}", "n_images": len(labels), "image_size": list(labels[0].shape),
              "victim": args.victim, "trigger_size_px": args.size, "metric_compared": "chessboard",
              "python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
              "note": "single process; reference = NumPy port of the IBA code's shift-and-multiply loop", "cases": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(labels)} CamVid {args.split} labels {labels[0].shape}, victim {args.victim}, trigger {args.size}px")
    print("| case | eligible / image | reference ms | ours ms (chessboard) | ours ms (euclidean) | speed-up |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['mean_eligible_positions']:.0f} | {r['reference_ms_per_image']:.1f} | "
              f"{r['ours_ms_per_image']:.2f} | {r['ours_euclidean_ms_per_image']:.2f} | {r['speedup']:.0f}x |")
    print(f"masks identical on every image; wrote {args.out}")


if __name__ == "__main__":
    main()
