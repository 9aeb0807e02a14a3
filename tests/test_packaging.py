"""Installable parts: the extras match what each part imports; a gateway runs on `forewarn[edge]` alone."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from forewarn.extras import CORE_IMPORTS, EXTRA_OF_IMPORT
from tests.test_edge_offline import write_recording

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "edge_agent", "cloud_service", "dashboard", "simulators", "forewarn")
# Packages that no part may import, by where they run.
FORBIDDEN_EXTRAS = {"shared": {"cloud", "dashboard", "edge"}, "edge_agent": {"cloud", "dashboard"}}


def _third_party_imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def test_every_third_party_import_belongs_to_the_core_or_an_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    for package in PACKAGES:
        unknown = _third_party_imports(package) - CORE_IMPORTS - set(EXTRA_OF_IMPORT)
        assert not unknown, f"{package} imports {unknown}: add each to forewarn/extras.py and an extra"
    assert set(EXTRA_OF_IMPORT.values()) <= set(extras), "an import maps to an extra pyproject lacks"


@pytest.mark.parametrize("package", sorted(FORBIDDEN_EXTRAS))
def test_a_part_imports_nothing_of_the_extras_it_does_not_install(package: str) -> None:
    imports = _third_party_imports(package)
    wrong = {name for name in imports if EXTRA_OF_IMPORT.get(name) in FORBIDDEN_EXTRAS[package]}
    assert not wrong, f"{package} imports {wrong}"


@pytest.mark.slow
def test_the_wheel_with_only_the_edge_extra_scores_a_recording(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("forewarn-*.whl")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = str(environment / "bin" / "python")
    # Without PYTHONPATH: a checkout on it (with its egg-info) would make pip skip the wheel as installed
    # and the commands below import the checkout instead of the wheel.
    clean = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{wheel}[edge]"], check=True, timeout=600, env=clean
    )
    installed = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print([m for m in ('sklearn', 'skl2onnx', 'psycopg', "
            "'apscheduler', 'dash') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=clean,
    )
    assert installed.stdout.strip() == "[]", "the edge extra pulled in a cloud or dashboard package"
    forewarn = str(environment / "bin" / "forewarn")
    recording = write_recording(tmp_path / "recording", duration_s=30.0)
    scored = subprocess.run(
        [forewarn, "edge", "score", "--csv", str(recording), "--out", str(tmp_path / "scores.csv")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=clean,
    )
    assert scored.returncode == 0, scored.stderr
    assert (tmp_path / "scores.csv").stat().st_size > 0
    refused = subprocess.run(
        [forewarn, "cloud", "status"], check=False, capture_output=True, text=True, cwd=tmp_path, env=clean
    )
    assert refused.returncode == 2
    assert "pip install 'forewarn[cloud]'" in refused.stderr
