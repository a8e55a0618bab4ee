"""The compiled max pooling operator (``max_pool_op``) against MindSpore's own MaxPool2d ("same" padding):
output and input gradient, in GRAPH and PYNATIVE mode, at the windows the networks use (VGG's 2x2 stride 2
and 3x3 stride 1, ResNet's 3x3 stride 2 stem pool) on odd and even maps that split over the threads."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.native.kernels import kernel_library, max_pool_geometry, max_pool_op

pytestmark = pytest.mark.skipif(kernel_library() is None, reason="no C++ compiler for the fast CPU kernels")


class FastPool(nn.Cell):
    """The compiled operator on NHWC, presented as NCHW so that it can stand in for nn.MaxPool2d."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.op, self.geometry = max_pool_op(kernel, stride), max_pool_geometry(kernel, stride)

    def construct(self, x):
        return ops.transpose(self.op(ops.transpose(x, (0, 2, 3, 1)), self.geometry), (0, 3, 1, 2))


class Loss(nn.Cell):
    def __init__(self, pool, upstream):
        super().__init__()
        self.pool, self.upstream = pool, upstream

    def construct(self, x):
        return (self.pool(x) * self.upstream).sum()


def output_and_gradient(pool, x, upstream):
    return pool(x).asnumpy(), ops.GradOperation()(Loss(pool, upstream))(x).asnumpy()


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
@pytest.mark.parametrize("side", [38, 75])
@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 1), (3, 2)], ids=str)
def test_max_pool_operator_matches_mindspore(kernel, stride, side, mode):
    rng = np.random.default_rng(kernel * 100 + stride * 10 + side)
    x = ms.Tensor(rng.standard_normal((2, 40, side, side)).astype(np.float32))
    out = -(-side // stride)
    upstream = ms.Tensor(rng.standard_normal((2, 40, out, out)).astype(np.float32))
    ms.set_context(mode=mode)
    try:
        got = output_and_gradient(FastPool(kernel, stride), x, upstream)
        want = output_and_gradient(nn.MaxPool2d(kernel, stride, pad_mode="same"), x, upstream)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    for fast, mindspore_value in zip(got, want):
        assert fast.shape == mindspore_value.shape
        np.testing.assert_allclose(fast, mindspore_value, rtol=0, atol=1e-5)
