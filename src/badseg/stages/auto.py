"""The BADSEG stages from a config: what ``trigger: auto`` and ``pair: auto`` do in ``badseg run``,
and what ``badseg optimize-trigger`` / ``badseg rank-pairs`` run.

Order: stage 1 (surrogate) → stage 3 (pair, when ``pair: auto``) → stage 2 (trigger, when
``trigger: auto``). The paper lists the trigger search before the pair selection, but the
search needs the attack's poisoned labels and so the pair; with a given pair the order does
not matter. Every output lands in a folder and is reused when it is already there (the
surrogate resumes through ``fit``, a finished search is read back from ``trigger.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from badseg.build import attack_for, check_run_dir, datasets_for, eval_transform, train_transform, write_run_config
from badseg.config import AttackConfig, RunConfig
from badseg.data.base import SegDataset
from badseg.data.io import atomic_write_bytes, write_json
from badseg.models import SegModel
from badseg.outdir import refuse_protected
from badseg.stages.learnable import LearnabilityObjective, split_search_set
from badseg.stages.objective import SurrogateObjective
from badseg.stages.pair_ranking import (
    ClassCentres,
    Pair,
    PairChoice,
    choose_pair,
    class_centres,
    distance_matrix,
    rank_agreement,
    rank_pairs,
    write_pair_outputs,
)
from badseg.stages.relaxed import RelaxedTrigger, build_search_set, search_space
from badseg.stages.screen import ScreenSettings, screen_candidates
from badseg.stages.surrogate import SurrogateData, surrogate_data, surrogate_model_name, train_surrogate
from badseg.stages.trigger_search import (
    TRIGGER_JSON,
    SearchResult,
    SearchSettings,
    load_search_result,
    optimize_trigger,
    sweep_options,
    write_search_outputs,
)
from badseg.train.augment import SegTorchDataset
from badseg.triggers import TriggerSpec

Log = Callable[[str], Any]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def surrogate_batches(dataset: SegDataset, size: tuple[int, int], batch_size: int) -> Iterator[tuple[torch.Tensor,
                                                                                                     torch.Tensor]]:
    """(images (N, 3, H, W) in [0, 1], labels (N, H, W)) at model size, in dataset order, no augmentation."""
    yield from DataLoader(SegTorchDataset(dataset, size=size), batch_size=batch_size, shuffle=False)


@dataclass
class PairRanking:
    """Stage 3 of one surrogate: centres, normalised distances, ranking."""

    model: str
    centres: ClassCentres
    distances: np.ndarray
    ranking: list[Pair]


def run_pair_ranking(cfg: RunConfig, data: SurrogateData, model: SegModel, model_name: str, out: Path,
                     extra: dict[str, Any] | None = None) -> PairRanking:
    """Class centres over the surrogate set → ``out/pairs.json``, ``pairs.md``, ``pair_distances.png``."""
    spec = data.surrogate.spec
    centres = class_centres(model, surrogate_batches(data.surrogate, tuple(cfg.data.size), cfg.eval_batch_size),
                            spec.num_classes, _device(model))
    dist = distance_matrix(centres.centres)
    ranking = rank_pairs(dist, spec)
    write_pair_outputs(centres, dist, ranking, spec, out, title=f"{spec.name}: class-centre distances ({model_name})",
                       extra={"surrogate": model_name, "surrogate_data": data.source, **(extra or {})})
    return PairRanking(model_name, centres, dist, ranking)


def _with_attack(cfg: RunConfig, **update: Any) -> AttackConfig:
    """``cfg.attack`` with ``update`` applied (``options`` merged), validated again."""
    options = {**cfg.attack.options, **update.pop("options", {})}
    return AttackConfig.model_validate({**cfg.attack.model_dump(), **update, "options": options})


def _attack_config(cfg: RunConfig, victim: str, target: str) -> RunConfig:
    """``cfg`` with the pair set and a placeholder trigger (the selector ignores the trigger)."""
    trigger = cfg.trigger if isinstance(cfg.trigger, TriggerSpec) else TriggerSpec()
    return cfg.model_copy(update={"attack": _with_attack(cfg, victim=victim, target=target), "trigger": trigger})


def search_size(cfg: RunConfig, surrogate: SegDataset) -> tuple[int, int]:
    """The (H, W) stage 2 searches at: the victim's training resolution (``train_transform``),
    so with ``train.pipeline: crop`` the images the stealth budget's PSNR compares are the
    native ones, as the results report PSNR (``data.native_size``, else the first surrogate
    image's size); with ``resize``, ``data.size``."""
    size, _ = train_transform(cfg.train, cfg.data)
    return size if size is not None else tuple(surrogate[0].label.shape)


def run_trigger_search(cfg: RunConfig, data: SurrogateData, model: SegModel, victim: str, target: str, out: Path,
                       progress: bool = False, extra: dict[str, Any] | None = None) -> SearchResult:
    """Stage 2 for ``cfg.attack.vector`` and victim → target on the surrogate set; writes
    ``out/trigger.json`` and ``out/trigger_search.png``, or reads them back when present."""
    if (out / TRIGGER_JSON).is_file():
        return load_search_result(out / TRIGGER_JSON)
    s = cfg.search
    attack = attack_for(_attack_config(cfg, victim, target), data.surrogate)
    space = search_space(attack, s.pattern, s.cover, s.options)
    size = search_size(cfg, data.surrogate)
    search_set = build_search_set(data.surrogate, attack, space, size, cfg.seed, s.min_size_px,
                                  limit=cfg.surrogate.limit).to(_device(model))
    renderer = RelaxedTrigger(space, s.min_size_px)
    objective: SurrogateObjective | LearnabilityObjective = SurrogateObjective(model, s.stealth_weight, s.psnr_min)
    recorded: dict[str, Any] = {"stealth_weight": s.stealth_weight, "psnr_min": s.psnr_min, "pattern": s.pattern,
                                "min_size_px": s.min_size_px, "objective": s.objective, "size": list(size),
                                "cover": s.cover, "options": s.options}
    if s.objective == "learnability":
        finetune, search_set = split_search_set(search_set, s.holdout, cfg.seed)
        _, augment = train_transform(cfg.train, cfg.data)
        objective = LearnabilityObjective(model, finetune, renderer, augment, s.inner_steps, s.inner_lr, s.batch_size,
                                          s.poison_fraction, s.stealth_weight, s.psnr_min, cfg.seed)
        recorded.update(holdout=s.holdout, inner_steps=s.inner_steps, inner_lr=s.inner_lr,
                        poison_fraction=s.poison_fraction, n_finetune=len(finetune),
                        augment={"scale_range": list(augment.scale_range), "crop": list(augment.crop_size),
                                 "hflip": augment.hflip_p, "cat_max_ratio": augment.cat_max_ratio})
    settings = SearchSettings(s.steps, s.batch_size, s.lr, s.tau_start, s.tau_end, cfg.seed)
    result = optimize_trigger(search_set, renderer, objective, settings, progress)
    result.settings.update(recorded)
    sweep_options(result, search_set, renderer, objective)
    if s.screen:
        resolved = _attack_config(cfg, victim, target)
        train_size, augment = train_transform(cfg.train, cfg.data)
        eval_size, slide = eval_transform(cfg)
        screen = ScreenSettings(s.screen, s.screen_pool, s.screen_steps, s.screen_lr, s.batch_size,
                                s.poison_fraction, s.holdout, s.psnr_min, cfg.seed, s.screen_spend)
        result.screen = screen_candidates(
            result.space, result.probabilities, result.chosen_index,
            lambda options: attack_for(with_search_result(resolved, replace(result, chosen=options)), data.surrogate),
            data.surrogate, model, train_size, augment, eval_size, slide, screen, progress)
        result.chosen = result.screen["chosen"]
    title = f"{attack.name.upper()} {victim} → {target}: option probabilities ({surrogate_model_name(cfg)})"
    write_search_outputs(result, out, title, extra={"vector": attack.name, "victim": victim, "target": target,
                                                     "surrogate_data": data.source, **(extra or {})})
    return result


def with_search_result(cfg: RunConfig, result: SearchResult) -> RunConfig:
    """``cfg`` with the search's trigger and, when the position was searched (more than one
    option), its placement in ``attack.options.placement`` (``cover`` included)."""
    attack = cfg.attack
    if len(result.space.get("position", ())) > 1:
        attack = _with_attack(cfg, options={"placement": result.placement})
    return cfg.model_copy(update={"trigger": result.trigger(cfg.search.min_size_px), "attack": attack})


def trigger_reason(result: SearchResult) -> str:
    """One line per attribute: the choice, its probability and the runner-up's; with the learnability
    screen, first the winner's proxy figures."""
    parts = []
    if result.screen:
        final = {r["id"]: r for r in result.screen["rounds"][-1]}[result.screen["winner"]]
        parts.append(f"learnability screen: best of {len(result.screen['rounds'][0])} candidates, proxy ASR "
                     f"{final['asr']:.3f} less {final['clean_flip']:.3f} clean flips after {final['steps']} steps "
                     f"at {final['psnr']:.2f} dB (native); the relaxation's probabilities")
    for a, options in result.space.items():
        if len(options) < 2:
            continue
        probs = result.probabilities[a]
        k = options.index(result.chosen[a])
        other = max((j for j in range(len(options)) if j != k), key=lambda j: probs[j])
        parts.append(f"{a} = {result.chosen[a]} (p = {probs[k]:.2f}; next {options[other]}: {probs[other]:.2f})")
    return "; ".join(parts)


def resolve_auto(cfg: RunConfig, train: SegDataset, out: Path, log: Log = print,
                 progress: bool = False) -> tuple[RunConfig, SegDataset, dict[str, Any]]:
    """Run the stages a config asks for (``trigger: auto``, ``pair: auto``) in ``out``.

    Returns (the config with the chosen trigger, placement and pair filled in; the victim's
    training set — without the surrogate images when they were taken from it; a JSON-able
    record of what was chosen and why, for metrics.json and the report).
    """
    if cfg.trigger != "auto" and cfg.pair != "auto":
        return cfg, train, {}
    data = surrogate_data(cfg, train)
    name = surrogate_model_name(cfg)
    log(f"stage 1: training the surrogate {name} on {data.source}")
    model, surrogate = train_surrogate(cfg, data, out / "surrogates" / name)
    record: dict[str, Any] = {"surrogate": surrogate}
    victim, target = cfg.attack.victim, cfg.attack.target
    if cfg.pair == "auto":
        log("stage 3: ranking victim–target pairs by class-centre distance")
        ranking = run_pair_ranking(cfg, data, model, name, out / "pairs")
        choice: PairChoice = choose_pair(ranking.ranking, train.spec, cfg.attack.vector, ranking.centres)
        victim, target = choice.victim, choice.target
        record["pair"] = {"victim": victim, "target": target, "rank": choice.pair.rank,
                          "distance": choice.pair.distance, "reason": choice.reason,
                          "top": [p.to_dict(train.spec) for p in ranking.ranking[:10]],
                          "figure": "stages/pairs/pair_distances.png"}
        log(f"  chose {victim} → {target}: {choice.reason}")
    resolved = _attack_config(cfg, victim, target)
    if cfg.trigger == "auto":
        log(f"stage 2: Gumbel-Softmax trigger search ({cfg.search.steps} steps)")
        result = run_trigger_search(cfg, data, model, victim, target, out / "trigger", progress)
        resolved = with_search_result(resolved, result)
        record["trigger"] = {"chosen": result.to_dict()["chosen"], "placement": result.placement,
                             "probabilities": result.to_dict()["probabilities"], "reason": trigger_reason(result),
                             "sweep": result.sweep, "figure": "stages/trigger/trigger_search.png",
                             **({"screen": result.screen} if result.screen else {})}
        log(f"  chose {trigger_reason(result)}")
    return resolved, data.victim_train, record


def optimize_trigger_from_config(cfg: RunConfig, out: Path, surrogates: Path, log: Log = print,
                                 progress: bool = False) -> SearchResult:
    """``badseg optimize-trigger``: stages 1–2 for the config's vector, victim and target."""
    check_run_dir(cfg, out)
    train, _ = datasets_for(cfg)
    write_run_config(cfg, out)
    data = surrogate_data(cfg, train)
    name = surrogate_model_name(cfg)
    log(f"stage 1: surrogate {name} on {data.source} → {surrogates / name}")
    model, info = train_surrogate(cfg, data, surrogates / name)
    log(f"stage 2: Gumbel-Softmax trigger search ({cfg.search.steps} steps) → {out}")
    return run_trigger_search(cfg, data, model, cfg.attack.victim, cfg.attack.target, out, progress,
                              extra={"surrogate": info})


def rank_pairs_from_config(cfg: RunConfig, models: list[str], out: Path, surrogates: Path,
                           log: Log = print) -> tuple[list[PairRanking], list[dict[str, Any]]]:
    """``badseg rank-pairs``: stages 1 and 3 for each surrogate model in ``models``, and the
    agreement of every two rankings (Table 7) in ``out/agreement.json`` and ``agreement.md``."""
    refuse_protected(out)
    train, _ = datasets_for(cfg)
    data = surrogate_data(cfg, train)
    rankings = []
    for name in models:
        log(f"stage 1: surrogate {name} on {data.source} → {surrogates / name}")
        model, info = train_surrogate(cfg, data, surrogates / name, model_name=name)
        log(f"stage 3: class centres and pair ranking → {out / name}")
        rankings.append(run_pair_ranking(cfg, data, model, name, out / name, extra={"surrogate": info}))
    rows = []
    for i in range(len(rankings)):
        for j in range(i + 1, len(rankings)):
            a, b = rankings[i], rankings[j]
            rows.append({"models": [a.model, b.model], **rank_agreement(a.distances, b.distances)})
    if rows:
        write_json(out / "agreement.json", rows)
        ks = list(rows[0]["top_k_overlap"])
        md = ["| models | Spearman ρ | Kendall τ | " + " | ".join(f"top-{k} overlap" for k in ks) + " |",
              "|---|---|---|" + "---|" * len(ks)]
        md += [f"| {r['models'][0]}, {r['models'][1]} | {r['spearman']:.4f} | {r['kendall']:.4f} | "
               + " | ".join(f"{r['top_k_overlap'][k]} / {r['top_k_of'][k]}" for k in ks) + " |" for r in rows]
        atomic_write_bytes(out / "agreement.md", ("\n".join(md) + "\n").encode())
    return rankings, rows
