from pathlib import Path

import pytest

from badseg.attacks import build_attack
from badseg.config import DEMO_CONFIG, ConfigError, RunConfig, dump_config, load_config
from badseg.data import get_spec
from badseg.sam.config import is_sam_config
from badseg.sweep.spec import config_hash

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
                 if "paper" not in p.parts and "sweeps" not in p.parts  # sweep files: tests/test_paper_sweeps.py
                 and not is_sam_config(p))


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
    base = ["attack.vector=ins", "attack.rate=0.2", "data.train_length=16", "data.test_length=8", "train.epochs=1",
            "attack.rate_of=applicable"]  # the rate's meaning then
    check_run_dir(load_config(None, [*base, "attack.options.k=null"]), tmp_path)  # the same run: no error
    with pytest.raises(ConfigError, match="different config"):
        check_run_dir(load_config(None, [*base, "attack.options.k=1"]), tmp_path)
    with pytest.raises(ConfigError, match="rate_of=applicable resumes it"):  # today's default meaning differs
        check_run_dir(load_config(None, [*base[:-1], "attack.options.k=null"]), tmp_path)


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
    for bad in ("search.objective=lira", "search.pattern=plaid", "search.holdout=1.0", "search.cover=maybe"):
        with pytest.raises(ConfigError):
            load_config(None, [bad])


def test_search_cover_is_off_by_default_and_keeps_existing_config_hashes():
    default = load_config(None, ["trigger=auto"])
    assert default.search.cover is False
    assert config_hash(load_config(None, ["trigger=auto", "search.cover=false"])) == config_hash(default)
    on = load_config(None, ["trigger=auto", "search.cover=true"])
    assert on.search.cover is True and config_hash(on) != config_hash(default)


def test_search_options_replace_table_20_lists_and_are_checked():
    from badseg.stages import search_space

    cfg = load_config(None, ["trigger=auto", "attack.vector=o2b", "search.options.intensity=[0.05,0.1,0.17]"])
    assert cfg.search.options == {"intensity": [0.05, 0.1, 0.17]}
    assert config_hash(cfg) != config_hash(load_config(None, ["trigger=auto", "attack.vector=o2b"]))
    attack = build_attack("o2b", get_spec(cfg.data.name), cfg.attack.victim, cfg.attack.target)
    space = search_space(attack, cover=True, options=cfg.search.options)
    table20 = search_space(attack, cover=True)
    assert space["intensity"] == (0.05, 0.1, 0.17)
    assert {a: v for a, v in space.items() if a != "intensity"} == {a: v for a, v in table20.items() if a != "intensity"}
    for bad in ("search.options.pattern=[checker]", "search.options.intensity=[]", "search.options.intensity=[1.5]",
                "search.options.quantity=[0]", "search.options.shape=[hexagon]"):
        with pytest.raises(ConfigError, match="search.options"):
            load_config(None, ["trigger=auto", bad])


def test_configs_inherit_from_their_base_files(tmp_path):
    (tmp_path / "common.yaml").write_text("data: {name: camvid, size: [64, 96]}\ntrain: {epochs: 3, lr: 0.01}\n"
                                          "attack: {options: {carriers: all}}\n")
    (tmp_path / "schedule.yaml").write_text("train: {epochs: 5}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "o2b.yaml").write_text("_base_: [../common.yaml, ../schedule.yaml]\n"
                                               "data: {size: [32, 48]}\nattack: {vector: o2b, rate: 0.3}\n")
    cfg = load_config(tmp_path / "sub" / "o2b.yaml")
    assert cfg.data.name == "camvid" and cfg.data.size == (32, 48)  # sections merge key by key
    assert (cfg.train.epochs, cfg.train.lr) == (5, 0.01)  # later bases win, then the file itself
    assert cfg.attack.rate == 0.3 and cfg.attack.options["carriers"] == "all"
    (tmp_path / "replace.yaml").write_text("_base_: common.yaml\ntrain: {_delete_: true, epochs: 2}\n")
    assert load_config(tmp_path / "replace.yaml").train.lr == RunConfig().train.lr  # _delete_: no merge
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    (tmp_path / "missing.yaml").write_text("_base_: nowhere.yaml\n")
    for name, word in (("loop.yaml", "itself"), ("missing.yaml", "nowhere.yaml")):
        with pytest.raises(ConfigError, match=word):
            load_config(tmp_path / name)


def test_the_shipped_configs_share_their_common_sections():
    for dataset in ("camvid", "cityscapes", "bdd100k"):
        root = Path(__file__).resolve().parents[1] / "configs" / dataset
        common = load_config(root / "common.yaml")
        for path in root.rglob("*.yaml"):
            if "pipelines" in path.parts:  # the victim pipelines keep the data at another resolution
                cfg = load_config(path)
                assert cfg.data.model_copy(update={"native_size": None}) == common.data, path
                assert cfg.model == common.model and cfg.train.epochs == common.train.epochs, path
                continue
            if "stealth" in path.parts:  # the stealth settings carry their own victim size, model and schedule
                assert load_config(path).data.model_copy(update={"size": common.data.size}) == common.data, path
                continue
            assert "data:" not in path.read_text() or path.name == "common.yaml", path
            cfg = load_config(path)
            assert (cfg.data, cfg.model, cfg.train) == (common.data, common.model, common.train), path


def test_the_victim_pipeline_fields_keep_default_runs_unchanged() -> None:
    """New pipeline fields at their defaults change neither a sweep run's hash nor a clean
    reference model's key (so existing run folders and cached clean models are reused)."""
    from badseg.build import clean_model_key
    from badseg.sweep import config_hash

    cfg = load_config(None, ["train.epochs=3"])
    explicit = load_config(None, ["train.epochs=3", "train.pipeline=resize", "train.cat_max_ratio=0.75",
                                  "test.inference=whole", "data.native_size=null"])
    assert config_hash(explicit) == config_hash(cfg) and clean_model_key(explicit) == clean_model_key(cfg)
    key = clean_model_key(cfg)[1]
    assert not {"pipeline", "crop_size", "cat_max_ratio"} & set(key["train"]) and "native_size" not in key["data"]
    crop = load_config(None, ["train.epochs=3", "train.pipeline=crop"])
    assert config_hash(crop) != config_hash(cfg) and clean_model_key(crop)[0] != clean_model_key(cfg)[0]
    slide = load_config(None, ["train.epochs=3", "train.pipeline=crop", "test.inference=slide"])
    assert config_hash(slide) != config_hash(crop)
    assert clean_model_key(slide) == clean_model_key(crop)  # test-time inference: same clean model


@pytest.mark.parametrize(("bad", "says"), [
    (["train.pipeline=mmseg"], "train.pipeline"),
    (["train.crop_size=[64, 64]"], "crop_size applies to pipeline: crop"),
    (["train.cat_max_ratio=0.5"], "cat_max_ratio applies to pipeline: crop"),
    (["train.pipeline=crop", "train.cat_max_ratio=0"], "train.cat_max_ratio"),
    (["train.pipeline=crop", "train.crop_size=[16, 64]"], "train.crop_size"),
    (["test.inference=slide"], "slide needs train.pipeline: crop"),
    (["test.inference=tiles", "train.pipeline=crop"], "test.inference"),
    (["test.stride=[10, 10]"], "test.stride applies to test.inference: slide"),
    (["train.pipeline=crop", "test.inference=slide", "test.stride=[100, 300]"], "larger than the window"),
    (["data.native_size=[352, 480]"], "data.native_size applies to train.pipeline: crop"),
])
def test_bad_pipeline_settings_give_one_clear_error(bad, says) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, bad)
    assert says in str(e.value) and str(e.value).count(";") == 0, str(e.value)


def test_the_crop_pipeline_config_runs_at_native_resolution_with_slide_inference() -> None:
    from badseg.build import eval_transform, train_transform, victim_pipeline

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "camvid" / "pipelines" / "crop.yaml")
    size, augment = train_transform(cfg.train, cfg.data)
    assert size == (352, 480) and augment.crop_size == (192, 256) and augment.cat_max_ratio == 0.75
    test_size, slide = eval_transform(cfg)
    assert test_size == (352, 480) and slide.window == (192, 256) and slide.stride == (128, 170)
    assert victim_pipeline(cfg)["train"] == "crop" and victim_pipeline(cfg)["inference"] == "slide"
