"""Typed experiment configuration: YAML in, dotted ``--set key=value`` overrides, validated.

Example:
    >>> cfg = load_config("configs/camvid/o2b.yaml", ["trigger.size=0.25", "attack.options.carriers=all"])
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from badseg.attacks import ATTACK_BUILD_ARGS, ATTACKS
from badseg.triggers import TriggerSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


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


#: Flat ``attack`` keys of configs written before ``attack.options`` → the option they now set.
LEGACY_ATTACK_KEYS: dict[str, str] = {
    "placement": "placement", "carriers": "carriers", "k": "k", "condition": "condition",
    "decoy_rate": "decoy_rate", "hba_mode": "mode", "matrix": "matrix", "line_width": "line_width",
    "line_row": "line_row", "trigger_class": "trigger_class", "band": "band", "test_band": "test_band",
    "pick": "pick", "prl_pixels": "prl_pixels", "classes": "classes", "context_px": "context_px",
}


def _options_from_legacy(vector: str, data: dict[str, Any]) -> dict[str, Any]:
    """Move old flat attack keys into ``options`` as the old translation did: unset (None) keys
    dropped, ``k: 0`` meaning all instances (``k: null`` now), keys the vector does not take
    ignored (old config dumps hold every key)."""
    legacy = [k for k in LEGACY_ATTACK_KEYS if k in data]
    if not legacy:
        return data
    warnings.warn(f"flat attack keys ({', '.join(legacy)}) are deprecated; write them under attack.options "
                  f"(hba_mode as mode, k: 0 as k: null)", DeprecationWarning, stacklevel=2)
    data = dict(data)
    options = dict(data.get("options") or {})
    takes = ATTACKS.options(vector, ATTACK_BUILD_ARGS)
    for key in legacy:
        value, name = data.pop(key), LEGACY_ATTACK_KEYS[key]
        if value is None or name not in takes:
            continue
        if key == "k" and value == 0:
            value = None
        options[name] = value  # an old key wins: it was usually given later, as a --set override
    data["options"] = options
    return data


class AttackConfig(_Strict):
    """Which attack, on which class pair, at which rate; ``options`` are the keyword options of
    the attack's factory (``badseg.attacks``, e.g. ``carriers`` for O2O/O2B, ``k`` for INS,
    ``mode`` for HBA), checked against its signature and completed with its defaults."""

    vector: str = "o2b"
    victim: str = "car"
    target: str = "road"
    rate: float = Field(0.1, ge=0.0, le=1.0)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _check_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        vector = data.get("vector", "o2b")
        if vector not in ATTACKS:
            raise ValueError(f"unknown attack {vector!r}; valid: {', '.join(ATTACKS.names())}")
        data = _options_from_legacy(vector, data)
        return {**data, "options": ATTACKS.check_options(vector, data.get("options") or {}, ATTACK_BUILD_ARGS)}


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
    trigger: TriggerSpec | Literal["auto"] = TriggerSpec()  # auto: BADSEG stages 1-2
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
    # Defenses run on the finished run (badseg.defenses): a name, or {name: {option: value}}.
    defenses: tuple[str | dict[str, dict[str, Any]], ...] = ()

    def defense_items(self) -> list[tuple[str, dict[str, Any]]]:
        """``defenses`` as (name, options) pairs."""
        out: list[tuple[str, dict[str, Any]]] = []
        for item in self.defenses:
            if isinstance(item, str):
                out.append((item, {}))
            elif len(item) == 1:
                (name, options), = item.items()
                out.append((name, dict(options or {})))
            else:
                raise ConfigError(f"a defenses entry is a name or {{name: {{option: value}}}}, got {item!r}")
        return out


class ConfigError(ValueError):
    """A config file or override that does not fit ``RunConfig``."""


def set_value(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` (``a.b.c``) of a nested dict to ``value``, making sections on the way."""
    node = tree
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key!r}: {p!r} is not a section")
    node[parts[-1]] = value


def apply_override(tree: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (numbers, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    set_value(tree, key, yaml.safe_load(raw))


def validated(model: type[M], path: str | Path | None = None, overrides: list[str] | None = None,
              values: dict[str, Any] | None = None) -> M:
    """Read YAML (or start from defaults), set ``values`` (dotted key → value, e.g. a command's
    shortcut flags), apply the ``key=value`` overrides, validate as ``model``."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        tree = yaml.safe_load(path.read_text()) or {}
    for key, value in (values or {}).items():
        set_value(tree, key, value)
    for item in overrides or []:
        apply_override(tree, item)
    try:
        return model.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(str(e)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                values: dict[str, Any] | None = None) -> RunConfig:
    """Read YAML (or start from defaults), set ``values``, apply the overrides, validate."""
    return validated(RunConfig, path, overrides, values)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


#: The config behind ``badseg demo`` (shipped inside the package).
DEMO_CONFIG = Path(__file__).with_name("configs") / "demo.yaml"
