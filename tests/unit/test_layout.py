"""The package layout keeps promises: no stdlib shadowing, a light operator import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_is_not_shadowed_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "-c", "import operator, collections; print(operator.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert str(ROOT) not in done.stdout


def test_importing_the_operator_pulls_no_ray_mlflow_or_evidently():
    code = (
        "import sys, steward.operator.handlers, steward.operator.reconciler;"
        "print(sorted(m for m in ('ray', 'mlflow', 'evidently', 'fairlearn') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_test_modules_have_unique_names():
    """pytest imports test modules by basename (rootdir-relative, no packages): two files with one name in
    different folders stop the whole run at collection."""
    from collections import Counter
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in tests.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
