"""Dotted-path settings overrides: validated through the Settings model, unknown paths named."""

from __future__ import annotations

import pytest

from ragjet.config import ConfigError, Settings, load_settings
from ragjet.eval.overrides import apply_overrides, label, parse_compare, parse_config, parse_override


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(data_dir=tmp_path)


def test_overrides_convert_values_through_the_model(settings: Settings):
    changed = apply_overrides(settings, parse_config("index.kind=ivf_pq;retrieve.use_bm25=false;index.nprobe=4"))
    assert changed.index.kind == "ivf_pq" and changed.retrieve.use_bm25 is False and changed.index.nprobe == 4
    assert changed.data_dir == settings.data_dir and settings.index.kind == "flat"  # the original is untouched


def test_top_level_fields_can_be_overridden(settings: Settings, tmp_path):
    assert apply_overrides(settings, (parse_override(f"data_dir={tmp_path / 'x'}"),)).data_dir == tmp_path / "x"


def test_compare_gives_two_configurations():
    left, right = parse_compare("index.kind=flat,index.kind=ivf_pq;index.nprobe=2")
    assert label(left) == "index.kind=flat" and label(right) == "index.kind=ivf_pq;index.nprobe=2"
    assert label(()) == "default"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("index.kindd=flat", "index has no field 'kindd'"),
        ("nope=1", "settings has no field 'nope'"),
        ("index=flat", "is a section"),
        ("index.kind.deep=1", "has no sub-fields"),
        ("index.kind", "section.field=value"),
    ],
)
def test_unknown_or_malformed_paths_are_config_errors(text: str, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_override(text)


def test_bad_values_are_rejected_by_the_model(settings: Settings):
    with pytest.raises(ConfigError, match="index.kind"):
        apply_overrides(settings, parse_config("index.kind=btree"))
    with pytest.raises(ConfigError, match="retrieve.top_k"):
        apply_overrides(settings, parse_config("retrieve.top_k=0"))


@pytest.mark.parametrize("text", ["index.kind=flat", "a=1,b=2,c=3", ","])
def test_compare_needs_exactly_two_sides(text: str):
    with pytest.raises(ConfigError, match="exactly two"):
        parse_compare(text)
