"""Evaluate an SSD checkpoint with COCO mAP: python eval.py --checkpoint_file_path=CKPT [--key=value ...]

Prints pycocotools' 12-line summary, then ``mAP: <AP@[.5:.95]>``; the detections go to
``output_path/predictions.json``. The older ``--checkpoint_path=CKPT`` spelling works too.
"""
import os
import sys

from src.config import load_config_or_exit


from src.errors import UserError


def checkpoint_argument(cfg):
    """The checkpoint to evaluate: checkpoint_file_path, or a file given as the model zoo's checkpoint_path."""
    path = cfg.checkpoint_file_path
    if not path and str(cfg.checkpoint_path).endswith(".ckpt"):
        path = cfg.checkpoint_path
    if not path:
        raise UserError("no checkpoint given: pass --checkpoint_file_path=PATH/TO/ssd-60_50.ckpt")
    if not os.path.isfile(path):
        raise UserError("checkpoint not found: %s" % path)
    return path


def evaluate(cfg):
    from src.data.pipeline import create_ssd_dataset
    from src.data.prepare import prepare_split
    from src.device import setup_device
    from src.inference import evaluate_network
    from src.models import build_ssd
    from src.checkpoints import load_network_checkpoint

    path = checkpoint_argument(cfg)
    setup_device(cfg)
    network = build_ssd(cfg)
    load_network_checkpoint(network, path)
    info = prepare_split(cfg, False)
    dataset = create_ssd_dataset(cfg, info["files"], False, cfg.eval_batch_size)
    network.set_train(False)
    mean_ap, _, summary = evaluate_network(network, cfg, dataset, info["gt_json"], cfg.output_path)
    print(summary)
    print("\n========================================\n")
    print("mAP: %s" % mean_ap)
    return mean_ap


def main(argv=None):
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    from src.data.sources import DatasetError
    from src.errors import UserError
    try:
        evaluate(cfg)
    except (DatasetError, UserError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
