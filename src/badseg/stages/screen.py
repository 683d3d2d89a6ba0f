"""Stage 2's learnability screen: discrete trigger candidates ranked by what a short proxy victim learns.

The relaxed search (``trigger_search``) ranks options by a differentiable surrogate loss. On
CamVid neither the paper's frozen objective nor the learnability objective separates a trigger a
victim learns from one it does not: both pick faint stamps that no victim learns
(docs/results.md, "Stage 2 at cover's intensities"). The screen measures learnability directly,
by successive halving over discrete candidates, as hyper-parameter search does (Jamieson &
Talwalkar, AISTATS 2016; Li et al., Hyperband, JMLR 2018):

1. **candidates**: the relaxation's choice, draws from its final distribution and uniform draws
   over the option grid (one seeded generator), without repeats;
2. **budget**: each candidate triggers the held-out surrogate images with the real attack at
   their native resolution, and its mean PSNR is measured as the results report it
   (``metrics.stealth.psnr`` over the triggered images); candidates under ``psnr_min`` or
   applying to no image are dropped, the rest taken round-robin over the position options, the
   most budget spent first, up to ``candidates``; with ``spend``, each shortlisted candidate's blend
   is then raised to the strongest intensity option still in budget (PSNR falls as the blend
   grows, so the first stronger option out of budget ends the climb): under a PSNR budget a
   placement is compared at the strongest trigger it can afford, not at the one a draw gave it;
3. **rounds**: each survivor's proxy — a copy of the stage-1 surrogate — trains ``steps · 2^r``
   more steps on the fine-tuning part of the surrogate set with a ``poison_fraction`` of it
   poisoned by that candidate, through the victim's own pipeline (``build.train_transform``);
   the score is its pixel ASR on the triggered held-out images less the share of victim pixels it
   flips on their clean originals (a proxy that flips every car has learned no backdoor), times
   the share of held-out images the trigger applies to (a stamp that fits only large cars reaches
   fewer of them); the better half survives, down to two, and the better of those wins.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from badseg.attacks.base import Attack
from badseg.data.base import SegDataset
from badseg.data.subset import Subset
from badseg.evaluate import evaluate
from badseg.metrics.stealth import psnr
from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet
from badseg.stages.learnable import holdout_split
from badseg.attacks.placement import COVER
from badseg.stages.relaxed import ATTRIBUTES, COVER_IGNORES
from badseg.train.augment import AugmentConfig, SegTorchDataset
from badseg.train.fit import train_step
from badseg.train.infer import SlideWindow

#: Stream tag of the candidate draws, independent of the search's other uses of the seed.
_DRAW_STREAM = 0x5C2E

#: attribute -> option index.
Candidate = dict[str, int]


@dataclass(frozen=True)
class ScreenSettings:
    """``search.screen*`` (``config.SearchConfig``).

    Attributes:
        candidates: candidates trained in the first round.
        pool: uniform draws over the grid before the budget filter.
        steps: proxy steps per candidate in the first round (doubled each round).
        lr, batch_size: the proxies' AdamW learning rate and batch size.
        poison_fraction: share of the fine-tuning images poisoned for a proxy.
        holdout: share of the surrogate images held out for the budget and the ASR.
        psnr_min: the stealth budget (dB, native resolution).
        seed: seeds the split, the draws, the poisoning and the proxies' batches.
        spend: raise each shortlisted candidate's intensity to the strongest option in budget.
    """

    candidates: int = 12
    pool: int = 48
    steps: int = 30
    lr: float = 1e-3
    batch_size: int = 4
    poison_fraction: float = 0.5
    holdout: float = 0.5
    psnr_min: float = 35.0
    seed: int = 0
    spend: bool = False


def halving_schedule(n: int) -> list[int]:
    """Proxies trained in each round of successive halving from ``n``: halve (rounding up) while more
    than two are left; the last round's best wins. 12 → [12, 6, 3, 2]; 1 → [1]."""
    schedule = [n]
    while schedule[-1] > 2:
        schedule.append((schedule[-1] + 1) // 2)
    return schedule


def rendered_key(options: dict[str, Any]) -> tuple:
    """What a candidate renders: its options, less those ``cover`` ignores (``COVER_IGNORES``)."""
    ignored = COVER_IGNORES if options["position"] == COVER else ()
    return tuple(None if a in ignored else options[a] for a in ATTRIBUTES)


def spend_budget(picked: list[dict[str, Any]], intensities: tuple[float, ...],
                 measure: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """Each of ``picked`` at the strongest of ``intensities`` whose row (``measure(options,
    raised_from=id)``) is still ``in_budget``, climbing from its own and stopping at the first
    stronger option out of budget; a raised candidate that renders the same trigger as an earlier
    one is left out."""
    out, seen = [], set()
    for row in picked:
        best = row
        for value in sorted(v for v in intensities if v > row["options"]["intensity"]):
            raised = measure({**row["options"], "intensity": value}, raised_from=row["id"])
            if not raised["in_budget"]:
                break
            best = raised
        key = rendered_key(best["options"])
        if key not in seen:
            seen.add(key)
            out.append(best)
    return out


def draw_candidates(space: dict[str, tuple], probabilities: dict[str, list[float]], chosen: Candidate,
                    pool: int, seed: int) -> list[Candidate]:
    """The relaxation's ``chosen`` first, then ``pool`` // 4 draws from ``probabilities`` and ``pool``
    uniform draws over ``space``, from ``SeedSequence([seed, tag])``; a draw that renders the same
    trigger as an earlier one (equal options, or under ``cover`` equal but for ``COVER_IGNORES``)
    is left out."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _DRAW_STREAM]))
    out, seen = [], set()

    def add(c: Candidate) -> None:
        key = rendered_key({a: space[a][c[a]] for a in ATTRIBUTES})
        if key not in seen:
            seen.add(key)
            out.append(c)

    add(dict(chosen))
    for _ in range(pool // 4):
        add({a: int(rng.choice(len(space[a]), p=np.asarray(probabilities[a]) / np.sum(probabilities[a])))
             for a in ATTRIBUTES})
    for _ in range(pool):
        add({a: int(rng.integers(len(space[a]))) for a in ATTRIBUTES})
    return out


def triggered_psnr(test: PoisonedTestSet) -> float:
    """Mean PSNR (dB) over the triggered images of ``test`` (at least one) against their originals,
    at native resolution."""
    return float(np.mean([psnr(clean.image, p.image) for clean, p in (test[k] for k in range(len(test)))]))


def shortlist(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` in-budget rows, round-robin over their ``position``, lowest PSNR (most budget spent) first."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in sorted((r for r in rows if r["in_budget"]), key=lambda r: r["psnr"]):
        groups.setdefault(r["options"]["position"], []).append(r)
    picked: list[dict[str, Any]] = []
    while len(picked) < n and any(groups.values()):
        for g in groups.values():
            if g and len(picked) < n:
                picked.append(g.pop(0))
    return picked


def _batches(data: SegTorchDataset, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches of ``data`` (last incomplete batch dropped unless it is the only one)."""
    gen = torch.Generator().manual_seed(seed)
    epoch = 0
    while True:
        data.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen,
                                             drop_last=len(data) > batch_size)
        yield from loader
        epoch += 1


@dataclass
class _Proxy:
    row: dict[str, Any]
    model: torch.nn.Module
    optim: torch.optim.Optimizer
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    test: PoisonedTestSet
    trained: int = 0


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]learnability screen"), BarColumn(), TextColumn("{task.completed}/{task.total} "
                    "proxy steps  {task.fields[note]}"), TimeElapsedColumn(), console=Console(stderr=True),
                    disable=not enabled)


def screen_candidates(space: dict[str, tuple], probabilities: dict[str, list[float]], chosen: Candidate,
                      attack_of: Callable[[dict[str, Any]], Attack], surrogate: SegDataset, model: torch.nn.Module,
                      train_size: tuple[int, int] | None, augment: AugmentConfig | None,
                      eval_size: tuple[int, int] | None, slide: SlideWindow | None,
                      settings: ScreenSettings = ScreenSettings(), progress: bool = False) -> dict[str, Any]:
    """Successive halving over trigger candidates (module docstring); returns a JSON-able record:
    ``chosen`` (attribute → option of the winner), ``pool`` (every candidate with its PSNR and why it
    was dropped), ``rounds`` (per round, each survivor's steps, ASR, CBA, reach and score)."""
    s = settings
    kept, held = holdout_split(len(surrogate), s.holdout, s.seed)
    if len(kept) < 2:
        raise ValueError(f"the learnability screen trains its proxies on {len(kept)} surrogate image(s) (of "
                         f"{len(surrogate)}, {s.holdout:.0%} held out); it needs at least 2: lower search.holdout or "
                         "give the surrogate more images")
    finetune, heldout = Subset(surrogate, kept), Subset(surrogate, held)
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    tests: dict[int, PoisonedTestSet] = {}

    def measure(options: dict[str, Any], **extra: Any) -> dict[str, Any]:
        test = PoisonedTestSet(heldout, attack_of(options), s.seed)
        value = triggered_psnr(test) if len(test) else None  # None: the trigger applies to no held-out image
        row = {"id": len(rows), "options": options, "psnr": value, "reach": len(test) / len(heldout),
               "in_budget": value is not None and value >= s.psnr_min, "relaxation_choice": False, **extra}
        rows.append(row)
        tests[row["id"]] = test
        return row

    for i, cand in enumerate(draw_candidates(space, probabilities, chosen, s.pool, s.seed)):
        measure({a: space[a][cand[a]] for a in ATTRIBUTES}, relaxation_choice=i == 0)
    picked = shortlist(rows, s.candidates)
    if s.spend:
        picked = spend_budget(picked, space["intensity"], measure)
    if not picked:
        raise ValueError(f"no trigger candidate reaches the {s.psnr_min} dB budget on the held-out surrogate images; "
                         "lower search.psnr_min or add fainter options (search.options.intensity)")
    proxies = []
    for row in picked:
        test = tests[row["id"]]
        train = PoisonedDataset(finetune, test.attack, s.poison_fraction, s.seed)
        net = copy.deepcopy(model).to(device).requires_grad_(True)
        data = SegTorchDataset(train, size=train_size, augment=augment, seed=s.seed)
        proxies.append(_Proxy(row, net, torch.optim.AdamW(net.parameters(), lr=s.lr),
                              _batches(data, s.batch_size, s.seed), test))
    schedule = halving_schedule(len(proxies))
    rounds: list[list[dict[str, Any]]] = []
    scaler = torch.amp.GradScaler(enabled=False)
    with _progress(progress) as bar:
        task = bar.add_task("screen", total=sum(n * s.steps * 2**r for r, n in enumerate(schedule)), note="")
        for r, n in enumerate(schedule):
            proxies = proxies[:n]
            results = []
            for p in proxies:
                p.model.train()
                for _ in range(s.steps * 2**r):
                    images, labels = next(p.batches)
                    train_step(p.model, p.optim, scaler, (images.to(device), labels.to(device)), use_amp=False)
                    bar.advance(task)
                p.trained += s.steps * 2**r
                ev = evaluate(p.model, heldout, p.test, eval_size, p.test.attack.target, s.batch_size, device,
                              progress=False, slide=slide, flips=True)
                asr = ev.asr if ev.asr is not None and np.isfinite(ev.asr) else 0.0
                clean_flip = ev.flip_breakdown["clean"]["flipped"] or 0.0
                results.append({"id": p.row["id"], "steps": p.trained, "asr": asr, "clean_flip": clean_flip,
                                "cba": ev.cba, "reach": p.row["reach"], "score": (asr - clean_flip) * p.row["reach"],
                                "psnr": p.row["psnr"]})
                bar.update(task, note=f"round {r + 1}/{len(schedule)}: best score "
                                      f"{max(x['score'] for x in results):.3f}")
            rounds.append(results)
            order = sorted(range(len(proxies)), key=lambda k: (-results[k]["score"], -results[k]["psnr"]))
            proxies = [proxies[k] for k in order]
    winner = proxies[0].row
    return {"chosen": winner["options"], "winner": winner["id"], "settings": {**s.__dict__},
            "pool": [{**r, "shortlisted": any(r["id"] == p["id"] for p in picked)} for r in rows], "rounds": rounds}


__all__ = ["Candidate", "ScreenSettings", "draw_candidates", "halving_schedule", "rendered_key", "screen_candidates",
           "shortlist", "spend_budget", "triggered_psnr"]
