"""Typed experiment configuration: YAML in, dotted ``--set key=value`` overrides, validated.

Example:
    >>> cfg = load_config("configs/camvid/o2b.yaml", ["trigger.size=0.25", "attack.rate=0.2"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Dataset and resolution. ``size`` (H, W) is what the model sees; the trigger is
    stamped at the files' native resolution, before any resize (as a real poisoner would)."""

    name: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    test_split: str = "val"
    size: tuple[int, int] = (128, 256)
    train_length: int = 400  # synthetic only
    test_length: int = 100  # synthetic only
    limit_train: int | None = None
    limit_test: int | None = None


class TriggerConfig(_Strict):
    shape: str = "circle"
    size: float = 1 / 8
    intensity: float = 0.4
    quantity: int = 1
    pattern: str = "checker"
    min_size_px: int = 4


class AttackConfig(_Strict):
    vector: str = "o2b"
    victim: str = "car"
    target: str = "road"
    rate: float = Field(0.1, ge=0.0, le=1.0)
    placement: str | None = None
    k: int | None = None  # INS: instances per image (None: 1; 0: all)
    condition: str = "red"  # CON
    decoy_rate: float = 0.5  # CON


class ModelConfig(_Strict):
    name: str = "deeplabv3plus-effl0"
    pretrained: str = "none"


class TrainConfig(_Strict):
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: Literal["sgd", "adamw"] = "adamw"
    weight_decay: float = 1e-4
    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: float = 0.5
    num_workers: int = 0


class RunConfig(_Strict):
    data: DataConfig = DataConfig()
    attack: AttackConfig = AttackConfig()
    trigger: TriggerConfig = TriggerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    seed: int = 0
    clean_reference: bool = False
    eval_batch_size: int = 8
    workers: int | None = None  # poisoning scan processes (None: all cores)
    lpips_weights: str | None = None
    figure_samples: int = 4


class ConfigError(ValueError):
    """A config file or override that does not fit ``RunConfig``."""


def apply_override(tree: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (numbers, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    node = tree
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read YAML (or start from defaults), apply overrides, validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        tree = yaml.safe_load(path.read_text()) or {}
    for item in overrides or []:
        apply_override(tree, item)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(str(e)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


#: The config behind ``badseg demo`` (shipped inside the package).
DEMO_CONFIG = Path(__file__).with_name("configs") / "demo.yaml"
