"""Evaluate an exported ONNX file with onnxruntime: python eval_onnx.py --file_name=ssd.onnx [--key=value ...]

The evaluation split, thresholds and output are eval.py's (the same code runs): pycocotools' summary,
then ``mAP: <AP@[.5:.95]>``, detections in ``output_path/predictions.json``. ``--device_target=GPU``
runs on onnxruntime's CUDA provider (onnxruntime-gpu), anything else on the CPU. The model keys
(``img_shape``, ``classes``, anchors) come from the ``.json`` export.py wrote beside the file; without one,
the config must be the one the file was exported with.
"""
import sys

from src.config import load_config_or_exit
from src.errors import exit_status


def evaluate_onnx(cfg):
    """COCO mAP of the ONNX file ``cfg.file_name`` on the evaluation split; prints as eval.py does."""
    from src.data.pipeline import create_ssd_dataset
    from src.data.prepare import prepare_split
    from src.inference.evaluation import evaluate_predictor, print_evaluation
    from src.inference.runtimes import OnnxDetector, onnx_file
    from src.model_settings import config_for_export

    path = onnx_file(cfg.file_name)
    cfg = config_for_export(cfg, path)
    detector = OnnxDetector(path, cfg.device_target)
    detector.check_config(cfg)
    info = prepare_split(cfg, False)
    dataset = create_ssd_dataset(cfg, info["files"], False, cfg.eval_batch_size)
    mean_ap, _, summary = evaluate_predictor(detector, cfg, dataset, info["gt_json"], cfg.output_path)
    print_evaluation(summary, mean_ap)
    return mean_ap


def main(argv=None):
    """Entry point: evaluate; a user error is one line and status 1."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    return exit_status(evaluate_onnx, cfg)


if __name__ == "__main__":
    sys.exit(main())
