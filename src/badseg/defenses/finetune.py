"""Fine-tuning (Sha et al. 2022; BADSEG §7, Table 14): continue training the backdoored model on a
small clean fraction of the training split (paper: 1 / 5 / 10 %, 10 epochs, as in IBA).

The clean images come from the clean training split (the defender's own data), never from the
test images the repaired model is evaluated on. Training uses the run's recipe (optimiser,
batch size, augmentation, learning rate unless ``lr`` is given) with a fresh optimiser and
poly schedule; each fraction resumes from ``defenses/finetune/<fraction>/last.pt``.
"""

from __future__ import annotations

from typing import Any

from badseg.defenses.base import DEFENSES, DefenseContext, clean_fraction, train_like_run


@DEFENSES.register("finetune")
def finetune(ctx: DefenseContext, fractions: list[float] = (0.01, 0.05, 0.10), epochs: int = 10,
             lr: float | None = None) -> dict[str, Any]:
    """ASR / PBA / CBA after fine-tuning on each clean ``fraction`` of the training split for ``epochs``."""
    rows = []
    for fraction in fractions:
        subset = clean_fraction(ctx.train, fraction, ctx.cfg.seed)
        model = ctx.backdoored_copy()
        summary = train_like_run(model, subset, ctx.cfg, ctx.work_dir("finetune") / f"{fraction:g}", epochs=epochs,
                                 lr=lr)
        rows.append({"fraction": fraction, "n_images": len(subset), "train_minutes": summary["minutes"],
                     **ctx.evaluate(model)})
    return {"kind": "mitigation", "before": ctx.before_metrics(), "rows": rows}
