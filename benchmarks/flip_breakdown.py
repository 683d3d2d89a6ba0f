"""Where an O2B / O2O backdoor fires: the share of victim pixels predicted as the target on the
instance that carries the trigger, on the other victim instances of the same triggered image,
and on the clean images.

Run: ``python benchmarks/flip_breakdown.py runs/camvid_table/o2b-0.2`` (a finished ``badseg run``
folder; instances are connected components of the victim class at model resolution).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from camvid_common import load_run_config, poisoned_test_set
from badseg.evaluate import predict
from badseg.models import build_model
from badseg.data.resize import resize_label, resize_pair


def flip_breakdown(run: Path) -> dict[str, dict[str, float]]:
    cfg = load_run_config(run / "config.yaml", [])
    train, _, attack, poisoned_test = poisoned_test_set(cfg)
    model = build_model(cfg.model.name, train.spec.num_classes, pretrained=str(run / "backdoored" / "last.pt")).eval()
    size = tuple(cfg.data.size)
    counts = {k: [0, 0] for k in ("carrier", "other", "clean")}  # [flipped, total] victim pixels
    with torch.no_grad():
        for clean, p in poisoned_test:
            image, label = resize_pair(p.image, clean.label, size)
            clean_image, _ = resize_pair(clean.image, clean.label, size)
            trigger = resize_label(p.trigger_mask, size).astype(bool)
            pred, clean_pred = predict(model, [image, clean_image], "cpu")
            comps, n = ndimage.label(label == attack.victim)
            carriers = set(np.unique(comps[trigger & (comps > 0)]).tolist())
            for c in range(1, n + 1):
                mask = comps == c
                key = "carrier" if c in carriers else "other"
                counts[key][0] += int((pred[mask] == attack.target).sum())
                counts[key][1] += int(mask.sum())
            mask = label == attack.victim
            counts["clean"][0] += int((clean_pred[mask] == attack.target).sum())
            counts["clean"][1] += int(mask.sum())
    return {k: {"flipped": f / t if t else None, "pixels": t} for k, (f, t) in counts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    for run in args.runs:
        print(run, json.dumps(flip_breakdown(run)))


if __name__ == "__main__":
    main()
