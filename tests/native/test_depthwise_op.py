"""The compiled depthwise operators (``depthwise_op``: 3x3 and 5x5, stride 1 and 2, "same" padding) against
MindSpore's own Conv2D with group = channels: output, input gradient and weight gradient within 1e-4, in
GRAPH and PYNATIVE mode. x [2, 72, 38, 38] takes the 16-wide and 8-wide channel loops and splits the rows
over the threads; the kernels' bounds and float64 values are checked in test_kernel_bounds.py."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.native.kernels import depthwise_op, kernel_library
from tests.native.operator_check import assert_matches_conv2d

pytestmark = pytest.mark.skipif(kernel_library() is None, reason="no C++ compiler for the fast CPU kernels")

CHANNELS, SIDE = 72, 38


class FastDepthwise(nn.Cell):
    """The compiled operator on NHWC, presented as NCHW so that it can stand in for ops.Conv2D."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.op = depthwise_op(stride, kernel)

    def construct(self, x, weight):
        return ops.transpose(self.op(ops.transpose(x, (0, 2, 3, 1)), weight), (0, 3, 1, 2))


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (5, 2)], ids=lambda v: str(v))
def test_depthwise_operator_matches_mindspore_conv2d(kernel, stride, mode):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = ms.Tensor(rng.standard_normal((2, CHANNELS, SIDE, SIDE)).astype(np.float32))
    weight = ms.Tensor((rng.standard_normal((CHANNELS, 1, kernel, kernel)) * 0.2).astype(np.float32))
    out = -(-SIDE // stride)
    upstream = ms.Tensor(rng.standard_normal((2, CHANNELS, out, out)).astype(np.float32))
    plain = ops.Conv2D(CHANNELS, kernel, pad_mode="same", stride=stride, group=CHANNELS)
    assert_matches_conv2d(FastDepthwise(kernel, stride), plain, x, weight, upstream, mode)
