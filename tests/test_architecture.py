"""The shape of the code: import-linter's layer contracts (pyproject.toml), file and function sizes."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("multimodal", "training", "demos")
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60


def test_import_contracts_hold():
    """Layers point one way (data <- models <- tagging | generation | evaluation <- cli), the library never
    imports the trainers, the demo or gradio, and no module imports another that imports it back."""
    lint = shutil.which("lint-imports") or pytest.fail("lint-imports is missing: pip install import-linter")
    run = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def python_files():
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_library_files_stay_short():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in python_files()}
    long = {name: n for name, n in sizes.items() if n > MAX_FILE_LINES and not name.startswith("demos/")}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_functions_stay_short():
    long = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
