"""Stealth (PSNR / SSIM / LPIPS) of each vector's poisoned test images, from its config.

Run: ``python benchmarks/stealth_table.py configs/camvid/*.yaml``. For every config the
poisoned test set is built exactly as ``badseg run`` builds it (DESIGN §5: every applicable test
image, triggered at native resolution) and compared with the clean images. Prints a Markdown
table and writes ``benchmarks/results/stealth_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.progress import track

from badseg.config import load_config
from badseg.metrics.stealth import StealthMeter
from badseg.build import attack_for, datasets_for
from badseg.poisoning.dataset import PoisonedTestSet


def stealth_of(config: Path, lpips_weights: str | None) -> dict:
    cfg = load_config(config)
    train, test = datasets_for(cfg)
    attack = attack_for(cfg, train)
    poisoned = PoisonedTestSet(test, attack, cfg.seed)
    meter = StealthMeter.from_weights(lpips_weights)
    for clean, p in track(poisoned, description=config.stem, total=len(poisoned)):
        meter.update(clean.image, p.image)
    return {"config": str(config), "vector": cfg.attack.vector, "victim": cfg.attack.victim,
            "target": cfg.attack.target, "trigger": cfg.trigger.model_dump(), "n_images": len(poisoned),
            "n_skipped": sum(poisoned.skipped.values()), **meter.compute()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("configs", nargs="+", type=Path)
    ap.add_argument("--lpips-weights", default=None, help="AlexNet ImageNet weights for LPIPS (optional)")
    args = ap.parse_args()
    rows = [stealth_of(c, args.lpips_weights) for c in args.configs]
    print("| vector | pair | shape | size | intensity | quantity | images | PSNR (dB) | SSIM | LPIPS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["trigger"]
        lp = "null" if r["lpips"] is None else f"{r['lpips']:.4f}"
        print(f"| {r['vector']} | {r['victim']} → {r['target']} | {t['shape']} | {t['size']:g} | {t['intensity']:g} "
              f"| {t['quantity']} | {r['n_images']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {lp} |")
    name = load_config(args.configs[0]).data.name
    out = Path(__file__).resolve().parent / "results" / f"stealth_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
