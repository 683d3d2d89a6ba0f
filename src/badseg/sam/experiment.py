"""One BADSEG-SAM experiment (BADSEG §8): base model → poisoned / clean fine-tuning → metrics.

1. **Base** — the promptable model before the victim fine-tunes it (the paper's pretrained
   SAM2): ``victim`` trained on clean prompts of the training split with ``base.trainable``
   (default ``heads``: effl0-sam's neck, prompt encoder and mask decoder on the frozen ImageNet
   encoder). ``base.dir`` shares one base between runs.
2. **Poisoned fine-tuning** from the base with ``finetune.trainable`` on the poisoned prompts.
3. **Clean fine-tuning** from the base with the same parts on the same prompts, untriggered
   (``clean_finetune_dir`` shares it between the three attacks): its ASR on the triggered test
   prompts is the attack's chance level.
4. Metrics (``sam.metrics``) on the test split: clean utility of base, poisoned and clean models;
   ASR and IoU to target on every test image where the attack applies; the same prompts without
   the trigger (``asr_without_trigger``: the attack firing without its trigger).

Every stage trains with ``train.fit`` (checkpoint per epoch, resume) into its own folder and
is skipped when finished, so re-running resumes. While the encoder's first stages are frozen
their outputs are computed once and cached (``victims.PromptableModel.frozen_prefix``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from badseg.attacks.shape_bank import ShapeBank
from badseg.config import ConfigError
from badseg.data.base import SegDataset
from badseg.data.io import atomic_write_bytes, write_json
from badseg.build import datasets_for
from badseg.sam.config import SamRunConfig, SamTrainConfig, dump_sam_config
from badseg.sam.data import PromptItem, PromptTorchSet, build_prompt_set, image_tensor, prompt_tensors, \
    triggered_test_set
from badseg.sam.loss import MaskLossConfig, mask_loss
from badseg.sam.metrics import MaskMeter
from badseg.sam.prompts import Prompt
from badseg.sam.targets import MaskAttack
from badseg.sam.victims import PromptableModel, build_victim, load_victim_weights, set_trainable
from badseg.train.fit import CHECKPOINT, FitConfig, fit
from badseg.triggers import TriggerSpec


def sam_attack(cfg: SamRunConfig, train: SegDataset) -> MaskAttack:
    """The config's attack; Mask-Injection's silhouettes come from ``train``'s instances."""
    a, spec = cfg.attack, train.spec
    stuff = bank = None
    if a.name == "injection":
        stuff = spec.class_id(a.stuff)
        if spec.is_object(stuff):
            raise ConfigError(f"attack.stuff must be a stuff class, {a.stuff!r} is an object class")
        bank = ShapeBank.from_dataset(train, spec.class_id(a.silhouette))
    return MaskAttack(a.name, spec, TriggerSpec(**cfg.trigger.model_dump()), a.prompt_kind, a.distortion, a.fraction,
                      stuff, bank, cfg.data.min_area)


def _loss_fn(cached: bool, loss_cfg: MaskLossConfig) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    def loss(net: torch.nn.Module, batch: Any) -> torch.Tensor:
        inputs, coords, labels, targets = batch
        logits, iou = net(None, coords, labels, prefix=inputs) if cached else net(inputs[0], coords, labels)
        return mask_loss(logits, iou, targets, loss_cfg)

    return loss


@torch.no_grad()
def _prefix_cache(model: PromptableModel, items: list[PromptItem], batch_size: int) -> list[list[torch.Tensor]]:
    model.eval()
    out: list[list[torch.Tensor]] = []
    for s in range(0, len(items), batch_size):
        x = torch.stack([image_tensor(it.image) for it in items[s: s + batch_size]])
        parts = model.frozen_prefix(x)
        out += [[p[j].clone() for p in parts] for j in range(x.shape[0])]
    return out


def _finished(ckpt_dir: Path, epochs: int) -> bool:
    path = ckpt_dir / CHECKPOINT
    return path.is_file() and int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) >= epochs


def _claim_stage_dir(cfg: SamRunConfig, stage: SamTrainConfig, items: list[PromptItem], out: Path,
                     init: Path | None) -> None:
    """Write ``out/stage.json`` (what this stage trains on, and from what), or check that the one
    there matches: a shared stage folder (``base.dir``, ``clean_finetune_dir``) must not be reused
    for a different stage (another trainable part, dataset, victim or poisoned set)."""
    digest = hashlib.sha256(json.dumps([[it.id, it.poisoned.tolist(), [p.to_dict() for p in it.prompts]]
                                        for it in items]).encode()).hexdigest()
    key = {"victim": cfg.victim.__dict__, "data": cfg.data.model_dump(mode="json"), "seed": cfg.seed,
           "stage": stage.model_dump(mode="json", exclude={"dir"}), "loss": cfg.loss.model_dump(mode="json"),
           "init": None if init is None else str(init), "prompts": digest}
    text = json.dumps(key, indent=1, sort_keys=True)
    path = out / "stage.json"
    if path.is_file() and path.read_text() != text:
        raise ConfigError(f"{out} holds a training stage with different settings or data ({path}); "
                          "give this stage its own folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())


def train_stage(cfg: SamRunConfig, stage: SamTrainConfig, items: list[PromptItem], out: Path,
                init: Path | None = None, log: Callable[[str], None] = print) -> tuple[PromptableModel, dict]:
    """Build the victim, load ``init`` (a checkpoint), train ``stage.trainable`` on ``items`` in ``out``."""
    _claim_stage_dir(cfg, stage, items, out, init)
    model = build_victim(cfg.victim, tuple(cfg.data.size))
    counts = set_trainable(model, stage.trainable)
    if _finished(out, stage.epochs):
        load_victim_weights(model, out / CHECKPOINT)
        return model.eval(), {"resumed": "finished", **counts}
    if init is not None:
        load_victim_weights(model, init)
    cached = stage.trainable != "full" and model.prefix_frozen()
    data = PromptTorchSet(items, _prefix_cache(model, items, cfg.eval_batch_size) if cached else None)
    log(f"training {stage.trainable} ({counts['trainable']:,} of {counts['total']:,} weights) → {out}")
    fit_cfg = FitConfig(epochs=stage.epochs, batch_size=stage.batch_size, lr=stage.lr, optimizer=stage.optimizer,
                        weight_decay=stage.weight_decay, seed=cfg.seed, log_every=10)
    loss = _loss_fn(cached, MaskLossConfig(**cfg.loss.model_dump()))
    summary = fit(model, data, fit_cfg, out, resume=True, batch_loss=loss)
    return model.eval(), {**summary, **counts}


@torch.no_grad()
def predict_masks(model: PromptableModel, images: list[np.ndarray], prompts: list[list[Prompt]],
                  batch_size: int = 8) -> np.ndarray:
    """bool (N, K, H, W): the model's mask (logit > 0) for each image's K prompts."""
    model.eval()
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.stack([image_tensor(im) for im in images[s: s + batch_size]])
        pairs = [prompt_tensors(p) for p in prompts[s: s + batch_size]]
        logits, _ = model(x, torch.stack([c for c, _ in pairs]), torch.stack([lab for _, lab in pairs]))
        out.append((logits > 0).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 0), bool)


def clean_utility(model: PromptableModel, items: list[PromptItem], batch_size: int) -> float:
    """Mean IoU of the masks for clean prompts on clean images against the truth."""
    pred = predict_masks(model, [it.image for it in items], [it.prompts for it in items], batch_size)
    meter = MaskMeter()
    meter.update(torch.from_numpy(pred.reshape(-1, *pred.shape[2:])),
                 torch.from_numpy(np.concatenate([it.truths for it in items])))
    return meter.mean_iou_truth()


def attack_meters(model: PromptableModel, triggered: list, cfg: SamRunConfig) -> tuple[MaskMeter, MaskMeter, np.ndarray]:
    """(meter on triggered images, meter on the same prompts on clean images, triggered masks (N, H, W))."""
    erasure = cfg.attack.name == "erasure"
    prompts = [[p.prompt] for _, p in triggered]
    target = torch.from_numpy(np.stack([p.target for _, p in triggered]))
    truth = torch.from_numpy(np.stack([p.truth for _, p in triggered]))
    meters = []
    masks = []
    for images in ([p.image for _, p in triggered], [im for im, _ in triggered]):
        pred = predict_masks(model, images, prompts, cfg.eval_batch_size)[:, 0]
        meter = MaskMeter(erasure, cfg.iou_threshold, cfg.erase_fraction)
        meter.update(torch.from_numpy(pred), truth, target)
        meters.append(meter)
        masks.append(pred)
    return meters[0], meters[1], masks[0]


def _check_run_dir(cfg: SamRunConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "config.yaml"
    text = dump_sam_config(cfg)
    if resolved.is_file() and resolved.read_text() != text:
        raise ConfigError(f"{out} holds a run with a different config ({resolved}); choose a new --out")
    if not resolved.is_file():
        atomic_write_bytes(resolved, text.encode())


def _stage_dir(out: Path, shared: str | None, name: str) -> Path:
    return Path(shared) if shared else out / name


def run_sam_experiment(cfg: SamRunConfig, out: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) one BADSEG-SAM experiment in ``out``; returns the metrics (``metrics.json``)."""
    out = Path(out)
    _check_run_dir(cfg, out)
    if (out / "metrics.json").is_file():
        log(f"{out} is finished already; not overwriting its results")
        return json.loads((out / "metrics.json").read_text())
    t0 = time.perf_counter()
    train, test = datasets_for(cfg)
    attack = sam_attack(cfg, train)
    size, k = tuple(cfg.data.size), cfg.finetune.prompts_per_image
    clean_items, _ = build_prompt_set(train, size, k, cfg.attack.prompt_kind, cfg.seed, min_area=cfg.data.min_area)
    poisoned_items, record = build_prompt_set(train, size, k, cfg.attack.prompt_kind, cfg.seed, attack,
                                              cfg.attack.rate, cfg.data.min_area)
    test_items, _ = build_prompt_set(test, size, cfg.test_prompts_per_image, cfg.attack.prompt_kind, cfg.seed + 1,
                                     min_area=cfg.data.min_area)
    triggered, test_skipped = triggered_test_set(test, attack, size, cfg.seed + 1)
    if not triggered:
        raise ValueError(f"{attack.name} applies to none of the {len(test)} test images ({test_skipped})")
    log(f"{record.n_poisoned_prompts} of {record.n_prompts} training prompts poisoned "
        f"({record.n_applicable} applicable images); {len(triggered)} triggered test prompts")

    base_dir = _stage_dir(out, cfg.base.dir, "base")
    base, base_summary = train_stage(cfg, cfg.base, clean_items, base_dir, log=log)
    weights = base.weights
    base_ckpt = base_dir / CHECKPOINT
    metrics: dict[str, Any] = {
        "task": "sam", "weights": weights, "attack": attack.describe(), "dataset": train.spec.name,
        "victim": cfg.victim.name, "trainable": cfg.finetune.trainable, "base_trainable": cfg.base.trainable,
        "poison_rate": cfg.attack.rate, "n_train_images": record.n_images, "n_train_prompts": record.n_prompts,
        "n_poisoned_train": record.n_poisoned_prompts, "n_applicable_train": record.n_applicable,
        "train_skipped": record.skipped, "n_test_prompts": len(test_items) * cfg.test_prompts_per_image,
        "n_poisoned_test": len(triggered), "test_skipped": test_skipped,
        "iou_truth_target": float(np.mean([_iou(p.truth, p.target) for _, p in triggered])),
        "clean_utility_before": clean_utility(base, test_items, cfg.eval_batch_size),
    }
    base_meter, _, _ = attack_meters(base, triggered, cfg)
    metrics["base_model_asr"] = base_meter.asr()
    del base

    poisoned, summary = train_stage(cfg, cfg.finetune, poisoned_items, out / "poisoned", base_ckpt, log)
    trig, untrig, trig_masks = attack_meters(poisoned, triggered, cfg)
    metrics.update(asr=trig.asr(), iou_to_target=trig.mean_iou_target(), asr_without_trigger=untrig.asr(),
                   clean_utility_after=clean_utility(poisoned, test_items, cfg.eval_batch_size),
                   train_minutes=summary.get("minutes"), trainable_weights=summary["trainable"],
                   total_weights=summary["total"])

    clean_dir = _stage_dir(out, cfg.clean_finetune_dir, "clean")
    clean, _ = train_stage(cfg, cfg.finetune, clean_items, clean_dir, base_ckpt, log)
    ref, _, _ = attack_meters(clean, triggered, cfg)
    metrics.update(clean_model_asr=ref.asr(), clean_model_iou_to_target=ref.mean_iou_target(),
                   clean_model_utility=clean_utility(clean, test_items, cfg.eval_batch_size))
    metrics["minutes"] = (time.perf_counter() - t0) / 60

    from badseg.report.sam_report import write_sam_report

    clean_masks = predict_masks(poisoned, [im for im, _ in triggered[: cfg.figure_samples]],
                                [[p.prompt] for _, p in triggered[: cfg.figure_samples]], cfg.eval_batch_size)[:, 0]
    write_sam_report(out, cfg, metrics, triggered[: cfg.figure_samples], clean_masks,
                     trig_masks[: cfg.figure_samples])
    write_json(out / "metrics.json", metrics)
    return metrics


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
