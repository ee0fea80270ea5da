"""a2gluon pack-video ROOT OUT: re-encode a video set at a smaller size (a2gluon.data.pack_video)."""

import argparse

from ..data.pack_video import FORMATS, pack_videos
from .pack import report_leftovers, run_packer

PROG = "a2gluon pack-video"


def build_parser(prog=PROG):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Re-encode every video of ROOT with its shorter side at --short-side into OUT, "
        "with OUT/list.txt (path num_frames label) and OUT/classes.json.",
    )
    parser.add_argument(
        "root", help="the videos: class folders ROOT/<class>/<video>, or the data dir of --list"
    )
    parser.add_argument("out", help="output folder (replaced as a whole, only with --force)")
    parser.add_argument("--short-side", type=int, default=256, help="shorter side in pixels (default 256)")
    parser.add_argument(
        "--format",
        choices=list(FORMATS),
        default="mp4",
        help="mp4: H.264 (default; about 7x smaller files), avi: MPEG-4 part 2 (about 5x less CPU to "
        "decode; for when decoding limits training), measured in benchmarks/NOTES.md",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="encoding processes (default: all cores; 0 or 1: in this process)",
    )
    parser.add_argument(
        "--dataset", choices=("folder", "ucf101", "kinetics"), default="folder", help="ROOT's layout"
    )
    parser.add_argument(
        "--list",
        default=None,
        help="folder: a Gluon-CV list file; ucf101: the ucfTrainTestlist folder; kinetics: the CSV",
    )
    parser.add_argument("--split", type=int, default=1, help="UCF-101 split 1, 2 or 3 (default 1)")
    parser.add_argument(
        "--subset", choices=("train", "test"), default="train", help="UCF-101 list (default train)"
    )
    parser.add_argument("--classes", default=None, help="a training set's classes.json whose labels to reuse")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _report(summary, elapsed):
    print(
        f"packed {summary['videos']} videos ({summary['frames']} frames) "
        f"of {len(summary['classes'])} classes "
        f"into {summary['out']} in {elapsed:.1f} s ({summary['videos'] / max(elapsed, 1e-9):.1f} videos/s)"
    )
    report_leftovers(summary, "videos", "folders")


def main(argv=None, prog=PROG):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    from . import require_positive

    require_positive(parser, args, ["short_side", "split"])
    return run_packer(
        prog,
        lambda: pack_videos(
            args.root,
            args.out,
            short_side=args.short_side,
            video_format=args.format,
            num_workers=args.num_workers,
            dataset=args.dataset,
            list_file=args.list,
            split=args.split,
            subset=args.subset,
            classes=args.classes,
            force=args.force,
            progress=not args.quiet,
        ),
        _report,
        complete="the output was complete",
    )
