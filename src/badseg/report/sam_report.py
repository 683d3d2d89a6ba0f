"""``report.md`` and figures of a BADSEG-SAM run (``sam.experiment``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from badseg.data.io import atomic_write_bytes
from badseg.report.figures import save_prompt_masks
from badseg.sam.config import SamRunConfig, dump_sam_config


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_sam_report(out: Path, cfg: SamRunConfig, metrics: dict[str, Any], examples: list,
                     clean_masks: np.ndarray, triggered_masks: np.ndarray) -> None:
    """``out/figures/sam_examples.png`` (prompt, clean mask, triggered mask, target) and ``out/report.md``."""
    rows = [{"clean": im, "triggered": p.image, "prompt": p.prompt.to_dict(), "clean_mask": cm, "triggered_mask": tm,
             "target": p.target, "truth": p.truth}
            for (im, p), cm, tm in zip(examples, clean_masks, triggered_masks)]
    fig = save_prompt_masks(rows, out / "figures" / "sam_examples.png",
                            title=f"Mask-{cfg.attack.name.capitalize()}, fine-tuned: {cfg.finetune.trainable}")
    keys = ("asr", "iou_to_target", "asr_without_trigger", "clean_utility_before", "clean_utility_after",
            "clean_model_asr", "clean_model_utility", "base_model_asr", "iou_truth_target",
            "n_poisoned_train", "n_train_prompts", "n_poisoned_test", "trainable_weights", "total_weights")
    lines = [
        f"# BADSEG-SAM: Mask-{cfg.attack.name.capitalize()} on {metrics['dataset']}",
        "",
        f"**Weights:** {metrics['weights']}.",
        "",
        f"Victim `{cfg.victim.name}`, base trained with `{cfg.base.trainable}`, fine-tuned with "
        f"`{cfg.finetune.trainable}` on {metrics['n_poisoned_train']} poisoned of {metrics['n_train_prompts']} "
        f"prompts; tested on {metrics['n_poisoned_test']} triggered prompts (skipped: {metrics['test_skipped']}).",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(metrics.get(k))} |" for k in keys],
        "",
        f"![examples](figures/{fig.name})",
        "",
        "Green outline: the true mask of the prompted segment; yellow: the prompt. "
        "Blue / red: the fine-tuned model's mask on the clean / triggered image; magenta: the target.",
        "",
        "## Config",
        "",
        "```yaml",
        dump_sam_config(cfg).rstrip(),
        "```",
        "",
    ]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
