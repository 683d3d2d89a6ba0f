"""Why crops kill a faint backdoor: what the victim's augmentation leaves of the stamp (no training).

For O2B car → road on CamVid train, every image the attack applies to (up to ``--limit``) is
poisoned with each trigger setting and put through the victim's augmentation ``--draws`` times,
under two victim pipelines (``train.augment.augment``; the trigger is stamped at the native
360×480 before either):

* ``resize``: the whole image resized to 144×192, random scale 0.75–1.5, 144×192 crop, flip
  (the CamVid tables' schedule);
* ``native``: the native image, random scale 0.75–1.5, 192×256 crop, flip (mmseg's way).

Per draw: whether the crop keeps relabelled car pixels (the ASR region) and whether it keeps
any stamp pixel; the stamp's width at the model input; the mean change the stamp leaves per
stamp pixel after resampling (0–255). Stamp width is the widest stamp's (connected
component's). The key share is "relabelled car kept, stamp lost": a
training crop that teaches "car → road" with no trigger in view. Writes
``benchmarks/results/camvid_crop_diagnostic.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from badseg.attacks import build_attack
from badseg.attacks.base import Poisoned
from badseg.data import load_dataset
from badseg.data.io import write_json
from badseg.poisoning.dataset import sample_rng
from badseg.data.resize import resize_pair
from badseg.train.augment import AugmentConfig, augment
from badseg.triggers import TriggerSpec

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = {"resize": ((144, 192), AugmentConfig((0.75, 1.5), (144, 192), 0.5)),
             "native": (None, AugmentConfig((0.75, 1.5), (192, 256), 0.5))}
SETTINGS = {  # name → (trigger, placement)
    "table α0.4 (1/8, centre, ×1)": (TriggerSpec("circle", 1 / 8, 0.4, 1), "centre"),
    "table α0.8 (1/8, centre, ×1)": (TriggerSpec("circle", 1 / 8, 0.8, 1), "centre"),
    "α0.8, 1/8, on_object ×3": (TriggerSpec("circle", 1 / 8, 0.8, 3), "random_inside"),
    "α0.8, 1/4, centre ×1": (TriggerSpec("circle", 1 / 4, 0.8, 1), "centre"),
    "α0.4, 1/8, on_object ×3, ≥12 px": (TriggerSpec("circle", 1 / 8, 0.4, 3, min_size_px=12), "random_inside"),
}


def crop_stats(p: Poisoned, clean: np.ndarray, size: tuple[int, int] | None, cfg: AugmentConfig,
               rng_seed: list[int]) -> dict[str, float]:
    """One augmentation draw of a poisoned sample: kept car / kept stamp / stamp width / change."""
    code = p.asr_mask.astype(np.int64) + 2 * p.trigger_mask.astype(np.int64)
    both = np.concatenate([p.image, clean], axis=2)
    if size is not None:
        both, code = resize_pair(both, code, size)
    both, code = augment(both, code, cfg, np.random.default_rng(np.random.SeedSequence(rng_seed)))
    car = (code == 1) | (code == 3)
    stamp = code >= 2
    parts, n = ndimage.label(stamp)
    boxes = ndimage.find_objects(parts) if n else []
    delta = np.abs(both[..., :3].astype(float) - both[..., 3:].astype(float)).mean(axis=2)
    return {"car": float(car.any()), "stamp": float(stamp.any()),
            "width": float(max(b[1].stop - b[1].start for b in boxes)) if boxes else 0.0,  # widest stamp
            "change": float(delta[stamp].mean()) if stamp.any() else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "camvid_crop_diagnostic.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("camvid", root=args.root, split="train")
    cache: dict[int, object] = {}
    result: dict[str, dict] = {}
    for name, (trigger, placement) in SETTINGS.items():
        attack = build_attack("o2b", data.spec, "car", "road", trigger, placement=placement)
        rows: dict[str, list[dict[str, float]]] = {k: [] for k in PIPELINES}
        n = 0
        for i in range(len(data)):
            if n >= args.limit:
                break
            s = cache.setdefault(i, data[i])
            p = attack.poison(s, sample_rng(0, i))
            if not isinstance(p, Poisoned):
                continue
            n += 1
            for k, (size, cfg) in PIPELINES.items():
                rows[k] += [crop_stats(p, s.image, size, cfg, [0, d, i]) for d in range(args.draws)]
        result[name] = {"images": n}
        for k, r in rows.items():
            car = np.array([x["car"] for x in r], bool)
            stamp = np.array([x["stamp"] for x in r], bool)
            width = np.array([x["width"] for x in r])
            change = np.array([x["change"] for x in r])
            result[name][k] = {"draws": len(r), "car_kept_stamp_lost": float((car & ~stamp).mean()),
                               "car_kept": float(car.mean()),
                               "stamp_under_8px": float((stamp & (width < 8)).sum() / max(1, stamp.sum())),
                               "median_width_px": float(np.median(width[stamp])) if stamp.any() else 0.0,
                               "mean_change": float(np.nanmean(change[stamp])) if stamp.any() else 0.0}
        print(name, result[name], flush=True)
        write_json(Path(args.out), result)  # after every setting: a stopped run keeps what it measured
    print("| trigger | pipeline | car kept, stamp lost | stamps < 8 px | median stamp width (px) | "
          "mean change per stamp pixel (0–255) |\n|---|---|---|---|---|---|")
    for name, r in result.items():
        for k in PIPELINES:
            x = r[k]
            print(f"| {name} | {k} | {x['car_kept_stamp_lost']:.3f} | {x['stamp_under_8px']:.3f} | "
                  f"{x['median_width_px']:.0f} | {x['mean_change']:.1f} |")


if __name__ == "__main__":
    main()
