"""a2gluon eval-video (and eval_video.py): clip and video accuracy of a trained or exported video
model, as the Non-local / SlowFast test protocol measures them.

- clip accuracy: one clip per video, the centre clip's centre crop;
- video accuracy: the softmax scores of all --num-clips x --num-crops views of a video averaged.

Top-1 and top-5 of each, with videos/s; --json-out, --per-class CSV.  The clip sampling and crops
(a2gluon.data.video.video_views) default to what the checkpoint was trained with (its recorded
--new-length, --new-step, --input-size, --short-side, --num-clips, --num-crops), else the model's
input and 10 clips x 3 crops.  Models load as a2gluon eval loads them (a2gluon.cli.evaluate)."""

import argparse
import csv
import os
import signal
import sys
import time

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..deploy.command import run_command
from ..deploy.export import VIEW_SETTINGS
from ..deploy.graph import describe_graph
from ..deploy.predict import NUM_CLIPS, NUM_CROPS, is_video_model, video_protocol
from ..engine.checkpoint import write_json
from ..engine.evaluate import forward
from ..engine.metrics import TopK
from ..errors import show_fatal_signals
from . import require_positive
from .evaluate import EvalData, EvalError, class_count, load, pct, prepare
from .train_video import DATASETS

PROG = "a2gluon eval-video"


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Clip and video top-1/top-5 accuracy of a video model on a set of videos.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data (flags as train-video names them)")
    data.add_argument(
        "--data-dir", required=True, help="the videos: class folders, UCF-101 root or Kinetics folder"
    )
    data.add_argument(
        "--val-list", help="the list of videos to score (UCF-101: testlist0N.txt; a Kinetics CSV)"
    )
    data.add_argument("--dataset", choices=DATASETS, default="folder")
    data.add_argument(
        "--split",
        type=int,
        default=1,
        choices=(1, 2, 3),
        help="UCF-101: the official split, when a list is its folder",
    )
    data.add_argument(
        "--new-length", type=int, help="frames per clip (default: the checkpoint's, else the model's)"
    )
    data.add_argument(
        "--new-step", type=int, help="frames between a clip's frames (default: the checkpoint's, else 1)"
    )
    data.add_argument(
        "--input-size", type=int, help="crop size (default: the checkpoint's, else the model's)"
    )
    data.add_argument(
        "--short-side", type=int, help="shorter side before cropping (default: the checkpoint's)"
    )
    data.add_argument(
        "--num-clips", type=int, help=f"clips per video (default: the checkpoint's, else {NUM_CLIPS})"
    )
    data.add_argument(
        "--num-crops", type=int, help=f"crops per clip: 1 centre, 3 left/centre/right (default {NUM_CROPS})"
    )
    data.add_argument("--num-data-workers", "-j", type=int, default=2, help="decoding processes (0: none)")
    model = p.add_argument_group("model (one of two ways)")
    model.add_argument("--model", help="registry name (with --params; default: the checkpoint's)")
    model.add_argument("--params", help="Gluon params from train-video")
    model.add_argument("--ema", action="store_true", help="with --params: score its -ema.params weights")
    model.add_argument(
        "--symbol", metavar="PREFIX", help="exported model: PREFIX-symbol.json + PREFIX-EEEE.params"
    )
    model.add_argument("--epoch", type=int, default=0, help="with --symbol: the EEEE of the params file")
    model.add_argument("--num-classes", type=int, help="default: the model's")
    run = p.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=8, help="views per forward pass per device")
    run.add_argument("--num-gpus", type=int, default=0)
    run.add_argument(
        "--no-fuse", action="store_true", help="run the model as loaded instead of oneDNN's fused fp32 graph"
    )
    run.add_argument("--json-out", metavar="FILE", help="write the results as JSON")
    run.add_argument("--per-class", metavar="FILE.csv", help="write per-class clip and video accuracy")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def check_usage(parser, args):
    if bool(args.params) == bool(args.symbol):
        parser.error(
            "give --params FILE (with --model NAME unless its meta JSON names it) or --symbol PREFIX"
        )
    if args.ema and args.symbol:
        parser.error("--ema goes with --params (export with --ema to get the EMA's symbol)")
    names = ("batch_size", "num_classes", "input_size", "new_length", "new_step", "short_side", "num_clips")
    require_positive(parser, args, names + ("num_crops",))
    if args.num_crops not in (None, 1, 3):
        parser.error(f"--num-crops is 1 (centre) or 3 (left, centre, right), got {args.num_crops}")
    args.checkpoints = None  # what cli.evaluate.load reads besides --params / --symbol


def protocol(args, loaded):
    """The clip sampling: the flags, else the checkpoint's, else the model's (video_protocol)."""
    return video_protocol(loaded, **{name: getattr(args, name) for name in VIEW_SETTINGS})


def score_videos(net, views_iter, ctx, num_classes, batch_size, clip_view, num_views, progress=None):
    """(clip TopK, video TopK, videos/s) over (index, label, views) from iter_video_views: the
    softmax of the view `clip_view` (clip accuracy) and of the `num_views` first views averaged
    (video accuracy; a view after them is the centre clip, data.video.centre_view)."""
    clip, video = TopK(k=5, num_classes=num_classes), TopK(k=5, num_classes=num_classes)
    start = time.perf_counter()
    for _, label, views in views_iter:
        probs = []
        for first in range(0, len(views), batch_size):
            chunk = mx.nd.array(views[first : first + batch_size])
            outputs = mx.nd.concat(*forward(net, chunk, ctx), dim=0)
            probs.append(mx.nd.softmax(outputs, axis=-1).asnumpy())
        probs = np.concatenate(probs)
        if probs.shape[1] != num_classes:
            raise EvalError(
                f"the model gives {probs.shape[1]} scores but {num_classes} classes were expected"
            )
        labels = np.array([label])
        clip.update(labels, probs[clip_view : clip_view + 1])
        video.update(labels, probs[:num_views].mean(axis=0, keepdims=True))
        if progress is not None:
            progress(1)
    elapsed = time.perf_counter() - start
    return clip, video, video.count / elapsed if elapsed > 0 else float("nan")


def write_per_class(path, clip, video, classes):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "class", "videos", "clip_top1", "clip_top5", "video_top1", "video_top5"])
        for label in range(len(video.class_total)):
            n = int(video.class_total[label])
            name = classes[label] if classes and label < len(classes) else str(label)
            rates = [m[label] / n if n else "" for m in (clip.class_top1, clip.class_topk)]
            rates += [m[label] / n if n else "" for m in (video.class_top1, video.class_topk)]
            w.writerow([label, name, n] + rates)


def run(args):
    from ..data.video import WorkerPool
    from ..signals import Terminated, stop_on_signals

    pool = WorkerPool(args.num_data_workers)
    try:
        with stop_on_signals():
            return score(args, pool)
    except Terminated as stop:
        pool.close(kill=True)
        print(f"{args.prog}: stopped by {signal.Signals(stop.signum).name}; nothing written", file=sys.stderr)
        return 128 + stop.signum
    finally:
        pool.close()


def score(args, pool):
    from ..data.video import centre_view, check_clip_length, iter_video_views, probe_videos, read_video_set
    from ..engine.devices import get_contexts

    ctx = get_contexts(args.num_gpus)
    loaded = load(args, args.params, ctx)
    if not is_video_model(loaded):
        raise EvalError(
            f"{loaded.model or loaded.source} is an image model (input C x H x W); eval-video scores "
            "video models (use a2gluon eval for images)"
        )
    views = protocol(args, loaded)
    videos = read_video_set(
        args.data_dir, args.val_list, args.dataset, classes=loaded.classes, split=args.split, subset="test"
    )
    labels = [label for _, label in videos.items]
    classes = list(videos.classes) if loaded.classes else None  # labelled by the model's classes
    given = args.num_classes or (len(classes) if classes else None)
    data = EvalData(args.data_dir, classes, given, len(videos.items), label_max=max(labels, default=None))
    if not videos.items:
        raise EvalError(f"{args.data_dir}: no videos to score")
    num_classes = class_count(loaded, data, args.num_classes is not None)
    # before any work: the frame counts (unreadable videos skipped and reported) and a clip that fits
    skipped = probe_videos(videos, pool, "test")
    check_clip_length(videos, views["new_length"], views["new_step"], "test")
    net, graph = prepare(loaded, "float32", ctx, fused=not args.no_fuse)
    print(f"graph: {describe_graph(graph, loaded)}")
    it = iter_video_views(
        videos.items,
        views["new_length"],
        views["new_step"],
        views["input_size"],
        views["short_side"],
        views["num_clips"],
        views["num_crops"],
        num_frames=videos.num_frames,
        pool=pool,
        centre=True,
    )
    bar = tqdm(
        total=len(videos.items),
        unit="video",
        desc=os.path.basename(loaded.source or "model"),
        disable=args.no_progress,
    )
    try:
        clip, video, speed = score_videos(
            net,
            it,
            ctx,
            num_classes,
            args.batch_size * len(ctx),
            centre_view(views["num_clips"], views["num_crops"]),
            views["num_clips"] * views["num_crops"],
            bar.update,
        )
    finally:
        bar.close()
    skipped += it.skipped
    total = video.count + len(skipped)
    if skipped:  # each was named on its own line as it was skipped
        print(
            f"{args.prog}: skipped {len(skipped)} of {total} videos that do not decode; "
            f"the accuracy is over the other {video.count}",
            file=sys.stderr,
        )
    if not video.count:
        raise EvalError(f"none of the {total} videos in {args.data_dir} could be scored")
    (clip_top1, clip_top5), (video_top1, video_top5) = clip.get(), video.get()
    out = {
        "model": loaded.model,
        "source": loaded.source,
        "data": args.data_dir,
        "clip_top1": clip_top1,
        "clip_top5": clip_top5,
        "video_top1": video_top1,
        "video_top5": video_top5,
        "videos": video.count,
        **views,
        "views_per_video": views["num_clips"] * views["num_crops"],
        "videos_per_sec": speed,
        "num_classes": num_classes,
        "graph": graph,
    }
    if skipped:
        out["skipped_videos"] = [{"path": path, "reason": reason} for path, reason in skipped]
    print(
        f"{out['model'] or args.symbol}: clip top-1 {pct(clip_top1)} top-5 {pct(clip_top5)}  video top-1 "
        f"{pct(video_top1)} top-5 {pct(video_top5)}  on {video.count} videos x {views['num_clips']} clips x "
        f"{views['num_crops']} crops ({speed:.2f} videos/s; chance top-1 {pct(1 / num_classes)})"
    )
    if args.per_class:
        write_per_class(args.per_class, clip, video, loaded.classes or list(videos.classes))
        print(f"per-class accuracy: {args.per_class}")
    if args.json_out:
        write_json(args.json_out, out)  # atomically: a reader never sees half a file
    return 0


def main(argv=None, prog=PROG):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    args.prog = prog
    check_usage(parser, args)
    show_fatal_signals()
    return run_command(prog, run, args)


if __name__ == "__main__":
    sys.exit(main())
