"""SSD multibox heads (Liu et al. 2016, "SSD: Single Shot MultiBox Detector", section 2.1), in the
SSDLite form of the MobileNetV2 paper (section 6.2): per feature map a 3x3 depthwise conv + BN + ReLU6
and a 1x1 conv with bias, giving ``num_default * 4`` box offsets and ``num_default * num_classes``
class logits per cell. Parameter layout is the model zoo's (``multi_loc_layers.k.0..3``).
"""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import XavierUniform

from src.models.layers import Conv1x1, DepthwiseConv3x3, batch_norm_relu6

# Focal loss prior (Lin et al. 2017, "Focal Loss for Dense Object Detection", section 4.1): start
# every class at probability 0.01 so the many background boxes do not swamp the first updates.
CLASS_PRIOR = 0.01


def class_bias(num_classes, num_default, prior=CLASS_PRIOR):
    """Initial class biases, channel ``box * num_classes + class``: every object class starts at
    probability ``prior`` and the background column (class 0, trained as a class by the focal loss
    as in the model zoo) at ``1 - prior``. Starting the background column at ``prior`` as well would
    give a first loss of about 300 per matched box (3.4 for each of the thousands of background
    boxes), whose gradients swamp the first steps of a short run."""
    logit = math.log((1.0 - prior) / prior)
    bias = np.full((num_default, num_classes), -logit, np.float32)
    bias[:, 0] = logit
    return ms.Tensor(bias.reshape(-1))


def head_layer(in_channels, out_channels, bias_init="zeros", fast=False):
    """Depthwise 3x3 + BN + ReLU6 + pointwise conv with bias: ``SequentialCell`` indices 0..3."""
    depthwise = DepthwiseConv3x3(in_channels, 1, fast)
    predict = Conv1x1(in_channels, out_channels, True, fast, XavierUniform(), bias_init)
    return nn.SequentialCell([depthwise] + batch_norm_relu6(in_channels, fast) + [predict])


def flatten_predictions(maps, batch, per_box, channels_last):
    """Head outputs -> [B, N, per_box], ordered by map, then cell (row-major y, x), then box: NCHW maps
    are made NHWC first, as the model zoo does, so the order matches its default boxes."""
    if not channels_last:
        maps = [ops.transpose(m, (0, 2, 3, 1)) for m in maps]
    return ops.concat([ops.reshape(m, (batch, -1, per_box)) for m in maps], 1)


class MultiBox(nn.Cell):
    """Returns (loc [B, N, 4], class logits [B, N, num_classes]); ``fast`` means the feature maps come
    channels last (NHWC) and the layers use the fast formulation."""

    def __init__(self, cfg, fast=False):
        super().__init__()
        self.num_classes = cfg.num_classes
        self.channels_last = fast
        channels, defaults = cfg.extras_out_channels, cfg.num_default
        self.multi_loc_layers = nn.CellList([head_layer(c, 4 * d, "zeros", fast) for c, d in zip(channels, defaults)])
        self.multi_cls_layers = nn.CellList([head_layer(c, cfg.num_classes * d, class_bias(cfg.num_classes, d), fast)
                                             for c, d in zip(channels, defaults)])

    def construct(self, features):
        batch = features[0].shape[0]
        locs, logits = (), ()
        for i in range(len(self.multi_loc_layers)):
            locs += (self.multi_loc_layers[i](features[i]),)
            logits += (self.multi_cls_layers[i](features[i]),)
        return (flatten_predictions(locs, batch, 4, self.channels_last),
                flatten_predictions(logits, batch, self.num_classes, self.channels_last))
