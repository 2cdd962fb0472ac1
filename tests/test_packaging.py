"""The dependency list lives only in pyproject.toml; environment.yml must install from it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env_yml_lines() -> list[str]:
    text = (ROOT / "environment.yml").read_text()
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]


def test_environment_yml_installs_from_pyproject_only():
    lines = _env_yml_lines()
    deps = [ln[2:].strip() for ln in lines[lines.index("dependencies:") :] if ln.startswith("- ")]
    conda_pkgs = [d for d in deps if d not in ("pip:",) and not d.startswith("-e ")]
    names = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0] for d in conda_pkgs}
    # Only the interpreter and pip come from conda; every library comes from pyproject through pip.
    assert names == {"python", "pip"}, f"environment.yml lists packages of its own: {sorted(names)}"
    assert "-e .[dev]" in deps, "environment.yml must install the project itself (-e .[dev])"


def test_python_version_agrees():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requires = pyproject["project"]["requires-python"]
    env_python = next(d for d in _env_yml_lines() if d.startswith("- python"))
    assert requires.replace(" ", "") in env_python.replace(" ", ""), (requires, env_python)


def test_every_dependency_is_explained_in_readme():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    readme = (ROOT / "README.md").read_text()
    for dep in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0]
        assert f"`{name}`" in readme, f"README.md does not say why {name} is a dependency"


def test_every_public_name_resolves():
    import tcpmemlib

    for name in tcpmemlib._EXPORTS:
        assert getattr(tcpmemlib, name) is not None, name
    assert set(dir(tcpmemlib)) >= set(tcpmemlib._EXPORTS)


def test_readme_gives_exactly_the_two_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [ln.split("#", 1)[0].strip() for ln in first_block.splitlines() if ln.strip()]
    assert commands == ["make report", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
