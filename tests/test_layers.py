"""Every import points down a layer: pure maths and rules <- files, flags and the defaults
sheet <- models <- pipelines <- command lines, and no package or module imports itself back.

Read from the source with `ast` (imports inside functions count too), so a new upward import
fails here before it becomes a cycle. `ALLOWED` is the table of directions: a package imports
only the packages it lists.
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
    allowed = ("cli.flags", "diffusion_maths", "setting_rules")
    assert {m for m in project_imports(REPO / "config.py") if not m.startswith(allowed)} == set()


@pytest.mark.parametrize("path", [p for p in sources(*sorted(
    n for n in PROJECT if (REPO / n).is_dir())) if "tests" not in p.parts],
    ids=lambda p: str(p.relative_to(REPO)))
def test_no_library_module_imports_a_command_line_script(path):
    assert project_imports(path) & COMMANDS == set()


# The directions imports may take, package by package (a top-level module is its own package).
# Read bottom-up: each package lists what it may import, and nothing imports a package above
# it. tests/ and benchmarks/ sit above everything and are imported by nothing.
PURE = {"diffusion_maths", "quality_maths", "setting_rules"}
BASE = PURE | {"runtime", "dataset", "reporting", "cli", "config"}
MODELS = {"u_net_backbone", "diffusion_model", "gan_model"}
STAGES = {"balancing", "sample_data", "pretrained", "model_folder", "diffusion",
          "feature_diffusion", "classifier", "quality", "robustness", "generators",
          "gap_filling", "classic_fill", "inpainting"}
ALLOWED = {
    # 1. pure maths and rules: nothing of the project
    "diffusion_maths": set(), "quality_maths": set(), "setting_rules": set(),
    # 2. pools and devices; files, images and manifests; HTML; flags; the defaults sheet
    "runtime": set(),
    "dataset": {"runtime", "setting_rules"},
    "reporting": {"dataset"},
    "cli": {"dataset", "runtime", "setting_rules"},
    "config": {"cli", "diffusion_maths", "setting_rules"},
    # 3. the networks
    "u_net_backbone": {"diffusion_maths"},
    "diffusion_model": {"diffusion_maths", "u_net_backbone"},
    "gan_model": {"diffusion_maths", "u_net_backbone"},
    # 4. the stages' pipelines, each above the ones it uses
    "balancing": BASE,
    "sample_data": BASE | {"balancing"},
    "pretrained": BASE,
    "model_folder": BASE | MODELS,
    "diffusion": BASE | MODELS | {"model_folder"},
    "feature_diffusion": BASE | MODELS | {"model_folder", "diffusion"},
    "classifier": BASE | {"balancing", "model_folder", "feature_diffusion"},
    "quality": BASE | {"model_folder", "diffusion", "classifier"},
    "robustness": BASE | {"model_folder", "classifier"},
    "generators": BASE | MODELS | {"model_folder", "diffusion", "pretrained"},
    "gap_filling": BASE | MODELS | {"balancing", "model_folder", "diffusion", "classifier",
                                    "quality", "pretrained", "generators"},
    "classic_fill": BASE | {"balancing", "gap_filling"},
    "inpainting": BASE | MODELS | {"model_folder", "diffusion", "classifier", "quality",
                                   "pretrained", "generators", "gap_filling"},
    "pipeline": BASE | STAGES,
    # 5. the command lines
    "site_id_balancer": BASE | {"balancing"},
    "run_diffusion": BASE | {"diffusion"},
    "train_all": BASE | {"diffusion"},
    "diffusion_augmentation": BASE | {"gap_filling"},
    "run_pipeline": BASE | {"pipeline"},
}
ON_TOP = {"tests", "benchmarks"}


def module_name(path: Path) -> str:
    """'dataset/scan.py' -> 'dataset.scan'; a package's __init__.py is the package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every project module (tests and benchmarks included) -> the project modules it imports,
    each resolved to the longest module name that exists ('from dataset import scan' and
    'from dataset.scan import X' both give 'dataset.scan')."""
    paths = [p for top in PROJECT | ON_TOP
             for p in ([REPO / f"{top}.py"] if (REPO / f"{top}.py").is_file()
                       else (REPO / top).rglob("*.py"))]
    modules = {module_name(p): p for p in paths}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                wanted = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded to packages; imports inside a package drop out."""
    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        top = module.split(".")[0]
        out.setdefault(top, set()).update(t.split(".")[0] for t in targets)
        out[top].discard(top)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (each holds a cycle), by
    Tarjan's algorithm.

    Example:
        >>> cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
        [['a', 'b']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle_and_no_false_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


@pytest.fixture(scope="module")
def modules() -> dict[str, set[str]]:
    return import_graph()


@pytest.fixture(scope="module")
def packages(modules) -> dict[str, set[str]]:
    return package_graph(modules)


def test_no_package_imports_itself_back(packages):
    assert cycles(packages) == []


def test_no_module_imports_itself_back(modules):
    assert cycles(modules) == []


def test_the_table_of_directions_is_itself_a_layering():
    assert cycles(ALLOWED) == []
    assert set().union(*ALLOWED.values()) <= set(ALLOWED), "a direction to an unknown package"


def test_every_package_has_a_place_in_the_table():
    assert PROJECT - ON_TOP - set(ALLOWED) == set(), "add the new package to ALLOWED"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_packages_below_it(package, packages):
    assert packages.get(package, set()) - ALLOWED[package] == set()


def test_nothing_imports_the_tests_or_the_benchmarks(packages):
    assert {p for p, targets in packages.items() if targets & ON_TOP and p not in ON_TOP} \
        == set()


def imports_without_a_reason(path: Path) -> list[str]:
    """The imports inside functions of `path` with no `# why:` comment in the 3 lines above
    them ('line: statement')."""
    lines = path.read_text().splitlines()
    found = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not any(
                    "# why:" in line for line in lines[max(0, node.lineno - 4):node.lineno - 1]):
                found.append(f"{node.lineno}: {lines[node.lineno - 1].strip()}")
    return found


def test_imports_inside_functions_say_why():
    # An import inside a function is for a heavy optional library (TensorFlow, Keras, pandas,
    # Ray, ...), so that --help, --dry-run and the pure tests load none of them; the line
    # above says which and why. Everything else is imported at the top, where a reader and
    # this test's import graph see it.
    library = [p for top in PROJECT
               for p in ([REPO / f"{top}.py"] if (REPO / f"{top}.py").is_file()
                         else (REPO / top).rglob("*.py"))]
    unexplained = {module_name(p): found for p in library
                   if (found := imports_without_a_reason(p))}
    assert unexplained == {}
