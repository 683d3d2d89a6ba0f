"""What every defense receives — a trained run, rebuilt — and the ``DEFENSES`` registry.

A defense is a function ``defense(ctx: DefenseContext, **options) -> dict`` registered with
``@DEFENSES.register("name")``; its keyword defaults are its options (``badseg defend RUN_DIR
--defense NAME --set option=value``). It returns a JSON-able result and may write its figure to
``ctx.figure_path(name)``. Two kinds (BADSEG §7, Appendix E):

* **mitigations** (fine-tuning, pruning, ABL) return a repaired model's ASR / PBA / CBA next to
  the run's own (``before``);
* **detectors** (STRIP, TeCo, Beatrix) score test images — higher is more suspicious — and report
  ``badseg.metrics.detection_report`` of the clean and poisoned scores.

The defender's clean data is drawn from the *clean* training split (``ctx.train``), never from
the test images it is evaluated on; detectors score clean and poisoned test images in equal
numbers and are never told which are which, nor the poisoning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from badseg.attacks import Attack
from badseg.config import RunConfig
from badseg.data.base import SegDataset
from badseg.data.subset import Subset
from badseg.models.segmodel import SegModel
from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet
from badseg.registry import Registry
from badseg.data.resize import resize_pair
from badseg.train.fit import LossFn, pixel_cross_entropy

DEFENSES: Registry[Callable[..., dict[str, Any]]] = Registry("defense")

#: Metrics a mitigation reports before and after.
MITIGATION_KEYS = ("asr", "pba", "cba")


@dataclass
class DefenseContext:
    """A finished run, rebuilt from its ``config.yaml``: the backdoored model (eval mode), the
    clean and poisoned training sets, the clean and poisoned test sets, the attack, and the
    run's own metrics (``before``). ``work_dir`` holds a defense's resumable intermediate state."""

    cfg: RunConfig
    run_dir: Path
    model: SegModel
    train: SegDataset
    poisoned_train: PoisonedDataset
    test: SegDataset
    poisoned_test: PoisonedTestSet
    attack: Attack
    before: dict[str, Any]
    device: torch.device
    progress: bool = True

    @property
    def size(self) -> tuple[int, int]:
        """The model's input size (H, W)."""
        return tuple(self.cfg.data.size)

    def work_dir(self, name: str) -> Path:
        return self.run_dir / "defenses" / name

    def figure_path(self, name: str) -> Path:
        return self.run_dir / "figures" / f"defense_{name}.png"

    def backdoored_copy(self) -> SegModel:
        """A fresh copy of the backdoored model (mitigations change weights in place)."""
        from badseg.models import build_model

        model = build_model(self.cfg.model.name, self.train.spec.num_classes)
        model.load_state_dict(self.model.state_dict())
        return model.eval().to(self.device)

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """ASR / PBA / CBA of ``model`` on the run's test sets (as ``badseg run`` measures them)."""
        from badseg.build import eval_transform
        from badseg.evaluate import evaluate

        size, slide = eval_transform(self.cfg)
        m = evaluate(model, self.test, self.poisoned_test, size, self.attack.target, self.cfg.eval_batch_size,
                     self.device, None, self.progress, slide=slide).metrics()
        return {k: m[k] for k in MITIGATION_KEYS}

    def before_metrics(self) -> dict[str, Any]:
        return {k: self.before.get(k) for k in MITIGATION_KEYS}


def clean_fraction(dataset: SegDataset, fraction: float, seed: int) -> Subset:
    """A random ``fraction`` (at least one image) of ``dataset``, drawn from ``SeedSequence([seed])``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = max(1, round(fraction * len(dataset)))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 16]))
    return Subset(dataset, sorted(rng.choice(len(dataset), size=n, replace=False).tolist()))


def train_like_run(model: torch.nn.Module, dataset: SegDataset, cfg: RunConfig, out: Path, *, epochs: int,
                   lr: float | None = None, loss_fn: LossFn = pixel_cross_entropy) -> dict[str, Any]:
    """Continue training ``model`` in place on ``dataset`` with the run's augmentation, optimiser
    and batch size (``build.train_model``; ``epochs`` and ``lr`` as given; resumes from ``out/last.pt``)."""
    from badseg.build import train_model

    _, summary = train_model(cfg.train, dataset, dataset.spec.num_classes, out, model=cfg.model,
                             data=cfg.data, seed=cfg.seed, epochs=epochs, net=model, lr=lr, loss_fn=loss_fn)
    return summary


def resized_images(samples: Sequence[Any], size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, 3) images of ``samples`` (anything with ``.image`` and ``.label``) at ``size``."""
    return np.stack([resize_pair(s.image, s.label, size)[0] for s in samples])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float N×3×H×W in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


@dataclass
class DetectorInputs:
    """Equal numbers of clean and poisoned test images at the model's input size, with the
    original (clean) ground truth of each: ``clean`` / ``poisoned`` uint8 (N, H, W, 3),
    ``clean_labels`` / ``poisoned_labels`` int64 (N, H, W), and which test images they are."""

    clean: np.ndarray
    poisoned: np.ndarray
    clean_labels: np.ndarray
    poisoned_labels: np.ndarray
    clean_ids: list[str]
    poisoned_ids: list[str]


#: Where a detector's clean test images come from: ``random`` test images, or the ``originals``
#: of the poisoned ones (the same scenes without the trigger).
CleanImages = Literal["random", "originals"]


def detector_inputs(ctx: DefenseContext, n: int, seed: int, clean: CleanImages = "random") -> DetectorInputs:
    """``min(n, poisoned test images)`` poisoned test images and as many clean test images, each
    set drawn at random (``SeedSequence([seed, ...])``). With few poisoned test images (CamVid
    val) this is fewer than the paper's 250 + 250; the result says how many were scored.

    ``clean="originals"``: the clean images are the poisoned images' own clean originals, in the
    same order (the same poisoned images as ``random`` draws). The poisoned test set holds only
    the images the attack applies to (e.g. with a large car), so random clean images differ from
    it in content as well as in the trigger; the originals differ in the trigger alone."""
    if clean not in ("random", "originals"):
        raise ValueError(f"clean must be 'random' or 'originals', got {clean!r}")
    k = min(n, len(ctx.poisoned_test), len(ctx.test))
    if k < 2:
        raise ValueError(f"need at least 2 poisoned test images to score, the run has {len(ctx.poisoned_test)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    pk = sorted(rng.choice(len(ctx.poisoned_test), size=k, replace=False).tolist())
    ck = sorted(rng.choice(len(ctx.test), size=k, replace=False).tolist())
    pairs = [ctx.poisoned_test[i] for i in pk]
    clean_samples = [c for c, _ in pairs] if clean == "originals" else [ctx.test[i] for i in ck]
    size = ctx.size
    p_img, p_lab = zip(*(resize_pair(p.image, c.label, size) for c, p in pairs))
    c_img, c_lab = zip(*(resize_pair(s.image, s.label, size) for s in clean_samples))
    return DetectorInputs(np.stack(c_img), np.stack(p_img), np.stack(c_lab), np.stack(p_lab),
                          [s.id for s in clean_samples], [c.id for c, _ in pairs])


def detector_result(scores_clean: np.ndarray, scores_poisoned: np.ndarray, fpr: float, **extra: Any) -> dict[str, Any]:
    """The JSON of a detector: metrics of the two score sets, plus the scores themselves."""
    from badseg.metrics.detection import detection_report

    return {"kind": "detector", **detection_report(scores_clean, scores_poisoned, fpr=fpr), **extra,
            "scores_clean": [float(s) for s in scores_clean], "scores_poisoned": [float(s) for s in scores_poisoned]}
