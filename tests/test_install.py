"""`pip install .` gives a working package: every module of the tree, and the `avcache` command."""

import shutil
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


def test_pip_install_ships_every_module_and_the_command(tmp_path):
    target = tmp_path / "site"
    src = tmp_path / "src"  # setuptools builds in the source tree: a copy keeps the checkout clean
    shutil.copytree(REPO / "avcache", src / "avcache", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", src)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(target), str(src)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    in_tree = {p.relative_to(REPO).as_posix() for p in (REPO / "avcache").rglob("*.py")}
    installed = {p.relative_to(target).as_posix() for p in (target / "avcache").rglob("*.py")}
    assert in_tree == installed, sorted(in_tree ^ installed)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target)}
    r = subprocess.run(
        [sys.executable, "-m", "avcache", "--help"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert r.returncode == 0 and "commands:" in r.stdout and "extract" in r.stdout, r.stderr
    imported = subprocess.run(
        [sys.executable, "-c", "import avcache.extraction.stage, avcache.tasks; print(avcache.tasks.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert imported.stdout.strip().startswith(str(target))  # the installed copy, not the checkout
    assert (target / "bin" / "avcache").is_file()
