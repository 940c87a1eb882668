"""Lint and type checks run as part of the suite, so `pytest` alone tells whether a change may land.

The judges are pinned exactly in pyproject's `test` extra; a venv holding other versions would judge
the tree by other rules, so that is reported first, with the command that fixes it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("smq", "tests", "bench", "examples")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _pinned_judges() -> dict[str, str]:
    """`name==version` requirements of the `test` extra: the judges."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    return dict(requirement.split("==", 1) for requirement in extra if "==" in requirement)


def test_the_judges_are_pinned_and_installed_at_their_pins() -> None:
    pins = _pinned_judges()
    assert set(pins) >= {"ruff", "mypy", "types-PyYAML"}, pins
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is not installed: pip install -c constraints.txt -e '.[test]'")
        assert installed == pinned, (
            f"{name} {installed} installed, {pinned} pinned: pip install -c constraints.txt -e '.[test]'"
        )


def test_the_constraints_agree_with_the_pins() -> None:
    constraints = dict(
        line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    lowered = {name.lower(): pinned for name, pinned in constraints.items()}
    for name, pinned in _pinned_judges().items():
        assert lowered.get(name.lower()) == pinned, (
            f"constraints.txt has {name} {lowered.get(name.lower())}, pyproject pins {pinned}"
        )


def test_ruff_finds_nothing() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_accepts_the_package() -> None:
    result = _run(sys.executable, "-m", "mypy", "smq")
    assert result.returncode == 0, result.stdout + result.stderr
