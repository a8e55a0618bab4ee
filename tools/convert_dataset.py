"""Convert a COCO, VOC or TXT dataset to MindRecord: python -m tools.convert_dataset [--dataset=coco|voc|other] [--key=value ...]

Always rebuilds both splits (train.py reuses an up-to-date conversion and rebuilds a stale one by
itself; ``train.py --only_create_dataset=True`` does the same and stops).
"""
import sys

from src.config import load_config_or_exit
from src.data.convert import convert
from src.errors import exit_status


def convert_both(cfg):
    """Rebuild the training and the evaluation split."""
    for is_training in (True, False):
        convert(cfg, is_training)


def main(argv=None):
    """Command line: convert both splits; a dataset error is one line and status 1."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    return exit_status(convert_both, cfg)


if __name__ == "__main__":
    sys.exit(main())
