"""``pip install "./sdk/python[extra]"`` installs what the SDK README's examples import: every
module a Python block of ``sdk/python/README.md`` imports comes from the standard library,
the SDK itself, or a distribution the SDK's dependencies and extras bring in (directly or
through their own requirements)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SDK = Path(__file__).resolve().parent.parent / "sdk" / "python"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def imported_modules(readme: Path) -> set[str]:
    """Top-level names of the modules the README's Python blocks import."""
    modules = set()
    for block in PYTHON_BLOCK.findall(readme.read_text()):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules


def installed_by_sdk() -> set[str]:
    """Distributions ``pip install "./sdk/python[every extra]"`` brings in (as installed
    here: requirements are followed through the installed distributions' metadata)."""
    project = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        wanted += extra
    seen: set[str] = set()
    while wanted:
        requirement = Requirement(wanted.pop())
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            nested = Requirement(line)
            if nested.marker is None or nested.marker.evaluate({"extra": ""}):
                wanted.append(line)
    return seen


def test_every_readme_import_is_installed_by_the_sdk_or_an_extra():
    modules = imported_modules(SDK / "README.md") - set(sys.stdlib_module_names) - {"airlock_sdk"}
    providers = metadata.packages_distributions()
    installed = installed_by_sdk()
    missing = {
        module: providers.get(module, ["(not installed here)"])
        for module in modules
        if not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    }
    assert not missing, f"README imports that no SDK extra installs: {missing}"
    assert modules, "the README's examples import nothing beyond the SDK?"
