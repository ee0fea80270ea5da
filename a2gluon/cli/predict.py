"""a2gluon predict: top-k classes of images with a trained or exported model, using
the evaluation preprocessing; of video files with a video model, its test views averaged."""

import argparse
import json
import sys

from ..deploy import load_gluon_model, load_symbol_model, read_class_names
from ..deploy.command import run_command
from ..deploy.loading import check_class_names
from ..deploy.predict import format_predictions, is_video_model, predict_images, predict_videos
from ..errors import show_fatal_signals
from . import require_positive

PROG = "a2gluon predict"


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Print each image's (or, with a video model, each video's) top-k class names with "
        "probabilities.",
    )
    p.add_argument("images", nargs="+", metavar="FILE", help="image files, or video files for a video model")
    p.add_argument(
        "--symbol", metavar="PREFIX", help="exported model (PREFIX-symbol.json + PREFIX-0000.params)"
    )
    p.add_argument("--model", help="registry name of a Gluon model (with --params)")
    p.add_argument("--params", help="Gluon .params file (net.save_parameters)")
    p.add_argument(
        "--num-classes", type=int, help="class count of --params (default: from its meta JSON or the file)"
    )
    p.add_argument("--classes", help="class list (JSON with a 'classes' list, or one name a line)")
    p.add_argument("--topk", type=int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--input-size", type=int, help="crop size (default: the model's, else 224)")
    p.add_argument(
        "--num-clips", type=int, help="video model: clips per video (default: the checkpoint's, else 10)"
    )
    p.add_argument(
        "--num-crops", type=int, help="video model: crops per clip, 1 or 3 (default: the checkpoint's)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="run the model as loaded instead of oneDNN's fused fp32 graph (exported fused and INT8 "
        "graphs run as they are either way)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args):
    if args.symbol:
        loaded = load_symbol_model(args.symbol)
    else:
        loaded = load_gluon_model(args.model, args.params, num_classes=args.num_classes)
    if args.classes:
        loaded.classes = read_class_names(args.classes)
        check_class_names(loaded.classes, loaded.num_classes, args.classes)
    if is_video_model(loaded):  # the test protocol's views of each video, averaged
        given = dict(input_size=args.input_size, num_clips=args.num_clips, num_crops=args.num_crops)
        results = predict_videos(loaded, args.images, topk=args.topk, fused=not args.no_fuse, **given)
    else:
        results = predict_images(
            loaded, args.images, input_size=args.input_size, topk=args.topk, fused=not args.no_fuse
        )
    print(json.dumps(results, indent=1) if args.json else format_predictions(results))


def main(argv=None, prog=PROG):
    show_fatal_signals()
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if bool(args.symbol) == bool(args.params):
        parser.error("give either --symbol PREFIX or --params FILE (with --model NAME)")
    if args.symbol and (args.model or args.num_classes):
        parser.error("--model and --num-classes go with --params, not with --symbol")
    require_positive(parser, args, ("num_classes", "topk", "input_size", "num_clips"))
    if args.num_crops not in (None, 1, 3):
        parser.error(f"--num-crops is 1 (centre) or 3 (left, centre, right), got {args.num_crops}")
    return run_command(prog, run, args)


if __name__ == "__main__":
    sys.exit(main())
