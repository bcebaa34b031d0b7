import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_library_package_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "multimodal").rglob("__init__.py")}
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"


def test_import_is_fast_and_side_effect_free():
    code = ("import sys, time; t = time.perf_counter(); import multimodal; dt = time.perf_counter() - t; "
            "heavy = [m for m in ('torch', 'gradio', 'open_clip', 'diffusers', 'transformers') if m in sys.modules]; "
            "print(dt, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert float(out[0]) < 0.5 and out[1].strip() == "[]"


def test_library_never_imports_gradio():
    offenders = [p for p in (ROOT / "multimodal").rglob("*.py") if "import gradio" in p.read_text()]
    assert not offenders
