"""SSD extra feature layers ("multi_residual"): the maps after the backbone's last one.

Each is an inverted-residual-like block (MobileNetV2 paper, section 6.2, SSDLite): 1x1 conv + BN +
ReLU6 to ``in * ratio`` channels, 3x3 depthwise (stride from ``extras_strides``) + BN + ReLU6, 1x1
conv + BN, then ReLU6; no shortcut (the shapes differ). Layers 0 and 1 of the extras_* lists describe
the two backbone maps, so the extra layers are entries 2.. (as in the model zoo).
"""
from mindspore import nn

from src.models.layers import InvertedResidual


def multi_residual(cfg, fast=False):
    """CellList of the extra layers from cfg.extras_in_channels/out_channels/strides/ratio[2:]."""
    layers = []
    for i in range(2, len(cfg.extras_in_channels)):
        layers.append(InvertedResidual(cfg.extras_in_channels[i], cfg.extras_out_channels[i],
                                       cfg.extras_strides[i], cfg.extras_ratio[i], last_relu=True, fast=fast))
    return nn.CellList(layers)
