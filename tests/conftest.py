"""Shared fixtures: the default config with the SSD300 geometry, loaded the way entry scripts load it."""
import pytest

from src.config import load_config
from tests.helpers import SSD300_ARGS


@pytest.fixture
def cfg():
    """The default config with the SSD300 geometry (tests.helpers.SSD300_ARGS)."""
    return load_config(SSD300_ARGS)
