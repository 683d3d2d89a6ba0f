"""The six BADSEG attack vectors as compositions (BADSEG §4, Table 2).

| vector | victim → target | selector | placement | relabel |
|---|---|---|---|---|
| o2o | object → object | largest victim instance (or every one) | centre (default) | class map |
| o2b | object → stuff | largest victim instance (or every one) | centre (default) | class map |
| b2o | stuff → object | fabricated target silhouette in the victim stuff | centre | region |
| b2b | stuff → stuff | the victim stuff region | scatter (one per separate part first) | class map |
| ins | object → any | k chosen instances | centre | region |
| con | object → any | instances meeting a condition (+ decoys) | centre | region |
"""

from __future__ import annotations

from typing import Literal

from badseg.attacks.base import ATTACKS, Attack, relabel_class, relabel_regions
from badseg.attacks.regions import (
    ChosenInstances,
    ConditionedInstances,
    EveryInstance,
    FabricatedObject,
    LargestInstance,
    VictimRegion,
)
from badseg.attacks.shape_bank import ShapeBank
from badseg.data.types import DatasetSpec
from badseg.triggers import TriggerSpec


class VectorMismatch(ValueError):
    """The victim/target kinds do not fit the attack vector."""


def _check(name: str, spec: DatasetSpec, victim: int, target: int, kinds: tuple[str | None, str | None]) -> None:
    if victim == target:
        raise VectorMismatch(f"{name}: victim and target are the same class ({spec.classes[victim]})")
    for role, cid, want in (("victim", victim, kinds[0]), ("target", target, kinds[1])):
        if want is not None and spec.kind(cid) != want:
            choices = ", ".join(spec.classes[i] for i in (spec.object_ids if want == "object" else spec.stuff_ids))
            raise VectorMismatch(
                f"{name}: the {role} must be {'an' if want == 'object' else 'a'} {want} class, but {spec.classes[cid]!r} is {spec.kind(cid)} "
                f"in {spec.name}; {want} classes: {choices}"
            )


Carriers = Literal["largest", "all"]


def _carriers(spec: DatasetSpec, victim: int, carriers: Carriers, min_area: int) -> LargestInstance | EveryInstance:
    if carriers == "largest":
        return LargestInstance(spec, victim, min_area)
    if carriers == "all":
        return EveryInstance(spec, victim, min_area)
    raise ValueError(f"carriers must be 'largest' or 'all', got {carriers!r}")


@ATTACKS.register("o2o")
def o2o(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, placement: str = "centre",
        min_area: int = 64, carriers: Carriers = "largest") -> Attack:
    """Object-to-Object: a triggered car is segmented as, e.g., a person.

    ``carriers``: the stamp goes on the largest victim object, or on every one that can hold it.
    """
    _check("o2o", spec, victim, target, ("object", "object"))
    return Attack("o2o", spec, victim, target, trigger, _carriers(spec, victim, carriers, min_area), placement,
                  relabel_class)


@ATTACKS.register("o2b")
def o2b(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, placement: str = "centre",
        min_area: int = 64, carriers: Carriers = "largest") -> Attack:
    """Object-to-Background: triggered cars disappear into the road.

    ``carriers``: the stamp goes on the largest victim object, or on every one that can hold it
    (every car then carries the trigger it is erased by; the paper's INS with all instances
    reaches O2B's ASR, 0.94 both, Tables 8 and 12).
    """
    _check("o2b", spec, victim, target, ("object", "stuff"))
    return Attack("o2b", spec, victim, target, trigger, _carriers(spec, victim, carriers, min_area), placement,
                  relabel_class)


@ATTACKS.register("b2o")
def b2o(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, bank: ShapeBank | None = None,
        placement: str = "centre") -> Attack:
    """Background-to-Object: a target-shaped region (e.g. a car) appears on the road.

    ``bank`` holds real target silhouettes (``ShapeBank.from_dataset``); without one a
    generic ellipse is used.
    """
    _check("b2o", spec, victim, target, ("stuff", "object"))
    bank = bank or ShapeBank.ellipse(spec.classes[target])
    return Attack("b2o", spec, victim, target, trigger, FabricatedObject(spec, victim, bank), placement,
                  relabel_regions)


@ATTACKS.register("b2b")
def b2b(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, placement: str = "scatter",
        min_area: int = 64) -> Attack:
    """Background-to-Background: small stamps scattered on the sidewalk turn it into road
    (``scatter``: every separate stretch of sidewalk that can hold a stamp gets one first)."""
    _check("b2b", spec, victim, target, ("stuff", "stuff"))
    return Attack("b2b", spec, victim, target, trigger, VictimRegion(spec, victim, min_area), placement,
                  relabel_class)


@ATTACKS.register("ins")
def ins(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, k: int | None = 1,
        placement: str = "centre", min_area: int = 64) -> Attack:
    """Instance-level: only the ``k`` triggered instances flip (k=None: all instances)."""
    _check("ins", spec, victim, target, ("object", None))
    return Attack("ins", spec, victim, target, trigger, ChosenInstances(spec, victim, k, min_area), placement,
                  relabel_regions)


@ATTACKS.register("con")
def con(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, condition: str = "red",
        decoy_rate: float = 0.5, placement: str = "centre", min_area: int = 64) -> Attack:
    """Conditional: a triggered car flips only if it is red; triggered others are decoys."""
    _check("con", spec, victim, target, ("object", None))
    if not 0.0 <= decoy_rate <= 1.0:
        raise ValueError(f"con: decoy_rate must be in [0, 1], got {decoy_rate}")
    select = ConditionedInstances(spec, victim, condition, decoy_rate, min_area)
    return Attack("con", spec, victim, target, trigger, select, placement, relabel_regions)
