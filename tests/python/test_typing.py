"""The Python binding is typed (issue 21): it ships `py.typed`, and
`mypy --strict` passes on the package, on examples/python/archiver.py and on
the README's Python example (with the two names it leaves to the host,
`config` and `ask_user`, defined in front of it). Installs mypy with pip when
it is missing (scripts/test-all does too)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGE = ROOT / "bindings" / "python" / "optin_telemetry"

# The README example's free names, as a host would have them.
PRELUDE = '''from typing import Any, Dict

config: Dict[str, Any] = {}


def ask_user() -> bool:
    return input("Send anonymous usage statistics? [y/N] ").strip().lower() == "y"


'''


def mypy_available() -> bool:
    if subprocess.run([sys.executable, "-c", "import mypy"], capture_output=True).returncode == 0:
        return True
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "mypy"], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"mypy is not installed and pip could not install it: {p.stderr[-2000:]}")
    return True


def mypy_strict(tmp_path, *paths):
    mypy_available()
    env = {"MYPYPATH": str(ROOT / "bindings" / "python"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy-cache"), *map(str, paths)],
                          capture_output=True, text=True, env=env, timeout=600)


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("**Python**"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_package_ships_py_typed_and_the_wheel_includes_it():
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (ROOT / "bindings" / "python" / "pyproject.toml").read_text()
    assert re.search(r'optin_telemetry = \[[^\]]*"py\.typed"', pyproject), "py.typed is not in the package data"
    assert "optin_telemetry/py.typed" in (ROOT / "scripts" / "package").read_text(), "scripts/package does not stage py.typed"


def test_mypy_strict_passes_on_the_package_and_the_examples(tmp_path):
    example = tmp_path / "readme_example.py"
    snippet = readme_python_example()
    assert "ot.Client(config)" in snippet, snippet
    example.write_text(PRELUDE + snippet, encoding="utf-8")
    p = mypy_strict(tmp_path, PACKAGE, ROOT / "examples" / "python" / "archiver.py", example)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success: no issues found in 4 source files" in p.stdout, p.stdout


def test_mypy_strict_catches_a_misuse(tmp_path):
    """The check sees the binding's types: a consent given as a string is an error."""
    bad = tmp_path / "bad.py"
    bad.write_text('import optin_telemetry as ot\n\n\ndef f(c: ot.Client) -> None:\n    c.set_consent("no")\n', encoding="utf-8")
    p = mypy_strict(tmp_path, bad)
    assert p.returncode == 1, p.stdout
    assert 'Argument 1 to "set_consent" of "Client" has incompatible type "str"; expected "bool"' in p.stdout, p.stdout
