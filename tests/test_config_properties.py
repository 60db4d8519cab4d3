"""Property test of the one place that checks settings (issue 37): any value of any field
of any command's config, as a JSON config or a flag would give it (NaN, inf, negatives, huge
numbers, empty and path-like strings, wrong types), ends in a valid config or a ConfigError,
never another exception.

CI (CI=true) runs a fixed, derandomised set of examples so that a red build always means
the same thing; locally each run draws new ones (HYPOTHESIS_PROFILE=ci to repeat CI's, =long to search
with 1,000 examples per class).
"""
from __future__ import annotations

import dataclasses
import os
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.flags import ConfigError, _unwrap_optional, config_from_dict, validate_config

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=1000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))


def _config_classes() -> list[type]:
    """Every settings dataclass a command parses (those declared with `opt`)."""
    import classic_fill.config
    import config
    import quality.config
    found = {}
    for module in (config, classic_fill.config, quality.config):
        for obj in vars(module).values():
            if (isinstance(obj, type) and dataclasses.is_dataclass(obj)
                    and all("help" in f.metadata for f in dataclasses.fields(obj))):
                found[obj.__name__] = obj
    return [found[name] for name in sorted(found)]


CLASSES = _config_classes()

# Strings a user (or a typo) may put anywhere: empty, blank, path-like, climbing, absolute.
AWKWARD_TEXT = st.sampled_from(["", " ", "x", "a,b", "1,2,3", "../x", "../../data/evil",
                                "/abs/path", "a/b", "..", ".", "a\\b", "nan", "inf", "-1",
                                "1e999", "{label}", "{nope}", "(", "*", "\x00", "é"])
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 1e308, -1e-308]),
    st.integers(min_value=-10**30, max_value=10**30),
    st.sampled_from([0, -1, 1, 2, 10**18]))


def _scalar(tp: type, field: dataclasses.Field) -> st.SearchStrategy:
    """Mostly values of the field's own type (its edge cases), sometimes another type."""
    choices = field.metadata.get("choices")
    own = {bool: st.booleans(), int: NUMBERS.filter(lambda v: isinstance(v, int)),
           float: NUMBERS, str: st.one_of(AWKWARD_TEXT, st.text(max_size=12))}.get(tp)
    parts = [own] if own is not None else []
    if choices:
        parts.append(st.sampled_from(list(choices)))
    parts.append(st.one_of(NUMBERS, AWKWARD_TEXT, st.booleans(), st.none()))   # wrong type
    return st.one_of(*parts)


def _value(field: dataclasses.Field, hint) -> st.SearchStrategy:
    tp, _ = _unwrap_optional(hint)
    if typing.get_origin(tp) in (list, tuple):
        elem = _scalar(typing.get_args(tp)[0], field)
        return st.one_of(st.lists(elem, max_size=4), elem, st.none())
    return _scalar(tp, field)


@st.composite
def settings_dict(draw, cls) -> dict:
    """A JSON-like dict: required fields filled plausibly, a few fields drawn awkward."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    data = {f.name: ("x" if hints[f.name] is str else ["x"]) for f in fields
            if f.metadata.get("required")}
    chosen = draw(st.lists(st.sampled_from(fields), max_size=4, unique_by=lambda f: f.name))
    for f in chosen:
        data[f.name] = draw(_value(f, hints[f.name]))
    return data


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_any_value_of_any_setting_is_a_valid_config_or_a_config_error(cls, data):
    values = data.draw(settings_dict(cls), label="settings")
    try:
        cfg = config_from_dict(cls, values)
        validate_config(cfg)
    except ConfigError:
        return
    # A config that passes holds only finite numbers (NaN passes every min/max comparison).
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, float):
                assert v == v and abs(v) != float("inf"), (f.name, v)
