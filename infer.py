"""Detect objects in image files: python infer.py --checkpoint_file_path=CKPT --input=IMAGE|FOLDER --output=DIR

Each JPEG, PNG or BMP image (any size; a folder is searched recursively) is resized and normalised as
in evaluation, run through the detector, and written to --output under the same relative name with its
boxes, class names and scores drawn. All detections go to ``DIR/detections.json`` in the COCO layout
(images, categories, annotations with a ``score``; category ids are indices in ``classes``).
Detections scoring above ``--score_threshold`` are kept; ``nms_threshold`` and ``max_boxes`` apply as
in evaluation. An image that cannot be read is named on one line and skipped.

``--infer_backend`` picks the runtime as for eval.py (:func:`src.inference.runtimes.checkpoint_predictor`):
``mindspore``, or ``onnxruntime`` (the checkpoint is exported to ONNX first). Either gives a ``predict``
function mapping a float32 batch ``[B, 3, H, W]`` (as :func:`src.data.augment.eval_transform` makes it)
to numpy ``(boxes [B, N, 4] ymin, xmin, ymax, xmax in [0, 1], scores [B, N, num_classes])``.
"""
import os
import sys

from src.config import load_config_or_exit
from src.errors import UserError, exit_status

DETECTIONS_FILE = "detections.json"


def make_predictor(cfg):
    """``predict`` for the checkpoint on the runtime that ``infer_backend`` names (mindspore, onnxruntime)."""
    from src.checkpoint import checkpoint_to_load
    from src.device import setup_device
    from src.inference.runtimes import checkpoint_predictor

    path = checkpoint_to_load(cfg)
    setup_device(cfg)
    return checkpoint_predictor(cfg, path)


def output_folder(cfg):
    """--output, or output_path/infer when it is empty."""
    return cfg.output or os.path.join(cfg.output_path, "infer")


def detections_document(cfg, images, detections):
    """The COCO-layout json of a run: images, categories and the detections as scored annotations."""
    annotations = [dict(d, id=k + 1, area=d["bbox"][2] * d["bbox"][3], iscrowd=0) for k, d in enumerate(detections)]
    categories = [{"id": index, "name": name} for index, name in enumerate(cfg.classes) if index > 0]
    return {"info": {"description": "detections of infer.py", "score_threshold": cfg.score_threshold},
            "images": images, "categories": categories, "annotations": annotations}


def infer(cfg):
    """Detect, draw and write every input image; returns (images written, detections, images skipped)."""
    from tqdm import tqdm

    from src.inference.coco_eval import write_json_atomic
    from src.inference.images import detect_image, find_images, read_image
    from src.inference.visualize import draw_boxes, write_image

    out_dir = output_folder(cfg)
    inputs = find_images(cfg.input, out_dir)
    predict = make_predictor(cfg)
    names = dict(enumerate(cfg.classes))
    images, detections, skipped = [], [], []
    for path, name in tqdm(inputs, desc="detecting", unit="img", file=sys.stderr,
                           disable=len(inputs) == 1 or not sys.stderr.isatty()):
        image = read_image(path)
        if image is None:
            tqdm.write("skipped %s: not a readable image" % path, file=sys.stderr)
            skipped.append(path)
            continue
        found = detect_image(predict, image, cfg, len(images) + 1)
        if not write_image(os.path.join(out_dir, name), draw_boxes(image, found, names)[0]):
            raise UserError("cannot write %s" % os.path.join(out_dir, name))
        images.append({"id": len(images) + 1, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
        detections += found
    if not images:
        raise UserError("none of the %d images could be read" % len(inputs))
    write_json_atomic(os.path.join(out_dir, DETECTIONS_FILE), detections_document(cfg, images, detections))
    return images, detections, skipped


def infer_and_report(cfg):
    """Detect in every input image, then print one summary line."""
    images, detections, skipped = infer(cfg)
    out_dir = output_folder(cfg)
    print("%d image%s, %d detection%s with score > %g: drawn images in %s, all detections in %s%s"
          % (len(images), "" if len(images) == 1 else "s", len(detections), "" if len(detections) == 1 else "s",
             cfg.score_threshold, out_dir, os.path.join(out_dir, DETECTIONS_FILE),
             "; %d unreadable image%s skipped" % (len(skipped), "" if len(skipped) == 1 else "s") if skipped else ""))


def main(argv=None):
    """Command line: detect and report; a user error is one line and status 1."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    return exit_status(infer_and_report, cfg)


if __name__ == "__main__":
    sys.exit(main())
