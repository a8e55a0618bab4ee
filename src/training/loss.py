"""SSD training loss: sigmoid focal classification loss plus SmoothL1 localisation loss.

The classification term is the focal loss of Lin et al. (2017, "Focal Loss for Dense Object
Detection", equation 5) over every default box and every class column (background included, as the
model zoo trains it); the localisation term is the SSD paper's SmoothL1 over matched boxes (Liu et al.
2016, equation 2). Both are summed and divided by max(1, matched boxes in the batch): a batch with no
boxes at all is a valid sample (zero localisation loss) instead of a division by zero, which the model
zoo's loss does not guard against.
"""
import mindspore as ms
from mindspore import nn, ops


def sigmoid_focal_loss(logits, labels, num_classes, gamma, alpha):
    """Per-element focal loss [B, N, C] of logits [B, N, C] against integer labels [B, N]."""
    one_hot = ops.one_hot(labels, num_classes, ops.ones((), ms.float32), ops.zeros((), ms.float32))
    logits = logits.astype(ms.float32)
    probs = ops.sigmoid(logits)
    bce = ops.binary_cross_entropy_with_logits(logits, one_hot, ops.ones_like(logits), ops.ones_like(logits),
                                               reduction="none")
    p_t = one_hot * probs + (1 - one_hot) * (1 - probs)
    weight = one_hot * alpha + (1 - one_hot) * (1 - alpha)
    return weight * ops.pow(1 - p_t, gamma) * bce


def smooth_l1(pred, target, beta=1.0):
    """Elementwise SmoothL1 (Huber with threshold ``beta``)."""
    diff = ops.abs(pred - target)
    return ops.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def ssd_loss(pred_loc, pred_logits, gt_loc, gt_label, num_classes, gamma, alpha):
    """Scalar loss of a batch: (focal + SmoothL1 over matched boxes) / max(1, matched boxes)."""
    positive = (gt_label > 0).astype(ms.float32)
    num_matched = ops.maximum(positive.sum(), ops.ones((), ms.float32))
    loc = smooth_l1(pred_loc.astype(ms.float32), gt_loc).sum(-1) * positive
    cls = sigmoid_focal_loss(pred_logits, gt_label, num_classes, gamma, alpha)
    return (cls.sum() + loc.sum()) / num_matched


class SsdWithLoss(nn.Cell):
    """The network and its loss as one cell; the attribute name ``network`` keeps the model zoo's
    checkpoint names (``network.backbone...``)."""

    def __init__(self, network, num_classes, gamma, alpha):
        super().__init__()
        self.network = network
        self.num_classes = num_classes
        self.gamma = gamma
        self.alpha = alpha

    def construct(self, image, gt_loc, gt_label, num_match):
        pred_loc, pred_logits = self.network(image)
        return ssd_loss(pred_loc, pred_logits, gt_loc, gt_label, self.num_classes, self.gamma, self.alpha)
