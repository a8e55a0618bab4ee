"""Evaluation of any runtime: run ``predict`` over an evaluation split, post-process, score with
pycocotools, then explain the figure. eval.py, eval_onnx.py, postprocess.py and the trainer's evaluations
all go through :func:`report_evaluation`, so every runtime is scored and reported by the same code."""
import json
import os
import sys

from tqdm import tqdm

from src.errors import UserError
from src.inference.analysis import error_line, write_analysis
from src.inference.coco_eval import category_mapping, evaluate_coco, format_map_line
from src.inference.detector import SsdDetector
from src.inference.per_class import per_class_lines, per_class_rows, write_per_class_csv
from src.inference.postprocess import detections_for_batch
from src.inference.protocol import images_to_score
from src.inference.runtimes import mindspore_predictor
from src.inference.voc_metrics import evaluate_voc

PER_CLASS_FILE = "per_class.csv"


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


def evaluate_predictor(predict, cfg, dataset, gt_json: str, output_dir: str, progress: bool = True,
                       analysis: bool = True) -> tuple:
    """:func:`report_evaluation` of any ``predict`` function (MindSpore, onnxruntime...) on ``dataset``; an
    image of ``gt_json`` that the dataset lacks counts as one with no detections."""
    label_to_category = category_mapping(gt_json, cfg.classes)
    detections = run_predictor(predict, dataset, cfg, label_to_category, progress)
    return report_evaluation(cfg, gt_json, detections, output_dir, analysis=analysis)


def scored_images(cfg, gt_json: str, image_ids=None):
    """The image ids the configured ``protocol`` scores (None: all of the ground truth), or a UserError
    when none is left."""
    protocol = cfg.get("protocol", "standard")
    if protocol == "standard":
        return image_ids
    with open(gt_json, encoding="utf-8") as stream:
        gt = json.load(stream)
    kept = images_to_score(protocol, gt, category_mapping(gt_json, cfg.classes).values(), image_ids)
    if not kept:
        raise UserError("%s: no image is left to evaluate under --protocol=%s (it skips images without "
                        "annotations of the model's classes and images with crowd annotations)" % (gt_json, protocol))
    return kept


def report_evaluation(cfg, gt_json: str, detections, output_dir: str, image_ids=None, analysis: bool = True) -> tuple:
    """Score ``detections`` against ``gt_json`` over ``image_ids`` (default: all) as ``cfg.protocol`` counts;
    returns (mAP of ``cfg.metric``, pycocotools' 12 stats, the text to print).

    Always writes ``output_dir/predictions.json`` and ``output_dir/per_class.csv``; the text holds
    pycocotools' summary and the per-class table (then the VOC table for ``voc07``/``voc12``). With
    ``analysis`` it also writes ``output_dir/eval/`` (confusion matrix and error breakdown, with
    ``cfg.plots`` their pictures and the PR curves) and adds the error line.
    """
    image_ids = scored_images(cfg, gt_json, image_ids)
    if image_ids is not None:
        wanted = set(image_ids)
        detections = [det for det in detections if det["image_id"] in wanted]
    coco = evaluate_coco(gt_json, detections, output_dir, image_ids)
    rows = per_class_rows(coco.cocoeval, coco.coco_gt, detections, cfg.classes)
    write_per_class_csv(os.path.join(output_dir, PER_CLASS_FILE), rows)
    parts = [coco.summary.rstrip("\n"), "\n".join(per_class_lines(rows, len(coco.cocoeval.params.imgIds)))]
    mean_ap = coco.mean_ap
    if cfg.get("metric", "coco") != "coco":
        mean_ap, _, lines = evaluate_voc(coco.coco_gt.dataset, detections, cfg.metric, coco.cocoeval.params.imgIds)
        parts.append("\n".join(lines))
    if analysis:
        folder, written, breakdown = write_analysis(output_dir, coco, detections, rows, cfg.score_threshold,
                                                    bool(cfg.get("plots", True)))
        parts.append(error_line(breakdown) + "\nWritten to %s: %s" % (folder, ", ".join(written)))
    return mean_ap, coco.stats, "\n\n".join(parts) + "\n"


def evaluate_network(network, cfg, dataset, gt_json: str, output_dir: str, progress: bool = True,
                     analysis: bool = True) -> tuple:
    """:func:`evaluate_predictor` of a network being trained (wrapped in ``SsdDetector``)."""
    return evaluate_predictor(mindspore_predictor(SsdDetector(network, cfg)), cfg, dataset, gt_json, output_dir,
                              progress, analysis)


def print_evaluation(summary: str, mean_ap: float) -> None:
    """What every evaluation prints: pycocotools' summary and the tables, a rule, then ``mAP: ...``."""
    print(summary)
    print("\n========================================\n")
    print(format_map_line(mean_ap))
