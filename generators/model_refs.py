"""Which model serves a label: a trained run folder (and the class and sites it knows), or
a pretrained preset. Read from the run folders' config.json alone (no Keras).

Example:
    >>> refs = resolve_label_models(cfg, ["1", "2"])     # cfg: stage 3's settings
    >>> refs["1"].model_dir, refs["1"].class_index
    ('models/conditional_2025...', 0)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli.flags import ConfigError
from diffusion.training import read_run


@dataclass(frozen=True)
class ModelRef:
    """Which model generates a label: its run folder, the class index if conditional, and
    the sites it was conditioned on (empty: none)."""
    model_dir: str
    class_index: int | None
    site_names: tuple[str, ...] = ()

    def site_index(self, site: str) -> int | None:
        """The model's id of `site`; None when the model does not know it (any site)."""
        return self.site_names.index(site) if site in self.site_names else None


def model_id(ref: ModelRef) -> str:
    """What the manifest names as the model: a folder's absolute path, or a preset name."""
    path = Path(ref.model_dir)
    return str(path.resolve()) if path.exists() else ref.model_dir


def read_model_labels(model_dir: str) -> tuple[bool, list[str], tuple[str, ...]]:
    """(conditional?, label names, site names) of a run folder, from its config.json alone."""
    path = Path(model_dir)
    if path.is_file():  # a weights file was given: its folder is the run folder
        path = path.parent
    try:
        saved, meta = read_run(path)
    except ConfigError as err:
        raise ConfigError(f"model {model_dir}: {err}") from None
    names = [str(n) for n in meta.get("_class_names") or [meta.get("_label", path.name)]]
    sites = tuple(str(x) for x in meta.get("_site_names") or ()) if saved.site_conditioning else ()
    return bool(saved.conditional), names, sites


def resolve_label_models(cfg, needed: list[str]) -> dict[str, ModelRef]:
    """Maps every label that needs synthetic images to a model, or fails before any work.

    Args:
        cfg: settings with `weight_paths` (run folders, each serving the label(s) in its
            config.json) and `label_model_pairs()` ((label, run folder) pairs, which win).
        needed: the labels to serve.

    Raises:
        ConfigError: a folder is not a trained model, a pair names a label its conditional
            model does not know, or a needed label has no model.
    """
    mapping: dict[str, ModelRef] = {}
    for model_dir in cfg.weight_paths or []:
        conditional, names, sites = read_model_labels(model_dir)
        for i, name in enumerate(names):
            mapping.setdefault(name, ModelRef(model_dir, i if conditional else None, sites))
    for label, model_dir in cfg.label_model_pairs():
        conditional, names, sites = read_model_labels(model_dir)
        if conditional and label not in names:
            raise ConfigError(f"--label_models {label}={model_dir}: that conditional model "
                              f"knows the labels {', '.join(names)}")
        mapping[label] = ModelRef(model_dir, names.index(label) if conditional else None, sites)
    missing = [lab for lab in needed if lab not in mapping]
    if missing:
        have = ", ".join(sorted(mapping)) or "none"
        raise ConfigError(f"no model for label(s) {', '.join(missing)} (models given for: "
                          f"{have}); add --weight_paths or --label_models LABEL=MODEL_DIR")
    return {lab: mapping[lab] for lab in needed}
