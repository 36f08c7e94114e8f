"""The docs tell the truth: generated pages are up to date (a change to the summary's
output is a visible diff in review) and the README's commands exist."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
