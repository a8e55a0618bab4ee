"""Run an exported MINDIR over a folder of images with MindSpore and write exactly the raw per-image outputs
the Ascend 310 app writes (layout in src/inference/raw_outputs.py):

    python -m tools.infer_mindir --file_name=ssd.mindir --img_path=IMAGES [--result_path=./result_Files]

Pre-processing is evaluation's (src/data/augment.py ``eval_transform``: bilinear resize to ``img_shape``,
BGR to RGB, ImageNet mean and std, CHW), one image at a time; the MINDIR must be exported at batch 1
with the same ``img_shape``. Then ``python postprocess.py --result_path=... `` gives the COCO mAP.
"""
import sys
import time

import mindspore as ms

from src.config import load_config_or_exit
from src.data.augment import eval_transform
from src.device import setup_device
from src.errors import UserError, exit_status
from src.inference.images import list_folder_images, read_image
from src.inference.raw_outputs import image_stem, write_outputs
from src.inference.runtimes import load_mindir, mindir_file
from src.model_settings import config_for_export


def run_graph(graph, chw, path):
    """The graph's outputs for one CHW image, as numpy arrays."""
    try:
        outputs = graph(ms.Tensor(chw[None]))
    except (RuntimeError, ValueError, TypeError) as err:
        raise UserError("%s rejected an input of shape %s (exported with another img_shape or batch size?): %s"
                        % (path, [1] + list(chw.shape), str(err).strip().splitlines()[0])) from None
    return [o.asnumpy() for o in (outputs if isinstance(outputs, (tuple, list)) else (outputs,))]


def run_mindir(cfg):
    """Write the outputs of every image of ``cfg.img_path``; returns (images done, skipped, ms per image)."""
    path = mindir_file(cfg.file_name)
    cfg = config_for_export(cfg, path)
    images = list_folder_images(cfg.img_path)
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
