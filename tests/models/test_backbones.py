"""The further model-zoo SSDs (MobileNetV1, VGG16, MobileNetV1-FPN, ResNet50-FPN, GhostNet): the model
zoo's parameter names and shapes, default boxes, forward shapes, a training step, save then load, the
loader's name prefixes, ssd_vgg16's documented deviation, ImageNet backbones, and the two formulations
of the new building blocks.

Whole networks run in PYNATIVE mode at small inputs (no graph compilation; FPN models at 64x64, VGG16
at 264x264, the smallest its unpadded last extras allow), built once per model."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.anchors import default_boxes_yxhw
from src.checkpoint import load_checkpoint_into, load_network_checkpoint
from src.config import load_config
from src.errors import UserError
from src.feature_maps import count_boxes, feature_sizes
from src.inference.detector import SsdDetector
from src.models import build_ssd
from src.models.layers import Conv, FastBatchNorm, L2Norm, MaxPool, Upsample
from src.models.pretrained import find_backbone, freeze_scope, load_backbone_checkpoint, load_backbone_weights
from src.native.kernels import kernel_library
from tests.helpers import FIXTURES, ROOT
from tests.models.test_models import assert_same, image, linear_regime_values, random_values, read_tsv

MODELS = ["ssd_mobilenet_v1", "ssd_vgg16", "ssd_mobilenet_v1_fpn", "ssd_resnet50_fpn", "ssd_ghostnet"]
ZOO_LAYOUT = [m for m in MODELS if m != "ssd_vgg16"]
# input side, first stride, map count for the small networks (ssd_vgg16: its own map sides)
SMALL = {"ssd_mobilenet_v1": 64, "ssd_ghostnet": 64, "ssd_mobilenet_v1_fpn": 64, "ssd_resnet50_fpn": 64,
         "ssd_vgg16": 264}
needs_kernels = pytest.mark.skipif(kernel_library() is None, reason="no C++ compiler for the fast CPU kernels")


def model_cfg(model, **keys):
    """config/<model>.yaml over the defaults, with ``keys`` changed."""
    cfg = load_config(["--config_path=%s" % os.path.join(ROOT, "config", model + ".yaml")])
    return cfg.replace(**keys)


def small_cfg(model, **keys):
    """The model at a small input, with feature_size and num_ssd_boxes to match."""
    cfg = model_cfg(model, **keys)
    side = SMALL[model]
    sizes = feature_sizes(model, [side, side], len(cfg.feature_size))
    boxes = count_boxes(sizes, cfg.num_default)
    return cfg.replace(img_shape=[side, side], feature_size=sizes, num_ssd_boxes=boxes)


def names_and_shapes(cell, strip_prefix=False):
    """{parameter name: (shape, trainable)}, optionally without the leading ``network.``."""
    got = {name: (tuple(p.shape), bool(p.requires_grad)) for name, p in cell.parameters_and_names()}
    return {name[len("network."):]: v for name, v in got.items()} if strip_prefix else got


def differences(got, expected):
    """(missing, unexpected, wrong shape or trainable), the first ten of each, sorted."""
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    wrong = sorted("%s: %s, expected %s" % (n, got[n], expected[n]) for n in set(got) & set(expected)
                   if got[n] != expected[n])
    return sorted(missing)[:10], sorted(extra)[:10], wrong[:10]


# ---- the model zoo's checkpoint layout and default boxes -----------------------------------

@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("model", ZOO_LAYOUT)
def test_parameters_match_model_zoo(model, fast):
    """As eval.py builds it (SsdDetector: the network under ``network``); ssd_ghostnet's reference
    names have no ``network.`` prefix (the model zoo's eval builds it unwrapped)."""
    expected = read_tsv(os.path.join(FIXTURES, "%s.eval_params.tsv" % model))
    detector = SsdDetector(build_ssd(model_cfg(model, fast_conv=fast)), model_cfg(model))
    got = names_and_shapes(detector, strip_prefix=not next(iter(expected)).startswith("network."))
    assert differences(got, expected) == ([], [], [])


@pytest.mark.parametrize("fast", [True, False])
def test_vgg16_is_model_zoo_layout_plus_l2_norm_scale(fast):
    expected = read_tsv(os.path.join(FIXTURES, "ssd_vgg16.eval_params.tsv"))
    expected["network.conv4_3_norm.scale"] = ((512,), True)
    detector = SsdDetector(build_ssd(model_cfg("ssd_vgg16", fast_conv=fast)), model_cfg("ssd_vgg16"))
    assert differences(names_and_shapes(detector), expected) == ([], [], [])
    np.testing.assert_array_equal(detector.network.conv4_3_norm.scale.asnumpy(), np.full(512, 20.0, np.float32))


@pytest.mark.parametrize("model", MODELS + ["ssd300"])
def test_config_default_boxes_equal_model_zoo(model):
    cfg = model_cfg(model)
    expected = np.load(os.path.join(FIXTURES, "%s.default_boxes_yxhw.npy" % model))
    boxes = default_boxes_yxhw(cfg)
    assert boxes.shape == expected.shape == (cfg.num_ssd_boxes, 4)
    np.testing.assert_allclose(boxes, expected, atol=1e-6, rtol=0)


def test_feature_sizes_are_checked():
    with pytest.raises(ValueError, match="feature_size .* does not match img_shape"):
        build_ssd(model_cfg("ssd_vgg16", img_shape=[320, 320]))
    with pytest.raises(ValueError, match="feature_size .* does not match img_shape"):
        build_ssd(model_cfg("ssd_resnet50_fpn", img_shape=[320, 320]))


# ---- small networks: forward, a training step, save then load -------------------------------

@pytest.fixture(scope="module", params=MODELS)
def small_net(request):
    """(cfg, network) at a small input in the default (fast where possible) formulation, PYNATIVE."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model = request.param
    if model == "ssd_vgg16" and kernel_library() is None:
        pytest.skip("ssd_vgg16 at 264x264 needs the fast formulation to run in test time")
    cfg = small_cfg(model)
    yield cfg, build_ssd(cfg)
    ms.set_context(mode=ms.GRAPH_MODE)


def test_forward_shapes(small_net):
    cfg, net = small_net
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net.set_train(False)
    loc, logits = net(image((2, 3) + tuple(cfg.img_shape)))
    assert loc.shape == (2, cfg.num_ssd_boxes, 4) and logits.shape == (2, cfg.num_ssd_boxes, cfg.num_classes)
    assert loc.dtype == ms.float32 and logits.dtype == ms.float32
    assert np.isfinite(loc.asnumpy()).all() and np.isfinite(logits.asnumpy()).all()


def test_one_training_step_is_finite(small_net):
    from benchmarks.sections import fake_batch
    from src.training.loss import SsdWithLoss
    from src.training.train_step import TrainStep, make_optimizer, make_scaler

    cfg, net = small_net
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net_with_loss = SsdWithLoss(net, cfg.num_classes, cfg.gamma, cfg.alpha)
    optimizer = make_optimizer(net_with_loss, np.full(4, 0.01, np.float32), cfg.momentum, cfg.weight_decay)
    step = TrainStep(net_with_loss, optimizer, *make_scaler("CPU", cfg.loss_scale))
    net.set_train(True)
    first = net.trainable_params()[0]
    before = first.asnumpy().copy()
    loss, finite = step(*[ms.Tensor(x) for x in fake_batch(cfg, 1)])
    assert np.isfinite(float(loss.asnumpy())) and bool(finite.asnumpy())
    assert not np.array_equal(first.asnumpy(), before)
    net.set_train(False)


def test_save_then_load_gives_identical_outputs(small_net, tmp_path):
    """Saved under ``network.`` (as training saves), loaded into a bare network: same outputs, bit for
    bit. (Names without the prefix: test_model_zoo_ghostnet_names_load_into_the_eval_wrapper.)"""
    cfg, net = small_net
    ms.set_context(mode=ms.PYNATIVE_MODE)
    load_checkpoint_into(net, random_values(net, seed=3))
    net.set_train(False)
    x = image((1, 3) + tuple(cfg.img_shape), seed=4)
    expected = [o.asnumpy() for o in net(x)]
    path = str(tmp_path / "net.ckpt")
    ms.save_checkpoint(SsdDetector(net, cfg), path)
    assert all(name.startswith("network.") for name in ms.load_checkpoint(path))
    other = build_ssd(cfg)
    loaded, missing = load_network_checkpoint(other, path)
    assert len(loaded) == len(list(other.parameters_and_names())) and not missing
    other.set_train(False)
    for got, want in zip(other(x), expected):
        np.testing.assert_array_equal(got.asnumpy(), want)


@pytest.mark.parametrize("model", ["ssd_mobilenet_v1", "ssd_ghostnet", "ssd_mobilenet_v1_fpn", "ssd_resnet50_fpn"])
@needs_kernels
def test_network_fast_matches_plain(model, pynative):
    """Inference outputs of both formulations on the same weights (inside ReLU6's linear range, where
    both agree to float rounding; the layers are compared with gradients below)."""
    fast_net, plain_net = build_ssd(small_cfg(model)), build_ssd(small_cfg(model, fast_conv=False))
    values = linear_regime_values(plain_net)
    x = image((1, 3) + (SMALL[model],) * 2)
    outputs = []
    for net in (fast_net, plain_net):
        load_checkpoint_into(net, values)
        net.set_train(False)
        outputs.append([o.asnumpy() for o in net(x)])
    for fast_value, plain_value in zip(*outputs):
        scale = max(1.0, float(np.abs(plain_value).max()))
        np.testing.assert_allclose(fast_value, plain_value, rtol=1e-4, atol=1e-4 * scale)


# ---- ssd_vgg16: the model zoo's checkpoints are refused, with the reason -----------------------

def zoo_values(model):
    """Zeros in the shape of every parameter of the model zoo's checkpoint (from its tsv)."""
    rows = read_tsv(os.path.join(FIXTURES, "%s.eval_params.tsv" % model))
    return {name: np.zeros(shape, np.float32) for name, (shape, _) in rows.items()}


def test_vgg16_model_zoo_checkpoint_is_refused_with_the_reason(tmp_path):
    detector = SsdDetector(build_ssd(model_cfg("ssd_vgg16")), model_cfg("ssd_vgg16"))
    values = zoo_values("ssd_vgg16")
    with pytest.raises(ValueError) as err:
        load_checkpoint_into(detector, values)
    message = str(err.value)
    assert "model zoo's ssd_vgg16" in message and "L2 normalisation" in message and "\n" not in message
    path = str(tmp_path / "zoo_vgg16.ckpt")
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in values.items()], path)
    for drop in ((), ("multi_loc_layers", "multi_cls_layers")):
        with pytest.raises(UserError, match="zoo_vgg16.ckpt: checkpoint lacks conv4_3_norm.scale, as the model zoo"):
            load_network_checkpoint(detector.network, path, drop)


def test_model_zoo_ghostnet_names_load_into_the_eval_wrapper():
    """ssd_ghostnet's eval checkpoints have no ``network.`` prefix; its training checkpoints have it."""
    cfg = model_cfg("ssd_ghostnet")
    values = zoo_values("ssd_ghostnet")
    for names in (values, {"network." + k: v for k, v in values.items()}):
        for target in (build_ssd(cfg), SsdDetector(build_ssd(cfg), cfg)):
            loaded, missing, unexpected = load_checkpoint_into(target, names)
            assert len(loaded) == len(values) and not missing and not unexpected


@pytest.mark.parametrize("model", ["ssd_mobilenet_v1_fpn", "ssd_ghostnet"])
def test_filter_weight_drops_the_heads_for_another_class_count(model, tmp_path):
    """The configs' checkpoint_filter_list names the heads (the weight-shared ones for FPN models)."""
    cfg = model_cfg(model)
    path = str(tmp_path / "coco.ckpt")
    ms.save_checkpoint(SsdDetector(build_ssd(cfg), cfg), path)
    other = build_ssd(cfg.replace(num_classes=21))
    with pytest.raises(UserError, match="shape mismatch for multi_box.*cls_layers"):
        load_network_checkpoint(other, path)
    loaded, missing = load_network_checkpoint(other, path, cfg.checkpoint_filter_list)
    assert missing and all(any(part in name for part in cfg.checkpoint_filter_list) for name in missing)
    assert len(loaded) + len(missing) == len(list(other.parameters_and_names()))


# ---- ImageNet backbones (feature_extractor_base_param) and freeze_layer -----------------------

def imagenet_names(model, backbone_names):
    """{ImageNet name: backbone name} in the documented naming, and the classifier entries."""
    def ghost(name):
        index_name = name.replace("features_1.0.features.0.", "conv_stem.").replace("features_1.0.features.1.", "bn1.")
        if index_name != name:
            return index_name
        part, index, rest = name.split(".", 2)
        index = int(index) - 1 if part == "features_1" else int(index) + 11
        rest = rest.replace("features.0.weight", "conv.weight").replace("features.1.", "bn.")
        return "blocks.%d.%s" % (index, rest)

    def mobilenet_v2(name):
        part, index, rest = name.split(".", 2)
        return "backbone.features.%d.%s" % (int(index) + (0 if part == "features_1" else 14), rest)

    vgg = {"b%d.%d.weight" % block: "layers.%d.weight" % index for block, index in zip(
        [(1, 0), (1, 2), (2, 0), (2, 2), (3, 0), (3, 2), (3, 4), (4, 0), (4, 2), (4, 4), (5, 0), (5, 2), (5, 4)],
        [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28])}
    rename = {"ssd_ghostnet": ghost, "ssd300": mobilenet_v2, "ssd_vgg16": vgg.get,
              "ssd_resnet50_fpn": lambda n: n.replace("down_sample_layer", "down_sample") if "layer4" in n else n}
    skip = {"ssd_ghostnet": ("expand_layer_conv_11",), "ssd300": ("expand_layer_conv_13",)}
    own = rename.get(model, lambda n: n)
    mapping = {own(n): n for n in backbone_names if not n.startswith(skip.get(model, ("-",)))}
    classifier = {"ssd_mobilenet_v1": ["fc.weight", "fc.bias"], "ssd_resnet50_fpn": ["end_point.weight"],
                  "ssd_vgg16": ["classifier.0.weight", "classifier.6.bias"], "ssd300": ["head.dense.weight"],
                  "ssd_ghostnet": ["conv_head.weight", "classifier.weight"]}.get(model, ["fc.weight"])
    return mapping, classifier


@pytest.mark.parametrize("model", ["ssd300", "ssd_mobilenet_v1", "ssd_vgg16", "ssd_mobilenet_v1_fpn",
                                   "ssd_resnet50_fpn", "ssd_ghostnet"])
def test_feature_extractor_base_param_loads_imagenet_backbone(model, tmp_path, capsys):
    """A fake ImageNet checkpoint in the documented names, with a classifier, optimizer state and a
    stray entry: the backbone gets every value, the rest is reported skipped, ignored or not loaded."""
    cfg = model_cfg(model)
    net = build_ssd(cfg)
    scope, backbone = find_backbone(net)
    params = dict(backbone.parameters_and_names())
    mapping, classifier = imagenet_names(model, params)
    rng = np.random.default_rng(0)
    entries = {name: rng.standard_normal(params[target].shape).astype(np.float32) for name, target in mapping.items()}
    entries.update({name: np.ones((10, 4), np.float32) for name in classifier})
    entries["moments.fc.weight"] = np.ones((10, 4), np.float32)
    entries["stray.weight"] = np.ones(3, np.float32)
    path = str(tmp_path / "imagenet.ckpt")
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in entries.items()], path)
    report = load_backbone_weights(net, cfg.replace(feature_extractor_base_param=path))
    assert sorted(report.skipped) == sorted(classifier)
    assert report.not_loaded == [("stray.weight", "not a %s ImageNet name" % report.kind)]
    assert set(report.loaded) >= set(mapping.values())
    for name, target in mapping.items():
        np.testing.assert_array_equal(params[target].asnumpy(), entries[name])
    expected_untouched = {"ssd_ghostnet": 5}.get(model, 0)
    assert len(report.untouched) == expected_untouched
    if model == "ssd300":
        np.testing.assert_array_equal(backbone.expand_layer_conv_13.features[0].weight.asnumpy(),
                                      entries["backbone.features.14.conv.0.features.0.weight"])
    printed = capsys.readouterr().out
    assert printed.startswith("feature_extractor_base_param: loaded %d parameters of the %s backbone (%s)"
                              % (len(report.loaded), report.kind, scope))


def test_feature_extractor_base_param_of_another_backbone_is_refused(tmp_path):
    path = str(tmp_path / "resnet.ckpt")
    ms.save_checkpoint([{"name": "layer1.0.conv1.weight", "data": ms.Tensor(np.ones((64, 64, 1, 1), np.float32))}],
                       path)
    with pytest.raises(UserError, match="no entry of .*resnet.ckpt fits the MobileNetV1 backbone"):
        load_backbone_checkpoint(build_ssd(model_cfg("ssd_mobilenet_v1")), path)
    assert load_backbone_weights(build_ssd(model_cfg("ssd_mobilenet_v1")), model_cfg("ssd_mobilenet_v1")) is None


@pytest.mark.parametrize("model,scope", [("ssd300", "backbone"), ("ssd_vgg16", "backbone"),
                                         ("ssd_mobilenet_v1", "feature_extractor.mobilenet_v1"),
                                         ("ssd_mobilenet_v1_fpn", "feature_extractor.mobilenet_v1"),
                                         ("ssd_resnet50_fpn", "feature_extractor.resnet"),
                                         ("ssd_ghostnet", "backbone")])
def test_freeze_layer_backbone_freezes_the_imagenet_part(model, scope):
    """freeze_layer: backbone freezes exactly the layers feature_extractor_base_param fills."""
    from src.training.trainer import freeze

    net = build_ssd(model_cfg(model))
    assert freeze_scope(net, "backbone") == scope and freeze_scope(net, "") == ""
    freeze(net, freeze_scope(net, "backbone"))
    frozen = {p.name for p in net.get_parameters() if not p.requires_grad and "moving_" not in p.name}
    assert frozen and all(name.startswith(scope + ".") for name in frozen)
    assert {p.name for p in net.trainable_params()} == {
        p.name for p in net.get_parameters() if "moving_" not in p.name and not p.name.startswith(scope + ".")}


def test_mindspore_hub_create_network(pynative):
    from mindspore_hub_conf import create_network

    sizes = feature_sizes("ssd_mobilenet_v1", [64, 64], 6)
    net = create_network("ssd_mobilenet_v1", is_training=False, num_classes=5, img_shape=[64, 64],
                         feature_size=sizes, num_ssd_boxes=96)
    loc, scores = net(image((1, 3, 64, 64)))
    assert loc.shape == (1, 96, 4) and scores.shape == (1, 96, 5)
    assert 0.0 <= scores.asnumpy().min() and scores.asnumpy().max() <= 1.0
    assert all(name.startswith("network.") for name, _ in net.parameters_and_names())
    assert create_network("ssd_ghostnet").training
    derived = create_network("ssd300", is_training=False, img_shape=[64, 96], feature_size=[], steps=[],
                             num_ssd_boxes=0)
    assert derived(image((1, 3, 64, 96)))[0].shape == (1, 138, 4)  # ssd300's maps at 64x96, derived


# ---- the building blocks: fast (NHWC) vs plain (NCHW), values and gradients --------------------

CONVS = [dict(in_channels=8, out_channels=6, kernel_size=1, has_bias=True),
         dict(in_channels=8, out_channels=6, kernel_size=1, stride=2),
         dict(in_channels=8, out_channels=6, kernel_size=3, stride=2, has_bias=True),
         dict(in_channels=8, out_channels=8, kernel_size=3, groups=8),
         dict(in_channels=8, out_channels=8, kernel_size=5, stride=2, groups=8),
         dict(in_channels=3, out_channels=6, kernel_size=7, stride=2),
         dict(in_channels=8, out_channels=6, kernel_size=3, padding=6, dilation=6),
         dict(in_channels=8, out_channels=6, kernel_size=3, stride=2, padding=1),
         dict(in_channels=8, out_channels=6, kernel_size=3, padding=0)]


PATHS = ["pointwise", "pointwise", "im2col", "depthwise3x3", "depthwise5x5", "im2col", "im2col", "im2col", "im2col"]


@needs_kernels
@pytest.mark.parametrize("size", [9, 10])
@pytest.mark.parametrize("index", range(len(CONVS)))
def test_conv_fast_matches_plain(index, size):
    """Every path of the fast Conv (matrix product, im2col kernel, depthwise kernel, slices); the slice
    path, whose shape arithmetic runs at graph compilation, also in GRAPH mode (dilated and strided 3x3
    at an odd size; the 5x5 and 7x7 windows compile slowly)."""
    graph = index in (6, 7) and size % 2
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    spec = CONVS[index]
    fast, plain = Conv(fast=True, **spec), Conv(fast=False, **spec)
    assert fast.path == PATHS[index]
    try:
        assert_same(fast, plain, image((2, spec["in_channels"], size, size)), train=True)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


@needs_kernels
@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 1), (3, 2)])
def test_max_pool_fast_matches_plain(kernel, stride, pynative):
    assert_same(MaxPool(kernel, stride, True), MaxPool(kernel, stride, False), image((2, 4, 9, 9)), train=True)


@needs_kernels
def test_l2_norm_fast_matches_plain(pynative):
    assert_same(L2Norm(12, 20.0, True), L2Norm(12, 20.0, False), image((2, 12, 5, 5)), train=True)


@pytest.mark.parametrize("in_size,out_size", [(5, 10), (10, 19), (3, 5)])
def test_upsample_is_mindspore_resize_bilinear(in_size, out_size, pynative):
    """The model zoo's FPN resizes with ResizeBilinear's defaults (no corner alignment, no half pixels)."""
    x = image((2, 4, in_size, in_size))
    expected = ops.ResizeBilinearV2(align_corners=False, half_pixel_centers=False)(x, (out_size, out_size)).asnumpy()
    np.testing.assert_allclose(Upsample(in_size, out_size)(x).asnumpy(), expected, atol=1e-5)
    nhwc = Upsample(in_size, out_size, True)(ops.transpose(x, (0, 2, 3, 1)))
    np.testing.assert_allclose(ops.transpose(nhwc, (0, 3, 1, 2)).asnumpy(), expected, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("eps,momentum", [(1e-5, 0.9), (1e-3, 0.997), (1e-3, 0.97)], ids=str)
def test_batch_norm_with_model_settings_fast_matches_plain(eps, momentum, train, pynative):
    """The compiled BatchNorm normalises with the layer's own eps and updates the moving statistics with
    its own momentum, as nn.BatchNorm2d does. The input's variance (~1e-4) is small enough that eps
    1e-5 and 1e-3 give outputs that differ several-fold."""
    fast = nn.SequentialCell([FastBatchNorm(24, False, eps, momentum)])
    plain = nn.SequentialCell([nn.BatchNorm2d(24, eps=eps, momentum=momentum)])
    x = ms.Tensor(np.random.default_rng(0).standard_normal((4, 24, 6, 5)).astype(np.float32) * 0.01 + 0.005)
    fast, plain = assert_same(fast, plain, x, train)
    for stat in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(fast[0], stat).asnumpy(), getattr(plain[0], stat).asnumpy(),
                                   rtol=1e-5, atol=1e-6)


# ---- ONNX export of every model ------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@needs_kernels
def test_onnx_export_matches_the_network(model, tmp_path):
    """The exported detector (plain formulation, network + decoding + sigmoid; a dynamic batch, as export.py
    writes ONNX) run by onnxruntime on a batch of 2 gives the network's boxes and scores (its fast
    formulation, in GRAPH mode) within 1e-4."""
    from src.inference.export import export_detector
    from src.inference.runtimes import OnnxDetector

    cfg = small_cfg(model)
    detectors = []
    for fast in (False, True):
        net = build_ssd(cfg.replace(fast_conv=fast))
        load_checkpoint_into(net, linear_regime_values(build_ssd(cfg.replace(fast_conv=False))))
        net.set_train(False)
        detectors.append(SsdDetector(net, cfg))
        detectors[-1].set_train(False)
    path = export_detector(detectors[0], cfg, str(tmp_path / model), "ONNX", batch_size=-1)
    x = image((2, 3) + tuple(cfg.img_shape), seed=5)
    onnx_boxes, onnx_scores = OnnxDetector(path)(x.asnumpy())
    boxes, scores = (o.asnumpy() for o in detectors[1](x))
    np.testing.assert_allclose(onnx_boxes, boxes, atol=1e-4)
    np.testing.assert_allclose(onnx_scores, scores, atol=1e-4)
