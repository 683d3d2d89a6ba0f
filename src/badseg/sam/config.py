"""Typed config of a BADSEG-SAM experiment (``task: sam`` in the YAML, run by ``badseg run``).

Example (``configs/sam2/erasure.yaml``)::

    task: sam
    data: {name: camvid, root: ../shared/data/camvid, size: [192, 256]}
    attack: {name: erasure, rate: 0.1}
    finetune: {trainable: decoder}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from badseg.config import ConfigError, DataConfig, SearchConfig, read_config_tree, validated
from badseg.sam.victims import VictimConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamDataConfig(DataConfig):
    """``DataConfig``; every image is resized to ``size`` (H, W) before prompts and triggers, and
    segments smaller than ``min_area`` px are not prompted."""

    train_length: int = 240  # synthetic only
    test_length: int = 60  # synthetic only
    min_area: int = 64


class SamTrainConfig(_Strict):
    """One training stage: which parts learn, for how long, on how many prompts per image.

    ``dir``: a folder to keep (and reuse) this stage's model in, e.g. one base or one clean
    fine-tuned model shared by the three attacks' runs; None: inside the run folder.
    """

    trainable: Literal["decoder", "decoder+prompt", "adapters", "heads", "full"] = "decoder"
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: Literal["sgd", "adamw"] = "adamw"
    weight_decay: float = 1e-4
    prompts_per_image: int = 4
    dir: str | None = None


class SamBaseConfig(SamTrainConfig):
    """The base stage: by default the layers without pretrained weights and the SAM heads."""

    trainable: Literal["decoder", "decoder+prompt", "adapters", "heads", "full"] = "heads"
    epochs: int = 6


class SamAttackConfig(_Strict):
    """The BADSEG-SAM attack (``targets.MaskAttack``); ``rate`` is a fraction of the training prompts."""

    name: Literal["distortion", "erasure", "injection"] = "erasure"
    rate: float = 0.1
    prompt_kind: Literal["point", "box", "mixed"] = "point"
    distortion: Literal["shift", "dilate", "erode"] = "shift"
    fraction: float = 0.5
    stuff: str = "road"
    silhouette: str = "car"


class SamTriggerConfig(_Strict):
    shape: str = "circle"
    size: float = 0.25
    intensity: float = 0.8
    quantity: int = 1
    pattern: str = "checker"
    min_size_px: int = 8


class SamLossConfig(_Strict):
    pixel: Literal["bce", "focal"] = "bce"
    mask_weight: float = 1.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0


class SamRunConfig(_Strict):
    """A whole BADSEG-SAM run: base promptable model (clean) → poisoned and clean fine-tuning → metrics."""

    task: Literal["sam"] = "sam"
    seed: int = 0
    data: SamDataConfig = SamDataConfig()
    victim: VictimConfig = VictimConfig()
    base: SamBaseConfig = SamBaseConfig()
    finetune: SamTrainConfig = SamTrainConfig()
    clean_finetune_dir: str | None = None
    attack: SamAttackConfig = SamAttackConfig()
    trigger: SamTriggerConfig = SamTriggerConfig()
    loss: SamLossConfig = SamLossConfig()
    test_prompts_per_image: int = 2
    iou_threshold: float = 0.5
    erase_fraction: float = 0.05
    eval_batch_size: int = 8
    figure_samples: int = 4
    search: SearchConfig = SearchConfig()  # stage 2 (``badseg optimize-trigger``)
    search_images: int = 64


def is_sam_config(path: str | Path) -> bool:
    """Whether a YAML config file (with its ``_base_`` files) is a BADSEG-SAM one (``task: sam``).
    A file that cannot be read as a config is not: loading it then reports why."""
    try:
        return read_config_tree(path).get("task") == "sam"
    except ConfigError:
        return False


def load_sam_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SamRunConfig:
    """Read YAML (or defaults), apply dotted overrides, validate."""
    return validated(SamRunConfig, path, overrides)


def dump_sam_config(cfg: SamRunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
