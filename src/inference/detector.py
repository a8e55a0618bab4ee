"""The network as evaluation, the hub and export run it: SSD outputs turned into boxes and class scores.

``SsdDetector`` keeps the SSD network under the attribute ``network``, so its parameter names are the
model zoo's eval names (``network.backbone...``). With ``decode`` (the default) it adds box decoding
(SSD paper, section 2.2, equation 2 inverted), clipped to the image as the model zoo's graph does (about
half of SSD300's default boxes reach outside it), and the sigmoid, so one graph gives ``boxes [B, N, 4]``
as (ymin, xmin, ymax, xmax) in [0, 1] and ``scores [B, N, num_classes]``; without it, the raw box
offsets and the sigmoid scores (the model zoo's hub network). NMS stays outside the graph
(:mod:`src.inference.postprocess`), as in the model zoo.
"""
import os

import mindspore as ms
from mindspore import nn, ops

from src.anchors import default_boxes_yxhw
from src.checkpoint import load_network_checkpoint
from src.errors import UserError
from src.models import build_ssd


class SsdDetector(nn.Cell):
    """SSD network (+ box decoding when ``decode``) + sigmoid, in inference mode; ``cfg`` gives the
    default boxes and is needed only to decode."""

    def __init__(self, network, cfg=None, decode=True):
        super().__init__()
        self.network = network
        self.decode = decode
        if decode:
            anchors = default_boxes_yxhw(cfg)
            self.anchor_centre = ms.Tensor(anchors[None, :, :2].copy(), ms.float32)
            self.anchor_size = ms.Tensor(anchors[None, :, 2:].copy(), ms.float32)
            self.centre_var = float(cfg.prior_scaling[0])
            self.size_var = float(cfg.prior_scaling[1])
            self.zero, self.one = ms.Tensor(0.0, ms.float32), ms.Tensor(1.0, ms.float32)
        self.set_train(False)

    def construct(self, image):
        loc, logits = self.network(image)
        loc = loc.astype(ms.float32)
        scores = ops.sigmoid(logits.astype(ms.float32))
        if not self.decode:
            return loc, scores
        centre = loc[:, :, :2] * self.centre_var * self.anchor_size + self.anchor_centre
        half = ops.exp(loc[:, :, 2:] * self.size_var) * self.anchor_size / 2
        boxes = ops.concat((centre - half, centre + half), -1)
        return ops.maximum(ops.minimum(boxes, self.one), self.zero), scores


def detector_from_checkpoint(cfg, checkpoint_path: str) -> SsdDetector:
    """``SsdDetector`` over the network of ``cfg`` holding the checkpoint's weights, in inference mode;
    a missing file, an unknown model or an unusable checkpoint is one UserError line."""
    if not os.path.isfile(checkpoint_path):
        raise UserError("checkpoint not found: %s" % checkpoint_path)
    try:
        network = build_ssd(cfg)
    except ValueError as err:
        raise UserError(str(err)) from None
    load_network_checkpoint(network, checkpoint_path)
    network.set_train(False)
    return SsdDetector(network, cfg)
