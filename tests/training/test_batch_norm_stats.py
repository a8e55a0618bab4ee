"""Recomputed BatchNorm statistics: the average of the batch statistics, for both BatchNorm forms."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.models.layers import make_layers
from src.native.kernels import kernel_library
from src.training.batch_norm_stats import batch_norm_layers, recompute_batch_norm_statistics


class ConvBn(nn.Cell):
    """1x1 convolution then BatchNorm; NHWC for the fast form, NCHW for nn.BatchNorm2d."""

    def __init__(self, fast):
        super().__init__()
        self.fast = fast
        self.weight = ms.Parameter(ms.Tensor(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)))
        self.bn = make_layers(fast).batch_norm(4)

    def construct(self, x):
        y = ops.matmul(ops.transpose(x, (0, 2, 3, 1)), ops.transpose(self.weight, (1, 0)))
        return self.bn(y) if self.fast else self.bn(ops.transpose(y, (0, 3, 1, 2)))


def batch_stats(net, x):
    """Mean and unbiased variance per channel of the BatchNorm input, computed with numpy."""
    y = np.einsum("bchw,oc->bhwo", x, net.weight.asnumpy()).reshape(-1, 4)
    return y.mean(0), y.var(0, ddof=1)


@pytest.mark.parametrize("fast", [True, False])
def test_statistics_are_the_average_of_batch_statistics(fast):
    if fast and kernel_library() is None:
        pytest.skip("no C++ compiler for the fast kernels")
    net = ConvBn(fast)
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=i, scale=1 + i, size=(2, 3, 5, 5)).astype(np.float32) for i in range(3)]
    used = recompute_batch_norm_statistics(net, [ms.Tensor(b) for b in batches])
    assert used == 3 and not net.training
    keep = 1.0 - float(net.bn.momentum)
    weights = np.array([keep ** (2 - i) for i in range(3)])
    stats = [batch_stats(net, b) for b in batches]
    mean = sum(w * s[0] for w, s in zip(weights, stats)) / weights.sum()
    var = sum(w * s[1] for w, s in zip(weights, stats)) / weights.sum()
    np.testing.assert_allclose(net.bn.moving_mean.asnumpy(), mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(net.bn.moving_variance.asnumpy(), var, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fast", [True, False])
def test_one_repeated_batch_makes_inference_match_training(fast):
    if fast and kernel_library() is None:
        pytest.skip("no C++ compiler for the fast kernels")
    net = ConvBn(fast)
    x = ms.Tensor(np.random.default_rng(2).normal(3, 2, size=(4, 3, 6, 6)).astype(np.float32))
    net.set_train(False)
    stale = net(x).asnumpy()
    recompute_batch_norm_statistics(net, [x] * 4)
    net.set_train(True)
    training = net(x).asnumpy()
    net.set_train(False)
    inference = net(x).asnumpy()
    assert np.abs(stale - training).max() > 0.5
    # The moving variance is unbiased (n / (n - 1)), the training one biased: 144 values per channel.
    np.testing.assert_allclose(inference, training, atol=0.02)


def test_no_batches_changes_nothing():
    net = ConvBn(False)
    before = net.bn.moving_mean.asnumpy().copy(), net.bn.moving_variance.asnumpy().copy()
    assert recompute_batch_norm_statistics(net, []) == 0
    np.testing.assert_array_equal(net.bn.moving_mean.asnumpy(), before[0])
    np.testing.assert_array_equal(net.bn.moving_variance.asnumpy(), before[1])
    assert batch_norm_layers(net) == [net.bn]
