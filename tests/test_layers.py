"""Every import points down a layer: pure maths <- models <- pipelines <- command lines.

Read from the source with `ast` (imports inside functions count too), so a new upward import
fails here before it becomes a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {"site_id_balancer", "run_diffusion", "train_all", "diffusion_augmentation",
            "run_pipeline"}
PROJECT = {p.stem for p in REPO.glob("*.py")} | {p.name for p in REPO.iterdir()
                                                  if (p / "__init__.py").is_file()}


def project_imports(path: Path) -> set[str]:
    """The project modules a file imports (dotted names, e.g. 'diffusion_maths.schedule')."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PROJECT}
    return found


def sources(*parts: str) -> list[Path]:
    out = []
    for part in parts:
        p = REPO / part
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


@pytest.mark.parametrize("path", sources("diffusion_maths"), ids=lambda p: p.name)
def test_pure_maths_imports_nothing_of_the_project_above_it(path):
    assert {m for m in project_imports(path) if not m.startswith("diffusion_maths")} == set()


@pytest.mark.parametrize("path", sources("u_net_backbone.py", "diffusion_model.py",
                                         "gan_model.py"),
                         ids=lambda p: p.name)
def test_models_import_only_the_maths_and_each_other(path):
    allowed = ("diffusion_maths", "u_net_backbone")
    assert {m for m in project_imports(path) if not m.startswith(allowed)} == set()


def test_config_imports_only_flags_and_pure_rules():
    allowed = ("cli.flags", "diffusion_maths", "classifier.arms", "inpainting.masks")
    assert {m for m in project_imports(REPO / "config.py") if not m.startswith(allowed)} == set()


@pytest.mark.parametrize("path", [p for p in sources(*sorted(
    n for n in PROJECT if (REPO / n).is_dir())) if "tests" not in p.parts],
    ids=lambda p: str(p.relative_to(REPO)))
def test_no_library_module_imports_a_command_line_script(path):
    assert project_imports(path) & COMMANDS == set()
