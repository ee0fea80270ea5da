"""a2gluon train (and train_imagenet.py): flags named as Gluon-CV's ImageNet script names them."""

import argparse
import os
import signal
import sys

from ..data.verify import describe_crash
from ..engine.schedule import MODES
from ..engine.settings import DTYPES, INFLATE_MODES, LR_SCALING, TrainSettings
from ..errors import show_fatal_signals
from ..models.registry import ATTENTION_CHOICES

D = TrainSettings()  # the defaults: one home, the settings themselves


PROG = "a2gluon train"


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train an a2gluon model (e.g. a2_resnet50) on ImageNet RecordIO data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--rec-train", help="training .rec (from a2gluon pack)")
    data.add_argument("--rec-train-idx", help="training .idx")
    data.add_argument("--rec-val", help="validation .rec")
    data.add_argument("--rec-val-idx", help="validation .idx")
    data.add_argument("--synthetic", action="store_true", help="random data: measure the model without I/O")
    data.add_argument("--synthetic-batches", type=int, default=100, help="steps per epoch with --synthetic")
    data.add_argument("--num-data-workers", "-j", type=int, default=4, help="decoding threads")
    data.add_argument("--input-size", type=int, default=224, help="training crop size")
    data.add_argument("--crop-ratio", type=float, default=0.875, help="validation centre crop / resize")
    data.add_argument("--min-random-area", type=float, default=0.08, help="random resized crop: least area")
    data.add_argument("--color-jitter", type=float, default=0.0, help="brightness/contrast/saturation jitter")
    data.add_argument("--pca-noise", type=float, default=0.0, help="PCA lighting noise (0.1 in Gluon-CV)")
    add_trainer_arguments(p)
    return p


def add_trainer_arguments(p):
    """The flags of the training engine (model, optimisation, devices and run): the same for
    every kind of data (a2gluon train-video adds them to its own data flags)."""
    model = p.add_argument_group("model")
    model.add_argument("--model", default=D.model, help="a name from a2gluon.models.list_models()")
    model.add_argument(
        "--num-classes", type=int, default=D.num_classes, help="default: the data's class list, else 1000"
    )
    model.add_argument("--attention", choices=ATTENTION_CHOICES, help="override the model's blocks")
    model.add_argument("--blocks", help="where: 'conv3:2,conv4:2' (after unit U of stage convS)")
    model.add_argument("--reduction", type=int, help="m = n = channels / reduction")
    model.add_argument("--last-gamma", action="store_true", help="zero-init each unit's last BatchNorm gamma")
    model.add_argument(
        "--pretrained",
        metavar="PARAMS",
        help="start from this checkpoint of the same network (another class count: new classifier)",
    )
    model.add_argument(
        "--pretrained-2d",
        metavar="PARAMS",
        help="video networks: start from an image network's checkpoint, inflated (see --inflate)",
    )
    model.add_argument(
        "--inflate",
        choices=INFLATE_MODES,
        default=D.inflate,
        help="--pretrained-2d: a k x 3 x 3 kernel is the 3 x 3 one / k repeated k times (mean) or "
        "the 3 x 3 one in the centre tap (centre)",
    )

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=D.batch_size, help="images per device per step")
    opt.add_argument("--num-epochs", type=int, default=D.num_epochs)
    opt.add_argument(
        "--lr",
        type=float,
        default=D.lr,
        help="learning rate for the global batch (rule: 0.1 x global batch / 256)",
    )
    opt.add_argument("--lr-mode", choices=MODES, default=D.lr_mode)
    opt.add_argument(
        "--lr-decay", type=float, default=D.lr_decay, help="step mode: factor at each decay epoch"
    )
    opt.add_argument("--lr-decay-epoch", default=D.lr_decay_epoch, help="step mode: epochs where lr decays")
    opt.add_argument(
        "--num-iters",
        type=int,
        default=D.num_iters,
        help="stop after this many iterations (optimizer updates) instead of --num-epochs",
    )
    opt.add_argument(
        "--lr-decay-iters",
        default=D.lr_decay_iters,
        help="step mode: iterations where lr decays (e.g. 20000,30000), instead of --lr-decay-epoch",
    )
    opt.add_argument(
        "--plateau-threshold",
        type=float,
        default=D.plateau_threshold,
        help="plateau mode: the least gain in training top-1 (a fraction) that counts as progress",
    )
    opt.add_argument(
        "--plateau-patience",
        type=int,
        default=D.plateau_patience,
        help="plateau mode: epochs without that gain before the lr is multiplied by --lr-decay",
    )
    opt.add_argument(
        "--plateau-max-decays",
        type=int,
        default=D.plateau_max_decays,
        help="plateau mode: at most this many cuts",
    )
    opt.add_argument("--warmup-epochs", type=float, default=D.warmup_epochs, help="linear warm-up epochs")
    opt.add_argument(
        "--warmup-lr", type=float, default=D.warmup_lr, help="learning rate at the start of warm-up"
    )
    opt.add_argument("--momentum", type=float, default=D.momentum)
    opt.add_argument("--nesterov", action="store_true", help="Nesterov momentum (NAG)")
    opt.add_argument("--wd", type=float, default=D.wd, help="weight decay")
    opt.add_argument("--no-wd", action="store_true", help="no weight decay on BatchNorm and biases")
    opt.add_argument("--label-smoothing", type=float, default=D.label_smoothing, help="e.g. 0.1")
    opt.add_argument("--mixup", action="store_true", help="mixup training")
    opt.add_argument("--mixup-alpha", type=float, default=D.mixup_alpha)
    opt.add_argument(
        "--mixup-off-epoch", type=int, default=D.mixup_off_epoch, help="stop mixup from this epoch (0: never)"
    )
    opt.add_argument("--dtype", default=D.dtype, choices=DTYPES)
    opt.add_argument(
        "--accumulate",
        type=int,
        default=D.accumulate,
        help="sum the gradients of N batches before each update (BatchNorm stays per device batch)",
    )
    opt.add_argument(
        "--global-batch",
        type=int,
        default=D.global_batch,
        help="the recipe's global batch; reached by --accumulate, or see --lr-scaling",
    )
    opt.add_argument(
        "--lr-scaling",
        choices=LR_SCALING,
        default=D.lr_scaling,
        help="when the devices give another global batch than --global-batch: none = keep the lr "
        "and accumulate up to it; linear = train with the devices' batch, lr x batch / global batch",
    )
    opt.add_argument(
        "--model-ema", action="store_true", help="keep (and evaluate, save) an EMA of the weights"
    )
    opt.add_argument("--model-ema-decay", type=float, default=D.model_ema_decay, help="EMA decay per update")

    run = p.add_argument_group("devices and run")
    run.add_argument("--num-gpus", type=int, default=D.num_gpus)
    run.add_argument(
        "--num-cpus", type=int, default=D.num_cpus, help="CPU contexts (exercises the multi-device path)"
    )
    run.add_argument(
        "--kvstore",
        default=D.kvstore,
        help="device, local, nccl, dist_sync, dist_device_sync, dist_async or horovod",
    )
    run.add_argument(
        "--save-dir", default=D.save_dir, help="checkpoints, train.log, metrics.jsonl, curves.png"
    )
    run.add_argument("--save-frequency", type=int, default=D.save_frequency, help="checkpoint every N epochs")
    run.add_argument("--val-interval", type=int, default=D.val_interval, help="validate every N epochs")
    run.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --save-dir"
    )
    run.add_argument(
        "--resume-epoch", type=int, default=D.resume_epoch, help="continue from the checkpoint after epoch E"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="start over in a --save-dir that holds an earlier run (deletes its checkpoints)",
    )
    run.add_argument(
        "--keep-checkpoints",
        type=int,
        default=D.keep_checkpoints,
        help="keep only the K newest epoch checkpoints (and -best); 0 keeps all",
    )
    run.add_argument("--log-interval", type=int, default=D.log_interval, help="batches between log lines")
    run.add_argument(
        "--config",
        help="a recipe file (configs/*.yaml; keys are these flags' names); later flags override it",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="print the resolved settings as JSON and exit without training"
    )
    run.add_argument("--seed", type=int, default=D.seed)
    run.add_argument("--debug", action="store_true", help="show tracebacks")


def data_source(args):
    """The data source the data flags describe."""
    from ..data.sources import RecordSource, SyntheticSource

    if args.synthetic:
        return SyntheticSource(args.input_size, args.synthetic_batches, seed=args.seed)
    return RecordSource(
        args.rec_train,
        args.rec_train_idx,
        args.rec_val,
        args.rec_val_idx,
        input_size=args.input_size,
        crop_ratio=args.crop_ratio,
        min_random_area=args.min_random_area,
        color_jitter=args.color_jitter,
        pca_noise=args.pca_noise,
        num_data_workers=args.num_data_workers,
        seed=args.seed,
    )


def _in_distributed_job(args):
    """Whether this process is one worker of several (parameter server or Horovod)."""
    return "DMLC_ROLE" in os.environ or str(args.kvstore).lower() == "horovod"


def count_examples(args, devices, workers):
    """The training examples the data flags name, when known without reading them all."""
    from ..data.pipeline import read_index

    if args.synthetic:
        return args.synthetic_batches * args.batch_size * len(devices) * workers
    if args.rec_train_idx and os.path.isfile(args.rec_train_idx):
        return int(read_index(args.rec_train_idx)[0].size)
    return None


def dry_run(args, count=count_examples, extra=None):
    """The resolved settings of this command line as one JSON object (stdout), without training:
    the devices it names (not checked here) and the workers of the job it runs in (DMLC_NUM_WORKER
    under a2gluon launch, HOROVOD_SIZE / OMPI_COMM_WORLD_SIZE under horovodrun, else 1).
    `count(args, devices, workers)`: the training examples, or None; `extra`: more keys."""
    import json

    from ..engine.settings import run_plan

    settings = TrainSettings.from_namespace(args)
    settings.check()
    if args.num_gpus:
        devices = [f"gpu({i})" for i in range(args.num_gpus)]
    else:
        devices = [f"cpu({i})" for i in range(args.num_cpus)]
    workers = 1
    for name in ("DMLC_NUM_WORKER", "HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            workers = int(os.environ[name])
            break
    num_images = count(args, devices, workers)
    plan = run_plan(settings, devices, workers, num_images, config=args.config)
    plan["input_size"] = args.input_size
    plan.update(extra or {})
    print(json.dumps(plan, indent=1))
    return 0


def main(argv=None, prog=PROG):
    from .config import parse_with_config

    args = parse_with_config(build_parser(prog), argv)
    args.prog = prog
    if args.dry_run:
        from ..data import DataError
        from ..engine.trainer import TrainError

        try:
            return dry_run(args)
        except (TrainError, DataError) as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
    records = [r for r in (args.rec_train, args.rec_val) if r and not args.synthetic]
    show_fatal_signals(f"{prog}: error: {describe_crash(records)}" if records else None)
    return leave(args, train(args, data_source))


def leave(args, code):
    """`code`; a failing worker of a distributed job exits here and now."""
    if code and _in_distributed_job(args):
        # A failing worker of a parameter-server job blocks forever in the store's shutdown
        # (and a Horovod rank in its finaliser): leave now, so that the launcher ends the job.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def train(args, make_source):
    """fit() with the settings of `args` on the source make_source(args); the exit status."""
    from ..data import DataError
    from ..engine.checkpoint import CheckpointError
    from ..engine.devices import DeviceError
    from ..engine.trainer import TrainError, fit
    from ..errors import error_line

    try:
        summary = fit(TrainSettings.from_namespace(args), make_source(args))
    except (TrainError, DataError, DeviceError, CheckpointError) as err:
        if args.debug:
            raise
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", None)  # a Terminated of the set-up (a2gluon.data.pack)
        if signum:
            name = signal.Signals(signum).name
            print(f"{args.prog}: stopped by {name} before training started; nothing saved", file=sys.stderr)
            return 128 + signum
        print(f"{args.prog}: interrupted twice; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    except Exception as err:  # an MXNet or system failure: one line, the traceback with --debug
        if args.debug:
            raise
        print(
            f"{args.prog}: error: {error_line(err)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0 if summary is not None else 1


if __name__ == "__main__":
    sys.exit(main())
