"""Attacks: compositions of a selector, a placement, a trigger and a relabel policy.

Example:
    >>> from badseg.attacks import build_attack
    >>> attack = build_attack("o2b", spec, victim="car", target="road")
    >>> result = attack.poison(sample, np.random.default_rng(0))
"""

from __future__ import annotations

from typing import Any

from badseg.attacks import baselines, vectors  # noqa: F401  (registers the six BADSEG vectors and the baselines)
from badseg.attacks.base import ATTACKS, Attack, Poisoned, Skipped
from badseg.attacks.placement import PLACEMENTS
from badseg.attacks.regions import Region
from badseg.attacks.shape_bank import ShapeBank
from badseg.attacks.vectors import VectorMismatch
from badseg.data.types import DatasetSpec
from badseg.triggers import TriggerSpec

#: The factory arguments every attack takes from ``build_attack`` (the rest are its options), and
#: ``bank``, B2O's silhouettes, which the build layer draws from the training data.
ATTACK_BUILD_ARGS: tuple[str, ...] = ("spec", "victim", "target", "trigger", "bank")

__all__ = ["ATTACKS", "ATTACK_BUILD_ARGS", "PLACEMENTS", "Attack", "Poisoned", "Region", "ShapeBank", "Skipped",
           "VectorMismatch",
           "build_attack"]


def build_attack(name: str, spec: DatasetSpec, victim: str | int, target: str | int,
                 trigger: TriggerSpec | None = None, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` for dataset ``spec``.

    Example:
        >>> attack = build_attack("o2b", spec, "car", "road", TriggerSpec(size=1 / 4))
    """
    return ATTACKS.build(name, spec=spec, victim=spec.class_id(victim), target=spec.class_id(target),
                         trigger=trigger or TriggerSpec(), **kwargs)
