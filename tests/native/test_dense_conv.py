"""The compiled dense convolution (src/native/dense_conv.cc) of the fast formulation.

1. Its three entry points called through ctypes on fenced buffers (tests/native/kernel_harness.py: no read
   or write outside a buffer, no output left unwritten, no input changed) against a float64 numpy
   reference, at every window the networks use (3x3 "same" at stride 1 and 2, 3x3 padded 1 and 0 at
   stride 2, VGG's fc6 dilated 6, ResNet's 7x7 stem), maps smaller than the window, shapes split over
   several threads, and both Winograd tile sizes, with the machine's thread count, 1 and 5 threads.
2. The MindSpore operator (``dense_conv_op``) against MindSpore's own Conv2D: output, input gradient and
   weight gradient within 1e-4, in GRAPH and PYNATIVE mode, at shapes that take the multi-threaded paths.
"""

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.native.kernels import dense_conv_geometry, dense_conv_library, dense_conv_op, out_side
from tests.native import kernel_harness as harness
from tests.native.operator_check import assert_close, assert_matches_conv2d

pytestmark = pytest.mark.skipif(dense_conv_library() is None, reason="no C++ compiler or oneDNN for the dense kernel")

# (name, kernel, stride, padding, dilation)
WINDOWS = [("3x3-same-s1", 3, 1, "same", 1), ("3x3-same-s2", 3, 2, "same", 1), ("3x3-pad1-s2", 3, 2, 1, 1),
           ("3x3-pad0-s2", 3, 2, 0, 1), ("fc6-dilated", 3, 1, 6, 6), ("7x7-stem", 7, 2, "same", 1)]
# (B, H, W, C, O): odd sides, maps smaller than a window, and ones split into several tiles and threads.
# The 3x3 window at stride 1 takes Winograd F(2x2, 3x3) at (2, 38, 38, 64, 40) and (1, 19, 21, 130, 70), and
# F(4x4, 3x3) at (4, 61, 64, 32, 36) (1024 tiles of 4x4, the last row of them partly outside the map).
SHAPES = [(1, 1, 1, 3, 2), (2, 3, 5, 7, 9), (1, 9, 8, 16, 24), (2, 38, 38, 64, 40), (1, 19, 21, 130, 70),
          (4, 61, 64, 32, 36)]


@pytest.fixture(scope="module", params=[None, 1, 5], ids=["threads-default", "threads-1", "threads-5"])
def lib(request, tmp_path_factory):
    """The library loaded from its own copy, with SSD_KERNEL_THREADS as the parameter (None: unset)."""
    def warm_up(library):
        geometry = np.array([1, 1, 1, -1], np.int64)
        harness.call(library, "DenseConvForward", [np.ones((1, 1, 1, 1), np.float32)] * 2 + [geometry],
                     [(1, 1, 1, 1)])

    return harness.load_with_threads(dense_conv_library(), tmp_path_factory.mktemp("dense"), request.param, warm_up)


def padding_of(size, kernel, stride, padding, dilation):
    """(before, after) zero rows of one axis: TensorFlow "same" puts the odd one after."""
    out = out_side(size, kernel, stride, padding, dilation)
    if padding != "same":
        return padding, max((out - 1) * stride + (kernel - 1) * dilation + 1 - size - padding, 0)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def windows(x, kernel, stride, padding, dilation):
    """float64 [B, Ho, Wo, kernel*kernel, C] views of NHWC x, and the padded shape's crop offsets."""
    b, h, w, c = x.shape
    (top, bottom), (left, right) = (padding_of(s, kernel, stride, padding, dilation) for s in (h, w))
    p = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h, out_w = out_side(h, kernel, stride, padding, dilation), out_side(w, kernel, stride, padding, dilation)
    taps = [p[:, ky * dilation:ky * dilation + stride * (out_h - 1) + 1:stride,
              kx * dilation:kx * dilation + stride * (out_w - 1) + 1:stride]
            for ky in range(kernel) for kx in range(kernel)]
    return np.stack(taps, 3), (top, left, p.shape)


def reference(x, w, dy, kernel, stride, padding, dilation):
    """float64 forward output, input gradient and weight gradient of the convolution (weight [O, C, k, k])."""
    cols, (top, left, padded_shape) = windows(x, kernel, stride, padding, dilation)
    weight = w.reshape(w.shape[0], w.shape[1], -1).astype(np.float64)  # [O, C, taps]
    y = np.einsum("bhwtc,oct->bhwo", cols, weight)
    dcols = np.einsum("bhwo,oct->bhwtc", dy.astype(np.float64), weight)
    dw = np.einsum("bhwo,bhwtc->oct", dy.astype(np.float64), cols).reshape(w.shape)
    dp = np.zeros(padded_shape)
    out_h, out_w = y.shape[1:3]
    for t in range(kernel * kernel):
        ky, kx = divmod(t, kernel)
        dp[:, ky * dilation:ky * dilation + stride * (out_h - 1) + 1:stride,
           kx * dilation:kx * dilation + stride * (out_w - 1) + 1:stride] += dcols[:, :, :, t]
    dx = dp[:, top:top + x.shape[1], left:left + x.shape[2]]
    return y, dx, dw


def has_output(window, shape):
    """False for an unpadded window larger than the map (no output pixel)."""
    _, kernel, stride, padding, dilation = window
    return min(out_side(side, kernel, stride, padding, dilation) for side in shape[1:3]) > 0


@pytest.mark.parametrize("window,shape", [(w, s) for w in WINDOWS for s in SHAPES if has_output(w, s)],
                         ids=lambda v: v[0] if isinstance(v[0], str) else str(v))
def test_kernels_match_the_float64_reference(lib, window, shape):
    _, kernel, stride, padding, dilation = window
    batch, height, width, channels, outs = shape
    rng = np.random.default_rng(sum(shape) + kernel + stride)
    x = rng.standard_normal((batch, height, width, channels)).astype(np.float32)
    w = rng.standard_normal((outs, channels, kernel, kernel)).astype(np.float32)
    out_h, out_w = (out_side(s, kernel, stride, padding, dilation) for s in (height, width))
    dy = rng.standard_normal((batch, out_h, out_w, outs)).astype(np.float32)
    geometry = dense_conv_geometry(kernel, stride, padding, dilation).asnumpy()
    want_y, want_dx, want_dw = reference(x, w, dy, kernel, stride, padding, dilation)
    y, = harness.call(lib, "DenseConvForward", [x, w, geometry], [dy.shape])
    assert_close(y, want_y)
    dx, = harness.call(lib, "DenseConvBackwardInput", [dy, w, x, geometry], [x.shape])
    assert_close(dx, want_dx)
    dw, = harness.call(lib, "DenseConvBackwardWeight", [x, dy, w, geometry], [w.shape])
    assert_close(dw, want_dw, 1e-4)


class FastConv(nn.Cell):
    """The compiled operator on NHWC, presented as NCHW so that it can stand in for ops.Conv2D."""

    def __init__(self, kernel, stride, padding, dilation):
        super().__init__()
        self.op = dense_conv_op(kernel, stride, padding, dilation)
        self.geometry = dense_conv_geometry(kernel, stride, padding, dilation)

    def construct(self, x, weight):
        y = self.op(ops.transpose(x, (0, 2, 3, 1)), weight, self.geometry)
        return ops.transpose(y, (0, 3, 1, 2))


# (window, NCHW input): x [2, 64, 38, 38] splits every pass over the threads; the 3x3 window at stride 1
# runs as Winograd F(2x2, 3x3) on it (200 tiles of 4x4, under 1024) and as F(4x4, 3x3) on [8, 32, 64, 64]
# (2048).
OPERATOR_CASES = [(w, (2, 64, 38, 38)) for w in (WINDOWS[0], WINDOWS[2], WINDOWS[4], WINDOWS[5])]
OPERATOR_CASES.append((WINDOWS[0], (8, 32, 64, 64)))


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
@pytest.mark.parametrize("window,shape", OPERATOR_CASES, ids=lambda v: v[0] if isinstance(v[0], str) else str(v))
def test_operator_matches_mindspore_conv2d(window, shape, mode):
    """Forward and both gradients of the operator equal MindSpore's Conv2D (NCHW) within 1e-4 of their
    largest value."""
    _, kernel, stride, padding, dilation = window
    rng = np.random.default_rng(kernel + stride)
    x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    weight = ms.Tensor((rng.standard_normal((40, shape[1], kernel, kernel)) * 0.1).astype(np.float32))
    out = out_side(shape[2], kernel, stride, padding, dilation)
    upstream = ms.Tensor(rng.standard_normal((shape[0], 40, out, out)).astype(np.float32))
    pad_mode, pad = ("same", 0) if padding == "same" else ("pad", padding)
    plain = ops.Conv2D(40, kernel, pad_mode=pad_mode, pad=pad, stride=stride, dilation=dilation)
    assert_matches_conv2d(FastConv(kernel, stride, padding, dilation), plain, x, weight, upstream, mode)
