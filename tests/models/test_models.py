"""The SSD network: model-zoo parameter layout, output shapes and order, fast vs plain formulation,
checkpoint loading."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.checkpoint import load_checkpoint_into
from src.config import Config
from src.feature_maps import feature_sizes
from src.inference.detector import SsdDetector
from src.models import build_ssd
from src.models.heads import flatten_predictions, head_layer
from src.models.layers import Conv, FastBatchNorm, InvertedResidual, make_layers
from src.models.registry import use_fast_conv
from src.native.kernels import fast_kernels_available, kernel_library
from tests.helpers import FIXTURES

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}
needs_kernels = pytest.mark.skipif(kernel_library() is None, reason="no C++ compiler for the fast CPU kernels")


@pytest.fixture(params=sorted(MODES))
def mode(request):
    ms.set_context(mode=MODES[request.param])
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


def with_keys(cfg, **values):
    merged = cfg.to_dict()
    merged.update(values)
    return Config(merged)


def small_cfg(cfg, fast=True):
    """A 64x64 input: maps 4, 2, 1, 1, 1, 1 and 96 boxes, for quick whole-network tests."""
    return with_keys(cfg, img_shape=[64, 64], feature_size=feature_sizes(cfg.model_name, [64, 64], 6), num_ssd_boxes=96,
                     fast_conv=fast)


def random_values(net, seed=0):
    """Fixed pseudo-random parameters: He-scaled weights, BatchNorm parameters and statistics off 1
    and 0 so that every parameter matters while activations keep their scale. Fixed, because where
    a ReLU6 input lands within rounding of 0 or 6 the two formulations may legitimately differ."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, param in net.parameters_and_names():
        shape = tuple(param.shape)
        if name.endswith("weight"):
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif name.endswith(("gamma", "moving_variance")):
            value = 1.0 + 0.2 * np.abs(rng.standard_normal(shape))
        else:
            value = 0.2 * rng.standard_normal(shape)
        values[name] = ms.Tensor(value.astype(np.float32))
    return values


def read_tsv(path):
    rows = [line.split("\t") for line in open(path, encoding="utf-8").read().splitlines()[1:]]
    return {name: (tuple(int(v) for v in shape.split("x")), trainable == "True") for name, shape, _, trainable in rows}


def describe(names):
    return "\n  ".join(sorted(names)[:20]) + ("\n  ..." if len(names) > 20 else "")


@pytest.mark.parametrize("fast", [True, False])
def test_parameters_match_model_zoo(cfg, fast):
    expected = read_tsv(os.path.join(FIXTURES, "ssd300.eval_params.tsv"))
    wrapper = SsdDetector(build_ssd(with_keys(cfg, fast_conv=fast)), decode=False)
    got = {name: (tuple(p.shape), bool(p.requires_grad)) for name, p in wrapper.parameters_and_names()}
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    wrong = {n for n in set(got) & set(expected) if got[n] != expected[n]}
    assert not (missing or extra or wrong), (
        "parameters differ from tests/data/ssd300.eval_params.tsv\nmissing:\n  %s\nunexpected:\n  %s\n"
        "wrong (shape, trainable):\n  %s" % (describe(missing), describe(extra),
                                             describe("%s: %s, expected %s" % (n, got[n], expected[n]) for n in wrong)))


@pytest.mark.parametrize("fast", [True, False])
def test_forward_shapes(cfg, mode, fast):
    if fast and kernel_library() is None:
        pytest.skip("no C++ compiler")
    net = build_ssd(with_keys(cfg, fast_conv=fast))
    net.set_train(False)
    loc, logits = net(ms.Tensor(np.random.rand(2, 3, 300, 300).astype(np.float32)))
    assert loc.shape == (2, 1917, 4) and logits.shape == (2, 1917, 81)
    assert loc.dtype == ms.float32 and logits.dtype == ms.float32
    assert np.isfinite(logits.asnumpy()).all()


def test_inference_wrapper_gives_scores(cfg):
    wrapper = SsdDetector(build_ssd(small_cfg(cfg)), decode=False)
    loc, scores = wrapper(ms.Tensor(np.random.rand(1, 3, 64, 64).astype(np.float32)))
    assert loc.shape == (1, 96, 4) and scores.shape == (1, 96, 81)
    assert 0.0 <= scores.asnumpy().min() and scores.asnumpy().max() <= 1.0
    assert not wrapper.training and not wrapper.network.training


@pytest.mark.parametrize("channels_last", [True, False])
def test_prediction_order_matches_default_boxes(cfg, channels_last):
    """Flattened predictions run map by map, cell by cell (row-major), box by box: the box centres
    of tests/data/ssd300.default_boxes_yxhw.npy follow the same order."""
    boxes = np.load(os.path.join(FIXTURES, "ssd300.default_boxes_yxhw.npy"))
    maps, codes = [], []
    for k, (size, count) in enumerate(zip(cfg.feature_size, cfg.num_default)):
        y, x, d = np.meshgrid(np.arange(size), np.arange(size), np.arange(count), indexing="ij")
        code = np.stack([np.full_like(y, k), y, x, d], -1).astype(np.float32)
        codes.append(code.reshape(-1, 4))
        nhwc = code.reshape(1, size, size, count * 4)
        maps.append(ms.Tensor(nhwc if channels_last else nhwc.transpose(0, 3, 1, 2)))
    flat = flatten_predictions(maps, 4, channels_last).asnumpy()[0]
    np.testing.assert_array_equal(flat, np.concatenate(codes))
    steps = np.asarray(cfg.steps, np.float32)[flat[:, 0].astype(int)]
    np.testing.assert_allclose(boxes[:, 0], (flat[:, 1] + 0.5) * steps / cfg.img_shape[0], atol=1e-5)
    np.testing.assert_allclose(boxes[:, 1], (flat[:, 2] + 0.5) * steps / cfg.img_shape[1], atol=1e-5)


def test_class_bias_starts_at_focal_loss_prior(cfg):
    net = build_ssd(small_cfg(cfg))
    bias = net.multi_box.multi_cls_layers[0][3].bias.asnumpy().reshape(-1, cfg.num_classes)
    probability = 1.0 / (1.0 + np.exp(-bias))
    np.testing.assert_allclose(probability[:, 1:], 0.01, rtol=1e-5)
    np.testing.assert_allclose(probability[:, 0], 0.99, rtol=1e-5)
    assert not net.multi_box.multi_loc_layers[0][3].bias.asnumpy().any()


def test_build_errors(cfg):
    with pytest.raises(ValueError, match="unknown model_name 'nope'.*ssd300"):
        build_ssd(with_keys(cfg, model_name="nope"))
    with pytest.raises(ValueError, match="feature_size .* does not match img_shape"):
        build_ssd(with_keys(cfg, img_shape=[320, 320]))
    with pytest.raises(ValueError, match="num_ssd_boxes is 1000"):
        build_ssd(with_keys(cfg, num_ssd_boxes=1000))


def test_float16_network_returns_float32(cfg):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = build_ssd(with_keys(small_cfg(cfg), use_float16=True))
    net.set_train(False)
    loc, logits = net(image((1, 3, 64, 64)))
    ms.set_context(mode=ms.GRAPH_MODE)
    assert loc.dtype == ms.float32 and logits.dtype == ms.float32 and loc.shape == (1, 96, 4)
    assert net.backbone.features_1[0].features[1].gamma.dtype == ms.float32


def test_fast_formulation_only_on_cpu_float32(cfg):
    assert not use_fast_conv(with_keys(cfg, fast_conv=False))
    assert not use_fast_conv(with_keys(cfg, device_target="Ascend"))
    assert not use_fast_conv(with_keys(cfg, use_float16=True))
    assert use_fast_conv(cfg) == fast_kernels_available()


# ---- fast vs plain on the same weights --------------------------------------------------------

def to_nhwc(x):
    return ops.transpose(x, (0, 2, 3, 1))


def to_nchw(x):
    return ops.transpose(x, (0, 3, 1, 2))


class Compare(nn.Cell):
    """sum(cell(x) * probe) with NCHW input and probe, whatever layout the cell works in."""

    def __init__(self, cell, channels_last):
        super().__init__()
        self.cell = cell
        self.channels_last = channels_last

    def construct(self, x, probe):
        if self.channels_last:
            return (to_nchw(self.cell(to_nhwc(x))) * probe).sum()
        return (self.cell(x) * probe).sum()


def outputs_and_grads(cell, channels_last, x, probe):
    weights = cell.trainable_params()
    loss, (grad_x, grad_w) = ms.value_and_grad(Compare(cell, channels_last), 0, weights)(x, probe)
    return [loss.asnumpy(), grad_x.asnumpy()] + [g.asnumpy() for g in grad_w]


def assert_same(fast_cell, plain_cell, x, train, atol=1e-4):
    for name, value in random_values(plain_cell).items():
        dict(fast_cell.parameters_and_names())[name].set_data(value)
        dict(plain_cell.parameters_and_names())[name].set_data(value)
    fast_cell.set_train(train)
    plain_cell.set_train(train)
    fast_out = to_nchw(fast_cell(to_nhwc(x))).asnumpy()
    plain_out = plain_cell(x).asnumpy()
    np.testing.assert_allclose(fast_out, plain_out, rtol=1e-4, atol=atol)
    probe = ms.Tensor(np.random.default_rng(1).standard_normal(plain_out.shape).astype(np.float32))
    for fast_value, plain_value in zip(outputs_and_grads(fast_cell, True, x, probe),
                                       outputs_and_grads(plain_cell, False, x, probe)):
        scale = max(1.0, float(np.abs(plain_value).max()))
        np.testing.assert_allclose(fast_value, plain_value, rtol=1e-4, atol=atol * scale)
    return fast_cell, plain_cell


def image(shape, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@needs_kernels
@pytest.mark.parametrize("stride,size", [(1, 7), (2, 8), (2, 7), (2, 2), (2, 1)])
def test_depthwise_fast_matches_plain(mode, stride, size):
    """43 channels: the kernel's 16-wide, 8-wide and single-channel paths."""
    assert_same(Conv(43, 43, 3, stride, groups=43, fast=True), Conv(43, 43, 3, stride, groups=43, fast=False),
                image((2, 43, size, size + 1)), train=True)


@needs_kernels
@pytest.mark.parametrize("stride,size", [(2, 10), (2, 9), (1, 6)])
def test_dense_stem_fast_matches_plain(mode, stride, size):
    assert_same(Conv(3, 16, 3, stride, fast=True), Conv(3, 16, 3, stride, fast=False), image((2, 3, size, size)),
                train=True)


@needs_kernels
@pytest.mark.parametrize("has_bias", [True, False])
def test_conv1x1_fast_matches_plain(mode, has_bias):
    assert_same(Conv(24, 40, 1, has_bias=has_bias, fast=True), Conv(24, 40, 1, has_bias=has_bias, fast=False),
                image((2, 24, 5, 6)), train=True)


@needs_kernels
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_fast_matches_plain(mode, train):
    plain = nn.SequentialCell([nn.BatchNorm2d(24, eps=1e-3, momentum=0.97), nn.ReLU6()])
    fast = nn.SequentialCell([FastBatchNorm(24, relu6=True), nn.Identity()])
    x = ms.Tensor(np.random.default_rng(0).standard_normal((4, 24, 6, 5)).astype(np.float32) * 3 + 1)
    fast, plain = assert_same(fast, plain, x, train)
    for stat in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(fast[0], stat).asnumpy(), getattr(plain[0], stat).asnumpy(),
                                   rtol=1e-5, atol=1e-6)


@needs_kernels
@pytest.mark.parametrize("train", [True, False])
def test_blocks_fast_match_plain(mode, train):
    """Whole bottleneck blocks (with and without shortcut) and a multibox head layer."""
    x = image((2, 32, 9, 9))
    fast, plain = make_layers(True), make_layers(False)
    assert_same(InvertedResidual(32, 32, 1, 6, fast), InvertedResidual(32, 32, 1, 6, plain), x, train)
    assert_same(InvertedResidual(32, 48, 2, 0.5, fast, last_relu=True),
                InvertedResidual(32, 48, 2, 0.5, plain, last_relu=True), x, train)
    assert_same(head_layer(32, 24, -4.6, fast), head_layer(32, 24, -4.6, plain), x, train)


class LossWithOutputs(nn.Cell):
    """A scalar loss on the predictions of the first ``boxes`` boxes, returned with both outputs."""

    def __init__(self, net, boxes):
        super().__init__()
        self.net = net
        self.boxes = boxes

    def construct(self, x):
        loc, logits = self.net(x)
        loss = (loc[:, :self.boxes] * loc[:, :self.boxes]).sum() + logits[:, :self.boxes].sum()
        return loss, loc, logits


def linear_regime_values(net, seed=0):
    """He-scaled weights; BatchNorm with small gamma and beta 3, so every ReLU6 input stays inside (0, 6)."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, param in net.parameters_and_names():
        shape = tuple(param.shape)
        if name.endswith("weight"):
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif name.endswith("gamma"):
            value = 0.05 + 0.1 * rng.random(shape)
        elif name.endswith("beta"):
            value = 3.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith("moving_variance"):
            value = 1.0 + 0.2 * rng.random(shape)
        else:
            value = 0.2 * rng.standard_normal(shape)
        values[name] = ms.Tensor(value.astype(np.float32))
    return values


@needs_kernels
def test_network_fast_matches_plain(cfg, mode):
    """The whole network (64x64 input, inference mode) on the same weights: outputs, loss and the
    gradient of every parameter.

    Why inference mode and unclipped ReLU6: this network's own gradients are not stable to 1e-4 under
    float rounding. Where a ReLU6 input lies within rounding of 0 or 6 its gradient mask may flip (tens
    of such inputs per pass), and in training mode BatchNorm normalises the 1x1 maps of the last layers
    over two images. Perturbing the input by 1e-6 changes the plain formulation's own gradients by up to
    1e-2 (inference) and its outputs by 0.3 (training) at this size. Clipping and training-mode
    BatchNorm are compared layer by layer above, where they are well conditioned."""
    fast_net, plain_net = build_ssd(small_cfg(cfg, True)), build_ssd(small_cfg(cfg, False))
    values = linear_regime_values(plain_net)
    load_checkpoint_into(fast_net, values)
    load_checkpoint_into(plain_net, values)
    x = image((2, 3, 64, 64))
    results = []
    for net in (fast_net, plain_net):
        net.set_train(False)
        grad_fn = ms.value_and_grad(LossWithOutputs(net, 96), None, net.trainable_params(), has_aux=True)
        (loss, loc, logits), grads = grad_fn(x)
        results.append([loss, loc, logits] + list(grads))
    names = ["loss", "loc", "logits"] + [p.name for p in plain_net.trainable_params()]
    for name, fast_value, plain_value in zip(names, *results):
        fast_value, plain_value = fast_value.asnumpy(), plain_value.asnumpy()
        scale = max(1.0, float(np.abs(plain_value).max()))
        np.testing.assert_allclose(fast_value, plain_value, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


@needs_kernels
def test_network_fast_matches_plain_at_300(cfg):
    """300x300 inference outputs on the same weights, inside ReLU6's linear range (agreement to float
    rounding) and with weights that clip (agreement relative to the output scale)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    fast_net, plain_net = build_ssd(cfg), build_ssd(with_keys(cfg, fast_conv=False))
    x = image((1, 3, 300, 300))
    for values in (linear_regime_values(plain_net), random_values(plain_net)):
        for net in (fast_net, plain_net):
            load_checkpoint_into(net, values)
            net.set_train(False)
        for fast_value, plain_value in zip(fast_net(x), plain_net(x)):
            scale = max(1.0, float(np.abs(plain_value.asnumpy()).max()))
            np.testing.assert_allclose(fast_value.asnumpy(), plain_value.asnumpy(), rtol=1e-4, atol=1e-4 * scale)


# ---- checkpoints ------------------------------------------------------------------------------

@pytest.fixture
def small_net(cfg):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = build_ssd(small_cfg(cfg))
    net.set_train(False)
    yield net
    ms.set_context(mode=ms.GRAPH_MODE)


def test_checkpoint_round_trip(cfg, small_net, tmp_path):
    x = image((1, 3, 64, 64))
    load_checkpoint_into(small_net, random_values(small_net))
    path = str(tmp_path / "net.ckpt")
    ms.save_checkpoint(SsdDetector(small_net, decode=False), path)
    other = build_ssd(small_cfg(cfg))
    other.set_train(False)
    loaded, missing, unexpected = load_checkpoint_into(other, path)
    assert len(loaded) == len(list(other.parameters_and_names())) and not missing and not unexpected
    for a, b in zip(small_net(x), other(x)):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


def test_checkpoint_names_with_or_without_prefix(small_net):
    values = {name: ms.Tensor(p.asnumpy() + 1) for name, p in small_net.parameters_and_names()}
    prefixed = {"network." + name: value for name, value in values.items()}
    stem = "backbone.features_1.0.features.0.weight"
    prefixed["moments.network." + stem] = values[stem]
    prefixed["learning_rate"] = ms.Tensor(np.float32(0.1))
    loaded, missing, unexpected = load_checkpoint_into(small_net, prefixed)
    assert set(loaded) == set(values) and not missing
    assert sorted(unexpected) == ["learning_rate", "moments.network." + stem]
    np.testing.assert_array_equal(small_net.backbone.features_1[0].features[0].weight.asnumpy(), values[stem].asnumpy())
    wrapper = SsdDetector(small_net, decode=False)
    loaded, missing, _ = load_checkpoint_into(wrapper, values)
    assert all(name.startswith("network.") for name in loaded) and len(loaded) == len(values) and not missing


def test_checkpoint_shape_mismatch_names_parameter(small_net):
    values = {name: p.asnumpy() for name, p in small_net.parameters_and_names()}
    before = small_net.multi_box.multi_cls_layers[0][0].weight.asnumpy().copy()
    values["multi_box.multi_cls_layers.0.0.weight"] = np.zeros((1, 1, 3, 3), np.float32) + 5
    values["multi_box.multi_cls_layers.0.3.weight"] = np.zeros((7, 576, 1, 1), np.float32)
    with pytest.raises(ValueError) as err:
        load_checkpoint_into(small_net, values)
    message = str(err.value)
    assert "multi_box.multi_cls_layers.0.0.weight" in message and "[1, 1, 3, 3]" in message
    assert "[576, 1, 3, 3]" in message and "\n" not in message
    np.testing.assert_array_equal(small_net.multi_box.multi_cls_layers[0][0].weight.asnumpy(), before)


def test_checkpoint_missing_parameters(small_net):
    values = {name: p.asnumpy() for name, p in small_net.parameters_and_names() if "multi_cls_layers" not in name}
    with pytest.raises(ValueError, match="lacks 42 network parameters, first: multi_box.multi_cls_layers"):
        load_checkpoint_into(small_net, values)
    loaded, missing, unexpected = load_checkpoint_into(small_net, values, strict=False)
    assert len(missing) == 42 and all("multi_cls_layers" in name for name in missing) and not unexpected
    assert len(loaded) + len(missing) == len(list(small_net.parameters_and_names()))


def test_checkpoint_missing_file(small_net, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint file not found: .*nope.ckpt$"):
        load_checkpoint_into(small_net, str(tmp_path / "nope.ckpt"))
