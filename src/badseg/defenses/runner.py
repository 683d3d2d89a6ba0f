"""``run_defense``: one defense on a finished run folder → ``defense_<name>.json``, its figure
under ``figures/`` and a section in ``report.md`` (``badseg defend``, sweeps, ``defenses:`` in a
config).

The run is rebuilt from its resolved ``config.yaml`` (datasets, attack, poisoned sets with the
run's seed, the backdoored model from ``backdoored/last.pt``), so the defense sees exactly
what ``badseg run`` trained and evaluated. A finished defense with the same options (an option
added since counting at its default) is not run again.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from badseg.config import ConfigError
from badseg.data.io import write_json
from badseg.defenses.base import DEFENSES, DefenseContext


def parse_options(items: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``["n=50", "fractions=[0.01]"]`` (values parsed as YAML) or a mapping → option dict."""
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"defense option {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def _defaults(name: str) -> dict[str, Any]:
    """A defense's options and their defaults (its keyword parameters)."""
    return {k: p.default for k, p in inspect.signature(DEFENSES.get(name)).parameters.items() if k != "ctx"}


def resolve_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The defense's options with ``options`` applied over its defaults (unknown ones: an error
    naming the valid ones)."""
    defaults = _defaults(name)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(f"defense {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options: {', '.join(defaults)}")
    return json.loads(json.dumps({**defaults, **options}))  # tuples → lists, as stored


def done_options(name: str, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The options a finished defense's JSON records, read with today's defaults: an option added
    to the defense since (e.g. Beatrix's ``clean``) takes its default, so the result still counts
    as finished with those options."""
    return json.loads(json.dumps({**_defaults(name), **stored}))


def load_context(run_dir: str | Path, progress: bool = True) -> DefenseContext:
    """Rebuild a finished run (its config, data, attack, poisoned sets, backdoored model)."""
    from badseg.models import build_model
    from badseg.build import attack_for, datasets_for, stored_config
    from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet
    from badseg.stages.auto import resolve_auto

    run_dir = Path(run_dir)
    cfg_path, ckpt, metrics = run_dir / "config.yaml", run_dir / "backdoored" / "last.pt", run_dir / "metrics.json"
    for path in (cfg_path, ckpt, metrics):
        if not path.is_file():
            raise ConfigError(f"{run_dir} is not a finished badseg run: {path.name} is missing")
    cfg = stored_config(cfg_path.read_text())  # as the badseg that wrote it meant it
    train, test = datasets_for(cfg)
    cfg, train, _ = resolve_auto(cfg, train, run_dir / "stages", lambda *_: None, progress)  # finished stages: reused
    attack = attack_for(cfg, train)
    workers = cfg.workers or 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(cfg.model.name, train.spec.num_classes, pretrained=str(ckpt)).eval().to(device)
    return DefenseContext(cfg=cfg, run_dir=run_dir, model=model, train=train,
                          poisoned_train=PoisonedDataset(train, attack, cfg.attack.rate, cfg.seed, workers=workers,
                                                         rate_of=cfg.attack.rate_of, select=cfg.attack.select),
                          test=test, poisoned_test=PoisonedTestSet(test, attack, cfg.seed, workers=workers),
                          attack=attack, before=json.loads(metrics.read_text()), device=device, progress=progress)


def run_defense(run_dir: str | Path, name: str, overrides: Sequence[str] | Mapping[str, Any] = (),
                progress: bool = True, log: Callable[[str], Any] = print,
                context: DefenseContext | None = None) -> dict[str, Any]:
    """Run defense ``name`` on the finished run in ``run_dir`` with ``overrides`` of its options;
    writes ``run_dir/defense_<name>.json`` (returned) and the report section. ``context``: an
    already rebuilt run (several defenses in a row)."""
    from badseg.report.defense_report import defense_lines, write_defense_section

    run_dir = Path(run_dir)
    options = resolve_options(name, parse_options(overrides))
    out = run_dir / f"defense_{name}.json"
    if out.is_file():
        done = json.loads(out.read_text())
        if done_options(name, done.get("options", {})) == options:
            log(f"{out} is finished already with these options; not running it again")
            write_defense_section(run_dir / "report.md", name, defense_lines(name, done))
            return done
    ctx = context or load_context(run_dir, progress)
    log(f"defense {name} on {run_dir}")
    t0 = time.perf_counter()
    result = DEFENSES.build(name, ctx=ctx, **options)
    figure = ctx.figure_path(name)
    result = {"defense": name, "options": options, **result, "minutes": (time.perf_counter() - t0) / 60,
              "figure": str(figure.relative_to(run_dir)) if figure.is_file() else None}
    write_json(out, result)
    write_defense_section(run_dir / "report.md", name, defense_lines(name, result))
    return result
