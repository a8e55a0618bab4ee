"""SSD box predictors: per feature map, ``num_default * 4`` box offsets and ``num_default * num_classes``
class logits per cell (Liu et al. 2016, "SSD: Single Shot MultiBox Detector", section 2.1).

* :class:`MultiBox`: the SSDLite form of the MobileNetV2 paper (section 6.2): per map a 3x3 depthwise conv
  + BN + ReLU6 and a 1x1 conv with bias (``multi_loc_layers.k.0..3``, ``multi_cls_layers.k.0..3``);
* :class:`WeightSharedMultiBox`: the weight-shared box predictor of RetinaNet-style SSD (Lin et al. 2017,
  "Focal Loss for Dense Object Detection", section 4), as the model zoo's FPN models lay it out: per map
  ``num_addition_layers`` 3x3 conv (with bias) + BN + ReLU6 layers for the boxes (``addition_layer_loc``)
  and for the classes (``addition_layer_cls``), then one 3x3 conv for each (``loc_layers.0``,
  ``cls_layers.0``). The convolutions are shared by all maps; each map keeps its own BatchNorm, so only
  map 0 lists the convolution parameters.

Both return (loc [B, N, 4], class logits [B, N, num_classes]), ordered as the default boxes.
"""
import math

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.common.initializer import XavierUniform

from src.models.layers import ConvBNAct

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


def flatten_predictions(maps, per_box, channels_last):
    """Head outputs -> [B, N, per_box], ordered by map, then cell (row-major y, x), then box: NCHW maps
    are made NHWC first, as the model zoo does, so the order matches its default boxes. The batch axis is
    left as -1, so an exported ONNX graph keeps a dynamic batch."""
    if not channels_last:
        maps = [ops.transpose(m, (0, 2, 3, 1)) for m in maps]
    return ops.concat([ops.reshape(m, (-1, m.shape[1] * m.shape[2] * m.shape[3] // per_box, per_box))
                       for m in maps], 1)


def flatten_heads(locs, logits, num_classes, channels_last):
    """(loc [B, N, 4], class logits [B, N, num_classes]) from the heads' outputs on each map."""
    return (flatten_predictions(locs, 4, channels_last), flatten_predictions(logits, num_classes, channels_last))


def head_layer(in_channels, out_channels, bias_init, layers):
    """Depthwise 3x3 + BN + ReLU6 + pointwise conv with bias: ``SequentialCell`` indices 0..3."""
    cells = layers.conv_bn_act(in_channels, in_channels, 3, groups=in_channels)
    predict = layers.conv(in_channels, out_channels, 1, has_bias=True, weight_init=XavierUniform(),
                          bias_init=bias_init)
    return nn.SequentialCell(cells + [predict])


class MultiBox(nn.Cell):
    """SSDLite heads, one pair per map of ``extras_out_channels`` channels."""

    def __init__(self, cfg, layers):
        super().__init__()
        self.num_classes = cfg.num_classes
        self.channels_last = layers.channels_last
        channels, defaults = cfg.extras_out_channels, cfg.num_default
        self.multi_loc_layers = nn.CellList([head_layer(c, 4 * d, "zeros", layers)
                                             for c, d in zip(channels, defaults)])
        self.multi_cls_layers = nn.CellList([head_layer(c, cfg.num_classes * d, class_bias(cfg.num_classes, d),
                                                        layers) for c, d in zip(channels, defaults)])

    def construct(self, features):
        locs, logits = (), ()
        for i in range(len(self.multi_loc_layers)):
            locs += (self.multi_loc_layers[i](features[i]),)
            logits += (self.multi_cls_layers[i](features[i]),)
        return flatten_heads(locs, logits, self.num_classes, self.channels_last)


# The model zoo builds the weight-shared heads' BatchNorm with SSD's settings.
HEAD_BN = {"eps": 1e-3, "momentum": 0.97}


def shared_tower(convs, levels, channels, layers):
    """CellList over maps of SequentialCells of ConvBNAct that reuse ``convs`` (one BN per map and layer)."""
    return nn.CellList([nn.SequentialCell([ConvBNAct(layers.conv_bn_act(channels, channels, conv=conv, **HEAD_BN))
                                           for conv in convs]) for _ in range(levels)])


class WeightSharedMultiBox(nn.Cell):
    """Weight-shared heads over the pyramid's maps (``extras_out_channels[0]`` channels each); the class
    convolution's biases start as the SSDLite heads' do (:func:`class_bias`)."""

    def __init__(self, cfg, layers):
        super().__init__()
        channels, boxes, levels = cfg.extras_out_channels[0], cfg.num_default[0], len(cfg.feature_size)
        self.num_classes, self.channels_last = cfg.num_classes, layers.channels_last
        loc_convs = [layers.conv(channels, channels, 3, has_bias=True) for _ in range(cfg.num_addition_layers)]
        cls_convs = [layers.conv(channels, channels, 3, has_bias=True) for _ in range(cfg.num_addition_layers)]
        self.addition_layer_loc = shared_tower(loc_convs, levels, channels, layers)
        self.addition_layer_cls = shared_tower(cls_convs, levels, channels, layers)
        self.loc_layers = nn.SequentialCell([layers.conv(channels, 4 * boxes, 3, has_bias=True)])
        self.cls_layers = nn.SequentialCell([layers.conv(channels, cfg.num_classes * boxes, 3, has_bias=True,
                                                         bias_init=class_bias(cfg.num_classes, boxes))])

    def construct(self, features):
        locs, logits = (), ()
        for level in range(len(self.addition_layer_loc)):
            locs += (self.loc_layers(self.addition_layer_loc[level](features[level])),)
            logits += (self.cls_layers(self.addition_layer_cls[level](features[level])),)
        return flatten_heads(locs, logits, self.num_classes, self.channels_last)
