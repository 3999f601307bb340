"""Allowed ranges of settings and method hyper-parameters (noisyfit.ranges): the interval arithmetic by hand,
every declared range names a real field and holds its default, and every shipped preset lies inside them."""

import dataclasses

import pytest

from noisyfit.config import Config, ConfigError, check_numbers, list_presets, load_config
from noisyfit.methods.base import get_method_class, list_methods
from noisyfit.ranges import SETTING_RANGES, in_interval, out_of_range, parse_interval


@pytest.mark.parametrize("value,spec,inside", [
    (0, "[0, 1)", True), (1, "[0, 1)", False), (0.999, "[0, 1)", True), (-1e-9, "[0, 1)", False),
    (0, "(0, 1]", False), (1, "(0, 1]", True), (1e300, "(0, inf)", True), (float("inf"), "(0, inf)", False),
    (float("nan"), "[0, inf)", False), (-5, "(-inf, 0]", True), (3, "[1, inf)", True), (0, "[1, inf)", False),
])
def test_intervals_by_hand(value, spec, inside):
    assert in_interval(value, spec) is inside


def test_messages_and_what_is_not_checked():
    assert parse_interval("(0, 1]") == (0.0, 1.0, False, True)
    assert out_of_range("q", 5.0, "(0, 1]") == "q=5.0 is outside its allowed range (0, 1]"
    assert out_of_range("q", 0.5, "(0, 1]") is None
    # None (an optional setting left unset), booleans and words are not numbers to range-check
    assert out_of_range("grad_clip", None, "(0, inf)") is None
    assert out_of_range("flag", True, "[2, 3]") is None and out_of_range("name", "x", "[2, 3]") is None
    with pytest.raises(ValueError, match="not an interval"):
        parse_interval("0..1")


def _ranges(cls) -> dict:
    out = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get("hyper_ranges", {}))
    return out


@pytest.mark.parametrize("name", list_methods())
def test_declared_ranges_name_real_fields_and_hold_the_defaults(name):
    cls = get_method_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Hyper)}
    defaults = cls.Hyper()
    for key, spec in _ranges(cls).items():
        assert key in fields, f"{name}: range for unknown hyper-parameter {key!r}"
        parse_interval(spec)
        assert out_of_range(key, getattr(defaults, key), spec) is None, f"{name}: default {key} outside {spec}"


def test_setting_ranges_name_real_settings_and_hold_the_defaults():
    cfg = Config()
    for dotted, spec in SETTING_RANGES.items():
        section, key = dotted.split(".")
        assert hasattr(getattr(cfg, section), key), dotted
        assert out_of_range(dotted, getattr(getattr(cfg, section), key), spec) is None
    check_numbers(cfg)


def test_every_preset_is_inside_the_ranges():
    for preset in list_presets():
        cfg = load_config(preset)
        check_numbers(cfg)
        get_method_class(cfg.method.name).resolve_hyper(cfg.method.args)


def test_one_message_names_every_value_out_of_range():
    cfg = load_config(None, ["optim.lr=-0.1", "train.batch_size=0"])
    with pytest.raises(ConfigError) as err:
        check_numbers(cfg)
    assert "optim.lr=-0.1 is outside" in str(err.value) and "train.batch_size=0 is outside" in str(err.value)
    # a subclass's ranges add to its parent's: J-Co-teaching checks Co-teaching's and its own
    jco = get_method_class("j_coteaching")
    with pytest.raises(ValueError, match=r"beta1_after_decay=2.0 is outside .*jump_rate=3.0 is outside"):
        jco.resolve_hyper({"beta1_after_decay": 2.0, "jump_rate": 3.0})
