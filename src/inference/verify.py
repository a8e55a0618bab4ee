"""``export.py --verify=N``: run N evaluation images through the checkpoint and through every file just
exported, and say how far each export is from the checkpoint and what mAP each gets on those images.

The checkpoint runs in MindSpore in the plain formulation (the graph the exports hold), the MINDIR in
MindSpore (``nn.GraphCell``), ONNX files in onnxruntime. A float32 export whose boxes or scores differ from
the checkpoint's by more than ``FLOAT_TOLERANCE`` fails the check; an INT8 file is reported, not judged
(its error is the quantisation's). AIR files need an Ascend device and are skipped here.
"""
import tempfile
from typing import NamedTuple

import numpy as np

from src.data.pipeline import create_ssd_dataset
from src.data.prepare import prepare_split
from src.inference.coco_eval import category_mapping, evaluate_coco
from src.inference.export import exportable_config
from src.inference.postprocess import detections_for_batch
from src.inference.runtimes import OnnxDetector, checkpoint_predictor, load_mindir

FLOAT_TOLERANCE = 1e-4


class Images(NamedTuple):
    """The first N evaluation images: ids, float32 [N, 3, H, W] inputs, original (height, width)s."""
    ids: np.ndarray
    inputs: np.ndarray
    shapes: np.ndarray


class Verdict(NamedTuple):
    """One runtime's figures on the verification images."""
    name: str
    box_diff: float
    score_diff: float
    mean_ap: float
    judged: bool


def evaluation_images(cfg, files, count: int) -> Images:
    """The first ``count`` images of the evaluation split's ``files``, pre-processed as evaluation does."""
    dataset = create_ssd_dataset(cfg, files, False, 1)
    rows = list(zip(range(count), dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)))
    ids, inputs, shapes = (np.concatenate([row[k] for _, row in rows]) for k in range(3))
    return Images(ids.reshape(-1), inputs, shapes.reshape(-1, 2))


def run_one_by_one(predict, inputs):
    """(boxes, scores) of ``predict`` on each image alone (the exports have batch 1)."""
    outputs = [predict(inputs[i:i + 1]) for i in range(len(inputs))]
    return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])


def mindir_predictor(path):
    """``predict`` of a MINDIR file run by MindSpore."""
    import mindspore as ms

    graph = load_mindir(path)

    def predict(images):
        boxes, scores = graph(ms.Tensor(images))
        return boxes.asnumpy(), scores.asnumpy()
    return predict


def runtime_for(path):
    """(label, predict) of an exported file, or None for a format that cannot run here (AIR)."""
    if path.lower().endswith(".mindir"):
        return "MindSpore", mindir_predictor(path)
    if path.lower().endswith(".onnx"):
        return "onnxruntime", OnnxDetector(path)
    return None


def images_map(cfg, gt_json, images: Images, outputs) -> float:
    """COCO mAP of ``outputs`` (boxes, scores) on the verification images alone."""
    labels = category_mapping(gt_json, cfg.classes)
    detections = detections_for_batch(outputs[0], outputs[1], images.ids, images.shapes, cfg, labels)
    with tempfile.TemporaryDirectory(prefix="ssd_verify_") as folder:
        return evaluate_coco(gt_json, detections, folder, [int(i) for i in images.ids]).mean_ap


def verify_exports(cfg, checkpoint_path: str, exported: list, count: int) -> tuple:
    """Compare each file of ``exported`` with the checkpoint on ``count`` evaluation images. Returns
    (printable lines, whether every float32 export is within FLOAT_TOLERANCE)."""
    plain = exportable_config(cfg).replace(infer_backend="mindspore")
    split = prepare_split(cfg, False)
    images, gt_json = evaluation_images(cfg, split["files"], count), split["gt_json"]
    reference = run_one_by_one(checkpoint_predictor(plain, checkpoint_path), images.inputs)
    verdicts = [Verdict("checkpoint (MindSpore)", 0.0, 0.0, images_map(cfg, gt_json, images, reference), False)]
    lines = []
    for path in exported:
        runtime = runtime_for(path)
        if runtime is None:
            lines.append("  %s: not run (this format needs an Ascend device)" % path)
            continue
        outputs = run_one_by_one(runtime[1], images.inputs)
        verdicts.append(Verdict("%s (%s)" % (path, runtime[0]), float(np.abs(outputs[0] - reference[0]).max()),
                                float(np.abs(outputs[1] - reference[1]).max()),
                                images_map(cfg, gt_json, images, outputs), "_int8" not in path))
    passed = all(v.box_diff <= FLOAT_TOLERANCE and v.score_diff <= FLOAT_TOLERANCE for v in verdicts if v.judged)
    head = "verify: %d evaluation image(s), largest difference from the checkpoint (float32 exports must stay " \
           "within %g):" % (len(images.ids), FLOAT_TOLERANCE)
    body = ["  %s: boxes %.2e, scores %.2e, mAP %.4f%s" % (
        v.name, v.box_diff, v.score_diff, v.mean_ap,
        "" if not v.judged else ("" if max(v.box_diff, v.score_diff) <= FLOAT_TOLERANCE else "  FAILED"))
        for v in verdicts]
    return [head] + body + lines, passed
