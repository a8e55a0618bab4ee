"""Check a dataset without converting it: python -m tools.check_dataset [--dataset=coco|voc|other] [--key=value ...]

Prints, per split, the images, boxes per class, box sizes, images without boxes and every problem the
conversion would drop or stop on, each with its file and line (src/data/check.py). Exit status 1 when
the conversion would stop, 0 otherwise (2 for a bad setting). The same config keys as train.py select
the dataset.
"""
import sys

from src.config import load_config_or_exit
from src.data.check import check_dataset, verdict


def main(argv=None):
    """Command line: print the report of both splits; exit 1 when the conversion would stop."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    reports = check_dataset(cfg, progress=sys.stderr.isatty())
    for report in reports:
        print("\n".join(report.lines(cfg.classes)))
    line, status = verdict(reports)
    print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
