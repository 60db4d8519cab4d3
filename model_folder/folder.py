"""`ModelFolder`: one trained model's folder (config.json, model.json, weights), of one kind.

Opening a folder checks it before anything heavy is read, and every failure is one line
naming the folder or file: a missing folder or config.json, a config.json that is not JSON,
a folder of another kind, missing weights, a damaged model.json, and weights of another
architecture (another backbone or size: Keras' load error, turned into one line).

Models are built from model.json. Stage-2 folders build themselves (their classes are the
project's models); classifier and feature folders take a `build` from their own package
(`classifier.runs`, `feature_diffusion.train`), which knows their networks.

Example:
    >>> folder = ModelFolder.open("models/L2_20250101-120000_ab12", "diffusion")
    >>> model = folder.load("best")       # falls back to last.weights.h5 before a best exists
    >>> folder.meta["_class_names"]
    ['1', '2']
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from cli.flags import ConfigError, config_from_dict, save_config_json
from config import LEGACY_ARCHITECTURE, DiffusionConfig
from dataset.atomic import load_weights_checked, save_weights_atomic
from dataset.errors import DatasetError
from model_folder.build import build_image_model, image_model_classes
from model_folder.description import LEGACY_AUGMENT_DIMS, read_model_json, write_model_json
from model_folder.files import CONFIG_JSON, KINDS, MODEL_JSON, kind_of


class ModelFolderError(DatasetError, ConfigError):
    """A model folder that cannot be used, in one line naming it (a DatasetError for the
    data commands and a ConfigError for the settings ones: both print it the same way)."""


def read_config_json(path: str | Path) -> dict:
    """A run folder's config.json as a dict.

    Raises:
        ModelFolderError: missing, not UTF-8, not JSON, or not a JSON object (naming it).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFolderError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as err:   # JSONDecodeError is a ValueError
        raise ModelFolderError(f"{path} is not valid JSON ({err}): the run folder is "
                               f"damaged") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path} holds no JSON object: the run folder is damaged")
    return data


class ModelFolder:
    """A model folder of `kind` ('diffusion', 'classifier' or 'feature').

    Constructing one reads nothing (a writer makes its folder with it); `open` reads and
    checks config.json.

    Args:
        path: the folder, or one weights file inside it (then `weights()` is that file).
        kind: a key of `model_folder.files.KINDS`.
    """

    def __init__(self, path: str | Path, kind: str):
        path = Path(path)
        given_file = path.is_file() or (path.suffix in (".h5", ".keras") and not path.is_dir())
        self.chosen_file = path if given_file else None
        self.path = path.parent if self.chosen_file is not None else path
        self.kind = kind
        self.spec = KINDS[kind]
        self._config: dict | None = None

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r}, {self.kind!r})"

    @classmethod
    def open(cls, path: str | Path, kind: str) -> "ModelFolder":
        """The folder at `path`, its config.json read and its kind checked.

        Raises:
            ModelFolderError: no such folder, no config.json, not JSON, another kind.
        """
        folder = cls(path, kind)
        folder.config  # reads and checks
        return folder

    # --- config.json ---------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_JSON

    @property
    def model_json_path(self) -> Path:
        return self.path / MODEL_JSON

    @property
    def config(self) -> dict:
        """config.json's contents, checked to be of this folder's kind (read once)."""
        if self._config is None:
            if not self.path.exists():
                raise ModelFolderError(f"{self.path} does not exist")
            if self.chosen_file is not None and \
                    self.chosen_file.suffix not in (".h5", ".keras"):   # not its parent's fault
                raise ModelFolderError(f"{self.chosen_file} is a file, not a {self.spec.name} "
                                       f"run folder (nor a .weights.h5 or .keras file in one)")
            if not self.config_path.is_file():
                raise ModelFolderError(
                    f"{self.path} is not a run folder (no {CONFIG_JSON}; "
                    f"{self.spec.made_by} makes a {self.spec.name} run folder)")
            data = read_config_json(self.config_path)
            self._check_kind(data)
            self._config = data
        return self._config

    def _check_kind(self, data: dict) -> None:
        found, named = kind_of(data), data.get("_config_class")
        if found == self.kind or (named is None and self.spec.older_folders):
            return
        what = (f"a {KINDS[found].name} run folder" if found
                else f"not a run folder (its {CONFIG_JSON} is a {named or 'unknown config'})")
        raise ModelFolderError(f"{self.path} is {what}; this needs a {self.spec.name} run "
                               f"folder ({self.spec.made_by} makes one)")

    @property
    def meta(self) -> dict:
        """The `_`-prefixed entries of config.json (class names, label, sites, ...)."""
        return {k: v for k, v in self.config.items() if k.startswith("_")}

    def write_config(self, cfg, **meta) -> Path:
        """Writes config.json: the settings `cfg` and `meta` (keys get a `_` prefix)."""
        self._config = None
        return save_config_json(cfg, self.config_path, **meta)

    # --- model.json ----------------------------------------------------------------------

    def description(self) -> tuple[str, dict] | None:
        """(class name, constructor arguments) from model.json; None in folders written
        before it (they rebuild from config.json).

        Raises:
            ModelFolderError: model.json is damaged or describes another kind of model, or
                is missing where every folder of the kind has one.
        """
        try:
            found = read_model_json(self.path, self.spec.model_classes)
        except (ValueError, KeyError, TypeError) as err:
            first = (str(err).splitlines() or [type(err).__name__])[0][:160]
            raise ModelFolderError(f"{self.model_json_path} is damaged ({first})") from None
        if found is None and not self.spec.older_folders:
            raise ModelFolderError(f"{self.path} has no {MODEL_JSON} (its training did not "
                                   f"finish)")
        return found

    def write_description(self, model=None, class_name: str | None = None,
                          config: dict | None = None) -> Path:
        """Writes model.json from a Keras model's `get_config()`, or from `class_name` and
        `config` for a network built by a function (the classifier)."""
        if model is not None:
            class_name, config = type(model).__name__, model.get_config()
        return write_model_json(self.path, class_name, config)

    def describe(self, model, cfg, **meta) -> None:
        """Makes the folder describe `model` (weights are saved apart): config.json with
        the settings and `meta`, and model.json.

        Example:
            >>> ModelFolder("models/run1", "diffusion").describe(model, cfg, label="1")
        """
        self.write_config(cfg, **meta)
        self.write_description(model)

    # --- weights -------------------------------------------------------------------------

    def weights_path(self, which: str | None = None) -> Path:
        """Where the `which` weights ('best', 'last', 'final': see the kind) belong."""
        names = self.spec.weights
        return self.path / names[which or next(iter(names))]

    def has_weights(self, which: str | None = None) -> bool:
        """Whether the `which` weights exist (None: any of the kind's weights files)."""
        if which is not None:
            return self.weights_path(which).is_file()
        return any(self.weights_path(w).is_file() for w in self.spec.weights)

    def weights(self, which: str | None = None) -> Path:
        """The weights file to load: the chosen file when the folder was given as one, else
        the `which` weights; the default (the kind's first) falls back to the others in
        order (a stage-2 run before its first best epoch has only last weights).

        Raises:
            ModelFolderError: the file is missing (the training did not finish).
        """
        if self.chosen_file is not None:
            if not self.chosen_file.is_file():
                raise ModelFolderError(f"{self.chosen_file} does not exist")
            return self.chosen_file
        first = next(iter(self.spec.weights))
        order = [which] if which not in (None, first) else list(self.spec.weights)
        for w in order:
            if self.weights_path(w).is_file():
                return self.weights_path(w)
        names = " or ".join(self.spec.weights[w] for w in order)
        raise ModelFolderError(f"{self.path} has no {names} (its training did not finish)")

    def save_weights(self, model, which: str | None = None) -> Path:
        """Saves `model`'s weights as the `which` weights, atomically."""
        return save_weights_atomic(model, self.weights_path(which))

    def load_weights(self, model, which: str | None = None) -> Path:
        """Loads the `which` weights (see `weights`) into `model`; returns the file.

        Raises:
            ModelFolderError: missing, damaged, or another architecture's weights.
        """
        path = self.weights(which)
        try:
            load_weights_checked(model, path)
        except DatasetError as err:
            raise ModelFolderError(str(err)) from None
        return path

    # --- build and load ------------------------------------------------------------------

    def build(self, build: Callable | None = None):
        """The model the folder describes, weights not loaded (the caller chooses devices
        and dtype policy first).

        Args:
            build: `build(folder, description)` -> model, where description is
                `self.description()` (None in older folders); default: the stage-2 models.

        Raises:
            ModelFolderError: the description (or config.json) builds no model.
        """
        description = self.description()
        builder = build or _build_image_model
        try:
            return builder(self, description)
        except (TypeError, ValueError) as err:
            if isinstance(err, (DatasetError, ConfigError)):
                raise ModelFolderError(str(err)) from None
            where = self.model_json_path if description is not None else self.config_path
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise ModelFolderError(f"{where} describes no buildable model ({first})"
                                   ) from None

    def load(self, which: str | None = None, build: Callable | None = None):
        """`build()` with the `which` weights loaded (see `weights`).

        Example:
            >>> model = ModelFolder.open("models/run1/last.weights.h5", "diffusion").load()
        """
        self.weights(which)  # a missing file is told before the (slow) build
        model = self.build(build)
        self.load_weights(model, which)
        return model

    # --- stage-2 settings ------------------------------------------------------------------

    def settings(self, cls, legacy: bool = True, known_only: bool = False):
        """config.json as a `cls` (a settings dataclass).

        Args:
            legacy: where an older stage-2 folder lacks an architecture field, the value
                its network had then (`config.LEGACY_ARCHITECTURE`), not today's default.
            known_only: leave out keys `cls` does not know (else they are an error).

        Raises:
            ModelFolderError: values that `cls` refuses (naming config.json).
        """
        data = self.config
        if known_only:
            data = {k: v for k, v in data.items()
                    if k in cls.__dataclass_fields__ or k.startswith("_")}
        try:
            cfg = config_from_dict(cls, data)
        except ConfigError as err:
            raise ModelFolderError(f"{self.config_path}: {err}") from None
        old = {k: v for k, v in LEGACY_ARCHITECTURE.items()
               if k not in self.config and k in cls.__dataclass_fields__}
        return dataclasses.replace(cfg, **old) if legacy and old and self.kind == "diffusion" else cfg


def _build_image_model(folder: ModelFolder, description):
    """A stage-2 model from model.json, or (older folders) from config.json's settings."""
    if description is not None:
        name, config = description
        return image_model_classes()[name](**config)
    cfg, meta = folder.settings(DiffusionConfig), folder.meta
    return build_image_model(cfg, len(meta.get("_class_names", [])) if cfg.conditional else 0,
                             len(meta.get("_site_names") or []),
                             LEGACY_AUGMENT_DIMS if cfg.augment_conditioning else 0)
