"""a2gluon check-records: check a .rec / .idx pair before training or evaluating on it.

Without ``--deep``: the fast header check (:func:`a2gluon.data.check_records`: offsets, record
headers, labels; seconds per million records) and a summary of images, classes and labels.
With ``--deep``: every image decoded by MXNet's own decoder in worker processes
(:func:`a2gluon.data.verify.verify_records`), the result cached as ``IDX.verified.json``;
``--write-clean PREFIX`` then copies every other record to ``PREFIX.rec`` / ``.idx``.
Exit status: 0 clean, 1 bad records found, 2 bad usage or unusable files.
"""

import argparse
import os
import signal
import sys

from ..data.layout import DataError
from ..data.pipeline import check_records
from ..data.verify import MAX_SHOWN, clean_outputs, known_bad_records, verify_records, write_clean_records
from ..signals import Terminated

PROG = "a2gluon check-records"
SHOWN_LABELS = 20  # per-label counts are listed up to this many labels, else min / max


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (what is wrong, where to look), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog=PROG):
    p = _Parser(
        prog=prog,
        description=(
            "Check an im2rec .rec/.idx pair: record headers and labels (fast), or with --deep "
            "decode every image as MXNet's pipelines do (a damaged image kills val_iter with SIGFPE)."
        ),
    )
    p.add_argument("rec", help="the .rec file")
    p.add_argument("idx", nargs="?", help="its .idx (default: REC with .idx)")
    p.add_argument("--deep", action="store_true", help="decode every image; cached as IDX.verified.json")
    p.add_argument(
        "--num-workers", type=int, default=None, help="decoding processes for --deep (default: all cores)"
    )
    p.add_argument(
        "--write-clean",
        metavar="PREFIX",
        help="with --deep, when bad records are found: copy the other records to PREFIX.rec/.idx "
        "(and .lst, .classes.json when REC has them)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing --write-clean outputs")
    p.add_argument(
        "--no-cache", action="store_true", help="decode again and do not read or write IDX.verified.json"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def default_idx(rec):
    """The index that goes with ``rec``: the same path with ``.idx`` for ``.rec``."""
    return os.path.splitext(rec)[0] + ".idx"


def summary_lines(info):
    """What :func:`check_records` found, for people: images, classes, images per label."""
    names = info.classes
    lines = [
        f"{info.rec}: {info.num_images} images, {info.num_labels_seen} distinct labels "
        f"({info.label_min}-{info.label_max})"
        + (f", {len(names)} classes named in its .classes.json" if names else ", no .classes.json beside it")
    ]

    def label(value):
        return f"{value} ({names[value]})" if names and value < len(names) else str(value)

    counts = info.label_counts
    if len(counts) <= SHOWN_LABELS:
        lines.append("images per label: " + ", ".join(f"{label(k)}: {n}" for k, n in sorted(counts.items())))
    else:
        low = min(counts, key=counts.get)
        high = max(counts, key=counts.get)
        lines.append(
            f"images per label: {counts[low]} to {counts[high]} (label {label(low)} to {label(high)})"
        )
    num_classes = len(names) if names else info.label_max + 1
    empty = [k for k in range(num_classes) if k not in counts]
    if empty:
        shown = ", ".join(label(k) for k in empty[:5]) + (" ..." if len(empty) > 5 else "")
        lines.append(f"warning: {len(empty)} of {num_classes} classes have no images: {shown}")
    if not info.ids_match_keys:
        lines.append("note: record header ids differ from the index keys (not written by a2gluon.data.pack)")
    return lines


def run(args):
    idx = args.idx or default_idx(args.rec)
    if not args.deep:
        info = check_records(args.rec, idx)
        print("\n".join(summary_lines(info)))
        known = None if args.no_cache else known_bad_records(args.rec, idx)
        if known is None:
            print("images not decoded by this check; --deep decodes every one")
            return 0
        print(known.report(MAX_SHOWN))
        return 0 if known.ok else 1
    if args.write_clean:  # refuse unusable outputs before decoding for an hour
        clean_outputs(args.write_clean, (args.rec, idx), args.force)
    result = verify_records(
        args.rec, idx, num_workers=args.num_workers, progress=not args.quiet, cache=not args.no_cache
    )
    print(result.report(MAX_SHOWN))
    if result.cache_error and not args.no_cache:
        print(f"note: result not cached ({result.cache_error})", file=sys.stderr)
    if result.ok:
        if args.write_clean:
            print(f"nothing to leave out: {args.write_clean}.rec not written")
        return 0
    if args.write_clean:
        out = write_clean_records(
            args.rec, idx, result.bad_keys, args.write_clean, force=args.force, progress=not args.quiet
        )
        also = "".join(f", {os.path.basename(out[k])}" for k in ("idx", "lst", "classes_json") if k in out)
        print(f"wrote the {out['records']} other records to {out['rec']} (with {also[2:]}); train on those")
    return 1


def main(argv=None, prog=PROG):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.write_clean and not args.deep:
        parser.error("--write-clean needs --deep (it leaves out the records the deep check finds)")
    if args.force and not args.write_clean:
        parser.error("--force goes with --write-clean")
    if args.num_workers is not None and args.num_workers < 1:
        parser.error(f"--num-workers must be 1 or more, got {args.num_workers}")
    try:
        return run(args)
    except DataError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f": {os.fsdecode(err.filename)}" if err.filename else ""
        print(f"{prog}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except Terminated as stop:
        print(f"{prog}: stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
