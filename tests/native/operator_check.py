"""A compiled operator against MindSpore's own Conv2D: forward output and both gradients, in one mode."""
import mindspore as ms
import numpy as np
from mindspore import nn, ops


class Loss(nn.Cell):
    """sum(conv(x, weight) * r) for a fixed r: its gradients are the convolution's with upstream gradient r."""

    def __init__(self, conv, weight, upstream):
        super().__init__()
        self.conv, self.upstream = conv, upstream
        self.weight = ms.Parameter(weight, name="weight")

    def construct(self, x):
        return (self.conv(x, self.weight) * self.upstream).sum()


def gradients(conv, x, weight, upstream):
    """(output, input gradient, weight gradient) of ``conv(x, weight)`` with upstream gradient ``upstream``."""
    loss = Loss(conv, weight, upstream)
    grad = ops.GradOperation(get_all=True, get_by_list=True)(loss, ms.ParameterTuple([loss.weight]))
    (dx,), (dw,) = grad(x)
    return loss.conv(x, loss.weight).asnumpy(), dx.asnumpy(), dw.asnumpy()


def assert_close(got, want, rtol=2e-5):
    """|got - want| <= rtol * max |want| everywhere."""
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * max(float(np.abs(want).max()), 1e-6))


def assert_matches_conv2d(fast, plain, x, weight, upstream, mode):
    """``fast`` and ``plain`` (both NCHW convolutions taking (x, weight)) agree within 1e-4 of the largest
    value on the output and both gradients, in ``mode``."""
    ms.set_context(mode=mode)
    try:
        got = gradients(fast, x, weight, upstream)
        want = gradients(plain, x, weight, upstream)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    for name, fast_value, mindspore_value in zip(("output", "input gradient", "weight gradient"), got, want):
        assert fast_value.shape == mindspore_value.shape, name
        assert_close(fast_value, mindspore_value, 1e-4)
