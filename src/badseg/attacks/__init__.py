"""Attacks: compositions of a selector, a placement, a trigger and a relabel policy.

Example:
    >>> from badseg.attacks import build_attack
    >>> attack = build_attack("o2b", spec, victim="car", target="road")
    >>> result = attack.poison(sample, np.random.default_rng(0))
"""

from badseg.attacks import baselines, vectors  # noqa: F401  (registers the six BADSEG vectors and the baselines)
from badseg.attacks.base import ATTACKS, Attack, Poisoned, Skipped, build_attack
from badseg.attacks.placement import PLACEMENTS
from badseg.attacks.regions import Region
from badseg.attacks.shape_bank import ShapeBank
from badseg.attacks.vectors import VectorMismatch

__all__ = ["ATTACKS", "PLACEMENTS", "Attack", "Poisoned", "Region", "ShapeBank", "Skipped", "VectorMismatch",
           "build_attack"]
