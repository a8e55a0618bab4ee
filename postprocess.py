"""COCO mAP of per-image raw outputs: python postprocess.py --result_path=./result_Files [--anno_json=GT.json] [--key=value ...]

Reads the ``<image>_0.bin`` (boxes) and ``<image>_1.bin`` (scores) files that the Ascend 310 app
(ascend310_infer/) or ``python -m tools.infer_mindir`` wrote, applies evaluation's post-processing
(score threshold, per-class NMS, max_boxes) and prints pycocotools' summary and ``mAP: ...`` as
eval.py does. The ground truth is ``--anno_json``, or else the evaluation split of the configured
dataset; the images of the ground truth that have output files are evaluated. The model keys (classes,
image size) come from the description export.py wrote beside ``--file_name`` (``ssd.json`` for the
default ``ssd``), when there is one. Image sizes come from
the ground truth, else from the image files in ``--img_path``.
"""
import os
import sys

from src.config import load_config_or_exit
from src.errors import UserError, exit_status


def ground_truth_json(cfg):
    """--anno_json, the COCO instances file of the evaluation split, or the converter's ground truth."""
    if cfg.anno_json:
        if not os.path.isfile(cfg.anno_json):
            raise UserError("ground truth not found: --anno_json=%s" % cfg.anno_json)
        return cfg.anno_json
    if cfg.dataset == "coco":
        path = os.path.join(cfg.coco_root, cfg.instances_set.format(cfg.val_data_type))
        if os.path.isfile(path):
            return path
    from src.data.prepare import prepare_split
    return prepare_split(cfg, False)["gt_json"]


def postprocess(cfg):
    """Evaluate the output files in ``cfg.result_path``; returns the mAP."""
    from src.inference.evaluation import print_evaluation, report_evaluation
    from src.inference.raw_outputs import detections_from_files
    from src.model_settings import config_for_export

    cfg = config_for_export(cfg, cfg.file_name)
    gt_json = ground_truth_json(cfg)
    detections, image_ids, missing = detections_from_files(cfg, cfg.result_path, gt_json, cfg.img_path)
    if missing:
        print("%d of %d ground-truth images have no output files in %s (e.g. %s): evaluating the %d that do"
              % (len(missing), len(missing) + len(image_ids), cfg.result_path, missing[0], len(image_ids)))
    mean_ap, _, summary = report_evaluation(cfg, gt_json, detections, cfg.output_path, image_ids=image_ids)
    print_evaluation(summary, mean_ap)
    return mean_ap


def main(argv=None):
    """Entry point: evaluate the output files; a user error is one line and status 1."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    return exit_status(postprocess, cfg)


if __name__ == "__main__":
    sys.exit(main())
