"""The training step with and without loss scaling (src/train_step.py)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops
from mindspore.amp import StaticLossScaler

from src.training.train_step import TrainStep, make_optimizer, make_scaler


class SquaredError(nn.Cell):
    """A small regression network with its loss: two Dense layers (weights and biases)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.SequentialCell([nn.Dense(6, 5, weight_init="normal"), nn.ReLU(), nn.Dense(5, 2)])

    def construct(self, x, y):
        return ops.square(self.layers(x) - y).mean()


def one_step(scaler, mode, x, y):
    ms.set_context(mode=mode)
    ms.set_seed(3)
    net = SquaredError()
    optimizer = make_optimizer(net, np.full(4, 0.1, np.float32), 0.9, 0.01)
    step = TrainStep(net, optimizer, scaler, False)
    loss, finite = step(ms.Tensor(x), ms.Tensor(y))
    return float(loss.asnumpy()), bool(finite.asnumpy()), [p.asnumpy().copy() for p in net.trainable_params()]


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE])
def test_unscaled_step_equals_fixed_scale_step(mode):
    """float32 on CPU runs without a loss scale: the update is the one a fixed scale of 1024 gives."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 6)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)
    plain = one_step(None, mode, x, y)
    scaled = one_step(StaticLossScaler(1024.0), mode, x, y)
    assert plain[0] == pytest.approx(scaled[0], rel=1e-6) and plain[1] and scaled[1]
    for after_plain, after_scaled in zip(plain[2], scaled[2]):
        np.testing.assert_allclose(after_plain, after_scaled, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(p, q) for p, q in zip(plain[2], one_step(None, mode, x, y * 0)[2]))
    ms.set_context(mode=ms.GRAPH_MODE)


def test_unscaled_step_reports_a_non_finite_loss():
    target = np.full((8, 2), np.inf, np.float32)
    loss, finite, _ = one_step(None, ms.GRAPH_MODE, np.ones((8, 6), np.float32), target)
    assert not np.isfinite(loss) and not finite


@pytest.mark.parametrize("target, float16, kind", [("CPU", False, type(None)), ("CPU", True, StaticLossScaler)])
def test_scaler_by_target(target, float16, kind):
    scaler, dynamic = make_scaler(target, 1024, float16)
    assert isinstance(scaler, kind) and not dynamic


def step_deltas(clip_norm, x, y):
    """(parameter changes of one step without weight decay, the learning rate) for a given clip norm."""
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(3)
    net = SquaredError()
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    optimizer = make_optimizer(net, np.full(4, 0.1, np.float32), 0.9, 0.0)
    TrainStep(net, optimizer, None, False, clip_norm=clip_norm)(ms.Tensor(x), ms.Tensor(y))
    return [p.asnumpy() - b for p, b in zip(net.trainable_params(), before)], 0.1


def test_global_norm_clipping_scales_every_gradient_together():
    """use_global_norm: the first Momentum step moves each parameter by -lr * gradient, so with clipping
    every change is the unclipped one times clip / (global norm of the gradients); a norm below the clip
    changes nothing."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 6)).astype(np.float32), 5 * rng.standard_normal((8, 2)).astype(np.float32)
    free, lr = step_deltas(None, x, y)
    norm = np.sqrt(sum(float(((d / lr) ** 2).sum()) for d in free))
    assert norm > 0.1
    clipped, _ = step_deltas(0.1, x, y)
    for got, unclipped in zip(clipped, free):
        np.testing.assert_allclose(got, unclipped * (0.1 / norm), rtol=1e-4, atol=1e-7)
    for got, unclipped in zip(step_deltas(norm * 2, x, y)[0], free):
        np.testing.assert_allclose(got, unclipped, rtol=1e-5, atol=1e-8)
