"""Puts this checkout's dev kit (``devkit/src``: ``identity_devkit``) first on ``sys.path``, so
the scripts here and the tests that load them by path use it whether or not a venv has it
installed (``make venv`` installs it, editable). Import it before ``identity_devkit``."""

from __future__ import annotations

import sys
from pathlib import Path

DEVKIT_SRC = str(Path(__file__).resolve().parent.parent / "devkit" / "src")

if DEVKIT_SRC not in sys.path:
    sys.path.insert(0, DEVKIT_SRC)
