"""BADSEG stage 2, trigger optimisation with Gumbel-Softmax (§5.2, eqs. 2–3, Appendix B eqs. 4–5).

One learnable logit vector per trigger attribute over its Table-20 options (attributes with
a single option, e.g. B2B's position, are fixed). Each step:

1. draws one Gumbel-Softmax sample per attribute (eq. 2), ``softmax((logits + g) / τ)``
   with ``g = −log(E)``, ``E ~ Exp(1)`` from an explicit ``torch.Generator`` — the same
   computation as ``torch.nn.functional.gumbel_softmax(hard=False)``, which can only draw
   from the global generator;
2. renders the relaxed trigger (``RelaxedTrigger``, eq. 4) into a mini-batch of surrogate
   images drawn with the same generator;
3. takes an Adam step on the objective (eq. 3 + stealth, ``SurrogateObjective``). An
   objective with an ``update(weights)`` method (``LearnabilityObjective``) is first given
   the sampled weights, to fine-tune its surrogate on data poisoned with them.

The temperature decays geometrically, ``τ_t = τ_0 (τ_end / τ_0)^{t / (T − 1)}``, by default
2 → 0.2, so the late samples are near one-hot. Starting warm matters: with near one-hot samples
the gradient reaches only the sampled option's neighbours, and ordinal attributes (size,
intensity) then drift one option per many steps; Adam's second-moment decay is 0.99 (not
0.999) for the same reason, so early large gradients do not damp the late steps. The result
takes the most probable option of each attribute, ``argmax softmax(logits)`` (§5.2). ``sweep_options`` then scores
every option of each attribute with the others held at the choice, which is the "why"
shown in reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from badseg.data.io import write_json
from badseg.stages.objective import Objective
from badseg.stages.relaxed import ATTRIBUTES, RelaxedTrigger, SearchSet, one_hot_weights, placement_of
from badseg.triggers import TriggerSpec, pattern_name, split_pattern

TRIGGER_JSON = "trigger.json"
TRIGGER_FIGURE = "trigger_search.png"


@dataclass(frozen=True)
class SearchSettings:
    """Optimiser settings (``config.SearchConfig`` without the objective's fields)."""

    steps: int = 200
    batch_size: int = 4
    lr: float = 0.1
    tau_start: float = 2.0
    tau_end: float = 0.2
    seed: int = 0


def temperature(step: int, steps: int, tau_start: float, tau_end: float) -> float:
    """Geometric annealing from ``tau_start`` (step 0) to ``tau_end`` (last step)."""
    if steps <= 1:
        return tau_end
    return tau_start * (tau_end / tau_start) ** (step / (steps - 1))


def gumbel_softmax_sample(logits: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Soft one-hot sample (eq. 2) of shape ``logits.shape``, noise from ``generator``."""
    exp = torch.empty(logits.shape, dtype=logits.dtype, device=generator.device).exponential_(generator=generator)
    gumbels = -exp.log().to(logits.device)
    return torch.softmax((logits + gumbels) / tau, dim=-1)


def _value(v: Any) -> Any:
    return float(v) if isinstance(v, float) else v


def option_label(attribute: str, v: Any) -> str:
    """An option as text (sizes as fractions: 1/8)."""
    if attribute == "size" and isinstance(v, float):
        return str(Fraction(v).limit_denominator(1000))
    return str(v)


@dataclass
class SearchResult:
    """What the search found.

    Attributes:
        space: attribute → options.
        probabilities: attribute → final ``softmax(logits)`` over its options.
        chosen: attribute → chosen option (the most probable).
        history: one dict per step: ``step``, ``tau``, the objective's terms, ``probs``.
        sweep: attribute → one dict per option with the objective's terms when only that
            attribute is changed from the choice (filled by ``sweep_options``).
        n_images, skipped: surrogate images used; reason → count of images skipped.
        settings: the optimiser settings and objective parameters, for the record.
        screen: the learnability screen's record when it ran (``stages.screen``; its winner is
            then ``chosen``), else empty.
    """

    space: dict[str, tuple]
    probabilities: dict[str, list[float]]
    chosen: dict[str, Any]
    history: list[dict[str, Any]]
    sweep: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    n_images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    screen: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen_index(self) -> dict[str, int]:
        return {a: self.space[a].index(self.chosen[a]) for a in ATTRIBUTES}

    def trigger(self, min_size_px: int = 4) -> TriggerSpec:
        """The chosen options as a ``TriggerSpec`` (pattern = chosen base tinted by the chosen colour)."""
        c = self.chosen
        return TriggerSpec(shape=c["shape"], size=float(c["size"]), intensity=float(c["intensity"]),
                           quantity=int(c["quantity"]), pattern=pattern_name(c["pattern"], c["colour"]),
                           min_size_px=min_size_px)

    @property
    def placement(self) -> str:
        return placement_of(self.chosen["position"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": {a: _value(v) for a, v in self.chosen.items()},
            "placement": self.placement,
            "probabilities": {a: {option_label(a, o): p for o, p in zip(self.space[a], self.probabilities[a])}
                              for a in ATTRIBUTES},
            "options": {a: [_value(o) for o in self.space[a]] for a in ATTRIBUTES},
            "sweep": self.sweep,
            "n_images": self.n_images,
            "skipped": self.skipped,
            "settings": self.settings,
            "screen": self.screen,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchResult:
        """Read ``to_dict``'s output; files from before the pattern was searchable get their
        configured pattern (``settings.pattern``) as the single pattern and colour option."""
        d = dict(d)
        if "pattern" not in d["options"]:
            base, colour = split_pattern(d.get("settings", {}).get("pattern", "checker"))
            d["options"] = {**d["options"], "pattern": [base], "colour": [colour]}
            d["probabilities"] = {**d["probabilities"], "pattern": {base: 1.0}, "colour": {colour: 1.0}}
            d["chosen"] = {**d["chosen"], "pattern": base, "colour": colour}
        space = {a: tuple(d["options"][a]) for a in ATTRIBUTES}
        probs = {a: list(d["probabilities"][a].values()) for a in ATTRIBUTES}
        return cls(space, probs, dict(d["chosen"]), d["history"], d.get("sweep", {}), d.get("n_images", 0),
                   d.get("skipped", {}), d.get("settings", {}), d.get("screen", {}))


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]trigger search"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}  τ {task.fields[tau]:.3f}"), TimeElapsedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled,
    )


def optimize_trigger(data: SearchSet, renderer: RelaxedTrigger, objective: Objective,
                     settings: SearchSettings = SearchSettings(), progress: bool = False) -> SearchResult:
    """Minimise E_g[objective(render(x, t(g)))] over the option logits (Appendix B eq. 5).

    Args:
        data: surrogate images with plans (``build_search_set``), on the objective's device.
        renderer: the relaxed trigger over ``data``'s search space.
        objective: maps (triggered images, batch) to a dict with a scalar ``"loss"``; when it
            has ``update(weights)``, that is called with each step's sampled weights first.
        settings: steps, batch size, Adam learning rate, temperatures, seed.
        progress: show a rich progress bar.
    """
    space = renderer.space
    gen = torch.Generator().manual_seed(settings.seed)
    device = data.images.device
    learn = [a for a in ATTRIBUTES if len(space[a]) > 1]
    logits = {a: torch.zeros(len(space[a]), device=device, requires_grad=True) for a in learn}
    fixed = {a: torch.ones(1, device=device) for a in ATTRIBUTES if a not in learn}
    optim = torch.optim.Adam(list(logits.values()), lr=settings.lr, betas=(0.9, 0.99))
    history: list[dict[str, Any]] = []
    order = torch.empty(0, dtype=torch.long)
    t0 = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task("search", total=settings.steps, loss=float("nan"), tau=settings.tau_start)
        for step in range(settings.steps):
            if order.numel() < settings.batch_size:
                order = torch.cat([order, torch.randperm(len(data), generator=gen)])
            idx, order = order[: settings.batch_size], order[settings.batch_size:]
            tau = temperature(step, settings.steps, settings.tau_start, settings.tau_end)
            weights = {**fixed, **{a: gumbel_softmax_sample(logits[a], tau, gen) for a in learn}}
            if hasattr(objective, "update"):  # a learnability objective fine-tunes on the current trigger
                objective.update(weights)
            batch = data.batch(idx)
            terms = objective(renderer.render(batch, weights), batch)
            optim.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optim.step()
            with torch.no_grad():
                probs = {a: torch.softmax(logits[a], -1).tolist() if a in learn else [1.0] for a in ATTRIBUTES}
            history.append({"step": step, "tau": tau, **{k: float(v.detach()) for k, v in terms.items()},
                            "probs": probs})
            bar.update(task, advance=1, loss=history[-1]["loss"], tau=tau)
    final = history[-1]["probs"]
    chosen = {a: space[a][int(np.argmax(final[a]))] for a in ATTRIBUTES}
    return SearchResult(space, final, chosen, history, n_images=len(data), skipped=dict(data.skipped),
                        settings={"steps": settings.steps, "batch_size": settings.batch_size, "lr": settings.lr,
                                  "tau_start": settings.tau_start, "tau_end": settings.tau_end, "seed": settings.seed,
                                  "minutes": (time.perf_counter() - t0) / 60})


@torch.no_grad()
def sweep_options(result: SearchResult, data: SearchSet, renderer: RelaxedTrigger, objective: Objective,
                  n_images: int = 8) -> dict[str, list[dict[str, float]]]:
    """Objective terms on the first ``n_images`` images for every option of every attribute,
    the other attributes held at the choice (exact one-hot weights); stored on ``result``."""
    batch = data.batch(list(range(min(n_images, len(data)))))
    sweep: dict[str, list[dict[str, float]]] = {}
    for a in ATTRIBUTES:
        rows = []
        for k, option in enumerate(result.space[a]):
            w = one_hot_weights(result.space, {**result.chosen_index, a: k})
            w = {name: t.to(batch.images.device) for name, t in w.items()}
            terms = objective(renderer.render(batch, w), batch)
            rows.append({"option": option_label(a, option), **{t: float(v) for t, v in terms.items()}})
        sweep[a] = rows
    result.sweep = sweep
    return sweep


def write_search_outputs(result: SearchResult, out: str | Path, title: str = "",
                         extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """``out/trigger.json`` (choice, final probabilities, sweep, history, ``extra``) and
    ``out/trigger_search.png`` (each attribute's probabilities over the steps)."""
    from badseg.report.stage_figures import save_probability_history

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / TRIGGER_JSON, {**(extra or {}), **result.to_dict()})
    labels = {a: [option_label(a, o) for o in result.space[a]] for a in ATTRIBUTES}
    fig = save_probability_history(result.history, labels, out / TRIGGER_FIGURE, title=title)
    return out / TRIGGER_JSON, fig


def load_search_result(path: str | Path) -> SearchResult:
    return SearchResult.from_dict(json.loads(Path(path).read_text()))
