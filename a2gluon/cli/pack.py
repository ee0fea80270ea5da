"""a2gluon pack ROOT OUT_PREFIX: pack ImageNet class folders into im2rec records (a2gluon.data.pack)."""

import argparse
import signal
import sys
import time

from ..data.layout import DataError
from ..data.pack import pack
from ..signals import Terminated

PROG = "a2gluon pack"


def build_parser(prog=PROG):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Pack ROOT/<class>/<image> into OUT_PREFIX.lst/.rec/.idx/.classes.json (im2rec format).",
    )
    parser.add_argument("root", help="folder with one sub-folder of images per class")
    parser.add_argument("out_prefix", help="output prefix: writes OUT_PREFIX.rec, .idx, .lst, .classes.json")
    parser.add_argument(
        "--resize", type=int, default=480, help="shorter side in pixels (default 480; 0 keeps the size)"
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1-100 (default 95)")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="decoding processes (default: all cores; 0 or 1 decodes in this process)",
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="a training set's OUT_PREFIX.classes.json whose labels to reuse (for validation sets)",
    )
    parser.add_argument(
        "--pass-through",
        action="store_true",
        help="store the image files unchanged (with --resize 0), as im2rec's --pass-through",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def report_leftovers(summary, items, leftovers):
    """On stderr: the `leftovers` of an earlier killed pack that were removed, and every one of
    the `items` (images, videos) skipped, with its reason."""
    if summary["removed_stale"]:
        removed = len(summary["removed_stale"])
        print(f"removed {removed} {leftovers} of an earlier pack that was killed", file=sys.stderr)
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} {items} that cannot be packed:", file=sys.stderr)
        for rel, reason in summary["skipped"]:
            print(f"  {rel}: {reason}", file=sys.stderr)


def _report(summary, elapsed):
    print(
        f"packed {summary['images']} images of {len(summary['classes'])} classes into "
        f"{summary['rec']} in {elapsed:.1f} s"
    )
    report_leftovers(summary, "images", "temporary files")
    if summary["empty_classes"]:
        empty = summary["empty_classes"]
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        print(
            f"warning: {len(empty)} class folders gave no image ({shown}); they stay classes with 0 "
            "images so that the labels keep the folder order",
            file=sys.stderr,
        )
    if summary["ignored"]:
        shown = ", ".join(summary["ignored"][:5]) + (" ..." if len(summary["ignored"]) > 5 else "")
        print(f"ignored {len(summary['ignored'])} files that are not images: {shown}", file=sys.stderr)


def run_packer(prog, work, report, complete="the outputs were complete"):
    """`work()` (a packer: its summary), then `report(summary, seconds)`; the exit status, each
    failure one line: 2 bad input, 1 an OSError (nothing left behind), 128+N stopped by signal N
    (`complete` says so when the outputs were already in place), 130 Ctrl-C."""
    start = time.perf_counter()
    try:
        summary = work()
    except DataError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable folders, a full disk, ...: no output is left behind
        from ..errors import error_line

        print(f"{prog}: error: {error_line(err)}; no output written", file=sys.stderr)
        return 1
    except Terminated as stop:
        done = complete if stop.outputs_written else "no output written"
        print(f"{prog}: stopped by {signal.Signals(stop.signum).name}: {done}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"{prog}: interrupted: no output written", file=sys.stderr)
        return 130
    report(summary, time.perf_counter() - start)
    return 0


def main(argv=None, prog=PROG):
    args = build_parser(prog).parse_args(argv)
    return run_packer(
        prog,
        lambda: pack(
            args.root,
            args.out_prefix,
            resize=args.resize,
            quality=args.quality,
            num_workers=args.num_workers,
            classes=args.classes,
            force=args.force,
            progress=not args.quiet,
            pass_through=args.pass_through,
        ),
        _report,
    )
