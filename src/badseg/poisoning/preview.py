"""Building an attack for a concrete dataset, and the contact sheet a person looks at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from badseg.attacks import Attack, Poisoned, ShapeBank, build_attack
from badseg.data.base import SegDataset
from badseg.poisoning.dataset import sample_rng
from badseg.triggers import TriggerSpec


def build_attack_for(name: str, dataset: SegDataset, victim: str, target: str, trigger: TriggerSpec,
                     **kwargs: Any) -> Attack:
    """``build_attack`` plus what needs the data: B2O's bank of real target silhouettes."""
    spec = dataset.spec
    if name == "b2o" and "bank" not in kwargs:
        kwargs["bank"] = ShapeBank.from_dataset(dataset, spec.class_id(target))
    return build_attack(name, spec, victim, target, trigger, **kwargs)


def save_poison_sheet(dataset: SegDataset, attack: Attack, manifest: dict[str, Any], path: Path, n: int = 6) -> None:
    """Contact sheet of the first ``n`` poisoned samples of an export: clean, poisoned,
    trigger, old label, new label (re-derived: poisoning is deterministic per index)."""
    from badseg.report.figures import save_contact_sheet

    rows = []
    for r in (r for r in manifest["samples"] if r["poisoned"]):
        sample = dataset[r["index"]]
        p = attack.poison(sample, sample_rng(manifest["seed"], r["index"]))
        assert isinstance(p, Poisoned)
        rows.append({"image": sample.image, "poisoned": p.image, "trigger_mask": p.trigger_mask,
                     "label": sample.label, "new_label": p.label, "asr_mask": p.asr_mask,
                     "caption": f"{sample.id}: {r['asr_pixels']} px → {attack.spec.classes[attack.target]}"})
        if len(rows) == n:
            break
    if rows:
        save_contact_sheet(rows, attack.spec, path, title=f"{attack.name}: {attack.describe()['victim']} → "
                                                          f"{attack.describe()['target']}")
