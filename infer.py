"""Detect objects in image files: python infer.py --checkpoint_file_path=CKPT --input=IMAGE|FOLDER --output=DIR

Each JPEG, PNG or BMP image (any size; a folder is searched recursively) is resized and normalised as
in evaluation, run through the detector, and written to --output under the same relative name with its
boxes, class names and scores drawn. All detections go to ``DIR/detections.json`` in the COCO layout
(images, categories, annotations with a ``score``; category ids are indices in ``classes``).
Detections scoring above ``--score_threshold`` are kept; ``nms_threshold`` and ``max_boxes`` apply as
in evaluation. An image that cannot be read is named on one line and skipped.

``--infer_backend`` picks the runtime as for eval.py (:func:`src.inference.checkpoint_predictor`):
``mindspore``, or ``onnxruntime`` (the checkpoint is exported to ONNX first). Either gives a ``predict``
function mapping a float32 batch ``[B, 3, H, W]`` (as :func:`src.data.augment.eval_transform` makes it)
to numpy ``(boxes [B, N, 4] ymin, xmin, ymax, xmax in [0, 1], scores [B, N, num_classes])``.
"""
import os
import sys

from src.config import load_config_or_exit
from src.errors import UserError, exit_status

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DETECTIONS_FILE = "detections.json"


def make_predictor(cfg):
    """``predict`` for the checkpoint on the runtime that ``infer_backend`` names (mindspore, onnxruntime)."""
    from src.checkpoints import checkpoint_to_load
    from src.device import setup_device
    from src.inference import checkpoint_predictor

    path = checkpoint_to_load(cfg)
    setup_device(cfg)
    return checkpoint_predictor(cfg, path)


def output_folder(cfg):
    """--output, or output_path/infer when it is empty."""
    return cfg.output or os.path.join(cfg.output_path, "infer")


def list_images(input_path, output_dir):
    """``[(path, relative name)]``: the file itself, or every image under a folder (sorted, recursive,
    leaving out ``output_dir`` so that earlier results are not detected again)."""
    if os.path.isfile(input_path):
        if os.path.abspath(os.path.join(output_dir, os.path.basename(input_path))) == os.path.abspath(input_path):
            raise UserError("--output must not be the folder of the input image (it would be replaced)")
        return [(input_path, os.path.basename(input_path))]
    if not input_path or not os.path.isdir(input_path):
        raise UserError("input not found: '%s' (set --input to an image or a folder of images)" % input_path)
    if os.path.abspath(output_dir) == os.path.abspath(input_path):
        raise UserError("--output must not be the input folder (the drawn images would replace the originals)")
    skip = os.path.abspath(output_dir)
    found = []
    for folder, subfolders, files in os.walk(input_path):
        subfolders[:] = sorted(d for d in subfolders if os.path.abspath(os.path.join(folder, d)) != skip)
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(folder, name)
                found.append((path, os.path.relpath(path, input_path)))
    if not found:
        raise UserError("no %s images in %s" % ("/".join(e[1:].upper() for e in IMAGE_EXTENSIONS), input_path))
    return found


def read_image(path):
    """HWC uint8 BGR (grayscale, RGBA and 16-bit images converted), or None when it cannot be decoded."""
    import cv2
    import numpy as np

    try:
        with open(path, "rb") as stream:
            data = stream.read()
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except (OSError, cv2.error):
        return None


def detect_image(predict, image, cfg, image_id):
    """COCO detection dicts of one BGR image, boxes in its own pixels, category id = label index."""
    from src.data.augment import eval_transform
    from src.postprocess import detect, to_coco_detections

    boxes, scores = predict(eval_transform(image, cfg.img_shape)[None])
    kept, kept_scores, labels = detect(boxes[0], scores[0], cfg.score_threshold, cfg.nms_threshold, cfg.max_boxes)
    labels_to_ids = {label: label for label in range(1, len(cfg.classes))}
    return to_coco_detections(image_id, kept, kept_scores, labels, image.shape[0], image.shape[1], labels_to_ids)


def detections_document(cfg, images, detections):
    """The COCO-layout json of a run: images, categories and the detections as scored annotations."""
    annotations = [dict(d, id=k + 1, area=d["bbox"][2] * d["bbox"][3], iscrowd=0) for k, d in enumerate(detections)]
    categories = [{"id": index, "name": name} for index, name in enumerate(cfg.classes) if index > 0]
    return {"info": {"description": "detections of infer.py", "score_threshold": cfg.score_threshold},
            "images": images, "categories": categories, "annotations": annotations}


def infer(cfg):
    """Detect, draw and write every input image; returns (images written, detections, images skipped)."""
    from tqdm import tqdm

    from src.coco_eval import write_json_atomic
    from src.visualize import draw_boxes, write_image

    out_dir = output_folder(cfg)
    inputs = list_images(cfg.input, out_dir)
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
