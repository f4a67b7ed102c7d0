"""Leginon's own MRC reader (pyami.mrc), run from a Leginon source tree.

Leginon is not on any package index: the tree is a checkout of the leginon-org/leginon
repository, named by EMBUFFER_LEGINON_SOURCE (the folder holding `pyami/`). Its reader runs in a
separate interpreter, so Leginon's modules never mix with the test process's, and hands the
array back as a .npy file: what Leginon-based processing would see, dtype included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SOURCE_VARIABLE = "EMBUFFER_LEGINON_SOURCE"
READ_WITH_PYAMI = (
    "import sys, numpy\n"
    "from pyami import mrc\n"
    "numpy.save(sys.argv[2], numpy.asarray(mrc.read(sys.argv[1])))\n"
)


def leginon_source() -> Path:
    """The Leginon source tree, or a skip that says how to provide one."""
    text = os.environ.get(SOURCE_VARIABLE, "")
    tree = Path(text) if text else None
    if tree is None or not (tree / "pyami" / "mrc.py").is_file():
        reason = (
            f"Leginon's reader needs {SOURCE_VARIABLE}=<a leginon-org/leginon checkout> "
            f"(the folder holding pyami/mrc.py); got {text!r}"
        )
        print(reason)
        pytest.skip(reason)
    return tree


def read_with_pyami(path: Path, scratch: Path) -> Any:
    """`pyami.mrc.read(path)` as Leginon runs it."""
    import numpy

    tree = leginon_source()
    saved = scratch / f"{path.name}.pyami.npy"
    result = subprocess.run(
        [sys.executable, "-c", READ_WITH_PYAMI, str(path), str(saved)],
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"pyami.mrc.read({path}) failed:\n{result.stderr}"
    return numpy.load(saved)
