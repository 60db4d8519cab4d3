"""config.py dataclasses -> typed CLI flags, ranges, JSON round-trip, precedence."""
from __future__ import annotations

import json

import pytest

from cli.flags import (ConfigError, config_from_dict, config_to_dict, load_config_json,
                       parse_config, save_config_json, validate_config)
from config import BalancerConfig


def test_flags_are_typed_and_override_defaults():
    cfg, ns = parse_config(BalancerConfig, ["--in_dir", "x", "--theta", "7.5", "--multiplier",
                                            "4", "--labels", "1", "3", "--fact", "1.3"])
    assert cfg.theta == 7.5 and cfg.multiplier == 4 and cfg.labels == ["1", "3"]
    assert cfg.fact == 1.3 and cfg.out_dir == "diffusion_data" and not ns._dry_run


def test_optional_value_accepts_auto_and_bools_have_no_form():
    cfg, _ = parse_config(BalancerConfig, ["--in_dir", "x", "--fact", "auto",
                                           "--link_originals"])
    assert cfg.fact is None and cfg.link_originals is True
    cfg, _ = parse_config(BalancerConfig, ["--in_dir", "x", "--no-link_originals"])
    assert cfg.link_originals is False


@pytest.mark.parametrize("argv, message", [
    ([], "--in_dir is required"),
    (["--in_dir", "x", "--theta", "0"], "--theta must be >= 0.1"),
    (["--in_dir", "x", "--theta", "50"], "--theta must be <= 45"),
    (["--in_dir", "x", "--theta", "10", "--multiplier", "6"], "theta*multiplier must be <= 45"),
    (["--in_dir", "x", "--multiplier", "two"], "expected int"),
    (["--in_dir", "x", "--site_regex", "a", "--site_csv", "b.csv"], "not both"),
])
def test_bad_values_exit_2_with_one_line_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(BalancerConfig, argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_json_round_trip_and_precedence(tmp_path):
    cfg = BalancerConfig(in_dir="photos", theta=3.0, labels=["a"], fact=1.25)
    path = save_config_json(cfg, tmp_path / "config.json", note="hello")
    data = json.loads(path.read_text())
    assert data["_config_class"] == "BalancerConfig" and data["_note"] == "hello"
    assert load_config_json(BalancerConfig, path) == cfg
    # flags beat the JSON file, which beats config.py
    cfg2, _ = parse_config(BalancerConfig, ["--config", str(path), "--theta", "4"])
    assert cfg2.theta == 4.0 and cfg2.fact == 1.25 and cfg2.in_dir == "photos"
    assert config_to_dict(cfg2)["labels"] == ["a"]


def test_json_typos_and_wrong_types_are_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"in_dir": "x", "thetta": 3}))
    with pytest.raises(ConfigError, match="thetta"):
        load_config_json(BalancerConfig, bad)
    bad.write_text(json.dumps({"in_dir": "x", "multiplier": "six"}))
    with pytest.raises(ConfigError, match="multiplier"):
        load_config_json(BalancerConfig, bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config_json(BalancerConfig, tmp_path / "missing.json")
    bad.write_text(json.dumps({"in_dir": "x", "labels": [["1"]]}))
    with pytest.raises(ConfigError, match="labels: expected a list of str"):
        load_config_json(BalancerConfig, bad)


def test_a_string_where_a_list_of_numbers_is_meant_is_a_one_line_error():
    from config import DiffusionConfig
    with pytest.raises(ConfigError, match=r"widths: expected a list of int, got '8,16'"):
        config_from_dict(DiffusionConfig, {"in_dir": "x", "widths": "8,16"})
    assert config_from_dict(DiffusionConfig, {"in_dir": "x", "widths": 8}).widths == [8]
    for infinite in (float("inf"), [8, float("-inf")]):   # int(inf) raises OverflowError
        with pytest.raises(ConfigError, match="widths: expected a list of int"):
            config_from_dict(DiffusionConfig, {"in_dir": "x", "widths": infinite})


def test_flags_are_never_abbreviated(capsys):
    from config import TrainAllConfig
    # argparse would read --model_d as --model_dir and load some other folder silently.
    with pytest.raises(SystemExit) as exc:
        parse_config(TrainAllConfig, ["--in_dir", "x", "--model_d", "runs/a"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --model_d runs/a" in capsys.readouterr().err
    assert parse_config(TrainAllConfig, ["--in_dir", "x", "--model", "gan"])[0].model == "gan"


def test_validate_checks_dataclass_built_in_code():
    with pytest.raises(ConfigError, match="--jpeg_quality"):
        validate_config(BalancerConfig(in_dir="x", jpeg_quality=10))


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        parse_config(BalancerConfig, ["--help"])
    out = capsys.readouterr().out
    for flag in ("--in_dir", "--theta", "--fact", "--multiplier", "--dry-run", "--config"):
        assert flag in out
    assert "0.1 to 45.0" in out


def test_optional_bool_flags_take_on_off_and_auto():
    from config import DiffusionConfig
    cases = {(): None, ("--use_mix_precision",): True, ("--no-use_mix_precision",): False,
             ("--use_mix_precision", "false"): False, ("--use_mix_precision", "auto"): None}
    for argv, expected in cases.items():
        cfg, _ = parse_config(DiffusionConfig, ["--in_dir", "x", *argv])
        assert cfg.use_mix_precision is expected, argv
    with pytest.raises(SystemExit):
        parse_config(DiffusionConfig, ["--in_dir", "x", "--use_mix_precision", "maybe"])


def test_a_setting_added_later_changes_nothing_while_it_holds_its_default():
    from cli.flags import changed_settings
    cfg = BalancerConfig(in_dir="x", theta=3.0)
    saved = config_to_dict(cfg)
    assert changed_settings(saved, cfg) == []
    older = {k: v for k, v in saved.items() if k != "fact"}     # written before 'fact' existed
    assert changed_settings(older, cfg) == []
    assert changed_settings(older, BalancerConfig(in_dir="x", theta=3.0, fact=1.3)) == ["fact"]
    assert changed_settings(saved, BalancerConfig(in_dir="x", theta=4.0)) == ["theta"]


def test_every_command_family_follows_one_dispatch_rule(capsys):
    """python3 -m quality / robustness / inpainting: no command = usage + exit 2, --help =
    help + exit 0, an unknown command = one error line + usage, exit 2."""
    from cli.subcommands import dispatch
    from inpainting.__main__ import main as inpainting_main
    from quality.__main__ import main as quality_main
    from robustness.__main__ import main as robustness_main
    for main in (quality_main, robustness_main, inpainting_main):
        assert main([]) == 2 and "usage:" in capsys.readouterr().out
        assert main(["--help"]) == 0 and capsys.readouterr().out.strip()
        assert main(["frobnicate"]) == 2
        assert "error: unknown command 'frobnicate'" in capsys.readouterr().err
    seen = []
    commands = {"a": lambda argv: seen.append(("a", argv)) or 0,
                "b": lambda argv: seen.append(("b", argv)) or 3}
    assert dispatch(["b", "--x"], commands, "usage: t") == 3
    assert dispatch(["--x", "1"], commands, "usage: t", default="a") == 0
    assert dispatch(["--x"], commands, "usage: t") == 2          # no default: an error
    assert seen == [("b", ["--x"]), ("a", ["--x", "1"])]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_float_flag_must_be_finite(value, capsys):
    # NaN fails every comparison, so a min/max check alone lets it through (issue 37)
    with pytest.raises(SystemExit) as exc:
        parse_config(BalancerConfig, ["--in_dir", "x", f"--theta={value}"])
    assert exc.value.code == 2
    assert "--theta must be a finite number" in capsys.readouterr().err


def test_a_json_nan_or_an_unbounded_inf_is_refused_and_allow_inf_lets_inf_through():
    import dataclasses
    from cli.flags import opt
    from config import AugmentationConfig, DiffusionConfig
    cfg = config_from_dict(AugmentationConfig, json.loads('{"in_dir": "x", '
                                                          '"guidance_scale": NaN}'))
    with pytest.raises(ConfigError, match="--guidance_scale must be a finite number"):
        validate_config(cfg)
    # a field with no max: inf is still refused unless the field says it means something
    with pytest.raises(ConfigError, match="--early_stop_min_delta must be a finite"):
        validate_config(DiffusionConfig(in_dir="x", early_stop_min_delta=float("inf")))

    @dataclasses.dataclass
    class Limit:
        most: float = opt(1.0, "No limit at inf.", min=0.0, allow_inf=True)
    validate_config(Limit(most=float("inf")))
    with pytest.raises(ConfigError, match="finite"):
        validate_config(Limit(most=float("nan")))
    with pytest.raises(ConfigError, match=">= 0.0"):
        validate_config(Limit(most=float("-inf")))


@pytest.mark.parametrize("name", ["../../data/evil", "/abs/run", "a/b", "..", ".", "a\\b"])
def test_a_run_name_or_label_must_be_one_plain_path_component(name):
    from config import ClassifierConfig, TrainAllConfig
    with pytest.raises(ConfigError, match="--run_name must be one plain name"):
        validate_config(ClassifierConfig(train_dir="t", run_name=name))
    with pytest.raises(ConfigError, match="--labels must be one plain name"):
        validate_config(BalancerConfig(in_dir="x", labels=["a", name]))
    with pytest.raises(ConfigError, match="--labels must be one plain name"):
        validate_config(TrainAllConfig(labels=[name]))


def test_plain_names_pass_and_an_empty_run_name_means_the_default():
    from config import AugmentationConfig, ClassifierConfig
    validate_config(ClassifierConfig(train_dir="t", run_name=""))
    validate_config(ClassifierConfig(train_dir="t", run_name="lr1e-3_seed0..b"))
    with pytest.raises(ConfigError, match="--categories must be one plain name"):
        validate_config(AugmentationConfig(in_dir="x", categories=["a,../b", "c"]))
