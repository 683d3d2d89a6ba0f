"""The one path from a config to an experiment's parts: datasets, the attack, a trained model,
the run folder. ``badseg run``, ``badseg poison``, the BADSEG stages and the benchmarks all
build through these functions, so the same config gives the same parts everywhere.

Example:
    >>> cfg = load_config("configs/camvid/o2b.yaml")
    >>> train, test = datasets_for(cfg)
    >>> attack = attack_for(cfg, train)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from badseg.attacks import Attack, ShapeBank, build_attack
from badseg.attacks.baselines import co_occurring_class
from badseg.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, dump_config
from badseg.data import load_dataset
from badseg.data.base import SegDataset
from badseg.data.io import atomic_write_bytes
from badseg.data.subset import Subset
from badseg.models import SegModel, build_model
from badseg.outdir import refuse_overlap, refuse_protected
from badseg.train.augment import AugmentConfig, SegTorchDataset
from badseg.train.fit import FitConfig, LossFn, fit, pixel_cross_entropy

#: The resolved config a run folder holds.
RUN_CONFIG = "config.yaml"


def dataset_for(data: DataConfig, split: str, limit: int | None = None) -> SegDataset:
    """Split ``split`` of the dataset ``data`` names (synthetic: ``train_length`` images for the
    training split, ``test_length`` for any other), cut to its first ``limit`` samples."""
    kw: dict[str, Any] = {}
    if data.name == "synthetic":
        kw["length"] = data.train_length if split == data.train_split else data.test_length
    ds = load_dataset(data.name, root=data.root, split=split, **kw)
    return Subset(ds, range(min(limit, len(ds)))) if limit else ds


def datasets_for(cfg: RunConfig) -> tuple[SegDataset, SegDataset]:
    """The (train, test) datasets a config names, with its limits applied."""
    d = cfg.data
    return dataset_for(d, d.train_split, d.limit_train), dataset_for(d, d.test_split, d.limit_test)


def attack_for(cfg: RunConfig, dataset: SegDataset) -> Attack:
    """The attack ``cfg.attack`` and ``cfg.trigger`` describe, for ``dataset``'s classes.

    What needs the data comes from ``dataset`` (the training set): B2O's bank of real target
    silhouettes, and ConSeg's ``target: auto`` (the class that most surrounds the victim).
    """
    a = cfg.attack
    if cfg.trigger == "auto":
        raise ConfigError("trigger: auto is resolved by the BADSEG stages (badseg.stages.auto.resolve_auto) "
                          "before the attack can be built")
    spec = dataset.spec
    target = a.target
    if a.vector == "conseg" and target == "auto":
        target = spec.classes[co_occurring_class(dataset, a.victim)]
    options: dict[str, Any] = dict(a.options)
    if a.vector == "b2o":
        options["bank"] = ShapeBank.from_dataset(dataset, spec.class_id(target))
    return build_attack(a.vector, spec, a.victim, target, cfg.trigger, **options)


def train_model(train: TrainConfig, dataset: SegDataset, num_classes: int, out: str | Path, *, model: ModelConfig,
                size: tuple[int, int], seed: int, epochs: int | None = None, net: SegModel | None = None,
                lr: float | None = None, loss_fn: LossFn = pixel_cross_entropy) -> tuple[SegModel, dict[str, Any]]:
    """Build ``model`` and train it on ``dataset`` with ``train``'s schedule (``fit``) in ``out``,
    resuming from ``out/last.pt`` when it is there. The victim, the clean reference and the
    BADSEG surrogate all train through here; ``epochs`` overrides ``train.epochs`` (surrogate).
    The defenses continue training a given ``net`` instead of a new one, optionally at another
    ``lr`` and with their own ``loss_fn`` (fine-tuning, ABL).

    Returns (the trained model in eval mode, ``fit``'s summary).
    """
    net = build_model(model.name, num_classes, pretrained=model.pretrained) if net is None else net
    data = SegTorchDataset(dataset, size=size, augment=AugmentConfig(tuple(train.scale_range), size, train.hflip),
                           seed=seed)
    fit_cfg = FitConfig(epochs=epochs or train.epochs, batch_size=train.batch_size, lr=train.lr if lr is None else lr,
                        optimizer=train.optimizer, weight_decay=train.weight_decay, num_workers=train.num_workers,
                        seed=seed)
    summary = fit(net, data, fit_cfg, out, resume=True, loss_fn=loss_fn)
    return net, summary


def same_config(stored: str, cfg: RunConfig) -> bool:
    """Whether a run folder's resolved ``config.yaml`` text describes ``cfg``. Compared as parsed
    configs, so a field added to badseg since (at its default) does not orphan finished runs."""
    try:
        with warnings.catch_warnings():  # a folder written before attack.options: its flat keys are expected
            warnings.simplefilter("ignore", DeprecationWarning)
            return RunConfig.model_validate(yaml.safe_load(stored) or {}) == cfg
    except (ValidationError, ValueError):
        return False


def check_run_dir(cfg: RunConfig, out: str | Path) -> None:
    """Whether ``out`` may hold a run of ``cfg``: refuse a protected folder (``badseg.outdir``), one
    overlapping the dataset root, a file, or a started run of another config (resuming it would mix
    them). Writes nothing: ``write_run_config`` claims the folder once the config has passed
    validation, and a folder holding only a ``config.yaml`` (a run that stopped before it started) is
    free for any config."""
    out = Path(out)
    refuse_protected(out)
    refuse_overlap(out, Path(cfg.data.root) if cfg.data.root else None, "the dataset root")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; choose a new --out")
    resolved = out / RUN_CONFIG
    started = out.is_dir() and any(p.name != RUN_CONFIG for p in out.iterdir())
    if resolved.is_file() and started and not same_config(resolved.read_text(), cfg):
        raise ConfigError(f"{out} holds a run with a different config ({resolved}); choose a new --out")


def write_run_config(cfg: RunConfig, out: str | Path) -> None:
    """Claim ``out`` for ``cfg`` (after ``check_run_dir``): write its resolved ``config.yaml``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / RUN_CONFIG, dump_config(cfg).encode())
