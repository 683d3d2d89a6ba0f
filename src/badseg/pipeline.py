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

from badseg.build import (
    attack_for,
    check_run_dir,
    clean_model_dir,
    clean_reference_model,
    datasets_for,
    eval_transform,
    train_model,
    victim_pipeline,
    write_run_config,
)
from badseg.config import ConfigError, RunConfig
from badseg.data import get_spec
from badseg.data.io import write_json
from badseg.evaluate import evaluate
from badseg.metrics.stealth import StealthMeter
from badseg.models import build_model
from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet, nothing_poisoned
from badseg.report.run_report import write_report
from badseg.seeding import deterministic
from badseg.stages.auto import resolve_auto
from badseg.stages.surrogate import surrogate_model_name
from badseg.train.fit import CHECKPOINT, is_main_process, load_checkpoint

def preflight(cfg: RunConfig, out: Path, log=print, clean_cache: Path | None = None) -> None:
    """What can be checked before any data is scanned or a model trained: the model and its
    ``pretrained`` weights (built once and dropped: name, file, fit), the surrogate's weights when a
    stage runs, and every checkpoint a resumed run would continue from (saying so)."""
    num_classes = get_spec(cfg.data.name).num_classes
    build_model(cfg.model.name, num_classes, pretrained=cfg.model.pretrained)
    if (cfg.trigger == "auto" or cfg.pair == "auto") and cfg.surrogate.pretrained is not None:
        build_model(surrogate_model_name(cfg), num_classes, pretrained=cfg.surrogate.pretrained)
    folders = {"backdoored": out / "backdoored"}
    if cfg.clean_reference:
        folders["clean"] = clean_model_dir(cfg, out, clean_cache)
    for name, folder in folders.items():
        ckpt = folder / CHECKPOINT
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


def run_experiment(cfg: RunConfig, out: str | Path, progress: bool = True, log=print,
                   clean_cache: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume) one experiment in ``out``; returns the metrics dict (metrics.json).
    ``clean_cache``: where clean reference models are shared with other runs (a sweep's), unless
    the config names one; by default the clean model lives in ``out/clean``.

    The backdoored and the clean reference model start from the same initial weights
    (``build_model(..., seed=cfg.seed)``); the clean one is shared with every run of the same
    data, model, schedule and seed (``build.clean_reference_model``). With ``cfg.deterministic``
    everything runs on deterministic torch kernels.
    """
    out = Path(out)
    check_run_dir(cfg, out)
    if (out / "metrics.json").is_file():
        log(f"{out} is finished already; not overwriting its results")
        return json.loads((out / "metrics.json").read_text())
    clean_cache = None if clean_cache is None else Path(clean_cache)
    preflight(cfg, out, log, clean_cache)
    with deterministic(cfg.deterministic):
        return _run(cfg, out, progress, log, clean_cache)


def _run(cfg: RunConfig, out: Path, progress: bool, log, clean_cache: Path | None) -> dict[str, Any]:
    train, test = datasets_for(cfg)
    write_run_config(cfg, out)
    resolved, train, stages = resolve_auto(cfg, train, out / "stages", log, progress)
    attack = attack_for(resolved, train)
    t0 = time.perf_counter()
    poisoned_train = PoisonedDataset(train, attack, cfg.attack.rate, cfg.seed, workers=cfg.workers or 1,
                                     rate_of=cfg.attack.rate_of, select=cfg.attack.select)
    poisoned_test = PoisonedTestSet(test, attack, cfg.seed, workers=cfg.workers or 1)
    check_poisoned(cfg, poisoned_train, poisoned_test)
    count = poisoned_train.count
    log(f"{count.message()}; {len(poisoned_test)} poisoned test images")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics: dict[str, Any] = {
        "attack": attack.describe(), "dataset": train.spec.name, "model": cfg.model.name,
        "poison_rate": cfg.attack.rate, "rate_of": cfg.attack.rate_of,
        "n_train": len(train), "n_applicable_train": count.applicable, "n_poisoned_train": count.chosen,
        "poison_count": count.to_dict(),
        "n_test": len(test), "n_poisoned_test": len(poisoned_test), "test_skipped": poisoned_test.skipped,
        "pipeline": victim_pipeline(cfg),
    }
    if stages:
        metrics["stages"] = stages
    log("training the backdoored model")
    model, summary = train_model(cfg.train, poisoned_train, train.spec.num_classes, out / "backdoored",
                                 model=cfg.model, data=cfg.data, seed=cfg.seed, deterministic=cfg.deterministic)
    metrics["train_minutes"] = summary.get("minutes")
    clean = None
    if cfg.clean_reference:
        log("the clean reference model (same initial weights, unpoisoned data)")
        clean_model, clean = clean_reference_model(cfg, train, out, clean_cache)
        log(f"  {'reused' if clean['reused'] else 'trained'} in {clean['folder']}")
    if not is_main_process():  # torchrun: the other ranks only help train; rank 0 evaluates and writes
        return metrics
    stealth = StealthMeter.from_weights(cfg.lpips_weights)
    size, slide = eval_transform(cfg)
    result = evaluate(model, test, poisoned_test, size, attack.target, cfg.eval_batch_size, device, stealth, progress,
                      figure_samples=cfg.figure_samples, slide=slide)
    metrics.update(result.metrics())
    metrics["clean_model_cba"] = None
    if clean is not None:
        ref = evaluate(clean_model, test, poisoned_test, size, attack.target, cfg.eval_batch_size, device, None,
                       progress, slide=slide)
        metrics.update(clean_model_cba=ref.cba, clean_model_asr=ref.asr, clean_train_minutes=clean.get("minutes"),
                       clean_model={"folder": clean["folder"], "key": clean["key"], "reused": clean["reused"]})
    metrics["minutes"] = (time.perf_counter() - t0) / 60
    write_report(out, cfg, metrics, result, train.spec)
    write_json(out / "metrics.json", metrics)
    if cfg.defenses:
        from badseg.defenses import run_defense

        for name, options in cfg.defense_items():
            run_defense(out, name, options, progress=progress, log=log)
    return metrics
