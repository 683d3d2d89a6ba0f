"""The one path from a config to an experiment's parts: datasets, the attack, a trained model,
the run folder. ``badseg run``, ``badseg poison``, ``badseg scan``, the BADSEG stages and the
benchmarks all build through these functions, so the same config gives the same parts everywhere.

Example:
    >>> cfg = load_config("configs/camvid/o2b.yaml")
    >>> train, test = datasets_for(cfg)
    >>> attack = attack_for(cfg, train)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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
from badseg.train.infer import SlideWindow

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


def train_transform(train: TrainConfig, data: DataConfig) -> tuple[tuple[int, int] | None, AugmentConfig]:
    """The victim's training pipeline (``train.pipeline``): (the fixed (H, W) every training image
    is first resized to — None: kept at the files' own —, the random augmentation after it)."""
    if train.pipeline == "crop":
        crop = tuple(train.crop_size or data.size)
        size = tuple(data.native_size) if data.native_size is not None else None
        return size, AugmentConfig(tuple(train.scale_range), crop, train.hflip, train.cat_max_ratio)
    size = tuple(data.size)
    return size, AugmentConfig(tuple(train.scale_range), size, train.hflip)


def eval_transform(cfg: RunConfig) -> tuple[tuple[int, int] | None, SlideWindow | None]:
    """How test images meet the model (``test.inference``): (the (H, W) they and their labels and
    masks are resized to — None: kept at the files' own —, the sliding window or None: whole)."""
    if cfg.test.inference == "whole":
        return tuple(cfg.data.size), None
    window = tuple(cfg.train.crop_size or cfg.data.size)
    size = tuple(cfg.data.native_size) if cfg.data.native_size is not None else None
    return size, SlideWindow(window, tuple(cfg.test.stride) if cfg.test.stride else SlideWindow.default_stride(window))


def victim_pipeline(cfg: RunConfig) -> dict[str, Any]:
    """The victim's training pipeline and test-time inference, as metrics.json and the report
    state them next to every figure (``train_transform``, ``eval_transform``)."""
    size, aug = train_transform(cfg.train, cfg.data)
    test_size, slide = eval_transform(cfg)
    out: dict[str, Any] = {"train": cfg.train.pipeline, "train_size": list(size) if size else "native",
                           "scale_range": list(aug.scale_range), "crop_size": list(aug.crop_size), "hflip": aug.hflip_p}
    if cfg.train.pipeline == "crop":
        out["cat_max_ratio"] = aug.cat_max_ratio
    out.update(inference=cfg.test.inference, test_size=list(test_size) if test_size else "native")
    if slide is not None:
        out.update(window=list(slide.window), stride=list(slide.stride))
    return out


def scan_config(cfg: RunConfig) -> dict[str, Any]:
    """Where ``cfg``'s attack applies, poisoning nothing: the training split scanned as
    ``PoisonedDataset`` scans it, with the ``PoisonCount`` its rate gives, and the test split as
    ``PoisonedTestSet`` scans it (``badseg scan``). Per split: ``split``, ``n_samples``,
    ``n_applicable`` and ``skipped`` (count per reason); ``train`` also ``poison_count``."""
    from badseg.poisoning.dataset import poison_count, scan

    train, test = datasets_for(cfg)
    attack = attack_for(cfg, train)
    workers = cfg.workers or 1
    out: dict[str, Any] = {"attack": attack.describe()}
    for role, ds, split in (("train", train, cfg.data.train_split), ("test", test, cfg.data.test_split)):
        found = scan(ds, attack, cfg.seed, workers, test=role == "test")
        out[role] = {"split": split, "n_samples": len(ds), "n_applicable": len(found.applicable),
                     "skipped": found.skip_counts()}
    out["train"]["poison_count"] = poison_count(cfg.attack.rate, len(train), out["train"]["n_applicable"],
                                                cfg.attack.rate_of).to_dict()
    return out


def train_model(train: TrainConfig, dataset: SegDataset, num_classes: int, out: str | Path, *, model: ModelConfig,
                data: DataConfig, seed: int, epochs: int | None = None, net: SegModel | None = None,
                lr: float | None = None, loss_fn: LossFn = pixel_cross_entropy,
                deterministic: bool = False) -> tuple[SegModel, dict[str, Any]]:
    """Build ``model`` and train it on ``dataset`` with ``train``'s schedule (``fit``) and its
    pipeline at ``data``'s resolution (``train_transform``) in ``out``,
    resuming from ``out/last.pt`` when it is there. The victim, the clean reference and the
    BADSEG surrogate all train through here; ``epochs`` overrides ``train.epochs`` (surrogate).
    The defenses continue training a given ``net`` instead of a new one, optionally at another
    ``lr`` and with their own ``loss_fn`` (fine-tuning, ABL).

    ``seed`` fixes the initial weights (``build_model(..., seed=)``), the shuffle, the
    augmentation and dropout: two calls with the same model and seed start from identical
    weights whatever ran before them. ``deterministic`` restricts torch to deterministic kernels.

    Returns (the trained model in eval mode, ``fit``'s summary).
    """
    net = build_model(model.name, num_classes, pretrained=model.pretrained, seed=seed) if net is None else net
    size, augment = train_transform(train, data)
    samples = SegTorchDataset(dataset, size=size, augment=augment, seed=seed)
    fit_cfg = FitConfig(epochs=epochs or train.epochs, batch_size=train.batch_size, lr=train.lr if lr is None else lr,
                        optimizer=train.optimizer, weight_decay=train.weight_decay, num_workers=train.num_workers,
                        seed=seed, deterministic=deterministic)
    summary = fit(net, samples, fit_cfg, out, resume=True, loss_fn=loss_fn)
    return net, summary


#: Fields whose default changed meaning, with the value a ``config.yaml`` written before the
#: field existed had (a field merely added since takes its default).
BEFORE_FIELD: dict[tuple[str, str], Any] = {("attack", "rate_of"): "applicable"}


def stored_config(stored: str) -> RunConfig:
    """The config a run folder's ``config.yaml`` text describes, read as the badseg that wrote
    it meant it (``BEFORE_FIELD``; flat attack keys of folders from before ``attack.options``)."""
    tree = yaml.safe_load(stored) or {}
    for (section, key), value in BEFORE_FIELD.items():
        if isinstance(tree.get(section), dict) and key not in tree[section]:
            tree[section][key] = value
    with warnings.catch_warnings():  # a folder written before attack.options: its flat keys are expected
        warnings.simplefilter("ignore", DeprecationWarning)
        return RunConfig.model_validate(tree)


def same_config(stored: str, cfg: RunConfig) -> bool:
    """Whether a run folder's resolved ``config.yaml`` text describes ``cfg``. Compared as parsed
    configs, so a field added to badseg since (at its default) does not orphan finished runs."""
    try:
        return stored_config(stored) == cfg
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
        hint = ""
        if "rate_of" not in resolved.read_text():
            hint = (" (it was written before attack.rate_of and poisoned a fraction of the applicable images: "
                    "--set attack.rate_of=applicable resumes it)")
        raise ConfigError(f"{out} holds a run with a different config ({resolved}){hint}; choose a new --out")


def write_run_config(cfg: RunConfig, out: str | Path) -> None:
    """Claim ``out`` for ``cfg`` (after ``check_run_dir``): write its resolved ``config.yaml``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / RUN_CONFIG, dump_config(cfg).encode())


#: ``data`` fields that concern only the test set, so not a clean reference model.
_TEST_ONLY = {"test_split", "test_length", "limit_test"}
#: Fields added since clean reference models were first cached: hashed only when set away from
#: their default, so the models cached before them keep their keys.
_ADDED_SINCE_KEY = {"data": {"native_size"}, "train": {"pipeline", "crop_size", "cat_max_ratio"}}


def _key_part(section: str, value: DataConfig | TrainConfig) -> dict[str, Any]:
    """``value`` as JSON for ``clean_model_key``, its ``_ADDED_SINCE_KEY`` fields left out at their defaults."""
    fields = type(value).model_fields
    return {k: v for k, v in value.model_dump(mode="json").items()
            if not (k in _ADDED_SINCE_KEY[section] and getattr(value, k) == fields[k].default)}


def clean_model_key(cfg: RunConfig) -> tuple[str, dict[str, Any]]:
    """A stable hash (16 hex digits) of what a clean reference model depends on, and what it
    hashes: the training data (``data`` less its test-set fields, and the surrogate hold-out
    when the BADSEG stages take the surrogate's images from the training split), ``model``,
    ``train`` and ``seed``. Runs that differ only in the attack, trigger, rate or evaluation
    share the key."""
    data = {k: v for k, v in _key_part("data", cfg.data).items() if k not in _TEST_ONLY}
    stages = cfg.trigger == "auto" or cfg.pair == "auto"
    holdout = ({"fraction": cfg.surrogate.fraction, "limit": cfg.surrogate.limit}
               if stages and cfg.surrogate.split is None else None)
    key = {"data": data, "holdout": holdout, "model": cfg.model.model_dump(mode="json"),
           "train": _key_part("train", cfg.train), "seed": cfg.seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16], key


def clean_model_dir(cfg: RunConfig, run_dir: str | Path, shared_cache: str | Path | None = None) -> Path:
    """The folder of ``cfg``'s clean reference model: ``cfg.clean_cache`` / ``clean_model_key(cfg)``
    when the config names a cache, else ``shared_cache`` / key (a sweep's ``OUT/clean_models``),
    else ``run_dir/clean`` — a single run writes nothing outside its own folder."""
    cache = cfg.clean_cache or shared_cache
    return Path(cache) / clean_model_key(cfg)[0] if cache else Path(run_dir) / "clean"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) for the block: runs in other processes wait. Under
    torchrun the ranks train the model together, so none takes it (a rank waiting on another's
    lock would stall the process group)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clean_reference_model(cfg: RunConfig, train: SegDataset, run_dir: str | Path,
                          shared_cache: str | Path | None = None) -> tuple[SegModel, dict[str, Any]]:
    """The clean reference of a run: ``cfg.model`` trained on the unpoisoned ``train`` with
    ``cfg.train``'s schedule and ``cfg.seed`` — the backdoored model's initial weights — shared
    by every run with the same data, model, schedule and seed (``clean_model_key``).

    It lives in ``clean_model_dir(cfg, run_dir, shared_cache)`` with ``key.json`` (what the key hashes); the
    first run trains it there (resumable), later runs load it, and concurrent runs (a sweep)
    wait on a lock instead of training it twice. Returns (model in eval mode, ``fit``'s summary
    plus ``folder``, ``key`` and ``reused``: whether it had been trained before).
    """
    key, content = clean_model_key(cfg)
    folder = clean_model_dir(cfg, run_dir, shared_cache)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / ".lock"):
        meta = folder / "key.json"
        if meta.is_file() and json.loads(meta.read_text()) != content:
            raise ConfigError(f"{folder} holds a clean model for other settings ({meta}); remove it")
        if not meta.is_file():
            atomic_write_bytes(meta, json.dumps(content, indent=2).encode())
        model, summary = train_model(cfg.train, train, train.spec.num_classes, folder, model=cfg.model,
                                     data=cfg.data, seed=cfg.seed, deterministic=cfg.deterministic)
    return model, {**summary, "folder": str(folder), "key": key, "reused": summary.get("iterations") == 0}
