"""One experiment from a config: poison → train (and a clean reference) → evaluate → report.

Every stage writes into the run folder and is skipped when its output is already there, so
re-running an interrupted ``badseg run`` resumes (training resumes from its last epoch)
instead of starting over; a finished run's metrics are never overwritten.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from badseg.build import attack_for, check_run_dir, datasets_for, train_model, write_run_config
from badseg.config import ConfigError, RunConfig
from badseg.data import get_spec
from badseg.data.io import write_json
from badseg.metrics.stealth import StealthMeter
from badseg.models import build_model
from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet, nothing_poisoned
from badseg.stages.auto import resolve_auto
from badseg.stages.surrogate import surrogate_model_name
from badseg.train.fit import CHECKPOINT, is_main_process, load_checkpoint

METRIC_KEYS = ("asr", "pba", "cba", "clean_model_cba", "psnr", "ssim", "lpips")


def preflight(cfg: RunConfig, out: Path, log=print) -> None:
    """What can be checked before any data is scanned or a model trained: the model and its
    ``pretrained`` weights (built once and dropped: name, file, fit), the surrogate's weights when a
    stage runs, and every checkpoint a resumed run would continue from (saying so)."""
    num_classes = get_spec(cfg.data.name).num_classes
    build_model(cfg.model.name, num_classes, pretrained=cfg.model.pretrained)
    if (cfg.trigger == "auto" or cfg.pair == "auto") and cfg.surrogate.pretrained is not None:
        build_model(surrogate_model_name(cfg), num_classes, pretrained=cfg.surrogate.pretrained)
    for name in ("backdoored", "clean"):
        ckpt = out / name / CHECKPOINT
        if ckpt.is_file():
            epoch = load_checkpoint(ckpt)["epoch"]
            log(f"resuming the {name} model from epoch {epoch} of {cfg.train.epochs} ({ckpt})")


def check_poisoned(cfg: RunConfig, train: PoisonedDataset, test: PoisonedTestSet) -> None:
    """Stop before training when a rate > 0 poisons nothing or no test image can be triggered
    (ASR would be 0 or undefined), unless ``allow_unpoisoned``."""
    if cfg.allow_unpoisoned:
        return
    hint = " (set allow_unpoisoned: true to train anyway)"
    if cfg.attack.rate > 0 and not train.poisoned_indices:
        raise ConfigError(nothing_poisoned(cfg.attack.rate, train.scan, len(train), "the training split") + hint)
    if not len(test):
        raise ConfigError(nothing_poisoned(1.0, test.scan, len(test.base), "the test split",
                                           "ASR cannot be measured; check the victim class") + hint)


def run_experiment(cfg: RunConfig, out: str | Path, progress: bool = True, log=print) -> dict[str, Any]:
    """Run (or resume) one experiment in ``out``; returns the metrics dict."""
    out = Path(out)
    check_run_dir(cfg, out)
    if (out / "metrics.json").is_file():
        log(f"{out} is finished already; not overwriting its results")
        return json.loads((out / "metrics.json").read_text())
    preflight(cfg, out, log)
    torch.manual_seed(cfg.seed)
    train, test = datasets_for(cfg)
    write_run_config(cfg, out)
    resolved, train, stages = resolve_auto(cfg, train, out / "stages", log, progress)
    attack = attack_for(resolved, train)
    t0 = time.perf_counter()
    poisoned_train = PoisonedDataset(train, attack, cfg.attack.rate, cfg.seed, workers=cfg.workers or 1)
    poisoned_test = PoisonedTestSet(test, attack, cfg.seed, workers=cfg.workers or 1)
    check_poisoned(cfg, poisoned_train, poisoned_test)
    log(f"poisoned {len(poisoned_train.poisoned_indices)} of {len(poisoned_train.scan.applicable)} applicable "
        f"training images; {len(poisoned_test)} poisoned test images")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics: dict[str, Any] = {
        "attack": attack.describe(), "dataset": train.spec.name, "model": cfg.model.name,
        "poison_rate": cfg.attack.rate,
        "n_train": len(train), "n_applicable_train": len(poisoned_train.scan.applicable),
        "n_poisoned_train": len(poisoned_train.poisoned_indices),
        "n_test": len(test), "n_poisoned_test": len(poisoned_test), "test_skipped": poisoned_test.skipped,
    }
    if stages:
        metrics["stages"] = stages
    log("training the backdoored model")
    model, summary = train_model(cfg.train, poisoned_train, train.spec.num_classes, out / "backdoored",
                                 model=cfg.model, size=tuple(cfg.data.size), seed=cfg.seed)
    metrics["train_minutes"] = summary.get("minutes")
    if cfg.clean_reference:
        log("training the clean reference model")
        clean_model, clean_summary = train_model(cfg.train, train, train.spec.num_classes, out / "clean",
                                                 model=cfg.model, size=tuple(cfg.data.size), seed=cfg.seed)
    if not is_main_process():  # torchrun: the other ranks only help train; rank 0 evaluates and writes
        return metrics
    from badseg.evaluate import evaluate

    stealth = StealthMeter.from_weights(cfg.lpips_weights)
    metrics.update(evaluate(model, test, poisoned_test, tuple(cfg.data.size), attack.target, cfg.eval_batch_size,
                            device, stealth, progress))
    metrics["clean_model_cba"] = None
    if cfg.clean_reference:
        ref = evaluate(clean_model, test, poisoned_test, tuple(cfg.data.size), attack.target, cfg.eval_batch_size,
                       device, None, progress)
        metrics.update(clean_model_cba=ref["cba"], clean_model_asr=ref["asr"],
                       clean_train_minutes=clean_summary.get("minutes"))
    metrics["minutes"] = (time.perf_counter() - t0) / 60
    from badseg.report.run_report import write_report

    write_report(out, cfg, metrics, model, test, poisoned_test, attack, device)
    write_json(out / "metrics.json", metrics)
    if cfg.defenses:
        from badseg.defenses import run_defense

        for name, options in cfg.defense_items():
            run_defense(out, name, options, progress=progress, log=log)
    return metrics
