"""What the CamVid trigger-search script uses: one schedule, ``badseg run`` as a subprocess (so an
interrupted table resumes run by run), stealth of a config's poisoned test set, and Markdown
rows. (The other CamVid tables are sweep files: ``configs/paper/camvid``; stealth alone is
``badseg stealth``, the flip breakdown ``badseg eval --breakdown``.)

The schedule is the one every CamVid table in docs/results.md uses: CamVid resized to 144×192,
``fpn-effl0`` from the offline ImageNet encoder, 8 epochs, batch 4, AdamW 2e-3 — about 2.4
training minutes per model on 2 CPU cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "camvid"
# rate_of=applicable: the tables were measured with the rate as a fraction of the applicable images
SCHEDULE = ["data.size=[144,192]", "model.name=fpn-effl0", "model.pretrained=imagenet",
            "train.epochs=8", "train.batch_size=4", "train.lr=0.002", "train.optimizer=adamw",
            "attack.rate_of=applicable"]


def badseg(args: list[str], overrides: list[str]) -> None:
    """Run the ``badseg`` command of this environment with ``args`` and ``--set`` ``overrides``."""
    cmd = [str(Path(sys.executable).parent / "badseg"), *args] + [a for o in overrides for a in ("--set", o)]
    subprocess.run(cmd, check=True, cwd=ROOT)


def badseg_run(config: Path, out: Path, overrides: list[str]) -> dict[str, Any]:
    """``badseg run config --out out --set ...`` (resumes / returns at once when finished) → metrics."""
    badseg(["run", str(config), "--out", str(out)], overrides)
    return json.loads((out / "metrics.json").read_text())


def trigger_overrides(trigger: dict[str, Any], placement: str | None = None) -> list[str]:
    """``--set`` items for a trigger's shape, size, intensity and quantity (and the placement)."""
    out = [f"trigger.{k}={trigger[k]}" for k in ("shape", "size", "intensity", "quantity")]
    return out + ([f"attack.options.placement={placement}"] if placement else [])


def load_run_config(config: Path, overrides: list[str]):
    """The ``RunConfig`` of ``config`` + ``overrides``, its data root made absolute (configs name
    roots relative to the repository)."""
    from badseg.config import load_config

    cfg = load_config(config, overrides)
    if cfg.data.root and not Path(cfg.data.root).is_absolute():
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(ROOT / cfg.data.root)})})
    return cfg


def poisoned_test_set(cfg):
    """(train, test, attack, poisoned test set) of a run config, built as ``badseg run`` builds them."""
    from badseg.build import attack_for, datasets_for
    from badseg.poisoning.dataset import PoisonedTestSet

    train, test = datasets_for(cfg)
    attack = attack_for(cfg, train)
    return train, test, attack, PoisonedTestSet(test, attack, cfg.seed)


def stealth(config: Path, overrides: list[str]) -> dict[str, Any]:
    """PSNR / SSIM of the config's poisoned test set (every applicable test image) under ``overrides``."""
    from badseg.metrics.stealth import StealthMeter

    *_, poisoned_test = poisoned_test_set(load_run_config(config, overrides))
    meter = StealthMeter.from_weights(None)
    for clean, poisoned in poisoned_test:
        meter.update(clean.image, poisoned.image)
    return meter.compute()


def fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def metric_cells(m: dict[str, Any], clean_cba: float | None) -> str:
    """``| ASR | PBA | CBA | CBA − clean | PSNR | SSIM | LPIPS | train min |`` cells of one run."""
    gap = "–" if clean_cba is None or m["cba"] is None else f"{m['cba'] - clean_cba:+.3f}"
    lpips = "null" if m.get("lpips") is None else f"{m['lpips']:.4f}"
    return (f"| {fmt(m['asr'])} | {fmt(m['pba'])} | {fmt(m['cba'])} | {gap} | {fmt(m['psnr'], 2)} "
            f"| {fmt(m['ssim'], 4)} | {lpips} | {fmt(m.get('train_minutes'), 1)} |")


METRIC_HEADER = "| ASR | PBA | CBA | CBA − clean | PSNR | SSIM | LPIPS | train min |"
METRIC_RULE = "|---|---|---|---|---|---|---|---|"


def write_result(name: str, payload: dict[str, Any]) -> Path:
    dest = ROOT / "benchmarks" / "results" / f"{name}.json"
    dest.write_text(json.dumps(payload, indent=1))
    return dest


def optimised_trigger(vector: str, out: Path, surrogates: Path, extra: list[str] = ()) -> dict[str, Any]:
    """``badseg optimize-trigger`` (BADSEG stages 1–2) for ``configs/camvid/<vector>.yaml`` under
    the shared schedule (surrogate: ``fpn-effl0`` on a random 20% of CamVid train) → trigger.json."""
    if not (out / "trigger.json").is_file():
        badseg(["optimize-trigger", str(CONFIGS / f"{vector}.yaml"), "--out", str(out), "--surrogates", str(surrogates)],
               [*SCHEDULE, *extra])
    return json.loads((out / "trigger.json").read_text())
