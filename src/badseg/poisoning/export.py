"""Write a poisoned copy of a dataset to disk with a manifest (DESIGN §6, ``badseg poison``).

Layout: the source's own (a drop-in copy: ``train/``, ``trainannot/``, ``train.txt`` for
SegNet-CamVid; ``leftImg8bit/``, ``gtFine/`` for Cityscapes; ...), with the source's label
encoding — every file at the path it has under the source root, an unpoisoned sample's files
copied byte for byte, a poisoned sample's label file keeping its ids (void too) except where
the attack relabelled, and its image in the source's format (JPEG at quality 100, 4:4:4) —
so training code pointed at ``out`` instead of the source needs no other change. Instance
files are copied unchanged. Generated data and readers whose label is not one file per
sample (LabPics) get badseg's layout instead: ``out/images/<id>.png``, ``out/labels/<id>.png``
(class ids, 255 = ignore). Beside either: ``out/asr_masks/<id>.png`` (0/255) for poisoned
samples and ``out/manifest.json`` (``layout`` says which; each sample's row names its
``image`` and ``label`` files). ``layout="badseg"`` asks for badseg's layout for any source. All
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
from typing import Any, Literal

import numpy as np
from PIL import Image
from rich.progress import Progress

from badseg.attacks.base import Attack, Skipped
from badseg.data.base import SegDataset
from badseg.data.io import fsync_dir, read_label_png, write_json, write_png
from badseg.outdir import clean_stale_staging, refuse_overlap, refuse_protected, staging_path
from badseg.poisoning.dataset import RateOf, Select, chunks, choose_poisoned, nothing_poisoned, poison_count, sample_rng, scan


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


def source_layout(dataset: SegDataset, source: Path | None) -> bool:
    """Whether an export of ``dataset`` can mirror its source folder ``source`` (module docstring)."""
    if source is None or not len(dataset):
        return False
    found = dataset.source_files(0)
    if found is None or not found[0].LABEL_FILE:
        return False
    return all(_abs(p).is_relative_to(_abs(source)) for p in (found[1].image, found[1].label))


def _abs(path: Path) -> Path:
    """Absolute, with symbolic links kept (a source's files may be links)."""
    return Path(os.path.abspath(path))


def _write_like(src: Path, dst: Path, array: np.ndarray) -> None:
    """``array`` saved at ``dst`` in the file format of ``src`` (a palette PNG keeps its palette)."""
    with Image.open(src) as im:
        fmt, mode, palette = im.format, im.mode, im.getpalette() if im.mode == "P" else None
    if mode == "P":
        out = Image.fromarray(array.astype(np.uint8), mode="P")
        out.putpalette(palette)
    elif mode in ("I;16", "I"):
        out = Image.fromarray(array.astype(np.uint16 if mode == "I;16" else np.int32))
    else:
        out = Image.fromarray(array.astype(np.uint8))
    dst.parent.mkdir(parents=True, exist_ok=True)
    kw = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    out.save(dst, format=fmt, **kw)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _write_chunk(args: tuple[SegDataset, Attack, int, list[int], set[int], Path, Path | None]
                 ) -> list[dict[str, Any]]:
    dataset, attack, seed, indices, chosen, stage, root = args
    rows = []
    for i in indices:
        sample = dataset[i]
        row: dict[str, Any] = {"index": i, "id": sample.id, "poisoned": False}
        result = attack.poison(sample, sample_rng(seed, i)) if i in chosen else None
        if isinstance(result, Skipped):
            row["skip_reason"] = result.reason
            result = None
        if result is not None:
            write_png(stage / "asr_masks" / f"{sample.id}.png", result.asr_mask.astype(np.uint8) * 255)
            row.update(poisoned=True, **result.record)
        if root is None:
            image, label = Path("images") / f"{sample.id}.png", Path("labels") / f"{sample.id}.png"
            write_png(stage / image, sample.image if result is None else result.image)
            write_png(stage / label, (sample.label if result is None else result.label).astype(np.uint8))
        else:
            reader, files = dataset.source_files(i)
            image, label = _abs(files.image).relative_to(root), _abs(files.label).relative_to(root)
            if result is None:
                _copy(files.image, stage / image)
                _copy(files.label, stage / label)
            else:
                _write_like(files.image, stage / image, result.image)
                raw = read_label_png(files.label)
                _write_like(files.label, stage / label, reader.encode_label(raw, sample.label, result.label))
            if files.instances is not None:
                _copy(files.instances, stage / _abs(files.instances).relative_to(root))
        row.update(image=str(image), label=str(label))
        rows.append(row)
    return rows


def _write_listing(dataset: SegDataset, stage: Path, root: Path) -> str | None:
    """The split's list file (CamVid's ``train.txt``, VOC's ``ImageSets``), holding the lines of
    the exported samples in their order; returns its path under the root (None: no list file)."""
    reader = dataset.source_files(0)[0]
    if reader.listing is None:
        return None
    path, lines = reader.listing
    line_of = {f.id: line for f, line in zip(reader.files, lines)}
    text = "".join(line_of[dataset.source_files(i)[1].id] + "\n" for i in range(len(dataset)))
    rel = _abs(path).relative_to(root)
    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
    (stage / rel).write_text(text)
    return str(rel)


def export_poisoned(dataset: SegDataset, attack: Attack, rate: float, out: str | Path, seed: int = 0,
                    workers: int | None = None, source: str | Path | None = None, overwrite: bool = False,
                    config: dict[str, Any] | None = None, progress: bool = True,
                    rate_of: RateOf = "dataset", layout: Literal["source", "badseg"] = "source",
                    select: Select = "random") -> dict[str, Any]:
    """Poison ``rate`` of ``dataset`` (``rate_of``: of all its samples, or of the applicable
    ones; chosen by ``select``; ``badseg.poisoning.dataset``) and write the copy to ``out``.

    Returns the manifest (also written to ``out/manifest.json``).
    """
    out = Path(out)
    check_output_dir(out, Path(source) if source else None, overwrite)
    clean_stale_staging(out)
    workers = workers or os.cpu_count() or 1
    found = scan(dataset, attack, seed, workers)
    count = poison_count(rate, len(dataset), len(found.applicable), rate_of)
    chosen = set(choose_poisoned(found, count.chosen, seed, select))
    if rate > 0 and not chosen:
        raise ValueError(nothing_poisoned(rate, found, len(dataset), dataset.spec.name))
    stage = staging_path(out)
    shutil.rmtree(stage, ignore_errors=True)
    mirror = layout == "source" and source is not None and source_layout(dataset, Path(source))
    root = _abs(Path(source)) if mirror else None
    for sub in ("asr_masks",) if root else ("images", "labels", "asr_masks"):
        (stage / sub).mkdir(parents=True)
    jobs = [(dataset, attack, seed, c, chosen, stage, root) for c in chunks(len(dataset), workers)]
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
        listing = _write_listing(dataset, stage, root) if root else None
        manifest = {
            **attack.describe(),
            "layout": "source" if root else "badseg",
            "source": str(root) if root else None,
            "listing": listing,
            "dataset": dataset.spec.name,
            "num_classes": dataset.spec.num_classes,
            "classes": list(dataset.spec.classes),
            "ignore_index": dataset.spec.ignore_index,
            "seed": seed,
            "rate": rate,
            "rate_of": rate_of,
            "select": select,
            "poison_count": count.to_dict(),
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
