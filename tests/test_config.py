import pytest
import yaml

from noisyfit.config import Config, ConfigError, load_config


def test_precedence_yaml_then_flags_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"train": {"epochs": 7, "batch_size": 32}, "optim": {"lr": 0.3}}))
    cfg = load_config(p, ["optim.lr=0.01"], flags={"train": {"epochs": 9}})
    assert cfg.train.epochs == 9 and cfg.train.batch_size == 32 and cfg.optim.lr == 0.01


def test_scientific_notation_is_a_float_not_a_string():
    cfg = load_config(None, ["optim.weight_decay=5e-4", "train.epochs=3"])
    assert cfg.optim.weight_decay == 5e-4 and isinstance(cfg.optim.weight_decay, float)
    # in free settings too (a backbone's args): YAML 1.1 alone reads 5e-3 as the string '5e-3'
    cfg = load_config(None, ["model.args.whiten_eps=5e-3", "model.args.name=1e3x", "model.args.n=2"])
    assert cfg.model.args == {"whiten_eps": 5e-3, "name": "1e3x", "n": 2}
    assert isinstance(cfg.model.args["whiten_eps"], float)


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["method.name=gce", "method.args.q=0.5", "model.args.widths=[8,16,16]"])
    cfg.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("item,match", [
    ("train.epoch=3", "unknown key 'train.epoch'"),
    ("nope=1", "unknown key"),
    ("train.epochs", "key=value"),
    ("train.epochs=abc", "not a valid int"),
    ("train=3", "is a section"),
])
def test_bad_overrides_name_the_key(item, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [item])


def test_unknown_yaml_key_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml.train: unknown key 'epochz'"):
        load_config(p)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="neither a file nor a preset. Presets: .*ce/cpu-cifar10n"):
        load_config("/nonexistent/x.yaml")


def test_defaults_are_complete():
    d = Config().to_dict()
    assert set(d) == {"data", "model", "optim", "train", "method"}


def test_method_hyper_parameters_get_their_field_types():
    from noisyfit.methods.base import get_method_class

    cls = get_method_class("gce")
    assert cls.resolve_hyper({"q": "5e-1"}).q == 0.5
    with pytest.raises(ValueError, match="method 'gce': method.args.q: 'abc' is not a valid float"):
        cls.resolve_hyper({"q": "abc"})


def test_a_mistyped_preset_suggests_the_close_ones():
    # a researcher's trial: the refusal listed all ~60 presets and no "did you mean"
    with pytest.raises(ConfigError, match=r"config elr/cpu-cifar10 is neither a file nor a preset\. Did you mean "
                                          r"elr/cpu-cifar10n\b"):
        load_config("elr/cpu-cifar10")
    with pytest.raises(ConfigError) as err:
        load_config("zzz/qqq")
    assert "Did you mean" not in str(err.value) and "Presets: " in str(err.value)
