"""Stealth of the prior attacks (HBA, IBA, NNI, PRL, OFBA, ConSeg) next to BADSEG's O2B on CamVid val.

Reuses ``stealth_table.stealth_of`` (the poisoned test set exactly as ``badseg run`` builds it)
on ``configs/camvid/baselines/*.yaml`` plus ``configs/camvid/o2b.yaml``; prints a Markdown
table and writes ``benchmarks/results/stealth_camvid_baselines.json``.

    python benchmarks/stealth_baselines.py [--lpips-weights PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stealth_table import stealth_of

from badseg.config import load_config
from badseg.build import attack_for, datasets_for

ROOT = Path(__file__).resolve().parents[1]


def trigger_text(attack: dict) -> str:
    """The trigger as the attack applies it (HBA draws a line, whatever the trigger's shape)."""
    t = attack["trigger"]
    if attack.get("render", {}).get("kind") == "LineTrigger":
        return f"line {attack['render']['width_px']} px, {t['pattern']}, intensity {t['intensity']:g}"
    context = f" + context {attack['render']['context_px']} px" if "render" in attack else ""
    return f"{t['shape']} {t['size']:g}, {t['pattern']}, intensity {t['intensity']:g}{context}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lpips-weights", default=None, help="AlexNet ImageNet weights for LPIPS (optional)")
    args = ap.parse_args()
    camvid = ROOT / "configs" / "camvid"
    configs = [*sorted((camvid / "baselines").glob("*.yaml")), camvid / "o2b.yaml"]
    rows = []
    for c in configs:
        cfg = load_config(c)
        rows.append({**stealth_of(c, args.lpips_weights), "attack": attack_for(cfg, datasets_for(cfg)[0]).describe()})
    print("| attack | pair | trigger | test images (skipped) | PSNR (dB) | SSIM | LPIPS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lp = "null" if r["lpips"] is None else f"{r['lpips']:.4f}"
        print(f"| {r['vector']} | {r['victim']} → {r['target']} | {trigger_text(r['attack'])} | "
              f"{r['n_images']} ({r['n_skipped']}) | {r['psnr']:.2f} | {r['ssim']:.4f} | {lp} |")
    out = Path(__file__).resolve().parent / "results" / "stealth_camvid_baselines.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
