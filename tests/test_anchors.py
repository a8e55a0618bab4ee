import os

import numpy as np
import pytest

from src.anchors import default_boxes_yxhw, default_boxes_yxyx
from tests.helpers import FIXTURES

SSD = {}
VGG = {"steps": [8, 16, 32, 64, 100, 300], "feature_size": [38, 19, 10, 5, 3, 1]}
FPN = {"anchor_type": "grid", "img_shape": [640, 640], "steps": [8, 16, 32, 64, 128],
       "feature_size": [80, 40, 20, 10, 5], "num_default": [6, 6, 6, 6, 6]}
REFERENCE = {"ssd300": SSD, "ssd_mobilenet_v1": SSD, "ssd_ghostnet": SSD, "ssd_vgg16": VGG,
             "ssd_mobilenet_v1_fpn": FPN, "ssd_resnet50_fpn": FPN}


@pytest.mark.parametrize("model", sorted(REFERENCE))
def test_default_boxes_equal_model_zoo(cfg, model):
    expected = np.load(os.path.join(FIXTURES, "%s.default_boxes_yxhw.npy" % model))
    boxes = default_boxes_yxhw(cfg.replace(**REFERENCE[model]))
    assert boxes.shape == expected.shape and boxes.dtype == np.float32
    np.testing.assert_allclose(boxes, expected, atol=1e-6, rtol=0)


def test_corners_and_cache(cfg):
    centres = default_boxes_yxhw(cfg)
    corners = default_boxes_yxyx(cfg)
    np.testing.assert_allclose((corners[:, :2] + corners[:, 2:]) / 2, centres[:, :2], atol=1e-6)
    assert default_boxes_yxhw(cfg) is centres
    with pytest.raises(ValueError):
        centres[0, 0] = 1.0


def test_inconsistent_settings_are_named(cfg):
    with pytest.raises(ValueError, match="steps has 5 entries"):
        default_boxes_yxhw(cfg.replace(steps=[16, 32, 64, 100, 150]))
    with pytest.raises(ValueError, match="num_default says 4"):
        default_boxes_yxhw(cfg.replace(num_default=[4, 6, 6, 6, 6, 6]))
