"""COCO evaluation of any runtime: run ``predict`` over an evaluation split, post-process, score with
pycocotools. eval.py, eval_onnx.py and the trainer's evaluations all go through
:func:`evaluate_predictor`, so every runtime is scored by the same code."""
import json
import sys

from tqdm import tqdm

from src.inference.coco_eval import category_mapping, evaluate_detections, format_map_line
from src.inference.detector import SsdDetector
from src.inference.postprocess import detections_for_batch
from src.inference.runtimes import mindspore_predictor
from src.inference.voc_metrics import evaluate_voc


def run_predictor(predict, dataset, cfg, label_to_category: dict, progress: bool = True) -> list:
    """COCO detections of ``predict`` (numpy images -> numpy boxes, scores) over an evaluation dataset.
    The progress bar is shown on a terminal only (not in a log file)."""
    detections = []
    total = dataset.get_dataset_size()
    for img_ids, images, shapes in tqdm(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True),
                                        total=total, desc="evaluating", leave=False,
                                        disable=not (progress and sys.stderr.isatty())):
        boxes, scores = predict(images)
        detections += detections_for_batch(boxes, scores, img_ids, shapes, cfg, label_to_category)
    return detections


def evaluate_predictor(predict, cfg, dataset, gt_json: str, output_dir: str, progress: bool = True) -> tuple:
    """COCO mAP of any ``predict`` function (MindSpore, onnxruntime...) on ``dataset`` over every image of
    ``gt_json`` (an image the dataset lacks counts as one with no detections); returns (mAP, stats,
    pycocotools summary text)."""
    label_to_category = category_mapping(gt_json, cfg.classes)
    detections = run_predictor(predict, dataset, cfg, label_to_category, progress)
    return with_chosen_metric(cfg, gt_json, detections, evaluate_detections(gt_json, detections, output_dir))


def with_chosen_metric(cfg, gt_json: str, detections, coco_result: tuple, image_ids=None) -> tuple:
    """``coco_result`` (mAP, stats, summary) as it is for ``metric: coco``; for ``voc07``/``voc12`` the
    mAP becomes the VOC one and its per-class table follows pycocotools' summary."""
    metric = cfg.get("metric", "coco")
    if metric == "coco":
        return coco_result
    with open(gt_json, encoding="utf-8") as stream:
        gt = json.load(stream)
    mean_ap, _, lines = evaluate_voc(gt, detections, metric, image_ids)
    return mean_ap, coco_result[1], coco_result[2].rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


def evaluate_network(network, cfg, dataset, gt_json: str, output_dir: str, progress: bool = True) -> tuple:
    """:func:`evaluate_predictor` of a network being trained (wrapped in ``SsdDetector``)."""
    return evaluate_predictor(mindspore_predictor(SsdDetector(network, cfg)), cfg, dataset, gt_json, output_dir,
                              progress)


def print_evaluation(summary: str, mean_ap: float) -> None:
    """What every evaluation prints: pycocotools' summary, a rule, then ``mAP: ...``."""
    print(summary)
    print("\n========================================\n")
    print(format_map_line(mean_ap))
