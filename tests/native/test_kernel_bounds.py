"""Every entry point of src/native/conv_kernels.cc (depthwise 3x3 and 5x5, max pooling, BatchNorm) called
directly through ctypes (the MindSpore "aot" signature) on fenced numpy buffers
(tests/native/kernel_harness.py): no write outside an output, no read outside an input, no output element
left unwritten or read before written, no input changed, and the values of a float64 reference. MindSpore
allocates the Custom ops' tensors from its own pool, where AddressSanitizer cannot see; this is the check
it cannot make.

Shapes: odd sides, 1x1 maps, batch 1 and 8, channel counts that use the 16-wide, the 8-wide and the
single-channel loops, stride 1 and 2, and shapes large enough that ParallelFor splits the rows (more
than 64K floats per thread), with the thread count of this machine and with 1 and 5 threads (uneven
splits): the library is copied for each thread count, so that its SSD_KERNEL_THREADS is read afresh."""

import numpy as np
import pytest

from src.native.kernels import kernel_library
from tests.native import kernel_harness as harness

pytestmark = pytest.mark.skipif(kernel_library() is None, reason="no C++ compiler for the fast CPU kernels")

# (B, H, W, C) of NHWC inputs; the multi-threaded ones are at the end.
SMALL = [(1, 1, 1, 1), (1, 2, 2, 3), (2, 5, 7, 17), (1, 3, 3, 24), (3, 13, 11, 33), (8, 3, 3, 40)]
LARGE = [(2, 38, 38, 72), (1, 75, 75, 35), (4, 19, 19, 264), (8, 10, 10, 520)]


@pytest.fixture(scope="module", params=[None, 1, 5], ids=["threads-default", "threads-1", "threads-5"])
def lib(request, tmp_path_factory):
    """The kernel library loaded from its own copy, with SSD_KERNEL_THREADS as the parameter (None: unset)."""
    def warm_up(library):
        harness.call(library, "BnApply0", [np.ones((1, 1), np.float32)] * 5 + [bn_settings(1e-3, 0.97)], [(1, 1)])

    return harness.load_with_threads(kernel_library(), tmp_path_factory.mktemp("kernels"), request.param, warm_up)


def bn_settings(eps, momentum):
    """The BatchNorm kernels' last input (src.native.kernels.batch_norm_settings, as numpy)."""
    return np.array([eps, momentum], np.float64)


def random(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def assert_close(got, want, rtol=2e-5, floor=1e-6):
    """|got - want| <= rtol * max(|want|.max(), floor) everywhere."""
    scale = max(float(np.max(np.abs(want))), floor)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


def out_shape(shape, stride):
    return (shape[0], -(-shape[1] // stride), -(-shape[2] // stride), shape[3])


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", SMALL + LARGE, ids=str)
def test_depthwise_kernels(lib, shape, stride, kernel):
    rng = np.random.default_rng(sum(shape) + stride + kernel)
    x, w = random(rng, *shape), random(rng, shape[3], 1, kernel, kernel)
    dy = random(rng, *out_shape(shape, stride))
    prefix = "Dw" if kernel == 3 else "Dw%d" % kernel
    y, = harness.call(lib, "%sForward%d" % (prefix, stride), [x, w], [dy.shape])
    assert_close(y, harness.depthwise_forward(x, w, stride))
    dx, = harness.call(lib, "%sBackwardInput%d" % (prefix, stride), [dy, w, x], [x.shape])
    assert_close(dx, harness.depthwise_backward_input(dy, w, x.shape, stride))
    dw, = harness.call(lib, "%sBackwardWeight%d" % (prefix, stride), [x, dy, w], [w.shape])
    assert_close(dw, harness.depthwise_backward_weight(x, dy, stride, kernel), 1e-4)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 1), (3, 2)], ids=str)
@pytest.mark.parametrize("shape", SMALL + LARGE, ids=str)
def test_max_pool_kernels(lib, shape, kernel, stride):
    rng = np.random.default_rng(sum(shape) + stride + kernel)
    x = random(rng, *shape)
    geometry = np.array([kernel, stride], np.int64)
    dy = random(rng, *out_shape(shape, stride))
    want_y, dx_of = harness.max_pool(x, kernel, stride)
    y, = harness.call(lib, "MaxPoolForward", [x, geometry], [dy.shape])
    np.testing.assert_array_equal(y, want_y)
    dx, = harness.call(lib, "MaxPoolBackward", [dy, x, geometry], [x.shape])
    assert_close(dx, dx_of(dy))  # float32 sums where windows overlap


def batch_norm_reference(x, gamma, beta, relu6, eps):
    """(y, mean, biased var, rstd) of training BatchNorm over all axes but the last, in float64."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean, var = flat.mean(0), flat.var(0)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (flat - mean) * rstd * gamma + beta
    return (np.clip(y, 0, 6) if relu6 else y), mean, var, rstd


def backward_reference(dy, x, gamma, beta, mean, var, relu6, batch_stats, eps):
    """(dx, dgamma, dbeta) of BatchNorm (+ ReLU6) with statistics ``mean``, ``var`` (float64)."""
    flat, g = x.reshape(-1, x.shape[-1]).astype(np.float64), dy.reshape(-1, dy.shape[-1]).astype(np.float64)
    rstd = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    xhat = (flat - mean) * rstd
    if relu6:
        pre = xhat * gamma + beta
        g = np.where((pre > 0) & (pre < 6), g, 0.0)
    dbeta, dgamma = g.sum(0), (g * xhat).sum(0)
    dx = g * gamma * rstd
    if batch_stats:
        dx = gamma * rstd * (g - g.mean(0) - xhat * (g * xhat).mean(0))
    return dx, dgamma, dbeta


# (eps, momentum): the model zoo's SSD-MobileNetV2 layers, and its MobileNetV1 and FPN layers.
BN_SETTINGS = [(1e-3, 0.97), (1e-5, 0.9)]


@pytest.mark.parametrize("eps,momentum", BN_SETTINGS, ids=str)
@pytest.mark.parametrize("relu6", [0, 1])
@pytest.mark.parametrize("shape", SMALL + LARGE + [(6, 37), (1, 5)], ids=str)
def test_batch_norm_kernels(lib, shape, relu6, eps, momentum):
    """Small variances (x scaled by 0.01, variance ~1e-4) make eps matter: with eps 1e-5 a kernel that
    added 1e-3 would be off by ~40 %."""
    rng = np.random.default_rng(sum(shape) + relu6)
    channels = shape[-1]
    x = random(rng, *shape) * 0.01 + 0.005
    gamma, beta = random(rng, channels) * 2, random(rng, channels) * 2
    moving_mean, moving_var = random(rng, channels) * 0.01, np.abs(random(rng, channels)) * 1e-4 + 5e-5
    settings = bn_settings(eps, momentum)
    rows = x.size // channels
    y, mean, var, new_mean, new_var = harness.call(lib, "BnForward%d" % relu6,
                                                   [x, gamma, beta, moving_mean, moving_var, settings],
                                                   [shape] + [(channels,)] * 4)
    want_y, want_mean, want_var, _ = batch_norm_reference(x, gamma, beta, relu6, eps)
    assert_close(y.reshape(-1, channels), want_y, 1e-4, floor=1.0)
    assert_close(mean, want_mean, 1e-4)
    assert_close(var, want_var, 1e-4)
    assert_close(new_mean, momentum * moving_mean + (1 - momentum) * want_mean, 1e-4)
    unbiased = want_var * rows / max(rows - 1, 1)
    assert_close(new_var, momentum * moving_var + (1 - momentum) * unbiased, 1e-4)

    dy = random(rng, *shape)
    grads = harness.call(lib, "BnBackward%d" % relu6, [dy, x, gamma, beta, mean, var, settings],
                         [shape, (channels,), (channels,)])
    for got, want in zip(grads, backward_reference(dy, x, gamma, beta, mean, var, relu6, True, eps)):
        assert_close(got.reshape(want.shape), want, 1e-4, floor=1.0)

    y, = harness.call(lib, "BnApply%d" % relu6, [x, gamma, beta, moving_mean, moving_var, settings], [shape])
    flat = x.reshape(-1, channels).astype(np.float64)
    want = (flat - moving_mean) / np.sqrt(moving_var.astype(np.float64) + eps) * gamma + beta
    assert_close(y.reshape(-1, channels), np.clip(want, 0, 6) if relu6 else want, 1e-4, floor=1.0)
    grads = harness.call(lib, "BnApplyBackward%d" % relu6, [dy, x, gamma, beta, moving_mean, moving_var, settings],
                         [shape, (channels,), (channels,)])
    for got, want in zip(grads, backward_reference(dy, x, gamma, beta, moving_mean, moving_var, relu6, False, eps)):
        assert_close(got.reshape(want.shape), want, 1e-4, floor=1.0)


def test_fence_catches_a_short_output_and_an_unwritten_one(lib):
    """The harness itself: an output allocated one row shorter than the kernel is told is written past;
    one allocated longer is left partly unwritten (NaN)."""
    x, w = np.ones((1, 4, 4, 8), np.float32), np.ones((8, 1, 3, 3), np.float32)
    with pytest.raises(AssertionError, match="wrote past output"):
        harness.call(lib, "DwForward1", [x, w], [(1, 3, 4, 8)], declared=[(1, 4, 4, 8)])
    with pytest.raises(AssertionError, match="left 32 of 160 values"):
        harness.call(lib, "DwForward1", [x, w], [(1, 5, 4, 8)], declared=[(1, 4, 4, 8)])
