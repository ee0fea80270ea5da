"""a2gluon train-video (and train_video.py): the ImageNet trainer's engine on video clips.

Every flag of ``a2gluon train`` (model, optimisation, devices and run: --config recipes,
--dry-run, --resume, kvstore and Horovod, AMP ...) plus the data flags of Gluon-CV's
``scripts/action-recognition/train_recognizer.py`` as it names them: --data-dir, --val-data-dir,
--train-list, --val-list, --dataset, --new-length, --new-step, --input-size, --num-classes,
--num-crops, --num-clips (and --short-side).  The training clips and the validation views are
a2gluon.data.video's; --num-clips / --num-crops are the test protocol, recorded in the
checkpoint for ``a2gluon eval-video`` (validation during training scores one centre clip).
"""

import argparse
import sys

from ..data.pipeline import resize_size
from . import train as image_train

PROG = "a2gluon train-video"
DATASETS = ("folder", "ucf101", "kinetics")


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train an a2gluon video model (e.g. a2_resnet26_3d) on video files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data (flags as Gluon-CV's train_recognizer.py names them)")
    data.add_argument(
        "--data-dir", help="training videos: class folders, the UCF-101 root or a Kinetics folder"
    )
    data.add_argument(
        "--val-data-dir", help="validation videos (default: --data-dir when --val-list is given)"
    )
    data.add_argument(
        "--train-list",
        help="training list: Gluon-CV's 'path num_frames label', UCF-101's trainlist0N.txt or a Kinetics CSV",
    )
    data.add_argument("--val-list", help="validation list (as --train-list; UCF-101: testlist0N.txt)")
    data.add_argument(
        "--dataset", choices=DATASETS, default="folder", help="how --data-dir and the lists are laid out"
    )
    data.add_argument(
        "--split",
        type=int,
        default=1,
        choices=(1, 2, 3),
        help="UCF-101: the official split, when a list is its folder",
    )
    data.add_argument("--new-length", type=int, help="frames per clip (default: the model's, e.g. 16)")
    data.add_argument(
        "--new-step", type=int, default=1, help="frames between a clip's frames (sampling stride)"
    )
    data.add_argument("--input-size", type=int, help="crop size (default: the model's, e.g. 112)")
    data.add_argument(
        "--short-side", type=int, help="videos' shorter side before cropping (default: input size / 0.875)"
    )
    data.add_argument("--num-clips", type=int, default=10, help="test protocol: clips per video (eval-video)")
    data.add_argument(
        "--num-crops", type=int, default=3, help="test protocol: crops per clip, 1 or 3 (eval-video)"
    )
    data.add_argument("--num-data-workers", "-j", type=int, default=4, help="decoding processes (0: none)")
    image_train.add_trainer_arguments(p)
    p.set_defaults(model="a2_resnet26_3d")
    return p


def resolve(parser, args):
    """Fill the defaults that follow from the model (clip length, crop, short side) and refuse
    what no video run can do, in one line each (parser.error, exit 2)."""
    from ..models import list_models, model_spec

    try:
        spec = model_spec(args.model)
    except ValueError as err:
        parser.error(str(err))
    if not spec.is_video:
        videos = ", ".join(n for n in list_models() if model_spec(n).is_video)
        parser.error(
            f"--model {args.model} is an image network (input C x H x W) and this is video data; "
            f"give a video network ({videos}), or train images with a2gluon train"
        )
    _, frames, _, size = spec.input_shape
    if args.new_length is None:
        args.new_length = frames
    if args.input_size is None:
        args.input_size = size
    if args.short_side is None:  # 0 is refused below, not taken for "the default"
        args.short_side = resize_size(max(args.input_size, 1), 0.875)
    for name in (
        "new_length",
        "new_step",
        "input_size",
        "short_side",
        "num_clips",
        "num_crops",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.num_crops not in (1, 3):
        parser.error(f"--num-crops is 1 (centre) or 3 (left, centre, right), got {args.num_crops}")
    if args.short_side < args.input_size:
        parser.error(f"--short-side {args.short_side} is smaller than --input-size {args.input_size}")
    check_clip_shape(parser, args)


def clip_shape(args):
    return (3, args.new_length, args.input_size, args.input_size)


def check_clip_shape(parser, args):
    """parser.error when the network cannot take clips of --new-length x --input-size
    (deploy.export.check_input_shape: too few frames for its temporal strides, too few pixels for
    its 32x spatial downsampling)."""
    from ..deploy.export import ExportError, check_input_shape
    from ..models import get_model, model_options

    options = model_options(args.attention, args.blocks, args.reduction, args.last_gamma)
    try:
        net = get_model(args.model, classes=2, **options)
    except (ValueError, TypeError) as err:
        parser.error(f"cannot build --model {args.model}: {err}")
    try:
        check_input_shape(net, clip_shape(args), args.model)
    except ExportError as err:
        parser.error(str(err))


def video_source(args):
    """The VideoSource the data flags describe (a2gluon.data.video)."""
    from ..data import DataError
    from ..data.video import VideoSource

    if not args.data_dir:
        raise DataError("--data-dir is required: the folder of training videos (see --dataset)")
    source = VideoSource(
        data_dir=args.data_dir,
        train_list=args.train_list,
        val_data_dir=args.val_data_dir,
        val_list=args.val_list,
        dataset=args.dataset,
        new_length=args.new_length,
        new_step=args.new_step,
        input_size=args.input_size,
        short_side=args.short_side,
        num_data_workers=args.num_data_workers,
        seed=args.seed,
        split=args.split,
    )
    # the test protocol, recorded with the data flags in the checkpoint for eval-video
    source.flags = dict(source.flags, num_clips=args.num_clips, num_crops=args.num_crops)
    return source


def count_videos(args, devices, workers):
    """The training videos (a clip of each per epoch), when --data-dir is given."""
    if not args.data_dir:
        return None
    from ..data.video import read_video_set

    return len(read_video_set(args.data_dir, args.train_list, args.dataset, split=args.split, subset="train"))


def plan_extra(args):
    keys = ("dataset", "split", "new_length", "new_step", "short_side", "num_clips", "num_crops")
    return dict({k: getattr(args, k) for k in keys}, input_shape=list(clip_shape(args)))


def main(argv=None, prog=PROG):
    from .config import parse_with_config

    parser = build_parser(prog)
    args = parse_with_config(parser, argv)
    args.prog = prog
    resolve(parser, args)
    if args.dry_run:
        from ..data import DataError
        from ..engine.trainer import TrainError

        try:
            return image_train.dry_run(args, count_videos, plan_extra(args))
        except (TrainError, DataError) as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
    return image_train.leave(args, image_train.train(args, video_source))


if __name__ == "__main__":
    sys.exit(main())
