"""``report.md`` and its figures for one run (DESIGN §6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from badseg.config import RunConfig, dump_config
from badseg.data.io import atomic_write_bytes
from badseg.data.types import DatasetSpec
from badseg.evaluate import EvalResult
from badseg.report.figures import save_contact_sheet, save_prediction_grid, save_training_curves


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _px_bin(edges: list[float | None]) -> str:
    lo, hi = edges
    return f"≥ {lo:g}" if hi is None else f"{lo:g}–{hi:g}"


def describe_pipeline(p: dict[str, Any]) -> str:
    """``build.victim_pipeline``'s record (metrics.json ``pipeline``) in words."""
    size = "native resolution" if p["train_size"] == "native" else "×".join(map(str, p["train_size"]))
    train = (f"images resized to {size}" if p["train"] == "resize" else f"images kept at {size}")
    train += (f", random rescale {p['scale_range'][0]}–{p['scale_range'][1]}, "
              f"{'×'.join(map(str, p['crop_size']))} crops")
    if "cat_max_ratio" in p:
        train += f" (cat_max_ratio {p['cat_max_ratio']})"
    train += f", flip {p['hflip']}"
    test_size = "native resolution" if p["test_size"] == "native" else "×".join(map(str, p["test_size"]))
    test = f"whole image at {test_size}" if p["inference"] == "whole" else (
        f"sliding {'×'.join(map(str, p['window']))} windows, stride {'×'.join(map(str, p['stride']))}, "
        f"at {test_size}")
    return f"training pipeline `{p['train']}` ({train}); test inference `{p['inference']}` ({test})"


def write_report(out: Path, cfg: RunConfig, metrics: dict[str, Any], result: EvalResult, spec: DatasetSpec) -> None:
    """Figures under ``out/figures`` and ``out/report.md``: renders ``metrics`` and the figure
    samples of ``result`` (``evaluate``'s predictions); it predicts nothing itself."""
    figs = out / "figures"
    rows = [{"image": s.image, "gt": s.label, "pred_clean": s.pred_clean, "triggered_image": s.triggered,
             "pred_triggered": s.pred_triggered} for s in result.samples]
    sheet = [{"image": s.clean.image, "poisoned": s.poisoned.image, "trigger_mask": s.poisoned.trigger_mask,
              "label": s.clean.label, "new_label": s.poisoned.label, "asr_mask": s.poisoned.asr_mask,
              "caption": s.clean.id} for s in result.samples]
    if rows:
        save_prediction_grid(rows, spec, figs / "predictions.png",
                             title="ground truth | clean prediction | triggered image | triggered prediction")
        save_contact_sheet(sheet, spec, figs / "poisoned_samples.png", title="poisoned test samples")
    curves = _read_log(out / "backdoored" / "train_log.jsonl")
    if curves:
        save_training_curves(curves, figs / "training_curves.png", title="backdoored model")
    a = metrics["attack"]
    lines = [
        f"# badseg run: {a['attack']} {a['victim']} → {a['target']} on {metrics['dataset']}",
        "",
        f"Model `{metrics['model']}`, poisoning rate {metrics['poison_rate']} "
        f"({'of the training set' if metrics['rate_of'] == 'dataset' else 'of the applicable images'}): "
        f"{metrics['n_poisoned_train']} of {metrics['n_train']} training images "
        f"({metrics['n_applicable_train']} applicable{', capped' if metrics['poison_count']['capped'] else ''}), "
        f"{metrics['n_poisoned_test']} poisoned test images of {metrics['n_test']}.",
        "",
        *([f"Victim: {describe_pipeline(metrics['pipeline'])}.", ""] if metrics.get("pipeline") else []),
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {_fmt(metrics.get(k))} |" for k in ("asr", "pba", "cba", "clean_model_cba", "clean_model_asr",
                                                        "false_activation", "psnr", "ssim", "lpips")),
        "",
    ]
    if metrics.get("lpips") is None and metrics.get("lpips_reason"):
        lines += [f"LPIPS: not computed — {metrics['lpips_reason']}", ""]
    if metrics.get("test_skipped"):
        lines += ["Test images where the attack could not be applied:", "",
                  *(f"- {n}: {r}" for r, n in metrics["test_skipped"].items()), ""]
    if metrics.get("asr_by_stamp_px"):
        lines += ["## ASR by the trigger stamp's width at the model's input", "",
                  "Stamps a few pixels wide after the resize to the model's input are hardly learned;",
                  "if most poisoned test images sit in the first rows, raise `trigger.size` or "
                  "`trigger.min_size_px`.", "",
                  "| stamp width (px) | images | ASR pixels | ASR |", "|---|---|---|---|",
                  *(f"| {_px_bin(r['stamp_px'])} | {r['images']} | {r['asr_pixels']} | {_fmt(r['asr'])} |"
                    for r in metrics["asr_by_stamp_px"]), ""]
    lines += ["## Trigger", "", "```json", json.dumps(a["trigger"], indent=2), "```", ""]
    if metrics.get("stages"):
        from badseg.report.stage_report import stage_lines

        lines += stage_lines(metrics["stages"])
    for name, caption in (("predictions.png", "Predictions on clean and triggered test images"),
                          ("poisoned_samples.png", "Poisoned test samples: trigger, old and new labels"),
                          ("training_curves.png", "Training curves")):
        if (figs / name).is_file():
            lines += [f"## {caption}", "", f"![{caption}](figures/{name})", ""]
    lines += ["## Resolved config", "", "```yaml", dump_config(cfg).rstrip(), "```", ""]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
