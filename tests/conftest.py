"""Shared test set-up.

torch on a 2-core machine: the default intra-op thread count made small loops up to
50x slower at random, so every test process uses one thread (imported lazily: tests
that do not touch torch never pay for the import).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):  # noqa: D103
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
