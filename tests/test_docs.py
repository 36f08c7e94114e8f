"""The docs tell the truth: generated pages are up to date (a change to the summary's
output is a visible diff in review), the README's commands exist, and every ```python block
of the README and docs/ runs: each page's blocks in order, in one fresh interpreter, as a
reader would paste them (from a scratch folder that has the repository's ``examples/``);
docs/web.md's client example runs against a live server."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PRINTED = re.compile(r"^```output\n(.*?)^```", re.S | re.M)  # what the python blocks before it print
DOCUMENTED_SERVER = "http://127.0.0.1:8000"
EXAMPLE = re.compile(r"^\s*>>> (?!.*doctest: \+SKIP)", re.M)  # an example doctest runs


def test_zoo_page_is_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_zoo_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, "docs/zoo.md is stale: run python scripts/make_zoo_docs.py"


def test_readme_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e . && convscope demo" in readme
    assert 'pip install -e ".[dev]" && python -m pytest' in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]" && python -m pytest' in ci



def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_the_pages_have_examples():
    assert sum(len(_blocks(p)) for p in PAGES) >= 10 and _blocks(ROOT / "README.md")


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_examples_run(page: Path, tmp_path: Path):
    code = "\n".join(_blocks(page))
    if DOCUMENTED_SERVER in code:
        pytest.importorskip("uvicorn")
        from convscope.web import create_app
        from convscope.web.background import BackgroundServer

        with BackgroundServer(create_app()) as url:
            _run(code.replace(DOCUMENTED_SERVER, url), page, tmp_path)
    else:
        _run(code, page, tmp_path)


def _run(code: str, page: Path, folder: Path) -> None:
    (folder / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{page.name}'s examples failed:\n{done.stderr[-3000:]}"
    _check_printed(page, done.stdout)


def _check_printed(page: Path, stdout: str) -> None:
    """Every line of the page's ```output blocks (bar ``...``) is printed, in order: the
    outputs a page shows are the ones its code prints."""
    printed = iter(line.rstrip() for line in stdout.splitlines())
    for block in PRINTED.findall(page.read_text(encoding="utf-8")):
        for line in block.splitlines():
            if line.strip() != "..." and line.rstrip() not in printed:
                raise AssertionError(f"{page.name} shows {line.strip()!r}, which its code does not print (in order)")


def _modules_with_examples() -> list[str]:
    src = ROOT / "src"
    return sorted(".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
                  for path in (src / "convscope").rglob("*.py") if EXAMPLE.search(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_run(name: str):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_every_public_name_has_a_docstring():
    import inspect

    import convscope

    bare = [name for name in convscope.__all__ if not inspect.getdoc(getattr(convscope, name))]
    assert bare == [], f"public names without a docstring: {bare}"
