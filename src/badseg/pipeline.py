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
import yaml
from pydantic import ValidationError

from badseg.attacks import Attack
from badseg.attacks.baselines import baseline_options
from badseg.config import ConfigError, RunConfig, dump_config
from badseg.data import load_dataset
from badseg.data.base import SegDataset
from badseg.data.io import atomic_write_bytes, write_json
from badseg.data.subset import Subset
from badseg.metrics.stealth import StealthMeter
from badseg.models import build_model
from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet
from badseg.poisoning.preview import build_attack_for
from badseg.stages.auto import resolve_auto
from badseg.train.augment import AugmentConfig, SegTorchDataset
from badseg.train.fit import FitConfig, fit
from badseg.triggers import TriggerSpec

METRIC_KEYS = ("asr", "pba", "cba", "clean_model_cba", "psnr", "ssim", "lpips")


def datasets_for(cfg: RunConfig) -> tuple[SegDataset, SegDataset]:
    """The (train, test) datasets a config names, with its limits applied."""
    d = cfg.data
    kw_train: dict[str, Any] = {"length": d.train_length} if d.name == "synthetic" else {}
    kw_test: dict[str, Any] = {"length": d.test_length} if d.name == "synthetic" else {}
    train = load_dataset(d.name, root=d.root, split=d.train_split, **kw_train)
    test = load_dataset(d.name, root=d.root, split=d.test_split, **kw_test)
    if d.limit_train:
        train = Subset(train, range(min(d.limit_train, len(train))))
    if d.limit_test:
        test = Subset(test, range(min(d.limit_test, len(test))))
    return train, test


def attack_for(cfg: RunConfig, train: SegDataset) -> Attack:
    """The attack a config describes (B2O's silhouette bank is drawn from ``train``)."""
    a = cfg.attack
    extra: dict[str, Any] = {}
    if a.placement:
        extra["placement"] = a.placement
    if a.vector in ("o2o", "o2b") and a.carriers is not None:
        extra["carriers"] = a.carriers
    if a.vector in ("ins", "ofba") and a.k is not None:
        extra["k"] = None if a.k == 0 else a.k
    if a.vector == "con":
        extra.update(condition=a.condition, decoy_rate=a.decoy_rate)
    extra.update(baseline_options(a.vector, {**a.model_dump(), "mode": a.hba_mode}))
    trigger = TriggerSpec(**cfg.trigger.model_dump())
    return build_attack_for(a.vector, train, a.victim, a.target, trigger, **extra)


def _train(cfg: RunConfig, dataset: SegDataset, num_classes: int, out: Path, progress: bool) -> tuple[torch.nn.Module, dict]:
    t = cfg.train
    model = build_model(cfg.model.name, num_classes, pretrained=cfg.model.pretrained)
    data = SegTorchDataset(dataset, size=tuple(cfg.data.size),
                           augment=AugmentConfig(tuple(t.scale_range), tuple(cfg.data.size), t.hflip), seed=cfg.seed)
    fit_cfg = FitConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, optimizer=t.optimizer,
                        weight_decay=t.weight_decay, num_workers=t.num_workers, seed=cfg.seed)
    summary = fit(model, data, fit_cfg, out, resume=True)
    return model, summary


def _same_config(stored: str, cfg: RunConfig) -> bool:
    """Whether a run folder's resolved ``config.yaml`` describes ``cfg``. Compared as parsed
    configs, so a field added to badseg since (at its default) does not orphan finished runs."""
    try:
        return RunConfig.model_validate(yaml.safe_load(stored) or {}) == cfg
    except ValidationError:
        return False


def _check_run_dir(cfg: RunConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "config.yaml"
    text = dump_config(cfg)
    if resolved.is_file() and not _same_config(resolved.read_text(), cfg):
        raise ConfigError(f"{out} holds a run with a different config ({resolved}); choose a new --out")
    if not resolved.is_file():
        atomic_write_bytes(resolved, text.encode())


def run_experiment(cfg: RunConfig, out: str | Path, progress: bool = True, log=print) -> dict[str, Any]:
    """Run (or resume) one experiment in ``out``; returns the metrics dict."""
    out = Path(out)
    _check_run_dir(cfg, out)
    if (out / "metrics.json").is_file():
        log(f"{out} is finished already; not overwriting its results")
        return json.loads((out / "metrics.json").read_text())
    torch.manual_seed(cfg.seed)
    train, test = datasets_for(cfg)
    resolved, train, stages = resolve_auto(cfg, train, out / "stages", log, progress)
    attack = attack_for(resolved, train)
    t0 = time.perf_counter()
    poisoned_train = PoisonedDataset(train, attack, cfg.attack.rate, cfg.seed, workers=cfg.workers or 1)
    poisoned_test = PoisonedTestSet(test, attack, cfg.seed, workers=cfg.workers or 1)
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
    model, summary = _train(cfg, poisoned_train, train.spec.num_classes, out / "backdoored", progress)
    metrics["train_minutes"] = summary.get("minutes")
    from badseg.evaluate import evaluate

    stealth = StealthMeter.from_weights(cfg.lpips_weights)
    metrics.update(evaluate(model, test, poisoned_test, tuple(cfg.data.size), attack.target, cfg.eval_batch_size,
                            device, stealth, progress))
    metrics["clean_model_cba"] = None
    if cfg.clean_reference:
        log("training the clean reference model")
        clean_model, clean_summary = _train(cfg, train, train.spec.num_classes, out / "clean", progress)
        ref = evaluate(clean_model, test, poisoned_test, tuple(cfg.data.size), attack.target, cfg.eval_batch_size,
                       device, None, progress)
        metrics.update(clean_model_cba=ref["cba"], clean_model_asr=ref["asr"],
                       clean_train_minutes=clean_summary.get("minutes"))
    metrics["minutes"] = (time.perf_counter() - t0) / 60
    from badseg.report.run_report import write_report

    write_report(out, cfg, metrics, model, test, poisoned_test, attack, device)
    write_json(out / "metrics.json", metrics)
    return metrics
