"""Building an attack for a concrete dataset, and the contact sheet a person looks at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from badseg.attacks import Attack, Poisoned, ShapeBank, build_attack
from badseg.attacks.baselines import co_occurring_class
from badseg.data.base import SegDataset
from badseg.poisoning.dataset import sample_rng
from badseg.triggers import TriggerSpec


def build_attack_for(name: str, dataset: SegDataset, victim: str, target: str, trigger: TriggerSpec,
                     **kwargs: Any) -> Attack:
    """``build_attack`` plus what needs the data: B2O's bank of real target silhouettes, and
    ConSeg's ``target='auto'`` (the class that most surrounds the victim in ``dataset``)."""
    spec = dataset.spec
    if name == "conseg" and target == "auto":
        target = spec.classes[co_occurring_class(dataset, victim)]
    if name == "b2o" and "bank" not in kwargs:
        kwargs["bank"] = ShapeBank.from_dataset(dataset, spec.class_id(target))
    return build_attack(name, spec, victim, target, trigger, **kwargs)


def _spread(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` records evenly spaced over ``records`` (neighbouring video frames look alike)."""
    if len(records) <= n:
        return records
    return [records[round(i * (len(records) - 1) / max(1, n - 1))] for i in range(n)]


def pick_sheet_records(manifest: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Poisoned records to show: mostly relabelled ones, plus up to a third with an empty ASR
    region (CON decoys, triggered but not relabelled) when there are any; in index order."""
    poisoned = [r for r in manifest["samples"] if r["poisoned"]]
    flipped = [r for r in poisoned if r["asr_pixels"] > 0]
    decoys = [r for r in poisoned if r["asr_pixels"] == 0]
    n_decoys = min(len(decoys), n // 3 if flipped else n)
    chosen = _spread(flipped, n - n_decoys) + _spread(decoys, n_decoys)
    return sorted(chosen, key=lambda r: r["index"])


def save_poison_sheet(dataset: SegDataset, attack: Attack, manifest: dict[str, Any], path: Path, n: int = 6) -> None:
    """Contact sheet of ``n`` poisoned samples of an export (``pick_sheet_records``): clean,
    poisoned, trigger, old label, new label (re-derived: poisoning is deterministic per index)."""
    from badseg.report.figures import save_contact_sheet

    rows = []
    for r in pick_sheet_records(manifest, n):
        sample = dataset[r["index"]]
        p = attack.poison(sample, sample_rng(manifest["seed"], r["index"]))
        assert isinstance(p, Poisoned)
        kind = "decoy, not relabelled" if r["asr_pixels"] == 0 else f"{r['asr_pixels']} px → {attack.spec.classes[attack.target]}"
        rows.append({"image": sample.image, "poisoned": p.image, "trigger_mask": p.trigger_mask,
                     "label": sample.label, "new_label": p.label, "asr_mask": p.asr_mask,
                     "caption": f"{sample.id}: {kind}"})
    if rows:
        save_contact_sheet(rows, attack.spec, path, title=f"{attack.name}: {attack.describe()['victim']} → "
                                                          f"{attack.describe()['target']}")
