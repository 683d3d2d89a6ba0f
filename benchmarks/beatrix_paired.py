"""A control for Beatrix on CamVid: the poisoned test set holds only the images where the attack
applies (for O2B / INS a car at least 25 native px wide), while the clean images of the
benchmark are random val images. Scoring the poisoned images against *their own clean
originals* (same scenes, no trigger) separates the trigger from that selection.

Run: ``python benchmarks/beatrix_paired.py --attacks o2b ins`` (a few minutes per attack) →
``benchmarks/results/beatrix_paired.json``. Options are those of the benchmark's Beatrix runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from camvid_common import ROOT, write_result

from badseg.defenses import load_context
from badseg.defenses.base import clean_fraction, detector_inputs
from badseg.defenses.beatrix import beatrix_scores, dominant_class, feature_grams
from badseg.metrics.detection import detection_report
from badseg.data.resize import resize_pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "defense_camvid")
    ap.add_argument("--attacks", nargs="+", default=["o2b", "ins"])
    ap.add_argument("--reference-fraction", type=float, default=0.25)
    args = ap.parse_args()
    out = {}
    for attack in args.attacks:
        ctx = load_context(args.runs / attack, progress=False)
        spec, size, bs = ctx.train.spec, ctx.size, ctx.cfg.eval_batch_size
        inputs = detector_inputs(ctx, 100, 0)  # the benchmark's poisoned images
        ids = {s: k for k, s in enumerate(inputs.poisoned_ids)}
        originals = [None] * len(ids)
        for k in range(len(ctx.poisoned_test)):
            clean, _ = ctx.poisoned_test[k]
            if clean.id in ids:
                originals[ids[clean.id]] = resize_pair(clean.image, clean.label, size)[0]
        paired = np.stack(originals)
        ref = clean_fraction(ctx.train, args.reference_fraction, 0)
        ref_img, ref_lab = (np.stack(a) for a in zip(*(resize_pair(s.image, s.label, size)
                                                        for s in (ref[i] for i in range(len(ref))))))
        row = {"n": len(paired)}
        for grouping, class_id in (("dominant", None), ("class", spec.class_id("car"))):
            g_ref, has = feature_grams(ctx.model, ref_img, ref_lab, 8, 32, class_id, bs)
            g_c, _ = feature_grams(ctx.model, paired, inputs.poisoned_labels, 8, 32, class_id, bs)
            g_p, _ = feature_grams(ctx.model, inputs.poisoned, inputs.poisoned_labels, 8, 32, class_id, bs)
            if class_id is None:
                groups = [dominant_class(lab, spec.ignore_index) for lab in (ref_lab, inputs.poisoned_labels)]
                ref_groups, test_groups = groups
            else:
                g_ref = g_ref[torch.from_numpy(has)]
                ref_groups, test_groups = np.zeros(len(g_ref), int), np.zeros(len(paired), int)
            s_c, _ = beatrix_scores(g_ref, ref_groups, g_c, test_groups, 3.0)
            s_p, _ = beatrix_scores(g_ref, ref_groups, g_p, test_groups, 3.0)
            row[grouping] = detection_report(s_c, s_p)
            print(f"{attack} {grouping}: paired AUC {row[grouping]['auc']:.3f} on {len(paired)} + {len(paired)}",
                  flush=True)
        out[attack] = row
    write_result("beatrix_paired", out)


if __name__ == "__main__":
    main()
