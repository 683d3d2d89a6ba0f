"""The "BADSEG stages" section of ``report.md``: which surrogate, pair and trigger were chosen, and why."""

from __future__ import annotations

from typing import Any


def _table(rows: list[dict[str, Any]], first: str) -> list[str]:
    lines = [f"| {first} | loss | attack CE | ASR-region CE | PSNR (dB) | dB below budget |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['option']} | {r['loss']:.4f} | {r['attack']:.5f} | {r['asr_ce']:.4f} | {r['psnr']:.1f} | "
              f"{r['stealth']:.2f} |" for r in rows]
    return lines


def stage_lines(stages: dict[str, Any]) -> list[str]:
    """Markdown lines for ``metrics["stages"]`` (``badseg.stages.auto.resolve_auto``)."""
    s = stages["surrogate"]
    lines = ["## BADSEG stages", "",
             f"Stage 1: surrogate `{s['model']}` ({s['pretrained']} init, {s['epochs']} epochs, final loss "
             f"{s['final_loss']:.4f}) trained on {s['source']}.", ""]
    if "pair" in stages:
        p = stages["pair"]
        lines += [f"Stage 3 (pair): **{p['victim']} → {p['target']}** — {p['reason']}.", "",
                  "| rank | class pair | normalised distance | suitable attacks |", "|---|---|---|---|"]
        lines += [f"| {r['rank']} | ({r['pair'][0]}, {r['pair'][1]}) | {r['distance']:.4f} | "
                  f"{', '.join(v.upper() for v in r['vectors'])} |" for r in p["top"]]
        lines += ["", f"![class-centre distances]({p['figure']})", ""]
    if "trigger" in stages:
        t = stages["trigger"]
        chosen = ", ".join(f"{k} {v}" for k, v in t["chosen"].items())
        lines += [f"Stage 2 (trigger): **{chosen}** (placement `{t['placement']}`), the most probable option of "
                  f"each attribute after the Gumbel-Softmax search: {t['reason']}.", "",
                  "Objective on surrogate images with one attribute changed from the choice (lower loss = better "
                  "for the attacker; loss = attack CE + stealth weight · dB of PSNR below the budget):", ""]
        for attribute, rows in t.get("sweep", {}).items():
            if len(rows) > 1:
                lines += [f"**{attribute}**", "", *_table(rows, attribute), ""]
        lines += [f"![option probabilities during the search]({t['figure']})", ""]
        if "screen" in t:
            lines += screen_lines(t["screen"])
    return lines


def screen_lines(screen: dict[str, Any]) -> list[str]:
    """The learnability screen's candidates, one row each: options, native PSNR, and per round the
    proxy's score (ASR − clean flips, × reach); the winner in bold."""
    rows = {r["id"]: r for r in screen["pool"]}
    rounds = screen["rounds"]
    in_budget = sum(r["in_budget"] for r in screen["pool"])
    lines = [f"Learnability screen: {len(screen['pool'])} candidates drawn, {in_budget} within the budget at native "
             f"resolution, {len(rounds[0])} trained as proxies by successive halving (score = proxy ASR − clean "
             "flips, × share of held-out images reached):", "",
             "| candidate | PSNR (dB) | " + " | ".join(f"round {i + 1} ({rounds[i][0]['steps']} steps)"
                                                    for i in range(len(rounds))) + " |",
             "|---|---|" + "---|" * len(rounds)]
    for first in rounds[0]:
        i = first["id"]
        scores = [next((f"{r['score']:.3f}" for r in rnd if r["id"] == i), "") for rnd in rounds]
        name = ", ".join(f"{k} {v}" for k, v in rows[i]["options"].items())
        if "raised_from" in rows[i]:
            name += f" (blend raised from candidate {rows[i]['raised_from']})"
        name = f"**{name}**" if i == screen["winner"] else name
        lines.append(f"| {name} | {rows[i]['psnr']:.2f} | " + " | ".join(scores) + " |")
    return [*lines, ""]
