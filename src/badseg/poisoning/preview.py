"""The contact sheet of a poisoned export: the samples a person looks at to check an attack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from badseg.attacks import Attack, Poisoned
from badseg.data.base import SegDataset
from badseg.poisoning.dataset import sample_rng


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
