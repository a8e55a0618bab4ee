"""Run an exported MINDIR over a folder of images with MindSpore and write exactly the raw per-image outputs
the Ascend 310 app writes (layout in src/raw_outputs.py):

    python -m src.infer_mindir --file_name=ssd.mindir --img_path=IMAGES [--result_path=./result_Files]

Pre-processing is evaluation's (src/data/augment.py ``eval_transform``: bilinear resize to ``img_shape``,
BGR to RGB, ImageNet mean and std, CHW), one image at a time; the MINDIR must be exported at batch 1
with the same ``img_shape``. Then ``python postprocess.py --result_path=... `` gives the COCO mAP.
"""
import os
import sys
import time

from src.config import load_config_or_exit
from src.errors import UserError, exit_status


def mindir_file(file_name):
    """The MINDIR named by ``file_name`` (``.mindir`` added when the plain name does not exist)."""
    from src.export import exported_path

    return file_name if os.path.isfile(file_name) else exported_path(file_name, "MINDIR")


def load_mindir(path):
    """``nn.GraphCell`` of a MINDIR file, or a one-line UserError."""
    import mindspore as ms
    from mindspore import nn

    if not os.path.isfile(path):
        raise UserError("MINDIR file not found: %s" % path)
    try:
        return nn.GraphCell(ms.load(path))
    except (RuntimeError, ValueError) as err:
        raise UserError("%s: MindSpore cannot load it: %s" % (path, str(err).strip().splitlines()[0])) from None


def read_image(path):
    """HWC uint8 BGR as the evaluation pipeline decodes it, or None when the file cannot be decoded."""
    from src.data.pipeline import decode_image

    try:
        with open(path, "rb") as stream:
            return decode_image(stream.read())
    except (OSError, ValueError):
        return None


def run_graph(graph, chw, path):
    """The graph's outputs for one CHW image, as numpy arrays."""
    import mindspore as ms

    try:
        outputs = graph(ms.Tensor(chw[None]))
    except (RuntimeError, ValueError, TypeError) as err:
        raise UserError("%s rejected an input of shape %s (exported with another img_shape or batch size?): %s"
                        % (path, [1] + list(chw.shape), str(err).strip().splitlines()[0])) from None
    return [o.asnumpy() for o in (outputs if isinstance(outputs, (tuple, list)) else (outputs,))]


def run_mindir(cfg):
    """Write the outputs of every image of ``cfg.img_path``; returns (images done, skipped, ms per image)."""
    from src.data.augment import eval_transform
    from src.device import setup_device
    from src.raw_outputs import image_stem, list_images, write_outputs

    path = mindir_file(cfg.file_name)
    images = list_images(cfg.img_path)
    setup_device(cfg)
    graph = load_mindir(path)
    done, skipped, seconds = 0, [], 0.0
    for image_path in images:
        image = read_image(image_path)
        if image is None:
            print("skipped %s: not a readable image" % image_path, file=sys.stderr)
            skipped.append(image_path)
            continue
        start = time.perf_counter()
        outputs = run_graph(graph, eval_transform(image, cfg.img_shape), path)
        seconds += time.perf_counter() - start
        write_outputs(cfg.result_path, image_stem(image_path), outputs)
        done += 1
    return done, skipped, 1000.0 * seconds / max(done, 1)


def run_and_report(cfg):
    """Write the outputs of every image, then print one summary line."""
    done, skipped, ms_per_image = run_mindir(cfg)
    print("%d images: outputs in %s (%.1f ms per image)%s"
          % (done, cfg.result_path, ms_per_image, "; %d unreadable skipped" % len(skipped) if skipped else ""))


def main(argv=None):
    """Entry point: write the outputs of every image; a user error is one line and status 1."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    return exit_status(run_and_report, cfg)


if __name__ == "__main__":
    sys.exit(main())
