"""Issue 16 speed check: STRIP and TeCo per image against the bare batched forward passes they
need, on the same model and inputs, measured side by side (alternating per image) in one run;
and glass blur, the slow corruption.

Run: ``python benchmarks/defense_speed.py [--run RUN_DIR] [--images 6]`` (a few minutes on 2 CPU
cores). With ``--run`` the model and images are that run's backdoored model and clean CamVid val
images; without, a ``fpn-effl0`` at random weights on CamVid val at 144×192.

* STRIP, bare: the model on the N superimposed copies of an image, already built, in batches of
  ``batch_size``; STRIP: ``strip_entropy_map`` (drawing the overlays, superimposing, forward,
  per-pixel entropy, mean over copies).
* TeCo, bare: the model on the image and its 75 corrupted variants, already computed, in batches
  of 76; TeCo: ``teco_scores`` on the image (corruptions in worker processes, computed ahead,
  then forward, mIoU and break severities). Also TeCo with the corruptions in this process.
* Glass blur: seconds for its first call in a fresh process (numba compiles its loop) and for
  later calls, against all the other corruptions of one image.

Prints a Markdown table and writes ``benchmarks/results/defense_speed.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from badseg.data.io import write_json
from badseg.defenses.base import to_tensor
from badseg.defenses.corruptions import CORRUPTIONS, corrupted_variants, default_workers
from badseg.defenses.strip import strip_entropy_map, superimpose
from badseg.defenses.teco import teco_scores

ROOT = Path(__file__).resolve().parents[1]

GLASS_COLD = """
import time, numpy as np
from badseg.defenses.corruptions import corrupt_once
img = np.random.default_rng(0).integers(0, 256, (144, 192, 3), dtype=np.uint8)
t = time.perf_counter(); corrupt_once(img, "glass_blur", 3); print(time.perf_counter() - t)
"""


def _model_and_images(run: Path | None, n: int) -> tuple[torch.nn.Module, np.ndarray, np.ndarray, int]:
    from badseg.data import load_dataset
    from badseg.models import build_model
    from badseg.data.resize import resize_pair

    size = (144, 192)
    test = load_dataset("camvid", root=ROOT.parent / "shared" / "data" / "camvid", split="val")
    train = load_dataset("camvid", root=ROOT.parent / "shared" / "data" / "camvid", split="train")
    pretrained = str(run / "backdoored" / "last.pt") if run else "none"
    model = build_model("fpn-effl0", test.spec.num_classes, pretrained=pretrained).eval()
    images = np.stack([resize_pair(test[i].image, test[i].label, size)[0] for i in range(n)])
    pool = np.stack([resize_pair(train[i].image, train[i].label, size)[0] for i in range(0, 367, 4)])
    return model, images, pool, test.spec.num_classes


@torch.inference_mode()
def _bare(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    for i in range(0, x.shape[0], batch_size):
        model(x[i:i + batch_size])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--n", type=int, default=100, help="STRIP copies per image")
    ap.add_argument("--strip-batch", type=int, default=50)
    ap.add_argument("--workers", type=int, default=default_workers())
    args = ap.parse_args()
    model, images, pool, num_classes = _model_and_images(args.run, args.images)
    overlays = to_tensor(pool)
    rows: dict[str, list[float]] = {k: [] for k in ("strip_bare", "strip", "teco_bare", "teco", "teco_inprocess",
                                                    "corruptions_one_image")}
    with torch.inference_mode():
        model(to_tensor(images[:1]))  # warm-up
    teco_scores(model, images[:1], num_classes, workers=args.workers)  # warm the pool path once
    for i, image in enumerate(images):
        x = to_tensor(image[None])[0]
        g = torch.Generator().manual_seed(i)
        pick = torch.randperm(overlays.shape[0], generator=g)[:args.n]
        blends = superimpose(x, overlays[pick], 0.5)
        t = time.perf_counter()
        _bare(model, blends, args.strip_batch)
        rows["strip_bare"].append(time.perf_counter() - t)
        t = time.perf_counter()
        strip_entropy_map(model, x, overlays, args.n, torch.Generator().manual_seed(i), batch_size=args.strip_batch)
        rows["strip"].append(time.perf_counter() - t)
        t = time.perf_counter()
        variants = corrupted_variants(image, seed=i)
        rows["corruptions_one_image"].append(time.perf_counter() - t)
        stack = to_tensor(np.concatenate([image[None], variants]))
        t = time.perf_counter()
        _bare(model, stack, 76)
        rows["teco_bare"].append(time.perf_counter() - t)
        t = time.perf_counter()
        teco_scores(model, image[None], num_classes, seed=i, workers=args.workers)
        rows["teco"].append(time.perf_counter() - t)
        t = time.perf_counter()
        teco_scores(model, image[None], num_classes, seed=i, workers=0)
        rows["teco_inprocess"].append(time.perf_counter() - t)
        print(f"image {i}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()), flush=True)
    # TeCo over several images at once: the pool computes image k+1 while the model runs on image k.
    t = time.perf_counter()
    teco_scores(model, images, num_classes, workers=args.workers)
    teco_stream = (time.perf_counter() - t) / len(images)
    glass = []
    img = images[0]
    for _ in range(3):
        t = time.perf_counter()
        corrupted_variants(img, ["glass_blur"], [1, 2, 3, 4, 5])
        glass.append(time.perf_counter() - t)
    others = [c for c in CORRUPTIONS if c != "glass_blur"]
    t = time.perf_counter()
    corrupted_variants(img, others)
    others_s = time.perf_counter() - t
    cold = float(subprocess.run([sys.executable, "-c", GLASS_COLD], capture_output=True, text=True, check=True)
                 .stdout.split()[-1])
    med = {k: float(np.median(v)) for k, v in rows.items()}
    result = {"images": args.images, "n": args.n, "strip_batch": args.strip_batch, "workers": args.workers,
              "torch_threads": torch.get_num_threads(), "run": str(args.run) if args.run else None,
              "per_image_s": rows, "median_s": med, "teco_stream_per_image_s": teco_stream,
              "strip_ratio": med["strip"] / med["strip_bare"], "teco_ratio": med["teco"] / med["teco_bare"],
              "teco_stream_ratio": teco_stream / med["teco_bare"],
              "teco_inprocess_ratio": med["teco_inprocess"] / med["teco_bare"],
              "glass_blur_first_call_fresh_process_s": cold, "glass_blur_5_severities_warm_s": glass,
              "other_14_corruptions_5_severities_s": others_s}
    write_json(ROOT / "benchmarks" / "results" / "defense_speed.json", result)
    print("| detector | bare forward passes (s / image) | detector (s / image) | ratio |")
    print("|---|---|---|---|")
    print(f"| STRIP, N={args.n} | {med['strip_bare']:.2f} | {med['strip']:.2f} | {result['strip_ratio']:.2f} |")
    print(f"| TeCo, 15 × 5, {args.workers} worker(s), one image at a time | {med['teco_bare']:.2f} | {med['teco']:.2f} "
          f"| {result['teco_ratio']:.2f} |")
    print(f"| TeCo, {args.workers} worker(s), {args.images} images streamed | {med['teco_bare']:.2f} | "
          f"{teco_stream:.2f} | {result['teco_stream_ratio']:.2f} |")
    print(f"| TeCo, corruptions in-process | {med['teco_bare']:.2f} | {med['teco_inprocess']:.2f} "
          f"| {result['teco_inprocess_ratio']:.2f} |")
    print(f"glass blur: first call in a fresh process {cold:.2f} s; 5 severities warm {min(glass):.2f} s; "
          f"the other 14 corruptions × 5 severities {others_s:.2f} s")


if __name__ == "__main__":
    main()
