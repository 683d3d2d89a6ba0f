"""Re-evaluate a finished run's trained model on another poisoned test set (``badseg eval``).

The run folder's resolved ``config.yaml`` is read back, the overrides applied (typically test-
side attack settings such as ``attack.test_band=[60,90]`` for IBA's long-distance test, or a
``trigger.min_size_px`` floor), the poisoned test set rebuilt exactly as ``badseg run`` builds
it, and ``backdoored/last.pt`` evaluated on it (with ``breakdown``, also where the victim pixels
flip: ``badseg.metrics.flips``). Results go to ``RUN_DIR/evals/<overrides>.json``;
the run's own ``metrics.json`` is never touched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from badseg.config import ConfigError, load_config
from badseg.data.io import write_json

EVALS = "evals"


def eval_name(overrides: list[str]) -> str:
    """The file stem of an evaluation: its overrides, sanitised (``own`` for none)."""
    text = "_".join(overrides) or "own"
    return re.sub(r"[^A-Za-z0-9.=,+-]+", "", text.replace("[", "").replace("]", ""))[:120]


def reevaluate(run_dir: str | Path, overrides: list[str], progress: bool = False, log=print,
               breakdown: bool = False) -> dict[str, Any]:
    """ASR / PBA / CBA (and stealth; with ``breakdown`` the ``flip_breakdown``) of ``run_dir``'s
    backdoored model under ``overrides``; written to ``run_dir/evals/<overrides>.json`` and returned."""
    from badseg.build import attack_for, datasets_for, eval_transform, victim_pipeline
    from badseg.evaluate import evaluate
    from badseg.metrics.stealth import StealthMeter
    from badseg.models import build_model
    from badseg.poisoning.dataset import PoisonedTestSet
    from badseg.stages.auto import resolve_auto

    run_dir = Path(run_dir)
    config, checkpoint = run_dir / "config.yaml", run_dir / "backdoored" / "last.pt"
    if not config.is_file() or not checkpoint.is_file():
        raise ConfigError(f"{run_dir} is not a trained run folder (needs config.yaml and backdoored/last.pt)")
    cfg = load_config(config, overrides)
    train, test = datasets_for(cfg)
    cfg, train, _ = resolve_auto(cfg, train, run_dir / "stages", log, progress)
    attack = attack_for(cfg, train)
    poisoned = PoisonedTestSet(test, attack, cfg.seed, workers=cfg.workers or 1)
    model = build_model(cfg.model.name, train.spec.num_classes, pretrained=str(checkpoint))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size, slide = eval_transform(cfg)
    metrics = evaluate(model, test, poisoned, size, attack.target, cfg.eval_batch_size, device,
                       StealthMeter.from_weights(cfg.lpips_weights), progress, slide=slide, flips=breakdown).metrics()
    metrics.update(overrides=list(overrides), n_poisoned_test=len(poisoned), test_skipped=poisoned.skipped,
                   attack=attack.describe(), dataset=train.spec.name, pipeline=victim_pipeline(cfg))
    write_json(run_dir / EVALS / f"{eval_name(overrides)}.json", metrics)
    return metrics
