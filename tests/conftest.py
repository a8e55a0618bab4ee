"""Shared fixtures: the default config with the SSD300 geometry, loaded the way entry scripts load it."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "tests", "data")
# The model zoo's SSD300 input geometry (300x300, 1917 default boxes, IoU 0.5 matching) over the defaults,
# whose built-in quick-start run uses a smaller input; the reference files in tests/data are for this one.
SSD300_ARGS = ["--img_shape=[300,300]", "--feature_size=[19,10,5,3,2,1]", "--steps=[16,32,64,100,150,300]",
               "--num_ssd_boxes=1917", "--match_threshold=0.5"]


@pytest.fixture
def cfg():
    """The default config with the SSD300 geometry (SSD300_ARGS)."""
    from src.config import load_config
    return load_config(SSD300_ARGS)


