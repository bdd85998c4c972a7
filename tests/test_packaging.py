"""The package as pyproject.toml declares it: one `decodex` namespace over the repository's
folders, every sub-package listed, every data file the tool reads shipped, no `tests`."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

import pytest

import decodex

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]
NOT_INSTALLED = ("tests", "benchmarks", "docs", ".ci")


def _folder(package: str) -> Path:
    """The folder of a package under the package-dir mapping (longest mapped prefix)."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in PACKAGE_DIR:
            return ROOT / PACKAGE_DIR[prefix] / Path(*parts[cut:])
    raise AssertionError(f"{package} is not under a mapped package")


def _tracked() -> list[Path]:
    """The files git tracks or would track (untracked but not ignored) that exist."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in dict.fromkeys(out.splitlines()) if (ROOT / line).is_file()]


def test_every_mapped_folder_with_an_init_is_a_listed_package() -> None:
    listed = set(SETUPTOOLS["packages"])
    found = set()
    for package, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed
    assert all(_folder(p).joinpath("__init__.py").is_file() for p in listed)
    assert not any(name.split(".")[1] in NOT_INSTALLED for name in listed if "." in name)
    assert all(p == "decodex" or p.startswith("decodex.") for p in listed)


def test_every_data_file_in_a_package_folder_ships() -> None:
    """A tracked non-Python file inside an installed folder is matched by a package-data glob
    (so the wheel carries what the tool reads), except package-level notes."""
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    folders = {p: _folder(p) for p in SETUPTOOLS["packages"]}
    missing = []
    for path in _tracked():
        if path.suffix in (".py", ".pyc") or not path.is_file():
            continue
        owner = max((p for p, f in folders.items() if f in path.parents), key=lambda p: len(str(folders[p])),
                    default=None)
        if owner is None:
            continue
        relative = path.relative_to(folders[owner]).as_posix()
        globs = data.get(owner, [])
        if not any(fnmatch.fnmatch(relative, g) or fnmatch.fnmatch(relative, g.replace("**/", "")) for g in globs):
            missing.append(f"{owner}: {relative}")
    assert not missing


def test_version_has_one_home() -> None:
    from decodex._version import __version__

    assert decodex.__version__ == __version__
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "decodex._version.__version__"}
    assert "version" in PYPROJECT["project"]["dynamic"]


def test_the_public_api_is_documented_and_resolves() -> None:
    for name in decodex.__all__:
        value = getattr(decodex, name)
        assert value is not None
        if callable(value):
            assert (value.__doc__ or "").strip(), f"decodex.{name} has no docstring"
        if name != "__version__":
            assert f"``{name}``" in (decodex.__doc__ or ""), f"decodex.{name} is not in the package docstring"
    assert set(decodex.__all__) <= set(dir(decodex))


def test_modules_are_small_or_say_why() -> None:
    """Every module is under ~400 lines, or its docstring says why it is not ("one job")."""
    limit = 420
    long = []
    for path in _tracked():
        if path.suffix != ".py" or path.parts[len(ROOT.parts)] in NOT_INSTALLED:
            continue
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > limit and "longer than" not in text[:3000]:
            long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not long


def test_no_source_cites_a_path_on_a_machine() -> None:
    """Sources name public papers, datasheets, repositories and datasets, never a developer's
    folder (the developers' shared notes, an absolute home or work path)."""
    pattern = r"/work/|/home/|/root/|\.\./shared|shared/reference|shared/validation-data|seed_systems\.md|hardware\.md"
    out = subprocess.run(["git", "grep", "-nE", pattern, "--", ".", ":!tests/test_packaging.py",
                          ":!tests/validation/test_external.py"], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout == ""


def _imports(folder: str) -> dict[str, set[str]]:
    """Module path -> the decodex modules it imports (import statements only, lazy ones included)."""
    import ast

    out: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        out[str(path.relative_to(ROOT))] = {n for n in names if n.startswith("decodex")}
    return out


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("core", ("decodex.workloads", "decodex.hw_models", "decodex.mappers", "decodex.sim", "decodex.validation")),
    ("workloads", ("decodex.hw_models", "decodex.mappers", "decodex.sim", "decodex.validation")),
    ("hw_models", ("decodex.mappers", "decodex.sim", "decodex.validation", "decodex.workloads.errors",
                   "decodex.workloads.precision")),
    ("mappers", ("decodex.sim", "decodex.validation")),
    ("sim", ("decodex.validation",)),
])
def test_each_package_knows_only_what_is_upstream(folder: str, forbidden: tuple[str, ...]) -> None:
    """The flow of DESIGN.md: a record never feeds a prediction (sim does not import
    validation); errors and DType come from core, not from workloads, for hw_models."""
    bad = {module: sorted(n for n in names if n.startswith(forbidden))
           for module, names in _imports(folder).items() if any(n.startswith(forbidden) for n in names)}
    assert not bad
