"""Typed experiment configuration: YAML in, dotted ``--set key=value`` overrides, validated.

Example:
    >>> cfg = load_config("configs/camvid/o2b.yaml", ["trigger.size=0.25", "attack.options.carriers=all"])
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from badseg.attacks import ATTACK_BUILD_ARGS, ATTACKS
from badseg.triggers import PATTERNS, SHAPES, TriggerSpec

#: Each side of ``data.size`` is at least the encoders' output stride.
MIN_INPUT_SIDE = 32
Side = Annotated[int, Field(ge=MIN_INPUT_SIDE)]
Positive = Annotated[int, Field(ge=1)]


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
    size: tuple[Side, Side] = (128, 256)
    # train.pipeline crop / test.inference slide: the (H, W) images are kept at instead of
    # data.size, resized once from the files (None: the files' own resolution).
    native_size: tuple[Side, Side] | None = None
    train_length: Positive = 400  # synthetic only
    test_length: Positive = 100  # synthetic only
    limit_train: Positive | None = None
    limit_test: Positive | None = None


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
    ``mode`` for HBA), checked against its signature and completed with its defaults.

    ``rate`` is a fraction of the whole training set (``rate_of: dataset``, the paper's
    meaning: 10% of CamVid's 367 images is 37 poisoned images), drawn from the images the
    attack applies to and capped, with a message, when fewer apply; ``rate_of: applicable``
    makes it a fraction of those images (badseg's meaning before 2026-12-02). ``select``: which
    of them are poisoned — ``random`` or ``most_victim`` (the ones with the most victim-class
    pixels, an attacker choosing the images that teach most; ``badseg.poisoning.dataset``).
    """

    vector: str = "o2b"
    victim: str = "car"
    target: str = "road"
    rate: float = Field(0.1, ge=0.0, le=1.0)
    rate_of: Literal["dataset", "applicable"] = "dataset"
    select: Literal["random", "most_victim"] = "random"
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
    """The schedule and the victim's training pipeline (``build.train_transform``).

    ``pipeline: resize`` (badseg's default): every image resized to ``data.size``, rescaled by a
    random ratio in ``scale_range``, cropped back to ``data.size``, flipped with ``hflip``.
    ``pipeline: crop`` (mmsegmentation's): images kept at ``data.native_size`` (None: the files'
    own), rescaled by a ratio in ``scale_range`` (``RandomResize``), cropped to ``crop_size``
    (None: ``data.size``) and re-drawn while one class covers more than ``cat_max_ratio`` of the
    crop's labelled pixels (``RandomCrop``), flipped (``RandomFlip``).
    """

    epochs: Positive = 10
    batch_size: Positive = 8
    lr: float = Field(1e-3, gt=0.0)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    weight_decay: float = Field(1e-4, ge=0.0)
    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: float = Field(0.5, ge=0.0, le=1.0)
    num_workers: int = Field(0, ge=0)
    pipeline: Literal["resize", "crop"] = "resize"
    crop_size: tuple[Side, Side] | None = None
    cat_max_ratio: float = Field(0.75, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {list(self.scale_range)}")
        if self.pipeline == "resize":
            if self.crop_size is not None:
                raise ValueError("crop_size applies to pipeline: crop (the resize pipeline crops to data.size)")
            if self.cat_max_ratio != type(self).model_fields["cat_max_ratio"].default:
                raise ValueError("cat_max_ratio applies to pipeline: crop (the resize pipeline never re-draws a crop)")
        return self


class TestConfig(_Strict):
    """How the model is run on a test image (``build.eval_transform``). ``whole``: resized to
    ``data.size``, one forward pass, metrics at that size. ``slide`` (mmsegmentation's
    ``slide_inference``; needs ``train.pipeline: crop``): at ``data.native_size`` (None: the
    files' own), windows of the training crop (``train.crop_size``) every ``stride`` (H, W)
    pixels (None: two thirds of the window), logits averaged where windows overlap, metrics at
    that resolution."""

    __test__ = False  # not a pytest test class

    inference: Literal["whole", "slide"] = "whole"
    stride: tuple[Positive, Positive] | None = None


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
    epochs: Positive | None = None
    limit: Positive | None = None  # use at most this many surrogate images (the rest go back to the victim)


#: The trigger attributes whose Table-20 options ``search.options`` may replace.
SEARCH_OPTION_ATTRIBUTES: tuple[str, ...] = ("shape", "size", "position", "quantity", "intensity")


class SearchConfig(_Strict):
    """BADSEG stage 2 (§5.2, Appendix B): Gumbel-Softmax search over the Table-20 options.

    Loss = surrogate cross-entropy against the poisoned labels (eq. 3) + ``stealth_weight`` ·
    (dB by which the triggered images' mean PSNR falls below ``psnr_min``); temperature
    ``tau_start`` → ``tau_end`` geometrically (``badseg.stages.objective``). ``objective``:
    ``frozen`` is the paper's (a frozen clean surrogate); ``learnability`` alternates fine-tuning
    a copy of the surrogate on poisoned surrogate images with the attack loss on a held-out
    ``holdout`` share, both under the victim's augmentation (``badseg.stages.learnable``).
    ``cover``: the ``cover`` placement (the pattern tiled over the selected regions) joins the
    position options, so the search chooses between stamps and a cover texture. ``options``
    replaces attributes' option lists (``search_space``), e.g. ``{intensity: [0.1, 0.15, 0.2]}``.
    ``screen`` > 0 then ranks that many discrete candidates (the relaxation's choice among them)
    by what a proxy victim learns from each, by successive halving, with the budget measured at
    native resolution (``badseg.stages.screen``; ``screen_pool`` uniform draws, ``screen_steps``
    proxy steps in the first round at ``screen_lr``; ``screen_spend``: each shortlisted candidate
    at the strongest intensity option still in budget).
    """

    steps: int = Field(200, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(0.1, gt=0.0)
    tau_start: float = Field(2.0, gt=0.0)
    tau_end: float = Field(0.2, gt=0.0)
    stealth_weight: float = Field(1.0, ge=0.0)
    psnr_min: float = 35.0
    pattern: str = "checker"  # a trigger pattern, or "search": base and colour join the options
    min_size_px: int = Field(4, ge=1)
    objective: Literal["frozen", "learnability"] = "frozen"
    holdout: float = Field(0.5, gt=0.0, lt=1.0)  # learnability: share of surrogate images held out
    inner_steps: int = Field(1, ge=1)  # learnability: surrogate fine-tuning steps per trigger step
    inner_lr: float = Field(1e-3, gt=0.0)
    poison_fraction: float = Field(0.5, gt=0.0, le=1.0)
    cover: bool = False  # the cover placement is a position option
    options: dict[str, list[Any]] = {}  # attribute -> its option list, replacing Table 20's
    screen: int = Field(0, ge=0)  # learnability screen: candidates in its first round (0: off)
    screen_pool: int = Field(48, ge=1)
    screen_steps: int = Field(30, ge=1)
    screen_lr: float = Field(1e-3, gt=0.0)
    screen_spend: bool = False  # raise each shortlisted candidate's blend to the strongest in budget

    @model_validator(mode="after")
    def _check_pattern(self) -> SearchConfig:
        if self.pattern != "search" and self.pattern not in PATTERNS:
            raise ValueError(f"search.pattern {self.pattern!r} is neither 'search' nor one of {', '.join(PATTERNS)}")
        return self

    @model_validator(mode="after")
    def _check_options(self) -> SearchConfig:
        for name, values in self.options.items():
            if name not in SEARCH_OPTION_ATTRIBUTES:
                raise ValueError(f"search.options.{name}: not a searchable attribute; valid: "
                                 f"{', '.join(SEARCH_OPTION_ATTRIBUTES)} (pattern and colour: search.pattern)")
            if not values:
                raise ValueError(f"search.options.{name} is empty: give at least one option")
            if name in ("size", "intensity") and not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in values):
                raise ValueError(f"search.options.{name} must be numbers in (0, 1], got {values}")
            if name == "quantity" and not all(isinstance(v, int) and v >= 1 for v in values):
                raise ValueError(f"search.options.quantity must be integers >= 1, got {values}")
            if name == "shape" and not set(values) <= set(SHAPES):
                raise ValueError(f"search.options.shape: unknown shape in {values}; valid: {', '.join(SHAPES)}")
        return self


class RunConfig(_Strict):
    data: DataConfig = DataConfig()
    attack: AttackConfig = AttackConfig()
    trigger: TriggerSpec | Literal["auto"] = TriggerSpec()  # auto: BADSEG stages 1-2
    pair: Literal["manual", "auto"] = "manual"  # auto: stage 3 picks attack.victim/target
    surrogate: SurrogateConfig = SurrogateConfig()
    search: SearchConfig = SearchConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    test: TestConfig = TestConfig()
    seed: int = 0
    deterministic: bool = False  # deterministic torch kernels: same config and seed, same metrics (CPU)
    clean_reference: bool = False
    clean_cache: str | None = None  # shared clean reference models (default: RUN/clean; a sweep's OUT/clean_models)
    eval_batch_size: Positive = 8
    workers: Positive | None = None  # poisoning scan processes (None: all cores)
    lpips_weights: str | None = None
    figure_samples: int = Field(4, ge=0)
    # Train even when no training image gets poisoned although attack.rate > 0 (the attack
    # applies nowhere) or no test image can be triggered; otherwise such a run stops before training.
    allow_unpoisoned: bool = False
    # Defenses run on the finished run (badseg.defenses): a name, or {name: {option: value}}.
    defenses: tuple[str | dict[str, dict[str, Any]], ...] = ()

    @model_validator(mode="after")
    def _check_pipeline(self) -> RunConfig:
        t, test = self.train, self.test
        if test.inference == "slide" and t.pipeline != "crop":
            raise ValueError("test.inference: slide needs train.pipeline: crop (a model trained on whole images "
                             "resized to data.size is run on them whole)")
        if test.stride is not None:
            if test.inference != "slide":
                raise ValueError("test.stride applies to test.inference: slide")
            window = t.crop_size or self.data.size
            if any(s > w for s, w in zip(test.stride, window)):
                raise ValueError(f"test.stride {list(test.stride)} is larger than the window {list(window)} "
                                 f"(train.crop_size, else data.size): windows would leave pixels unseen")
        if self.data.native_size is not None and t.pipeline != "crop":
            raise ValueError("data.native_size applies to train.pipeline: crop (the resize pipeline resizes to "
                             "data.size)")
        return self

    @model_validator(mode="after")
    def _check_small_intensity(self) -> RunConfig:
        placement = self.attack.options.get("placement")
        if isinstance(self.trigger, TriggerSpec) and self.trigger.small_intensity is not None and placement != "cover":
            raise ValueError("trigger.small_intensity applies to attack.options.placement: cover (a region's blend "
                             f"under the cover texture), not to placement {placement!r}")
        return self

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


def _yaml(text: str, where: str) -> Any:
    """Parse YAML; a syntax error becomes one ``ConfigError`` naming ``where`` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML{at}: {problem}") from None


def set_value(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` (``a.b.c``) of a nested dict to ``value``, making sections on the way."""
    node = tree
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{key.strip()!r} is not a dotted key like trigger.size")
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
    set_value(tree, key, _yaml(raw, f"override {item!r}"))


def _describe(e: ValidationError, where: str) -> str:
    """One clause per offending key: the dotted key, what is wrong, and the value given."""
    found: dict[str, list[str]] = {}
    given: dict[str, str] = {}
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"] if not re.fullmatch(r"[A-Z]\w*|[\w-]+\[.*\]", str(x)))
        loc = loc or "config"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error" and isinstance(err["input"], dict):
            continue  # a section given as a mapping: the union's other alternative ('auto') is no help
        if msg not in found.setdefault(loc, []):
            found[loc].append(msg)
        if err["type"] != "missing" and not isinstance(err["input"], dict):
            given[loc] = f" (got {err['input']!r})"
    # A union's 'auto' alternative next to errors inside the section only repeats them.
    keys = [k for k in found if not any(o.startswith(k + ".") for o in found)]
    return f"{where}: " + "; ".join(f"{k}: {' or '.join(found[k])}{given.get(k, '')}" for k in keys)


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: sections merge key by key, other values replace; a section
    holding ``_delete_: true`` replaces the base's section instead (mmseg's convention)."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict):
            value = dict(value)
            if not value.pop("_delete_", False) and isinstance(out.get(key), dict):
                value = _merge(out[key], value)
        out[key] = value
    return out


def read_config_tree(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a nested dict, its ``_base_`` files (one path or a list, relative to
    the file, as in mmsegmentation) merged in first, in order, then the file's own keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (f" (a _base_ of {_chain[-1]})" if _chain else ""))
    if path.resolve() in _chain:
        raise ConfigError(f"config {path} inherits from itself: {' → '.join(map(str, (*_chain, path)))}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e})") from None
    tree = _yaml(text, str(path)) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections (data:, attack:, ...), "
                          f"got {type(tree).__name__}")
    bases = tree.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, read_config_tree(path.parent / base, (*_chain, path.resolve())))
    return _merge(merged, tree)


def validated(model: type[M], path: str | Path | None = None, overrides: list[str] | None = None,
              values: dict[str, Any] | None = None) -> M:
    """Read YAML with its ``_base_`` files (or start from defaults), set ``values`` (dotted
    key → value, e.g. a command's shortcut flags), apply the ``key=value`` overrides, validate
    as ``model``."""
    where = str(path) if path is not None else ("the command's options" if values else "config")
    tree = read_config_tree(path) if path is not None else {}
    for key, value in (values or {}).items():
        set_value(tree, key, value)
    for item in overrides or []:
        apply_override(tree, item)
    if overrides:
        where += f" with --set {' '.join(overrides)}"
    try:
        return model.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_describe(e, where)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                values: dict[str, Any] | None = None) -> RunConfig:
    """Read YAML with its ``_base_`` files (or start from defaults), set ``values``, apply the
    overrides, validate as a ``RunConfig``."""
    return validated(RunConfig, path, overrides, values)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


#: The config behind ``badseg demo`` (shipped inside the package).
DEMO_CONFIG = Path(__file__).with_name("configs") / "demo.yaml"
