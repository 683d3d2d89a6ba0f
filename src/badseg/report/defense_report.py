"""The run report's section for one defense (``badseg defend``): Markdown from its JSON result."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from badseg.data.io import atomic_write_bytes


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _setting(row: dict[str, Any]) -> str:
    for key, what in (("fraction", "fraction"), ("isolation_fraction", "isolated fraction")):
        if key in row:
            extra = f", {row['n_channels']} of {row['of_channels']} channels" if "n_channels" in row else ""
            extra += f", {row['n_images']} images" if "n_images" in row else ""
            return f"{what} {row[key]:g}{extra}"
    return "after"


def defense_lines(name: str, result: dict[str, Any]) -> list[str]:
    """Markdown lines: mitigations as before/after ASR, PBA, CBA; detectors as AUC plus ACC /
    Recall / F1 / clean FPR at each clean-score threshold."""
    options = ", ".join(f"{k}={v}" for k, v in result.get("options", {}).items())
    lines = [f"## Defense: {name}", "", f"Options: {options or 'defaults'}.", ""]
    if result["kind"] == "mitigation":
        b = result["before"]
        lines += ["| model | ASR | PBA | CBA |", "|---|---|---|---|",
                  f"| before (the run) | {_f(b['asr'])} | {_f(b['pba'])} | {_f(b['cba'])} |",
                  *(f"| {_setting(r)} | {_f(r['asr'])} | {_f(r['pba'])} | {_f(r['cba'])} |" for r in result["rows"]),
                  ""]
        if "isolation" in result:
            iso = result["isolation"]
            lines += [f"Isolation: {iso['n_isolated_poisoned']} of {iso['n_isolated']} isolated images are poisoned "
                      f"(precision {_f(iso['precision'])}, recall {_f(iso['recall'])} of {iso['n_poisoned']}).", ""]
    else:
        rows = [(f"clean FPR ≤ {result['target_fpr']:g}", result["at_fpr"]),
                *((f"μ + {k}σ", m) for k, m in result["sigma"].items())]
        lines += [f"{result['n_clean']} clean and {result['n_poisoned']} poisoned test images; "
                  f"AUC **{_f(result['auc'])}**.", "",
                  "| threshold | ACC | Recall | F1 | clean FPR |", "|---|---|---|---|---|",
                  *(f"| {t} | {_f(m['acc'])} | {_f(m['recall'])} | {_f(m['f1'])} | {_f(m['fpr'])} |" for t, m in rows),
                  ""]
    if result.get("figure"):
        lines += [f"![{name}]({result['figure']})", ""]
    return lines


def write_defense_section(report: Path, name: str, lines: list[str]) -> None:
    """Put ``lines`` into ``report`` between this defense's markers (replacing an older section,
    appending otherwise)."""
    start, end = f"<!-- defense:{name} -->", f"<!-- /defense:{name} -->"
    block = "\n".join([start, *lines, end])
    text = report.read_text() if report.is_file() else ""
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_bytes(report, text.encode())
