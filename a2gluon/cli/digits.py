"""a2gluon digits ROOT: scikit-learn's handwritten digit scans as ImageNet class folders."""

import argparse
import sys

from ..data.digits import make_digits_imagenet
from ..data.layout import DataError

PROG = "a2gluon digits"


def build_parser(prog=PROG):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write scikit-learn's handwritten digits as ROOT/train and ROOT/val class folders.",
    )
    parser.add_argument("root")
    parser.add_argument("--image-size", type=int, default=32, help="side in pixels (default 32)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="share per class for val (default 0.2)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild existing train/ and val/")
    return parser


def main(argv=None, prog=PROG):
    args = build_parser(prog).parse_args(argv)
    try:
        out = make_digits_imagenet(args.root, args.image_size, args.val_fraction, args.seed, args.force)
    except DataError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. no permission to write there
        from ..errors import error_line

        print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
        return 1
    print(
        f"wrote {sum(out['counts']['train'])} training and {sum(out['counts']['val'])} validation "
        f"images of {len(out['classes'])} classes to {out['train']} and {out['val']}"
    )
    return 0
