"""Shared fixtures: the default config with the SSD300 geometry, loaded the way entry scripts load it."""
import mindspore as ms
import pytest

from src.config import load_config
from tests.helpers import SSD300_ARGS


@pytest.fixture
def cfg():
    """The default config with the SSD300 geometry (tests.helpers.SSD300_ARGS)."""
    return load_config(SSD300_ARGS)


@pytest.fixture
def pynative():
    """Run the test in PYNATIVE mode (no graph compilation), then back to GRAPH."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)
