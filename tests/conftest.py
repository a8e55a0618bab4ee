"""Shared fixtures: the default config, loaded the way entry scripts load it."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "tests", "data")


@pytest.fixture
def cfg():
    from src.config import load_config
    return load_config([])


