"""The rules the layout keeps (docs/architecture.md), checked over the imports of every file in mygo/.

Also: the stage list is declared once (mygo/stages/table.py), MLproject is what the table generates,
and the table's hand-offs match what the stages write.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from mlflow.projects._project_spec import load_project

from mygo.cli import COMMANDS, mlproject_text
from mygo.config import load_config
from mygo.models.router_weights import ROUTER_WEIGHTS_FILE
from mygo.stages.table import STAGE_NAMES, STAGES, stage
from tests.helpers import REPO

PACKAGE = REPO / "mygo"
FILES = sorted(PACKAGE.rglob("*.py"))
TEST_FILES = sorted((REPO / "tests").glob("*.py"))
STAGE_MODULES = {entry.runner.partition(":")[0] for entry in STAGES}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(path: Path, module_level_only: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for each import in the file; `module_level_only` leaves out
    imports inside functions and `if TYPE_CHECKING:` blocks (those that run when the module is imported)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend((alias.name, [], node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((node.module, [alias.name for alias in node.names], node.lineno))
            elif isinstance(node, ast.ImportFrom):
                raise AssertionError(f"{path}:{node.lineno}: relative import; mygo imports by absolute name")
            if module_level_only:
                if isinstance(node, ast.If) and not _is_type_checking(node):
                    visit(node.body + node.orelse)
                elif isinstance(node, ast.Try):
                    visit(node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body])
            else:
                visit(ast.iter_child_nodes(node))

    visit(tree.body)
    return found


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in paths
        for module, _, line in imports(path)
        if any(_under(module, prefix) for prefix in forbidden)
    ]


def test_the_model_imports_no_tracking_data_or_builtin_code():
    models = [path for path in FILES if path.parent.name == "models"]
    assert models, "mygo/models/ is empty"
    assert violations(models, ("mlflow", "mygo.tracking", "mygo.data", "mygo.builtin")) == []


def test_analysis_is_arrays_only_no_model_and_no_mlflow():
    analysis = [path for path in FILES if path.parent.name == "analysis"]
    assert analysis, "mygo/analysis/ is empty"
    assert violations(analysis, ("mlflow", "mygo.models", "mygo.stages", "mygo.training", "mygo.tracking")) == []


# docs/architecture.md's layers, top to bottom: a module imports from its own layer or those below it.
LAYERS = (
    ("mygo.cli", "mygo.workflows"),
    ("mygo.stages",),
    ("mygo.training", "mygo.tracking"),
    ("mygo.builtin", "mygo.models", "mygo.analysis", "mygo.data"),
    ("mygo.config", "mygo.knobs", "mygo.registry", "mygo.atomic", "mygo.labels", "mygo.signal_table"),
)
DATA_FOR_EVERY_LAYER = "mygo.stages.table"  # imports nothing from mygo


def layer_of(module: str) -> int:
    for depth, packages in enumerate(LAYERS):
        if any(_under(module, package) for package in packages):
            return depth
    raise AssertionError(f"{module} is in no layer of docs/architecture.md: add it to LAYERS and the doc")


def test_the_layer_order_holds_whole():
    """Every import of a mygo module, lazy ones in functions included, goes to the importer's layer or below."""
    problems = []
    for path in FILES:
        name = module_name(path)
        if name == "mygo":
            continue
        problems += [
            f"{path.relative_to(REPO)}:{line} imports {module}, a layer above"
            for module, _, line in imports(path)
            if _under(module, "mygo") and module != "mygo" and not _under(module, DATA_FOR_EVERY_LAYER)
            if layer_of(module) < layer_of(name)
        ]
    assert problems == []


def test_nothing_in_mygo_imports_the_entry_points():
    assert violations(FILES, ("entrypoints",)) == []


def test_a_stage_imports_no_other_stage():
    """Stages meet through the hand-offs (mygo.tracking.handoffs) and the table, never through each other."""
    problems = []
    for path in FILES:
        name = module_name(path)
        if name in STAGE_MODULES:
            problems += [
                f"{name}:{line} imports {module}"
                for module, _, line in imports(path)
                if module in STAGE_MODULES and module != name
            ]
    assert problems == []


def test_no_module_imports_another_modules_private_names():
    """Within mygo/ (and the benchmarks); a test may reach into the module it tests."""
    problems = [
        f"{path.relative_to(REPO)}:{line} takes {name} from {module}"
        for path in [*FILES, *sorted((REPO / "benchmarks").rglob("*.py"))]
        for module, names, line in imports(path)
        if _under(module, "mygo")
        for name in names
        if name.startswith("_")
    ]
    assert problems == []


def test_no_import_cycles_between_mygo_modules():
    known = {module_name(path): path for path in FILES}
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for module, names, _ in imports(path, module_level_only=True):
            if not _under(module, "mygo"):
                continue
            # `from mygo.tracking import plots` imports the submodule mygo.tracking.plots
            submodules = {f"{module}.{item}" for item in names if f"{module}.{item}" in known}
            targets |= submodules or {module}
        graph[name] = {target for target in targets if target in known and target != name}

    cycles, state = [], {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                walk(target, [*trail, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert cycles == []


def test_test_modules_share_helpers_through_conftest_or_helpers_not_each_other():
    problems = [
        f"{path.name}:{line} imports {module}"
        for path in TEST_FILES
        for module, _, line in imports(path)
        if re.fullmatch(r"tests\.test_\w+", module)
    ]
    assert problems == []


def test_one_atomic_write_helper():
    """Only mygo/atomic.py renames a temporary file onto its final name."""
    pattern = re.compile(r"os\.replace\(|\.tmp[\"']|temporary\.replace\(")
    problems = [
        f"{path.relative_to(REPO)}:{number}"
        for path in FILES
        if path.name != "atomic.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert problems == []


def test_the_stage_list_is_declared_once():
    """No module but the table spells the stages out in order; configs take them from it too."""
    spelled = re.compile(r"""["']convert["'],\s*["']warmup["'],\s*["']score["']""")
    problems = [
        str(path.relative_to(REPO))
        for path in [*FILES, *sorted((REPO / "configs").glob("*.yaml"))]
        if path.name != "table.py" and spelled.search(path.read_text())
    ]
    assert problems == []
    for config in ("main", "sweep"):
        assert "stage_overrides:" not in (REPO / "configs" / f"{config}.yaml").read_text()
        assert list(load_config(config).stage_overrides) == list(STAGE_NAMES)


def test_every_stage_has_its_config_runner_and_entry_point():
    for entry in STAGES:
        assert (REPO / "configs" / f"{entry.config}.yaml").is_file(), entry.name
        assert callable(entry.load_runner()), entry.name
        if entry.upstream:
            assert entry.upstream in STAGE_NAMES[: STAGE_NAMES.index(entry.name)], entry.name
            assert load_config(entry.config).upstream[f"{entry.upstream}_run"] is None, entry.name
        for knob in entry.options:  # every named knob sets a key the config has
            assert knob.key.split(".")[0] in load_config(entry.config), (entry.name, knob.key)


def test_the_table_hand_offs_are_what_the_stages_write():
    assert stage("warmup").artifacts["router_weights"] == f"router/{ROUTER_WEIGHTS_FILE}"
    assert stage("warmup").compared_weights == stage("warmup").artifacts["router_weights"]
    assert stage("convert").compared_weights.startswith(stage("convert").artifacts["model"] + "/")
    assert stage("finetune").compared_weights.startswith(stage("finetune").artifacts["adapter"] + "/")


def test_mlproject_is_generated_from_the_stage_table():
    assert (REPO / "MLproject").read_text() == mlproject_text(), "run python scripts/write_mlproject.py"


def test_mlproject_entry_points_are_the_cli_commands_with_typed_parameters():
    project = load_project(str(REPO))
    assert set(project._entry_points) == set(COMMANDS)
    for name, command in COMMANDS.items():
        entry = project.get_entry_point(name)
        assert (REPO / command.entry_script).is_file(), command.entry_script
        for knob in command.named:
            parameter = entry.parameters[knob.option]
            assert parameter.type == ("float" if command.option_type(knob) in ("int", "float") else "string"), (
                name,
                knob.option,
            )
        given = {knob.option: "x" for knob in command.named if entry.parameters[knob.option].default is None}
        # Not given: MLflow passes "" and mygo applies nothing, so the config and its presets decide.
        assert entry.compute_command(given, None).startswith(f"python {command.entry_script} ")


CHECKOUT_FIRST = "sys.path.insert(0, str(Path(__file__).resolve().parents[1]))"


def test_entry_points_are_thin_and_run_their_own_checkout():
    """An entry point imports mygo.cli, after putting its checkout first on sys.path (pathlib finds it): what runs
    is the project `mlflow run` was pointed at, not whichever mygo is installed."""
    for script in sorted((REPO / "entrypoints").glob("*.py")):
        modules = {module for module, _, _ in imports(script)}
        assert modules <= {"__future__", "sys", "pathlib", "mygo.cli"}, script.name
        text = script.read_text()
        assert CHECKOUT_FIRST in text, script.name
        assert text.index(CHECKOUT_FIRST) < text.index("from mygo.cli import main"), script.name


@pytest.mark.parametrize(("option", "value", "ok"), [("k", "8", True), ("k", "8.5", False), ("epochs", "1e-2", True)])
def test_typed_knobs_check_given_values(option, value, ok):
    command, knob = next((c, k) for c in COMMANDS.values() for k in c.named if k.option == option)
    if ok:
        command.check(knob, value)
    else:
        with pytest.raises(ValueError, match=f"--{option}="):
            command.check(knob, value)


def test_a_tuned_preset_is_not_overridden_when_a_knob_is_not_given():
    """configs/tuned/warmup_tiny.yaml sets training.learning_rate; MLproject's default "" must leave it."""
    from mygo.cli import build_parser, command_overrides

    args = build_parser().parse_args(["warmup", "--learning_rate", "", "--epochs", ""])
    cfg = load_config("warmup", command_overrides(COMMANDS["warmup"], args))
    assert cfg.training.learning_rate == load_config("warmup").training.learning_rate == 5.0e-2
    args = build_parser().parse_args(["warmup", "--learning_rate", "0.02"])
    assert load_config("warmup", command_overrides(COMMANDS["warmup"], args)).training.learning_rate == 0.02
