import mindspore as ms
import numpy as np
import pytest

from src.training.loss import sigmoid_focal_loss, ssd_loss
from src.training.lr_schedule import learning_rates


def numpy_focal(logits, labels, num_classes, gamma, alpha):
    one_hot = np.eye(num_classes)[labels]
    p = 1 / (1 + np.exp(-logits))
    bce = -(one_hot * np.log(p) + (1 - one_hot) * np.log(1 - p))
    p_t = one_hot * p + (1 - one_hot) * (1 - p)
    return (one_hot * alpha + (1 - one_hot) * (1 - alpha)) * (1 - p_t) ** gamma * bce


def numpy_ssd_loss(loc, logits, gt_loc, gt_label, num_classes, gamma, alpha):
    positive = gt_label > 0
    diff = np.abs(loc - gt_loc)
    l1 = np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).sum(-1) * positive
    focal = numpy_focal(logits, gt_label, num_classes, gamma, alpha)
    return (focal.sum() + l1.sum()) / max(1, positive.sum())


@pytest.fixture(params=["GRAPH", "PYNATIVE"])
def mode(request):
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "GRAPH" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=ms.PYNATIVE_MODE)


def run_loss(loc, logits, gt_loc, gt_label, num_classes=5):
    @ms.jit
    def compiled(*args):
        return ssd_loss(*args, num_classes, 2.0, 0.75)
    args = [ms.Tensor(x) for x in (loc, logits, gt_loc, gt_label)]
    return float(compiled(*args).asnumpy())


def batch(rng, labels):
    shape = labels.shape
    return (rng.normal(size=shape + (4,)).astype(np.float32), rng.normal(size=shape + (5,)).astype(np.float32),
            rng.normal(size=shape + (4,)).astype(np.float32), labels.astype(np.int32))


def test_loss_matches_numpy(mode):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (2, 30)) * (rng.random((2, 30)) < 0.3)
    args = batch(rng, labels)
    assert run_loss(*args) == pytest.approx(numpy_ssd_loss(*args, 5, 2.0, 0.75), rel=1e-4)


def test_image_without_boxes_gives_finite_loss_without_localisation(mode):
    rng = np.random.default_rng(1)
    labels = np.zeros((2, 30), np.int64)
    labels[0, :4] = 2
    loc, logits, gt_loc, gt_label = batch(rng, labels)
    mixed = run_loss(loc, logits, gt_loc, gt_label)
    assert np.isfinite(mixed)
    empty = np.zeros_like(gt_label)
    only_background = run_loss(loc, logits, gt_loc, empty)
    expected = numpy_focal(logits, empty, 5, 2.0, 0.75).sum()
    assert only_background == pytest.approx(expected, rel=1e-4)
    moved = run_loss(loc + 10, logits, gt_loc, empty)
    assert moved == pytest.approx(only_background, rel=1e-6)


def test_focal_loss_elementwise():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 4, 6)).astype(np.float32)
    labels = rng.integers(0, 6, (3, 4)).astype(np.int32)
    got = sigmoid_focal_loss(ms.Tensor(logits), ms.Tensor(labels), 6, 2.0, 0.25).asnumpy()
    np.testing.assert_allclose(got, numpy_focal(logits, labels, 6, 2.0, 0.25), rtol=1e-4, atol=1e-6)


def test_learning_rate_warmup_then_cosine():
    rates = learning_rates(0.001, 0.05, 0.01, 2, 10, 5)
    assert len(rates) == 50
    assert rates[0] == pytest.approx(0.001)
    assert np.all(np.diff(rates[:10]) > 0)
    assert rates[10] == pytest.approx(0.05)
    assert np.all(np.diff(rates[10:]) <= 0)
    assert 0.0005 < rates[-1] < 0.001
