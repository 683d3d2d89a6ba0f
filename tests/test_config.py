from pathlib import Path

import pytest

from badseg.attacks import build_attack
from badseg.config import DEMO_CONFIG, ConfigError, RunConfig, dump_config, load_config
from badseg.data import get_spec

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
                 if "paper" not in p.parts and "sweeps" not in p.parts)  # sweep files: tests/test_paper_sweeps.py


def test_every_example_config_is_valid_and_its_attack_fits_the_dataset():
    assert len(CONFIGS) >= 18
    for path in [*CONFIGS, DEMO_CONFIG]:
        cfg = load_config(path)
        spec = get_spec(cfg.data.name)
        attack = build_attack(cfg.attack.vector, spec, cfg.attack.victim, cfg.attack.target)
        assert attack.name == cfg.attack.vector


def test_overrides_are_typed_and_nested():
    cfg = load_config(None, ["trigger.size=0.25", "attack.rate=0.2", "data.size=[64, 96]", "clean_reference=true"])
    assert cfg.trigger.size == 0.25 and cfg.attack.rate == 0.2
    assert cfg.data.size == (64, 96) and cfg.clean_reference is True
    assert load_config(None, []) == RunConfig()


@pytest.mark.parametrize("bad", ["trigger.sise=0.2", "attack.rate=1.5", "train.optimizer=adam", "novalue"])
def test_bad_overrides_are_rejected_with_the_key(bad):
    with pytest.raises(ConfigError) as e:
        load_config(None, [bad])
    assert bad.split("=")[0].split(".")[-1] in str(e.value) or "key=value" in str(e.value)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(DEMO_CONFIG, ["seed=3"])
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg


def test_a_run_folder_from_before_a_new_config_field_still_matches() -> None:
    import yaml

    from badseg.config import dump_config, load_config
    from badseg.build import same_config

    cfg = load_config(None, ["attack.vector=o2b", "train.epochs=3"])
    tree = yaml.safe_load(dump_config(cfg))
    del tree["attack"]["options"]["carriers"]  # written by a badseg that did not have this field yet
    assert same_config(yaml.safe_dump(tree), cfg)
    assert not same_config(yaml.safe_dump({**tree, "seed": 1}), cfg)
    assert not same_config(yaml.safe_dump({**tree, "no_such_field": 1}), cfg)


def test_a_run_folder_written_before_attack_options_still_resumes(tmp_path):
    from badseg.build import check_run_dir

    fixture = Path(__file__).with_name("fixtures") / "run_config_flat_attack.yaml"
    (tmp_path / "config.yaml").write_text(fixture.read_text())
    (tmp_path / "backdoored").mkdir()  # the run had started
    base = ["attack.vector=ins", "attack.rate=0.2", "data.train_length=16", "data.test_length=8", "train.epochs=1"]
    check_run_dir(load_config(None, [*base, "attack.options.k=null"]), tmp_path)  # the same run: no error
    with pytest.raises(ConfigError, match="different config"):
        check_run_dir(load_config(None, [*base, "attack.options.k=1"]), tmp_path)


def test_attack_options_are_checked_against_the_factory():
    cfg = load_config(None, ["attack.vector=o2b", "attack.options.carriers=all"])
    assert cfg.attack.options["carriers"] == "all" and cfg.attack.options["placement"] == "centre"  # defaults filled
    for bad, word in (("attack.options.carriers=every", "carriers"), ("attack.options.k=2", "'k'"),
                      ("attack.vector=o2bb", "o2b")):
        with pytest.raises(ConfigError, match=word):
            load_config(None, [bad])


def test_stealth_configs_poison_at_most_ten_percent_with_a_clean_reference():
    stealth = sorted((Path(__file__).resolve().parents[1] / "configs" / "camvid" / "stealth").glob("*.yaml"))
    assert {p.stem for p in stealth} >= {"o2b", "b2b"}
    for path in stealth:
        cfg = load_config(path, ["data.root=/elsewhere/camvid"])
        assert cfg.data.root == "/elsewhere/camvid" and cfg.data.name == "camvid"
        assert cfg.attack.rate <= 0.1 and cfg.clean_reference, path


def test_search_objective_and_pattern_are_checked():
    cfg = load_config(None, ["search.objective=learnability", "search.pattern=search"])
    assert cfg.search.objective == "learnability" and cfg.search.pattern == "search"
    for bad in ("search.objective=lira", "search.pattern=plaid", "search.holdout=1.0"):
        with pytest.raises(ConfigError):
            load_config(None, [bad])
