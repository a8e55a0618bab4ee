"""Check a dataset without converting it: python -m tools.check_dataset [--dataset=coco|voc|other] [--key=value ...]

Prints, per split, the images, boxes per class, box sizes, images without boxes and every problem the
conversion would drop or stop on, each with its file and line (src/data/check.py); then how well the
config's default boxes cover the training boxes, per size bucket, and with --fit_anchors=True the anchor
settings that cover them better, as flags (src/anchor_fit.py). Exit status 1 when the conversion would
stop, 0 otherwise (2 for a bad setting). The same config keys as train.py select the dataset.
"""
import sys

from src.anchor_fit import anchor_coverage, anchor_title, coverage_lines, fit_anchors, fit_lines
from src.config import load_config_or_exit
from src.data.check import check_dataset, verdict


def anchor_lines(cfg, report):
    """The training boxes' anchor coverage (and, with fit_anchors, the fit); nothing when none were read."""
    boxes, areas = report.targets()
    if not len(boxes):
        return []
    try:
        lines = [anchor_title(cfg, len(boxes))] + coverage_lines(anchor_coverage(cfg, boxes, areas))
    except ValueError as err:
        return ["anchor coverage: not computed: %s" % err]
    return lines + (fit_lines(cfg, fit_anchors(cfg, boxes, areas)) if cfg.fit_anchors else [])


def main(argv=None):
    """Command line: print the report of both splits; exit 1 when the conversion would stop."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    reports = check_dataset(cfg, progress=sys.stderr.isatty())
    for report in reports:
        print("\n".join(report.lines(cfg.classes)))
    for line in anchor_lines(cfg, reports[0]):
        print(line)
    line, status = verdict(reports)
    print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
