"""Sweep files: a base run config plus axes, expanded into runs with a readable slug and a
stable hash of each run's resolved config.

A sweep file (YAML)::

    _base_: ../camvid/o2b.yaml        # a run config, relative to this file
    set: {train.epochs: 8}            # dotted overrides for every run
    axes:                             # crossed with one another, in this order ...
      attack.rate: [0.1, 0.2]         #   a dotted key and its values
      vector:                         #   a named axis: label → a bundle of dotted keys
        o2o: {_base_: ../camvid/o2o.yaml, trigger.size: 0.3}
        o2b: {_base_: ../camvid/o2b.yaml}
      seed: [0, 1, 2]
      defense: [null, fine-tuning]    #   ``defense`` (and ``defense.*``) run a defense on a finished run
    zip: [[trigger.size, trigger.intensity]]   # ... except these, which advance together
    resources: {cpus: 1, gpus: 0}     # what each run asks the scheduler for
    retries: 1                        # failed attempts re-run at most this often

A run's folder is ``<slug>-<hash>``: the slug names its axis values (``rate-0.1_vector-o2o``),
the hash is the first 12 hex digits of the SHA-256 of its resolved config (fields left at their
defaults excluded, so a field added to badseg later does not change it) and its defense. Two
sweeps that resolve to the same run share its folder.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from badseg.config import ConfigError, RunConfig, load_config

BASE_KEY = "_base_"
DEFENSE = "defense"
HASH_DIGITS = 12


class Resources(BaseModel):
    """What one run asks the scheduler for."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class SweepFile(BaseModel):
    """The parsed YAML of a sweep file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    base: str | None = Field(None, alias=BASE_KEY)
    set: dict[str, Any] = {}
    axes: dict[str, list[Any] | dict[str, dict[str, Any]]] = {}
    zip: list[list[str]] = []
    resources: Resources = Resources()
    retries: int = Field(1, ge=0)

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, axes: dict[str, Any]) -> dict[str, Any]:
        for name, values in axes.items():
            if not values:
                raise ValueError(f"axis {name!r} has no values")
        return axes


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its config, optional defense, where it goes and what it waits for."""

    cfg: RunConfig
    axes: dict[str, Any]  # axis name → label or value, for tables and the slug
    defense: str | None = None
    defense_overrides: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # hashes of runs that must finish first
    slug: str = ""
    hash: str = ""
    base_hash: str | None = None  # a defense run: the hash of the run it defends

    @property
    def name(self) -> str:
        return f"{self.slug}-{self.hash}" if self.slug else self.hash


@dataclass
class Sweep:
    """A sweep file expanded: its runs in submission order (a run after those it needs)."""

    source: Path
    spec: SweepFile
    runs: list[RunSpec] = field(default_factory=list)


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _token(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9.+=-]+", "", text.replace(",", "x").replace(" ", "")) or "none"


def make_slug(axes: dict[str, Any]) -> str:
    """``{"attack.rate": 0.1, "vector": "o2o"}`` → ``rate-0.1_vector-o2o`` (at most 80 characters)."""
    return "_".join(f"{_short(k)}-{_token(v)}" for k, v in axes.items())[:80]


def config_hash(cfg: RunConfig, defense: str | None = None, defense_overrides: tuple[str, ...] = ()) -> str:
    """Stable short hash of a resolved run config (its non-default fields) and its defense."""
    payload = {"config": cfg.model_dump(mode="json", exclude_defaults=True)}
    if defense is not None:
        payload[DEFENSE] = {"name": defense, "overrides": list(defense_overrides)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


def _axis_points(name: str, values: list[Any] | dict[str, dict[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    """An axis as (label, {dotted key: value}) points."""
    if isinstance(values, dict):
        for label, bundle in values.items():
            if not isinstance(bundle, dict):
                raise ConfigError(f"axis {name!r}: value {label!r} must be a mapping of dotted keys")
        return [(label, dict(bundle)) for label, bundle in values.items()]
    return [(v, {name: v}) for v in values]


def _combinations(spec: SweepFile) -> list[list[tuple[str, Any, dict[str, Any]]]]:
    """Every combination of axis points: zipped groups advance together, the rest are crossed."""
    zipped = [list(group) for group in spec.zip]
    seen: set[str] = set()
    for group in zipped:
        for name in group:
            if name not in spec.axes:
                raise ConfigError(f"zip names {name!r}, which is not an axis (axes: {', '.join(spec.axes)})")
            if name in seen:
                raise ConfigError(f"axis {name!r} is in more than one zip group")
            seen.add(name)
        lengths = {name: len(spec.axes[name]) for name in group}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"zipped axes need equal lengths, got {lengths}")
    factors: list[list[list[tuple[str, Any, dict[str, Any]]]]] = []
    placed: set[str] = set()
    for name in spec.axes:  # a zip group sits where its first axis is
        if name in placed:
            continue
        group = next((g for g in zipped if name in g), [name])
        placed.update(group)
        points = [_axis_points(n, spec.axes[n]) for n in group]
        factors.append([[(n, label, bundle) for n, (label, bundle) in zip(group, pts)] for pts in zip(*points)])
    return [[p for factor in combo for p in factor] for combo in itertools.product(*factors)]


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def _resolve(spec: SweepFile, root: Path, points: list[tuple[str, Any, dict[str, Any]]]) -> RunSpec:
    base = spec.base
    settings: dict[str, Any] = dict(spec.set)
    for _, _, bundle in points:
        for key, value in bundle.items():
            if key == BASE_KEY:
                base = value
            else:
                settings[key] = value
    defense = settings.pop(DEFENSE, None)
    defense_overrides = tuple(_override(k[len(DEFENSE) + 1:], settings.pop(k))
                              for k in sorted(settings) if k.startswith(f"{DEFENSE}."))
    if defense in ("none", "None"):
        defense = None
    base_path = None if base is None else (root / base)
    try:
        cfg = load_config(base_path, [_override(k, v) for k, v in settings.items()])
    except ConfigError as e:
        where = ", ".join(f"{name}={label}" for name, label, _ in points) or "the base config"
        raise ConfigError(f"run {where}: {e}") from None
    axes = {name: label for name, label, _ in points}
    return RunSpec(cfg, axes, defense, defense_overrides, slug=make_slug(axes),
                   hash=config_hash(cfg, defense, defense_overrides))


def expand(spec: SweepFile, root: Path) -> list[RunSpec]:
    """The runs of a sweep, each after the runs it needs (a defended run after its base run and
    the base run's previous defense). Duplicate runs (same hash) are listed once."""
    runs: dict[str, RunSpec] = {}
    last_defense: dict[str, str] = {}  # base hash → its latest defense run
    for points in _combinations(spec):
        run = _resolve(spec, root, points)
        if run.defense is not None and run.hash not in runs:
            base_axes = {k: v for k, v in run.axes.items() if k != DEFENSE and not k.startswith(f"{DEFENSE}.")}
            base = RunSpec(run.cfg, base_axes, slug=make_slug(base_axes), hash=config_hash(run.cfg))
            runs.setdefault(base.hash, base)
            # Defenses of one run go one after another: each adds its section to that run's report.md.
            needs = (base.hash,) + ((last_defense[base.hash],) if base.hash in last_defense else ())
            run = RunSpec(run.cfg, run.axes, run.defense, run.defense_overrides, needs=needs,
                          slug=run.slug, hash=run.hash, base_hash=base.hash)
            last_defense[base.hash] = run.hash
        runs.setdefault(run.hash, run)
    return list(runs.values())


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Read, validate and expand a sweep file; ``overrides`` (``key=value``) go into its ``set``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping (_base_, set, axes, zip, resources, retries)")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        tree.setdefault("set", {})[key.strip()] = yaml.safe_load(raw)
    try:
        spec = SweepFile.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(f"{path}: {e}") from None
    return Sweep(path, spec, expand(spec, path.parent))


def select(sweep: Sweep, only: list[str]) -> Sweep:
    """The runs of ``sweep`` whose axes match every ``axis=label[,label...]`` of ``only`` (a label
    as the run folder's slug writes it, e.g. ``attack=hba,iba`` or ``attack.rate=0.05``), plus the
    runs they need (a defense's base run). Raises ``ConfigError`` for an unknown axis or label."""
    wanted: dict[str, set[str]] = {}
    for item in only:
        if "=" not in item:
            raise ConfigError(f"--only {item!r} is not of the form axis=label[,label...]")
        axis, labels = item.split("=", 1)
        wanted.setdefault(axis.strip(), set()).update(x.strip() for x in labels.split(","))
    for axis, labels in wanted.items():
        if axis not in sweep.spec.axes:
            raise ConfigError(f"--only: {sweep.source.name} has no axis {axis!r}; axes: {', '.join(sweep.spec.axes)}")
        known = {_token(r.axes[axis]) for r in sweep.runs if axis in r.axes}
        if labels - known:
            raise ConfigError(f"--only: axis {axis!r} has no value {', '.join(sorted(labels - known))}; "
                              f"values: {', '.join(sorted(known))}")
    chosen = [r for r in sweep.runs if all(axis in r.axes and _token(r.axes[axis]) in labels
                                           for axis, labels in wanted.items())]
    by_hash = {r.hash: r for r in sweep.runs}
    keep = {r.hash for r in chosen}
    needed = [h for r in chosen for h in r.needs]
    while needed:
        h = needed.pop()
        if h not in keep:
            keep.add(h)
            needed.extend(by_hash[h].needs)
    return Sweep(sweep.source, sweep.spec, [r for r in sweep.runs if r.hash in keep])

