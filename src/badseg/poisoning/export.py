"""Write a poisoned copy of a dataset to disk with a manifest (DESIGN §6, ``badseg poison``).

Layout: ``out/images/<id>.png`` and ``out/labels/<id>.png`` for every sample,
``out/asr_masks/<id>.png`` (0/255) for poisoned samples, and ``out/manifest.json``. All
of it is written into a staging folder beside ``out`` and renamed into place at the end,
so ``out`` is either absent or complete. The source folder is never written to.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from badseg.attacks.base import Attack, Skipped
from badseg.data.base import SegDataset
from badseg.data.io import write_json, write_png
from badseg.poisoning.dataset import chunks, choose_poisoned, sample_rng, scan


def check_output_dir(out: Path, source: Path | None, overwrite: bool = False) -> None:
    """Refuse an ``out`` inside (or containing) the source folder, or a non-empty one."""
    if source is not None:
        o, s = out.resolve(), source.resolve()
        if o == s or s in o.parents or o in s.parents:
            raise ValueError(f"refusing to write {out}: it overlaps the source dataset folder {source}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass --overwrite to replace it)")


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
    workers = workers or os.cpu_count() or 1
    found = scan(dataset, attack, seed, workers)
    chosen = set(choose_poisoned(found.applicable, rate, seed))
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
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
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    finally:
        if pool:
            pool.shutdown()
        shutil.rmtree(stage, ignore_errors=True)
    return manifest
