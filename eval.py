"""Evaluate an SSD checkpoint with COCO mAP: python eval.py --checkpoint_file_path=CKPT [--key=value ...]

Prints pycocotools' 12-line summary, a per-class table and the error counts, then ``mAP: <AP@[.5:.95]>``;
the detections go to ``output_path/predictions.json``, the table to ``output_path/per_class.csv``, the
confusion matrix, error breakdown and PR curves to ``output_path/eval/`` (``--plots=False``: no pictures).
``--protocol=model_zoo`` counts as the model zoo does. The older ``--checkpoint_path=CKPT`` spelling works too.
``--visualize=N`` also saves N images with ground truth and predictions side by side to
``output_path/visualize/``. ``--infer_backend=onnxruntime`` exports the checkpoint to ONNX and runs it
with onnxruntime (much faster on CPU; same figures within rounding).
"""
import os
import sys

from src.config import load_config_or_exit
from src.errors import exit_status


def evaluate(cfg):
    from src.checkpoint import checkpoint_to_load
    from src.data.pipeline import create_ssd_dataset
    from src.data.prepare import prepare_split
    from src.device import setup_device
    from src.inference.evaluation import evaluate_predictor, print_evaluation
    from src.inference.runtimes import checkpoint_predictor
    from src.model_settings import config_for_checkpoint

    path = checkpoint_to_load(cfg)
    cfg = config_for_checkpoint(cfg, path)
    setup_device(cfg)
    predict = checkpoint_predictor(cfg, path)
    info = prepare_split(cfg, False)
    dataset = create_ssd_dataset(cfg, info["files"], False, cfg.eval_batch_size)
    mean_ap, _, summary = evaluate_predictor(predict, cfg, dataset, info["gt_json"], cfg.output_path)
    if cfg.visualize > 0:
        save_visualizations(cfg, info)
    print_evaluation(summary, mean_ap)
    return mean_ap


def save_visualizations(cfg, info):
    """--visualize N: the first N evaluation images, ground truth left and predictions right."""
    from src.inference.coco_eval import PREDICTIONS_FILE
    from src.inference.visualize import save_eval_visualizations

    out_dir = os.path.join(cfg.output_path, "visualize")
    written = save_eval_visualizations(info["files"], info["gt_json"], os.path.join(cfg.output_path, PREDICTIONS_FILE),
                                       cfg.visualize, out_dir, cfg.score_threshold, list(cfg.classes))
    print("visualize: %d images with ground truth (left) and predictions scoring above %g (right) in %s"
          % (len(written), cfg.score_threshold, out_dir))


def main(argv=None):
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    return exit_status(evaluate, cfg)


if __name__ == "__main__":
    sys.exit(main())
