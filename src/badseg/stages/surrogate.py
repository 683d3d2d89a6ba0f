"""BADSEG stage 1, backdoor preparation (§5.1): the attacker's data and surrogate model.

The attacker holds a surrogate set D_s ∪ D_aux with a distribution like the victim's
training data and trains a surrogate model on it. Here the surrogate set is either another
split of the dataset (``surrogate.split``, e.g. CamVid's ``test``) or a random
``surrogate.fraction`` of the training split; in the second case the victim trains only on
the remaining images, so the two never share an image. Training reuses ``fit``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from badseg.build import dataset_for, train_model
from badseg.config import ConfigError, ModelConfig, RunConfig
from badseg.data.base import SegDataset
from badseg.data.io import write_json
from badseg.data.subset import Subset
from badseg.models import SegModel
from badseg.models.factory import IMAGENET_LOADERS

#: Stream tag of the surrogate/victim split, so it is independent of other uses of the seed.
_SPLIT_STREAM = 0x5C1D


@dataclass(frozen=True)
class SurrogateData:
    """The attacker's images and what the victim trains on.

    Attributes:
        surrogate: the surrogate set (auxiliary split, or a fraction of the training split).
        victim_train: the victim's training set (the training split minus ``surrogate``).
        source: a one-line description for reports.
    """

    surrogate: SegDataset
    victim_train: SegDataset
    source: str


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (surrogate, victim) index arrays, disjoint, each sorted.

    ``round(fraction * n)`` indices (at least 1, at most n - 1) are drawn without replacement
    from ``SeedSequence([seed, tag])``, so the split depends only on (n, fraction, seed).
    """
    if n < 2:
        raise ValueError(f"need at least 2 training images to hold some out for the surrogate, got {n}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"surrogate fraction must be in (0, 1), got {fraction}")
    k = min(n - 1, max(1, round(fraction * n)))
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_STREAM]))
    chosen = np.sort(rng.choice(n, size=k, replace=False))
    rest = np.setdiff1d(np.arange(n), chosen)
    return chosen, rest


def surrogate_data(cfg: RunConfig, train: SegDataset) -> SurrogateData:
    """The surrogate set a config names and the victim's remaining training set."""
    s, d = cfg.surrogate, cfg.data
    if s.split is not None:
        if s.split == d.train_split:
            raise ConfigError(f"surrogate.split {s.split!r} is the victim's training split; use surrogate.fraction "
                              "to hold out part of it, or name another split")
        surrogate = dataset_for(d, s.split, s.limit)
        return SurrogateData(surrogate, train, f"split {s.split!r} ({len(surrogate)} images)")
    chosen, rest = holdout_indices(len(train), s.fraction, cfg.seed)
    if s.limit:  # held out but not used by the attacker: back to the victim
        chosen, rest = chosen[: s.limit], np.union1d(rest, chosen[s.limit:])
    return SurrogateData(Subset(train, chosen.tolist()), Subset(train, rest.tolist()),
                         f"{s.fraction:.0%} of split {d.train_split!r} ({len(chosen)} images; the victim trains on "
                         f"the other {len(rest)})")


def surrogate_model_name(cfg: RunConfig) -> str:
    return cfg.surrogate.model or cfg.model.name


def train_surrogate(cfg: RunConfig, data: SurrogateData, out: str | Path,
                    model_name: str | None = None) -> tuple[SegModel, dict]:
    """Train (or resume, or reload when finished) the surrogate in ``out`` with ``fit``.

    ``out/surrogate.json`` records what was trained; a folder holding a surrogate trained
    differently raises ``ConfigError`` rather than silently reusing it.
    Returns (model in eval mode, {"model", "pretrained", "epochs", "source", "n_images",
    "final_loss", "minutes"}).
    """
    out = Path(out)
    name = model_name or surrogate_model_name(cfg)
    pretrained = cfg.surrogate.pretrained or ("imagenet" if name in IMAGENET_LOADERS else "none")
    epochs = cfg.surrogate.epochs or cfg.train.epochs
    info = {"model": name, "pretrained": pretrained, "epochs": epochs, "source": data.source,
            "n_images": len(data.surrogate), "size": list(cfg.data.size), "seed": cfg.seed}
    if cfg.train.pipeline != "resize":  # recorded only when set, so surrogates trained before the field are reused
        t = cfg.train
        info["pipeline"] = {"pipeline": t.pipeline, "native_size": cfg.data.native_size and list(cfg.data.native_size),
                            "crop_size": list(t.crop_size or cfg.data.size), "cat_max_ratio": t.cat_max_ratio}
    meta = out / "surrogate.json"
    if meta.is_file():
        old = json.loads(meta.read_text())
        differs = {k: (old.get(k), v) for k, v in info.items() if old.get(k) != v}
        if differs:
            raise ConfigError(f"{out} holds a surrogate trained differently ({differs}); choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json(meta, info)
    model, summary = train_model(cfg.train, data.surrogate, data.surrogate.spec.num_classes, out,
                                 model=ModelConfig(name=name, pretrained=pretrained), data=cfg.data,
                                 seed=cfg.seed, epochs=epochs)
    model.requires_grad_(False)
    return model, {**info, "final_loss": summary["final_loss"], "minutes": summary["minutes"]}
