"""One package per folder: each declares what it imports, a service only what it imports, and
no service depends on another.

A service's image installs only the API package, the runtime library and the service itself,
so an import that its pyproject.toml does not declare works in the dev venv (where every
package is installed) and fails in production. The imports of each package are read with
`ast` (code under `if TYPE_CHECKING:` never runs, so it is left out) and mapped to the
installed distributions that ship the imported module, from their RECORD files.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = [
    "gen/python",
    "services/runtime",
    "services/gateway",
    "services/orchestrator",
    "services/renderer",
    "services/storage",
    "clients/cli",
    "tools/devstack",
]
SERVICES = ["gateway", "orchestrator", "renderer", "storage"]


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Package:
    """One folder's distribution: its name, its import package and what it requires."""

    folder: str
    name: str
    import_package: Path
    requires: frozenset[str]

    @classmethod
    def read(cls, folder: str) -> Package:
        project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
        declared = list(project.get("dependencies", []))
        # Extras count: the API package's Connect stubs import connectrpc, declared as its extra.
        for extra in project.get("optional-dependencies", {}).values():
            declared.extend(extra)
        (import_package,) = [p.parent for p in (ROOT / folder).glob("*/__init__.py")]
        return cls(
            folder=folder,
            name=normalize(project["name"]),
            import_package=import_package,
            requires=frozenset(normalize(Requirement(r).name) for r in declared),
        )


PACKAGES = {folder: Package.read(folder) for folder in FOLDERS}
FIRST_PARTY = {package.import_package.name: package.name for package in PACKAGES.values()}


def runtime_imports(tree: ast.Module) -> Iterator[str]:
    """Every module a file imports when it runs: `from a import b` yields `a.b` (b may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            # Its body is walked too by ast.walk: blank it out so that it yields nothing.
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def imports_of(package: Package) -> dict[str, set[str]]:
    """Imported third-party or first-party module -> the files (relative to the root) importing it."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.import_package.rglob("*.py")):
        for module in runtime_imports(ast.parse(path.read_text(), str(path))):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == package.import_package.name:
                continue
            found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


@cache
def module_index() -> dict[str, frozenset[str]]:
    """Dotted module or package name -> the installed distributions whose files provide it.

    Namespace packages are shared (google.protobuf, google.rpc and google.genai come from three
    distributions), so every level is indexed and an import is looked up by its longest known
    prefix.
    """
    index: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        name = normalize(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info", ".data")):
                continue
            stem = parts[-1].split(".")[0]
            if not parts[-1].endswith((".py", ".so", ".pyd")):
                parts = parts[:-1]  # a data file: it stands for the package holding it
            elif stem == "__init__":
                parts = parts[:-1]
            else:
                parts = (*parts[:-1], stem)
            for depth in range(1, len(parts) + 1):
                index.setdefault(".".join(parts[:depth]), set()).add(name)
    return {module: frozenset(dists) for module, dists in index.items()}


def providers(module: str) -> frozenset[str]:
    """The distributions that ship `module` (empty when nothing installed does)."""
    if module.split(".")[0] in FIRST_PARTY:
        return frozenset({FIRST_PARTY[module.split(".")[0]]})
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        found = module_index().get(".".join(parts[:depth]))
        if found:
            return found
    return frozenset()


@cache
def shipping_modules() -> frozenset[str]:
    """The installed distributions that ship at least one module."""
    return frozenset(dist for dists in module_index().values() for dist in dists)


@cache
def covered_by(requirement: str) -> frozenset[str]:
    """The distributions a requirement brings whose modules the package may import.

    That is the requirement itself, plus, for a distribution that ships no module of its own
    (a meta-package such as protobuf-py, which installs protobuf-py-pure), what it requires.
    """
    covered = {requirement}
    if requirement not in FIRST_PARTY.values() and requirement not in shipping_modules():
        for spec in importlib.metadata.distribution(requirement).requires or ():
            parsed = Requirement(spec)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                covered.add(normalize(parsed.name))
    return frozenset(covered)


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_import_is_declared_in_the_packages_pyproject(folder: str) -> None:
    package = PACKAGES[folder]
    allowed = {name for requirement in package.requires for name in covered_by(requirement)}
    undeclared = []
    for module, files in sorted(imports_of(package).items()):
        dists = providers(module)
        assert dists, f"{module} (imported by {sorted(files)}) is not installed"
        if not dists & allowed:
            undeclared.append(f"{module} from {sorted(dists)}, imported by {sorted(files)}")
    assert not undeclared, f"{folder}/pyproject.toml does not declare:\n" + "\n".join(undeclared)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_requires_only_what_it_imports(service: str) -> None:
    package = PACKAGES[f"services/{service}"]
    imported = {dist for module in imports_of(package) for dist in providers(module)}
    unused = {requirement for requirement in package.requires if not covered_by(requirement) & imported}
    assert not unused, f"services/{service}/pyproject.toml requires what it never imports: {sorted(unused)}"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_depends_on_the_api_and_runtime_and_on_no_other_service(service: str) -> None:
    package = PACKAGES[f"services/{service}"]
    assert {"mangakai-api", "mangakai-runtime"} <= package.requires
    others = {PACKAGES[folder].name for folder in FOLDERS} - {
        package.name,
        "mangakai-api",
        "mangakai-runtime",
    }
    assert not package.requires & others, f"{service} depends on {sorted(package.requires & others)}"


def test_the_runtime_and_the_api_depend_on_no_service() -> None:
    services = {PACKAGES[f"services/{service}"].name for service in SERVICES}
    assert not PACKAGES["services/runtime"].requires & services
    assert not PACKAGES["gen/python"].requires & (services | {"mangakai-runtime"})


def test_the_workspace_is_no_package_and_every_folder_is_installed() -> None:
    """The root pyproject only carries the shared tooling; `make install` installs every folder."""
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert workspace["project"]["dependencies"] == []
    assert workspace["tool"]["setuptools"]["packages"] == []
    for package in PACKAGES.values():
        assert importlib.metadata.version(package.name), package.name
