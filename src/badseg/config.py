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
    carriers: Literal["largest", "all"] | None = None  # O2O/O2B: stamp the largest victim object or every one
    k: int | None = None  # INS: instances per image (None: 1; 0: all)
    condition: str = "red"  # CON
    decoy_rate: float = 0.5  # CON
    # Prior attacks (badseg.attacks.baselines); None: the attack's own default.
    hba_mode: Literal["1to1", "nto1", "matrix"] | None = None  # HBA relabelling (default 1to1)
    matrix: dict[str, str] | None = None  # HBA mode matrix: more victim -> target class pairs
    line_width: int | None = None  # HBA: line height in px (default 8)
    line_row: float | None = None  # HBA: line position, 0 = top (default) .. 1 = bottom
    trigger_class: str | None = None  # HBA semantic trigger: poison where this class co-occurs
    band: tuple[float, float] | None = None  # IBA: (L, U] distance of the trigger centre to the victim
    test_band: tuple[float, float] | None = None  # IBA: the same for the poisoned test set
    pick: Literal["nearest", "random"] | None = None  # IBA-NNI: nearest in the band (default) or random
    prl_pixels: int | None = None  # IBA-PRL: pixels randomly relabelled per image (default 100)
    classes: tuple[str, ...] | None = None  # OFBA: object classes triggered in training (default all)
    context_px: int | None = None  # ConSeg: width of the rebuilt context band (default 4)


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


class SurrogateConfig(_Strict):
    """BADSEG stage 1 (§5.1): the attacker's surrogate, used when ``trigger`` or ``pair`` is ``auto``.

    Its data is ``split`` of the dataset when given (auxiliary data), otherwise a random
    ``fraction`` of the training split that the victim then never trains on. ``model``,
    ``pretrained`` and ``epochs`` default to the victim's model, ``"imagenet"`` where offline
    weights exist (else ``"none"``) and ``train.epochs``.
    """

    model: str | None = None
    pretrained: str | None = None
    split: str | None = None
    fraction: float = Field(0.2, gt=0.0, lt=1.0)
    epochs: int | None = None
    limit: int | None = None  # use at most this many surrogate images (the rest go back to the victim)


class SearchConfig(_Strict):
    """BADSEG stage 2 (§5.2, Appendix B): Gumbel-Softmax search over the Table-20 options.

    Loss = surrogate cross-entropy against the poisoned labels (eq. 3) + ``stealth_weight`` ·
    (dB by which the triggered images' mean PSNR falls below ``psnr_min``); temperature
    ``tau_start`` → ``tau_end`` geometrically (``badseg.stages.objective``).
    """

    steps: int = Field(200, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(0.1, gt=0.0)
    tau_start: float = Field(2.0, gt=0.0)
    tau_end: float = Field(0.2, gt=0.0)
    stealth_weight: float = Field(1.0, ge=0.0)
    psnr_min: float = 35.0
    pattern: str = "checker"
    min_size_px: int = Field(4, ge=1)


class RunConfig(_Strict):
    data: DataConfig = DataConfig()
    attack: AttackConfig = AttackConfig()
    trigger: TriggerConfig | Literal["auto"] = TriggerConfig()  # auto: BADSEG stages 1-2
    pair: Literal["manual", "auto"] = "manual"  # auto: stage 3 picks attack.victim/target
    surrogate: SurrogateConfig = SurrogateConfig()
    search: SearchConfig = SearchConfig()
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
