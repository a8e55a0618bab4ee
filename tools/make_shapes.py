"""Generate the built-in synthetic shapes detection set: python -m tools.make_shapes [--out DIR] [--num_train N] [--num_val N] [--seed S]

train.py makes it by itself when the configured dataset is the default; this command makes one of any
size elsewhere (COCO and TXT layout, see src/data/shapes.py).
"""
import argparse
import sys
import time

from src.data.shapes import DEFAULT_SHAPES_ROOT, generate_shapes


def main(argv=None):
    """Command line: write the set and say where, how many, and how long it took."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_SHAPES_ROOT, help="output folder (default %(default)s)")
    parser.add_argument("--num_train", type=int, default=400, help="training images (default %(default)s)")
    parser.add_argument("--num_val", type=int, default=100, help="validation images (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        start = time.time()
        generate_shapes(args.out, args.num_train, args.num_val, args.seed)
    except ValueError as err:
        parser.exit(2, "error: %s\n" % err)
    print("wrote %d train and %d val images to %s in %.1f s"
          % (args.num_train, args.num_val, args.out, time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
