"""Write a poisoned copy of a dataset to disk with a manifest (DESIGN §6, ``badseg poison``).

Layout: ``out/images/<id>.png`` and ``out/labels/<id>.png`` for every sample,
``out/asr_masks/<id>.png`` (0/255) for poisoned samples, and ``out/manifest.json``. All
of it is written into a staging folder beside ``out`` and renamed into place at the end,
so ``out`` is either absent or complete. The source folder is never written to, and
``overwrite`` only ever replaces an earlier export (``badseg.outdir`` has the rules).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from badseg.attacks.base import Attack, Skipped
from badseg.data.base import SegDataset
from badseg.data.io import fsync_dir, write_json, write_png
from badseg.outdir import clean_stale_staging, refuse_overlap, refuse_protected, staging_path
from badseg.poisoning.dataset import chunks, choose_poisoned, nothing_poisoned, sample_rng, scan


#: Keys every manifest.json written by ``export_poisoned`` has; a folder whose manifest has them is an export.
MANIFEST_KEYS = ("samples", "n_samples", "n_poisoned")


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds a badseg export (a ``manifest.json`` with ``MANIFEST_KEYS``)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and all(k in manifest for k in MANIFEST_KEYS)


def replace_refusal(out: Path, overwrite: bool) -> str | None:
    """Why the existing ``out`` may not be replaced by a new export (None: it may, or it is absent).

    Only an empty folder, or with ``overwrite`` a folder holding an earlier export, may be replaced.
    """
    if not out.exists() and not out.is_symlink():
        return None
    if not out.is_dir() or out.is_symlink():
        return f"{out} exists and is not a folder; choose a new --out"
    if not any(out.iterdir()):
        return None
    if not overwrite:
        return f"{out} exists and is not empty (pass --overwrite to replace an earlier export there)"
    if not is_export(out):
        return (f"{out} holds no badseg export (no manifest.json written by `badseg poison`); --overwrite only "
                "replaces an earlier export, so nothing was changed; choose a new --out")
    return None


def check_output_dir(out: Path, source: Path | None, overwrite: bool = False) -> None:
    """Refuse a protected ``out`` (``badseg.outdir``), one overlapping the source, or one that may not be replaced."""
    refuse_protected(out)
    refuse_overlap(out, source)
    reason = replace_refusal(out, overwrite)
    if reason:
        raise FileExistsError(reason)


def _put_in_place(stage: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished ``stage`` to ``out``; an ``out`` there (checked again now) is moved aside, then removed."""
    reason = replace_refusal(out, overwrite)
    if reason:
        raise FileExistsError(reason)
    old = None
    if out.exists():
        old = staging_path(out, "old")
        os.replace(out, old)
    os.replace(stage, out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old)


def _write_chunk(args: tuple[SegDataset, Attack, int, list[int], set[int], Path]) -> list[dict[str, Any]]:
    dataset, attack, seed, indices, chosen, stage = args
    rows = []
    for i in indices:
        sample = dataset[i]
        row: dict[str, Any] = {"index": i, "id": sample.id, "poisoned": False}
        image, label = sample.image, sample.label
        if i in chosen:
            result = attack.poison(sample, sample_rng(seed, i))
            if isinstance(result, Skipped):
                row["skip_reason"] = result.reason
            else:
                image, label = result.image, result.label
                write_png(stage / "asr_masks" / f"{sample.id}.png", result.asr_mask.astype(np.uint8) * 255)
                row.update(poisoned=True, **result.record)
        write_png(stage / "images" / f"{sample.id}.png", image)
        write_png(stage / "labels" / f"{sample.id}.png", label.astype(np.uint8))
        rows.append(row)
    return rows


def export_poisoned(dataset: SegDataset, attack: Attack, rate: float, out: str | Path, seed: int = 0,
                    workers: int | None = None, source: str | Path | None = None, overwrite: bool = False,
                    config: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Poison ``rate`` of the applicable samples of ``dataset`` and write the copy to ``out``.

    Returns the manifest (also written to ``out/manifest.json``).
    """
    out = Path(out)
    check_output_dir(out, Path(source) if source else None, overwrite)
    clean_stale_staging(out)
    workers = workers or os.cpu_count() or 1
    found = scan(dataset, attack, seed, workers)
    chosen = set(choose_poisoned(found.applicable, rate, seed))
    if rate > 0 and not chosen:
        raise ValueError(nothing_poisoned(rate, found, len(dataset), dataset.spec.name))
    stage = staging_path(out)
    shutil.rmtree(stage, ignore_errors=True)
    for sub in ("images", "labels", "asr_masks"):
        (stage / sub).mkdir(parents=True)
    jobs = [(dataset, attack, seed, c, chosen, stage) for c in chunks(len(dataset), workers)]
    rows: list[dict[str, Any]] = []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"poisoning ({attack.name})", total=len(dataset))
            for part in (pool.map if pool else map)(_write_chunk, jobs):
                rows.extend(part)
                bar.advance(task, len(part))
        rows.sort(key=lambda r: r["index"])
        for r in rows:
            if not r["poisoned"] and "skip_reason" not in r and found.reasons[r["index"]] is not None:
                r["skip_reason"] = found.reasons[r["index"]]
        manifest = {
            **attack.describe(),
            "dataset": dataset.spec.name,
            "num_classes": dataset.spec.num_classes,
            "classes": list(dataset.spec.classes),
            "ignore_index": dataset.spec.ignore_index,
            "seed": seed,
            "rate": rate,
            "config": config or {},
            "n_samples": len(dataset),
            "n_applicable": len(found.applicable),
            "n_poisoned": sum(r["poisoned"] for r in rows),
            "skipped": found.skip_counts(),
            "samples": rows,
        }
        write_json(stage / "manifest.json", manifest)
        _put_in_place(stage, out, overwrite)
    finally:
        if pool:
            pool.shutdown()
        shutil.rmtree(stage, ignore_errors=True)
    return manifest
