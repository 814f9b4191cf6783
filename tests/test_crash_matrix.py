"""A fast subset of ``bench/crash_matrix.py``: kill -9 between writing the corpus and
recording it, and between registering a model and giving it its alias; then ``status`` +
``refresh`` end consistent (the script's own checks)."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_crash_matrix_subset(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "crash_matrix.py"), "--work", str(tmp_path / "work"),
         "--points", "after_write:corpus.parquet", "between_register_and_alias"],
        cwd=REPO, capture_output=True, text=True, timeout=880,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2/2 points consistent" in proc.stdout
