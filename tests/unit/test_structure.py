"""The import structure docs/architecture.md describes: the shared package imports no service and no tool, and no
service imports another. Read from the code's own import statements (ast), so a new import that breaks it fails."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("publisher", "recognizer", "archiver")
TOOLS = "facebus_tools"


def imported_packages(package: str) -> dict[str, set[str]]:
    """Module file → the top-level packages its import statements name (at any depth, lazy imports included)."""
    found = {}
    for path in sorted((ROOT / package).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_shared_package_imports_no_service_and_no_tool():
    for module, names in imported_packages("facebus").items():
        assert not names & {*SERVICES, TOOLS}, f"{module} imports {sorted(names & {*SERVICES, TOOLS})}"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_no_tool(service):
    others = {*SERVICES, TOOLS} - {service}
    for module, names in imported_packages(service).items():
        assert not names & others, f"{module} imports {sorted(names & others)}"


def test_every_service_has_one_entry_taking_its_settings_and_a_stop_event():
    """Each row of the command line's service table is a module whose main(config, stop) takes that bundle."""
    import importlib
    import inspect

    from facebus_tools.cli import SERVICES as TABLE

    for command, (module, config, _) in TABLE.items():
        main = importlib.import_module(module).main
        params = list(inspect.signature(main).parameters)
        assert params == ["config", "stop"], f"{command}: {module}.main{params}"
        assert inspect.get_annotations(main)["config"] in (config.__name__, config), command
