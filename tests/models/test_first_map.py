"""Which backbone layer each model's first (finest) SSD feature map comes from, pinned against the model
zoo: a model zoo checkpoint loads by names and shapes alone, so a first map taken from another layer of
the same shape would load without a word and give other boxes (issue: ssd_mobilenet_v1 took layer 22
where the model zoo's ``MobileNetV1Feature`` selects layer 14).

For each SSDLite-style model: changing the parameters of the source layer changes the first map's boxes
and scores, and changing the layer right after it changes nothing of them. For the FPN models every
level feeds the finest map through the top-down path, so their taps are pinned as the model zoo lists
them (MobileNetV1 layers 10, 22, 26; ResNet50 stages 2, 3, 4 by construction)."""
import mindspore as ms
import numpy as np
import pytest

from src.checkpoint import load_checkpoint_into
from src.config import load_config
from src.models import build_ssd
from tests.helpers import SSD300_ARGS
from tests.models.test_backbones import model_cfg, small_cfg
from tests.models.test_models import image, random_values

# model: (parameter prefix of the layer whose output is the first map, prefix of the next layer)
FIRST_MAP = {
    "ssd300": ("backbone.expand_layer_conv_13.", "backbone.features_2.0."),
    "ssd_mobilenet_v1": ("feature_extractor.mobilenet_v1.network.14.", "feature_extractor.mobilenet_v1.network.15."),
    "ssd_vgg16": ("backbone.b4.4.", "backbone.b5.0."),
    "ssd_ghostnet": ("backbone.expand_layer_conv_11.", "backbone.features_2.0."),
}


def network_config(model):
    """A small input for each model (ssd300: the default config at 64x64)."""
    if model != "ssd300":
        return small_cfg(model)
    cfg = load_config(SSD300_ARGS)
    return cfg.replace(img_shape=[64, 64], feature_size=[4, 2, 1, 1, 1, 1], num_ssd_boxes=96)


def first_map_outputs(net, values, x, count):
    """(loc, logits) of the first ``count`` default boxes with the parameters ``values``."""
    load_checkpoint_into(net, values)
    loc, logits = net(x)
    return loc.asnumpy()[:, :count], logits.asnumpy()[:, :count]


def changed(values, prefix, seed):
    """``values`` with every parameter under ``prefix`` replaced by other random values."""
    rng = np.random.default_rng(seed)
    out = dict(values)
    hits = [name for name in values if name.startswith(prefix)]
    assert hits, "no parameter starts with %s" % prefix
    for name in hits:
        value = values[name].asnumpy()
        out[name] = ms.Tensor((value * (1.5 + rng.random(value.shape))).astype(np.float32))
    return out


@pytest.mark.parametrize("model", sorted(FIRST_MAP))
def test_first_map_comes_from_the_model_zoos_layer(model, pynative):
    cfg = network_config(model)
    net = build_ssd(cfg)
    net.set_train(False)
    values = random_values(net)
    count = cfg.feature_size[0] ** 2 * cfg.num_default[0]
    x = image((2, 3) + tuple(cfg.img_shape))
    source, following = FIRST_MAP[model]
    base = first_map_outputs(net, values, x, count)
    after_source = first_map_outputs(net, changed(values, source, 1), x, count)
    after_following = first_map_outputs(net, changed(values, following, 2), x, count)
    assert not np.allclose(base[1], after_source[1]), "%s does not feed the first map" % source
    np.testing.assert_array_equal(base[0], after_following[0])
    np.testing.assert_array_equal(base[1], after_following[1])


def test_fpn_taps_are_the_model_zoos():
    net = build_ssd(model_cfg("ssd_mobilenet_v1_fpn"))
    assert net.feature_extractor.mobilenet_v1.taps == (10, 22, 26)
