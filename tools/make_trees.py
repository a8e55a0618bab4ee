"""Build the real tree set (aerial photographs, tree-crown boxes) in VOC layout: python -m tools.make_trees [--out DIR]

Needs the deepforest package's data files: pip install --no-deps -r requirements-data.txt. Then train on it
as on any VOC folder of one's own (docs/datasets.md#the-real-tree-set, README "Training on your own data").
"""
import argparse
import sys
import time

from src.data.trees import DEFAULT_TREES_ROOT, TILE, build_trees
from src.errors import UserError


def main(argv=None):
    """Command line: build (or find) the set and say what it holds and where it came from."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_TREES_ROOT, help="output folder (default %(default)s)")
    parser.add_argument("--tile", type=int, default=TILE, help="tile side in pixels (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even when an identical set is there")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        meta = build_trees(args.out, args.tile, args.force)
    except UserError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    for split, info in meta["splits"].items():
        print("%s: %d images, %d boxes (+%d difficult, cut by a tile edge)"
              % (split, info["images"], info["boxes"], info["difficult"]))
    print("classes: %s; from %s %s (%s); in %s (%.1f s)"
          % (",".join(meta["classes"]), meta["package"], meta["package_version"], meta["licence"].split(" (")[0],
             args.out, time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
