"""The documentation points at tests that exist, and the README keeps its two commands."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_test_named_in_the_reliability_table_exists() -> None:
    doc = (REPO / "docs" / "reliability.md").read_text()
    # The table may name a test in any test file, at any depth of tests/.
    sources = "\n".join(path.read_text() for path in (REPO / "tests").rglob("test_*.py"))
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", doc))  # test names, not module names
    assert len(named) > 20
    missing = sorted(name for name in named if not re.search(rf"def {name}\b", sources))
    assert missing == []
    paths = set(re.findall(r"`(tests/[\w/.]+?)(?:::\w+)?`", doc))
    assert "tests/reliability/" in paths
    assert sorted(p for p in paths if not (REPO / p).exists()) == []
    modules = set(re.findall(r"\b(test_\w+\.py)\b", doc))
    assert sorted(m for m in modules if not any((REPO / "tests").rglob(m))) == []


def test_readme_gives_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
