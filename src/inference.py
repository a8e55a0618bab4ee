"""The network as eval.py and export.py use it: SSD outputs decoded to boxes and class scores.

``SsdDetector`` keeps the SSD network under the attribute ``network`` so its parameter names are the
model zoo's (``network.backbone...``), and adds box decoding (SSD paper, equation 2 inverted) and the
sigmoid, so one graph gives ``boxes [B, N, 4]`` as (ymin, xmin, ymax, xmax) in [0, 1] and
``scores [B, N, num_classes]``. NMS stays outside the graph (src/postprocess.py), as in the model zoo.
"""
import sys

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from src.anchors import default_boxes_yxhw
from src.coco_eval import category_mapping, evaluate_detections
from src.errors import UserError
from src.postprocess import detect, to_coco_detections


class SsdDetector(nn.Cell):
    """SSD network + box decoding + sigmoid."""

    def __init__(self, network, cfg):
        super().__init__()
        self.network = network
        anchors = default_boxes_yxhw(cfg)
        self.anchor_centre = ms.Tensor(anchors[None, :, :2].copy(), ms.float32)
        self.anchor_size = ms.Tensor(anchors[None, :, 2:].copy(), ms.float32)
        self.centre_var = float(cfg.prior_scaling[0])
        self.size_var = float(cfg.prior_scaling[1])

    def construct(self, image):
        loc, logits = self.network(image)
        loc = loc.astype(ms.float32)
        centre = loc[:, :, :2] * self.centre_var * self.anchor_size + self.anchor_centre
        half = ops.exp(loc[:, :, 2:] * self.size_var) * self.anchor_size / 2
        boxes = ops.concat((centre - half, centre + half), -1)
        return boxes, ops.sigmoid(logits.astype(ms.float32))


def detections_for_batch(boxes, scores, img_ids, shapes, cfg, label_to_category):
    """COCO detection dicts for one batch of decoded network outputs (numpy arrays)."""
    out = []
    for i, img_id in enumerate(np.asarray(img_ids).reshape(-1)):
        kept_boxes, kept_scores, labels = detect(boxes[i], scores[i], cfg.min_score, cfg.nms_threshold,
                                                 cfg.max_boxes)
        height, width = (int(v) for v in shapes[i])
        out.extend(to_coco_detections(int(img_id), kept_boxes, kept_scores, labels, height, width,
                                      label_to_category))
    return out


def mindspore_predictor(detector):
    """``predict(images) -> (boxes, scores)`` on numpy arrays, running a MindSpore ``detector`` cell."""
    def predict(images):
        boxes, scores = detector(ms.Tensor(images))
        return boxes.asnumpy(), scores.asnumpy()
    return predict


def run_predictor(predict, dataset, cfg, label_to_category, progress=True):
    """COCO detections of ``predict`` (numpy images -> numpy boxes, scores) over an evaluation dataset.
    The progress bar is shown on a terminal only (not in a log file)."""
    from tqdm import tqdm

    detections = []
    total = dataset.get_dataset_size()
    for img_ids, images, shapes in tqdm(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True),
                                        total=total, desc="evaluating", leave=False,
                                        disable=not (progress and sys.stderr.isatty())):
        boxes, scores = predict(images)
        detections += detections_for_batch(boxes, scores, img_ids, shapes, cfg, label_to_category)
    return detections


def run_detector(detector, dataset, cfg, label_to_category, progress=True):
    """Run ``detector`` over an evaluation dataset; returns its COCO detections."""
    return run_predictor(mindspore_predictor(detector), dataset, cfg, label_to_category, progress)


def evaluate_predictor(predict, cfg, dataset, gt_json, output_dir, progress=True):
    """COCO mAP of any ``predict`` function (MindSpore, onnxruntime...) on ``dataset`` over every image of
    ``gt_json``; returns (mAP, stats, pycocotools summary text)."""
    label_to_category = category_mapping(gt_json, cfg.classes)
    detections = run_predictor(predict, dataset, cfg, label_to_category, progress)
    return evaluate_detections(gt_json, detections, output_dir)


def evaluate_network(network, cfg, dataset, gt_json, output_dir, progress=True):
    """COCO mAP of ``network`` on ``dataset`` over every image of ``gt_json`` (an image the dataset lacks
    counts as one with no detections); returns (mAP, stats, pycocotools summary text)."""
    detector = SsdDetector(network, cfg)
    detector.set_train(False)
    return evaluate_predictor(mindspore_predictor(detector), cfg, dataset, gt_json, output_dir, progress)


def checkpoint_predictor(cfg, checkpoint_path):
    """``predict`` for a checkpoint on the runtime named by ``cfg.infer_backend``: ``mindspore`` (the
    network of ``cfg``) or ``onnxruntime`` (the checkpoint exported to ONNX first, see src/onnx_backend.py)."""
    from src.checkpoints import load_network_checkpoint
    from src.models import build_ssd

    backend = cfg.get("infer_backend") or "mindspore"
    if backend == "onnxruntime":
        from src.onnx_backend import onnxruntime_predictor
        return onnxruntime_predictor(cfg, checkpoint_path)
    if backend != "mindspore":
        raise UserError("infer_backend must be mindspore or onnxruntime, got '%s'" % backend)
    network = build_ssd(cfg)
    load_network_checkpoint(network, checkpoint_path)
    network.set_train(False)
    detector = SsdDetector(network, cfg)
    detector.set_train(False)
    return mindspore_predictor(detector)


def print_evaluation(summary, mean_ap):
    """What eval.py prints after an evaluation: pycocotools' summary, a rule, then ``mAP: ...``."""
    print(summary)
    print("\n========================================\n")
    print("mAP: %s" % mean_ap)
