"""Command-line flags generated from the config dataclasses of `config.py`.

Every script declares its settings once, as a dataclass in `config.py`; this module turns
the dataclass into an argparse parser (typed flags, validated ranges, `--help` from the
field metadata), merges defaults < `--config file.json` < flags, and saves/loads the resolved
config as JSON.

Example:
    >>> from config import BalancerConfig
    >>> cfg, ns = parse_config(BalancerConfig, ["--in_dir", "photos", "--theta", "10"])
    >>> cfg.theta
    10.0
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from dataset.atomic import atomic_write_text
# Below the command-line layer so that dataset/ can compare saved settings; re-exported here.
from setting_rules.saved_settings import changed_settings, config_to_dict  # noqa: F401

_NONE_WORDS = {"none", "auto", "null"}


class ConfigError(ValueError):
    """A setting is out of range, of the wrong type or missing."""


def opt(default: Any, help: str, *, min: float | None = None, max: float | None = None,
        choices: Sequence[Any] | None = None, required: bool = False,
        min_len: int | None = None, allow_inf: bool = False,
        path_component: bool = False) -> Any:
    """Declares one setting of a config dataclass.

    Every number must be finite (NaN never passes); `allow_inf` lets +-inf through for a
    field where it means something ("no limit").

    Args:
        default: the value a user gets when they set nothing (lists are copied per instance).
        help: one sentence for `--help`.
        min, max: inclusive numeric bounds (for lists: bounds of every element).
        choices: the allowed values.
        required: the value must be given (by flag or JSON); the default is only a placeholder.
        min_len: the fewest elements a list may have.
        allow_inf: +-inf is a meaningful value of this field (still within min/max).
        path_component: the value (each element, for lists) becomes one folder or file name
            inside an output folder: no separator, not '.' or '..', not absolute ('' passes:
            it means "the default name").

    Example:
        >>> theta: float = opt(5.0, "Rotation step in degrees.", min=0.1, max=45)
        >>> run_name: str = opt("", "Run folder name.", path_component=True)
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices, "required": required,
            "min_len": min_len, "allow_inf": allow_inf, "path_component": path_component}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _scalar_parser(tp: type, optional: bool):
    def convert(text: str):
        if optional and text.lower() in _NONE_WORDS:
            return None
        if tp is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
        try:
            return tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {tp.__name__}, got {text!r}") from None
    convert.__name__ = tp.__name__
    return convert


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe_default(value: Any) -> str:
    if value is None:
        return "auto"
    if value == "":
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "(empty)"
    return str(value)


def _help_order(cls) -> list:
    """The fields in --help order: required flags, then the class's own, then those of each
    settings group it inherits (a dataclass lists inherited fields first)."""
    mro = [k for k in cls.__mro__ if "__annotations__" in vars(k)]

    def depth(f) -> int:
        return next(i for i, k in enumerate(mro) if f.name in vars(k)["__annotations__"])
    return sorted(dataclasses.fields(cls), key=lambda f: (not f.metadata.get("required"),
                                                          depth(f)))


def build_parser(cls, description: str | None = None, dry_run: bool = True,
                 prog: str | None = None) -> argparse.ArgumentParser:
    """Builds an argparse parser with one flag per field of the dataclass `cls`.

    Flags default to argparse.SUPPRESS so that only flags the user typed override the
    dataclass defaults (and a `--config` JSON file).
    """
    # No abbreviations: `--model gan` must not quietly mean `--model_dir gan`.
    parser = argparse.ArgumentParser(
        prog=prog, description=description or (cls.__doc__ or "").strip().splitlines()[0],
        allow_abbrev=False)
    hints = _field_types(cls)
    for f in _help_order(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        extra = []
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and hi is not None:
            extra.append(f"{lo} to {hi}")
        elif lo is not None or hi is not None:
            extra.append(f">= {lo}" if lo is not None else f"<= {hi}")
        if meta.get("required"):
            extra.append("required")
        elif "default" not in meta.get("help", "").lower():
            extra.append(f"default: {_describe_default(default)}")
        suffix = f" ({'; '.join(extra)})" if extra else ""
        help_text = f"{meta.get('help', '')}{suffix}".replace("%", "%%")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text,
                                  "dest": f.name}
        origin = typing.get_origin(tp)
        if tp is bool and optional:
            # --x (on), --x false (off), --x auto (the default's automatic choice), --no-x
            kwargs.update(nargs="?", const=True, type=_scalar_parser(bool, True),
                          metavar="true|false|auto")
            parser.add_argument(f"--no-{f.name}", dest=f.name, action="store_const",
                                const=False, default=argparse.SUPPRESS,
                                help=f"Same as --{f.name} false.")
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin in (list, tuple):
            args = typing.get_args(tp)
            kwargs["type"] = _scalar_parser(args[0], False)
            fixed_tuple = origin is tuple and Ellipsis not in args
            kwargs["nargs"] = len(args) if fixed_tuple else "+"
            elem = args[0]
            kwargs["metavar"] = elem.__name__.upper()
        else:
            kwargs["type"] = _scalar_parser(tp, optional)
            kwargs["metavar"] = tp.__name__.upper()
        if meta.get("choices") and tp is not bool:
            kwargs["choices"] = list(meta["choices"])
            kwargs.pop("metavar", None)
        parser.add_argument(f"--{f.name}", **kwargs)
    parser.add_argument("--config", dest="_config_json", default=None, metavar="JSON",
                        help="JSON file with settings; flags given here override it.")
    if dry_run:
        parser.add_argument("--dry-run", "--dry_run", dest="_dry_run", action="store_true",
                            help="Print the resolved config and the plan; write nothing.")
    return parser


def _coerce(cls, name: str, value: Any) -> Any:
    """Converts a JSON value to the field's type (lists to tuples, ints to floats)."""
    tp, optional = _unwrap_optional(_field_types(cls)[name])
    if value is None:
        if not optional:   # JSON null where a number or a name is needed
            raise ConfigError(f"{name}: expected {getattr(tp, '__name__', tp)}, got null")
        return None
    origin = typing.get_origin(tp)
    original = value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        elem = typing.get_args(tp)[0]
        try:
            if any(isinstance(v, (list, dict)) for v in value):
                raise TypeError
            items = [elem(v) for v in value]
        except (TypeError, ValueError, OverflowError):   # OverflowError: int(inf)
            # e.g. "8,16" where [8, 16] is meant: say so rather than raise int()'s error
            raise ConfigError(f"{name}: expected a list of {elem.__name__}, got {original!r}"
                              ) from None
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{name}: expected {tp.__name__}, got {value!r}")
    return value


def check_number(flag: str, value: float, allow_inf: bool = False) -> None:
    """Refuses NaN, and +-inf unless `allow_inf`: NaN fails every comparison, so a range
    check alone lets it through (and it then trains to NaN or draws black images).

    Raises:
        ConfigError: one line naming the flag.

    Example:
        >>> check_number("--theta", float("nan"))
        Traceback (most recent call last):
        ConfigError: --theta must be a finite number, got nan
    """
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value) or not allow_inf:
            raise ConfigError(f"{flag} must be a finite number, got {value}")


def check_path_component(flag: str, name: str) -> None:
    """Refuses a name that would not stay one entry of its folder: a path separator, '.' or
    '..', an absolute path, a NUL byte (`../../data/x` would write a run into the data).

    Raises:
        ConfigError: one line naming the flag.

    Example:
        >>> check_path_component("--run_name", "../evil")
        Traceback (most recent call last):
        ConfigError: --run_name must be one plain name, without '/', '\\', '.' or '..': got '../evil'
    """
    if any(c in name for c in "/\\\0") or name in (".", ".."):
        raise ConfigError(f"{flag} must be one plain name, without '/', '\\', '.' or '..': "
                          f"got {name!r}")


def validate_config(cfg) -> None:
    """Checks every field against its declared range/choices, finiteness and name rule,
    then the `validate()` of its class and of every settings class it inherits from.

    Raises:
        ConfigError: with a one-line message naming the flag.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        meta = f.metadata
        if meta.get("required") and value in (None, "", [], ()):
            raise ConfigError(f"--{f.name} is required")
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if meta.get("min_len") is not None and len(values) < meta["min_len"]:
            raise ConfigError(f"--{f.name} needs at least {meta['min_len']} values")
        for v in values:
            if meta.get("path_component") and isinstance(v, str) and v:
                check_path_component(f"--{f.name}", v)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                # finite first: NaN would pass both comparisons below
                check_number(f"--{f.name}", v, meta.get("allow_inf", False))
                if meta.get("min") is not None and v < meta["min"]:
                    raise ConfigError(f"--{f.name} must be >= {meta['min']}, got {v}")
                if meta.get("max") is not None and v > meta["max"]:
                    raise ConfigError(f"--{f.name} must be <= {meta['max']}, got {v}")
            if meta.get("choices") and v not in meta["choices"]:
                raise ConfigError(f"--{f.name} must be one of {list(meta['choices'])}, got {v!r}")
    # Each settings class checks only its own fields: run them all, shared groups first.
    for klass in reversed(type(cfg).__mro__):
        check = vars(klass).get("validate")
        if callable(check):
            check(cfg)


def config_from_dict(cls, data: dict[str, Any], base=None):
    """Returns a `cls` built from `base` (or the defaults) with `data` applied.

    Keys starting with `_` are metadata and ignored; unknown keys are an error (typos).
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in data if k not in names and not k.startswith("_"))
    if unknown:
        raise ConfigError(f"unknown setting(s) for {cls.__name__}: {', '.join(unknown)}")
    cfg = dataclasses.replace(base) if base is not None else cls()
    for key, value in data.items():
        if key in names:
            setattr(cfg, key, _coerce(cls, key, value))
    return cfg


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A settings file's JSON object.

    Raises:
        ConfigError: the file is missing, is not JSON, or holds no object.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:   # a binary file is not text
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def load_config_json(cls, path: str | Path, base=None, section: str | None = None):
    """Reads a JSON config written by `save_config_json` (or by hand) into `cls`.

    With `section`, the settings are the object under that key (absent: the defaults), as
    in the pipeline's one file for all stages."""
    data = read_json_object(path)
    if section is not None:
        data = data.get(section, {})
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: {section!r} must hold a JSON object")
    return config_from_dict(cls, data, base)


def save_config_json(cfg, path: str | Path, **extra: Any) -> Path:
    """Writes the resolved config (plus `extra` metadata keys, prefixed `_`) atomically."""
    data = config_to_dict(cfg)
    data.update({f"_{k}": v for k, v in extra.items()})
    return atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=False) + "\n")


def format_config(cfg) -> str:
    """The config as aligned `name = value` lines, for `--dry-run` and logs."""
    data = config_to_dict(cfg)
    data.pop("_config_class")
    width = max(len(k) for k in data)
    lines = [f"[{type(cfg).__name__}]"]
    lines += [f"  {k.ljust(width)} = {_describe_default(v) if v is None else v}"
              for k, v in data.items()]
    return "\n".join(lines)


def parse_config(cls, argv: Sequence[str] | None = None, description: str | None = None,
                 dry_run: bool = True, prog: str | None = None, section: str | None = None):
    """Parses flags into a validated `cls` instance.

    Precedence: the dataclass defaults (config.py) < `--config JSON` (its `section` key,
    when given) < flags.
    A bad value exits with status 2 and a one-line message, as argparse does.

    Returns:
        (cfg, namespace); `namespace._dry_run` is True when `--dry-run` was given.
    """
    parser = build_parser(cls, description, dry_run=dry_run, prog=prog)
    ns = parser.parse_args(argv)
    try:
        base = (load_config_json(cls, ns._config_json, section=section) if ns._config_json
                else cls())
        given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)
                 if hasattr(ns, f.name)}
        cfg = config_from_dict(cls, given, base)
        validate_config(cfg)
    except ConfigError as err:
        parser.error(str(err))
    if not dry_run:
        ns._dry_run = False
    return cfg, ns
