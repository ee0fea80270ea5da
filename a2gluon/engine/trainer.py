"""The ImageNet training loop: a model from the registry, RecordIO (or synthetic) data, SGD with
a warm-up + step/cosine/poly schedule over an MXNet kvstore or Horovod, AMP, validation,
atomic checkpoints, resume, and a clean stop on SIGINT/SIGTERM."""

import logging
import math
import os
import signal
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data import DataError, SyntheticIter, check_records, part_sizes, read_classes, train_iter, val_iter
from ..models import get_model
from . import checkpoint
from .devices import DeviceError, cpu_supports_bfloat16, get_contexts
from .distributed import barrier, create_kvstore, make_trainer, shard
from .evaluate import evaluate
from .metrics import MetricsLog, TopK, plot_curves
from .schedule import Schedule, parse_decay_epochs

log = logging.getLogger("a2gluon.train")

DTYPES = ("float32", "float16", "bfloat16")


class TrainError(ValueError):
    """The run cannot start or go on; the message says what is wrong and what to do."""


class Stop(Exception):
    """Raised inside the loop when a SIGINT/SIGTERM asked the run to stop."""


def fmt_time(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def setup_logging(save_dir, rank=0):
    """Console and save_dir/train.log (train-rankR.log for other workers)."""
    os.makedirs(save_dir, exist_ok=True)
    name = "train.log" if rank == 0 else f"train-rank{rank}.log"
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    for handler in (logging.StreamHandler(), logging.FileHandler(os.path.join(save_dir, name))):
        handler.setFormatter(fmt)
        log.addHandler(handler)


def check_args(args):
    """Reject impossible settings before any work is done."""
    positive = ("batch_size", "num_epochs", "input_size", "save_frequency", "val_interval", "log_interval")
    for name in positive:
        if getattr(args, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.lr <= 0:
        raise TrainError(f"--lr must be positive, got {args.lr}")
    if args.dtype not in DTYPES:
        raise TrainError(f"--dtype must be one of {', '.join(DTYPES)}, got {args.dtype!r}")
    if not 0 <= args.label_smoothing < 1:
        raise TrainError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.num_gpus and args.num_cpus > 1:
        raise TrainError("give --num-gpus or --num-cpus, not both")
    if not args.synthetic:
        for flag in ("rec_train", "rec_train_idx"):
            if not getattr(args, flag):
                raise TrainError(
                    f"--{flag.replace('_', '-')} is required (or --synthetic to train on random data)"
                )
        if bool(args.rec_val) != bool(args.rec_val_idx):
            raise TrainError("give both --rec-val and --rec-val-idx, or neither")
    try:
        args.decay_epochs = parse_decay_epochs(args.lr_decay_epoch)
    except ValueError as err:
        raise TrainError(str(err)) from None


def contexts(args):
    if args.num_gpus:
        if args.dtype == "bfloat16":
            raise TrainError("--dtype bfloat16 is for CPUs in MXNet 1.9.1; use --dtype float16 on GPUs")
        return get_contexts(args.num_gpus)
    if args.dtype == "float16":
        raise TrainError(
            "--dtype float16 needs GPUs: MXNet has no float16 matrix products on CPUs; "
            "use --dtype bfloat16 (CPUs with AVX-512) or float32"
        )
    if args.dtype == "bfloat16" and not cpu_supports_bfloat16():
        raise TrainError(
            "--dtype bfloat16 on CPU needs AVX-512 (oneDNN bf16 kernels); use --dtype float32 here"
        )
    return [mx.cpu(i) for i in range(max(1, args.num_cpus))]


def model_kwargs(args):
    kwargs = {}
    if args.attention:
        kwargs["attention"] = None if args.attention == "none" else args.attention
    if args.blocks:
        kwargs["blocks"] = args.blocks
    if args.reduction:
        kwargs["reduction"] = args.reduction
    if args.last_gamma:
        kwargs["last_gamma"] = True
    return kwargs


class Data:
    """The training and validation sources of one worker and their sizes."""

    def __init__(self, args, batch, num_parts, part_index):
        self.args = args
        self.batch = batch  # images per step on this worker (all its devices)
        self.num_parts, self.part_index = num_parts, part_index
        self.classes = None
        if args.synthetic:
            self.num_classes = args.num_classes or 1000
            self.train_images = args.synthetic_batches * batch * num_parts
            self.val_images = 0
        else:
            self.classes = read_classes(args.rec_train)
            self.num_classes = args.num_classes or (len(self.classes) if self.classes else 1000)
            if self.classes and len(self.classes) != self.num_classes:
                raise TrainError(
                    f"--num-classes is {self.num_classes} but the training data has "
                    f"{len(self.classes)} classes ({args.rec_train}); give --num-classes "
                    f"{len(self.classes)} or other data"
                )
            info = check_records(args.rec_train, args.rec_train_idx, self.num_classes)
            self.train_images = info.num_images
            self.val_images = 0
            if args.rec_val:
                val_classes = read_classes(args.rec_val)
                if self.classes and val_classes and val_classes != self.classes:
                    raise TrainError(
                        f"the validation classes ({args.rec_val}) differ from the training classes; "
                        "pack validation with --classes TRAIN_PREFIX.classes.json"
                    )
                self.val_images = check_records(args.rec_val, args.rec_val_idx, self.num_classes).num_images
        per_part = min(part_sizes(self.train_images, num_parts))
        if per_part < batch:
            raise TrainError(
                f"a step takes {batch} images per worker but the training data has only "
                f"{self.train_images} images ({per_part} for the smallest of {num_parts} worker "
                "shard(s)); use a smaller --batch-size"
            )
        self.iters_per_epoch = math.ceil(self.train_images / (num_parts * batch))

    def train(self, epoch):
        """This worker's training batches of `epoch`: a fresh iterator seeded by the epoch, so a
        resumed run sees the same order, resized to the same count on every worker."""
        args = self.args
        if args.synthetic:
            it = SyntheticIter(
                self.batch, args.input_size, self.num_classes, self.iters_per_epoch, seed=args.seed + epoch
            )
        else:
            it = train_iter(
                args.rec_train,
                args.rec_train_idx,
                self.batch,
                input_size=args.input_size,
                num_parts=self.num_parts,
                part_index=self.part_index,
                seed=args.seed + epoch,
                min_area=args.min_random_area,
                jitter=args.color_jitter,
                pca_noise=args.pca_noise,
                num_workers=args.num_data_workers,
            )
        return mx.io.ResizeIter(it, self.iters_per_epoch)

    def val(self):
        if not self.val_images:
            return None
        return val_iter(
            self.args.rec_val,
            self.args.rec_val_idx,
            self.batch,
            input_size=self.args.input_size,
            crop_ratio=self.args.crop_ratio,
            num_workers=self.args.num_data_workers,
        )


class StopFlag:
    """Records SIGINT/SIGTERM so the loop can finish its batch, save and exit cleanly."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def settle_shapes(net, input_size, ctx):
    """Give deferred parameter shapes (Gluon-CV models) their values before the kvstore sees them.
    The pass runs in training mode: an inference pass lets oneDNN keep convolution weights in
    a blocked layout, which the parameter server then receives broken ("init K first").  It
    leaves the BatchNorm running statistics as initialised."""
    if not any(p._deferred_init for p in net.collect_params().values()):
        return
    x = mx.nd.zeros((2, 3, input_size, input_size), ctx=ctx[0])
    with autograd.record():
        net(x)
    net.collect_params(".*running_mean|.*running_var").initialize(force_reinit=True, ctx=ctx)


def soft_labels(label, num_classes, smoothing):
    one_hot = mx.nd.one_hot(label, num_classes)
    if smoothing:
        one_hot = one_hot * (1 - smoothing) + smoothing / num_classes
    return one_hot


def fit(args):
    """Train as `args` (from a2gluon.cli.train) says.  Returns a summary dict."""
    check_args(args)
    ctx = contexts(args)
    kv, dist = create_kvstore(args.kvstore, len(ctx))
    rank = dist.rank
    num_parts, part_index = shard(dist)
    setup_logging(args.save_dir, rank)
    mx.random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)

    batch = args.batch_size * len(ctx)
    data = Data(args, batch, num_parts, part_index)
    num_classes = data.num_classes

    if args.dtype != "float32":
        from mxnet.contrib import amp

        amp.init(target_dtype=args.dtype)
    kwargs = model_kwargs(args)
    try:
        net = get_model(args.model, classes=num_classes, **kwargs)
    except (ValueError, TypeError) as err:
        raise TrainError(f"cannot build --model {args.model}: {err}") from None
    net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    if args.no_wd:
        for param in net.collect_params(".*beta|.*gamma|.*bias").values():
            param.wd_mult = 0.0

    resume = None
    if args.resume or args.resume_epoch is not None:
        resume = checkpoint.find_resume(args.save_dir, args.model, args.resume_epoch)
        if resume is None:
            log.info("--resume: no complete checkpoint in %s, starting from scratch", args.save_dir)
        else:
            net.load_parameters(resume.params, ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    settle_shapes(net, args.input_size, ctx)

    global_batch = batch * num_parts
    schedule = Schedule(
        lr=args.lr,
        num_epochs=args.num_epochs,
        iters_per_epoch=data.iters_per_epoch,
        mode=args.lr_mode,
        decay=args.lr_decay,
        decay_epochs=args.decay_epochs,
        warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr,
    )
    optimizer_params = {"learning_rate": schedule(0), "wd": args.wd, "momentum": args.momentum}
    if dist.update_on_kvstore:  # dist_async: the servers update, so they hold the schedule
        optimizer_params["lr_scheduler"] = LRSchedulerAdapter(schedule)
    if args.dtype == "float16":
        optimizer_params["multi_precision"] = True
    trainer = make_trainer(
        net.collect_params(), "nag" if args.nesterov else "sgd", optimizer_params, kv, dist
    )
    if args.dtype == "float16":
        amp.init_trainer(trainer)

    history, best_top1, start_epoch, skip_batches = [], -1.0, 0, 0
    if resume is not None:
        trainer.load_states(resume.states)
        history = list(resume.meta.get("history", []))
        best_top1 = resume.meta.get("best_top1", -1.0)
        start_epoch, skip_batches = resume.epoch, resume.batch
        log.info(
            "resumed from %s (epoch %d%s)",
            os.path.basename(resume.stem),
            resume.epoch,
            f", batch {resume.batch}" if resume.batch else "",
        )

    sparse_label = not (args.label_smoothing or args.mixup)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=sparse_label)
    metrics_log = MetricsLog(os.path.join(args.save_dir, "metrics.jsonl")) if rank == 0 else None
    meta_base = {
        "model": args.model,
        "model_kwargs": kwargs,
        "num_classes": num_classes,
        "input_size": args.input_size,
        "crop_ratio": args.crop_ratio,
        "classes": data.classes,
        "args": {k: v for k, v in vars(args).items() if k != "func"},
    }
    if rank == 0:
        log.info(
            "training %s (%d classes) on %s: %d images, %d steps of %d images per epoch "
            "(%d per device, %d worker(s)), %s, %d epochs, lr %g (%s)",
            args.model,
            num_classes,
            ", ".join(str(c) for c in ctx),
            data.train_images,
            data.iters_per_epoch,
            global_batch,
            args.batch_size,
            num_parts,
            args.dtype,
            args.num_epochs,
            args.lr,
            args.lr_mode,
        )

    def save(epoch, batch_done, record=None):
        if rank != 0:
            return None
        meta = dict(meta_base, history=history, best_top1=best_top1)
        if record:
            meta.update(top1=record.get("val_top1"), top5=record.get("val_top5"))
        return checkpoint.save(args.save_dir, args.model, net, trainer, meta, epoch, batch_done)

    total_steps = args.num_epochs * data.iters_per_epoch
    run_start, steps_done_here = time.perf_counter(), 0
    train_metric = TopK(k=5)
    summary = {"save_dir": args.save_dir, "stopped": False}
    with StopFlag() as stop:
        for epoch in range(start_epoch, args.num_epochs):
            train_metric.reset()
            loss_sum, loss_count = 0.0, 0
            epoch_start = time.perf_counter()
            it = data.train(epoch)
            mixing = args.mixup and epoch < args.mixup_off_epoch
            for i, batch_data in enumerate(it):
                if epoch == start_epoch and i < skip_batches:
                    continue  # done before the interruption we resume from
                step = epoch * data.iters_per_epoch + i
                lr = schedule(step)
                if not dist.update_on_kvstore:
                    trainer.set_learning_rate(lr)
                x = gluon.utils.split_and_load(batch_data.data[0], ctx, even_split=False)
                y = gluon.utils.split_and_load(batch_data.label[0], ctx, even_split=False)
                targets = y
                if not sparse_label:
                    targets = [soft_labels(label, num_classes, args.label_smoothing) for label in y]
                if mixing:
                    lam = float(np.random.beta(args.mixup_alpha, args.mixup_alpha))
                    x = [lam * d + (1 - lam) * d.flip(axis=0) for d in x]
                    targets = [lam * t + (1 - lam) * t.flip(axis=0) for t in targets]
                    if lam < 0.5:  # the hard labels for accuracy: the larger component's
                        y = [label.flip(axis=0) for label in y]
                with autograd.record():
                    outputs = [net(d) for d in x]
                    losses = [loss_fn(o, t) for o, t in zip(outputs, targets)]
                    if args.dtype == "float16":
                        with amp.scale_loss(losses, trainer) as scaled:
                            autograd.backward(scaled)
                    else:
                        autograd.backward(losses)
                # summed over this worker's devices; make_trainer has synchronous kvstores and
                # Horovod average over the workers: step() divides by this worker's images
                trainer.step(batch)
                batch_loss = sum(float(l.sum().asscalar()) for l in losses)
                if not math.isfinite(batch_loss):
                    raise TrainError(
                        f"the loss became {batch_loss} at epoch {epoch + 1}, batch {i + 1} "
                        f"(lr {lr:.4g}); nothing was saved after it. Lower --lr, add --warmup-epochs, "
                        f"or resume from the last checkpoint in {args.save_dir}"
                    )
                loss_sum += batch_loss
                loss_count += batch_data.data[0].shape[0]
                for label, out in zip(y, outputs):
                    train_metric.update(label, out)
                steps_done_here += 1
                if (i + 1) % args.log_interval == 0 or i + 1 == data.iters_per_epoch:
                    elapsed = time.perf_counter() - run_start
                    speed = steps_done_here * batch / elapsed
                    left = total_steps - (step + 1)
                    top1, top5 = train_metric.get()
                    log.info(
                        "Epoch[%d/%d] Batch[%d/%d] loss %.4f top1 %.4f top5 %.4f lr %.5g | %.1f img/s "
                        "| ETA %s",
                        epoch + 1,
                        args.num_epochs,
                        i + 1,
                        data.iters_per_epoch,
                        loss_sum / max(loss_count, 1),
                        top1,
                        top5,
                        lr,
                        speed,
                        fmt_time(left * batch / speed if speed else float("nan")),
                    )
                if stop.signal is not None and i + 1 < data.iters_per_epoch:
                    ck = save(epoch, i + 1)
                    summary.update(stopped=True, checkpoint=ck and ck.stem)
                    log.info(
                        "stopped by %s after epoch %d batch %d; checkpoint %s. Resume with the same "
                        "command plus --resume",
                        signal.Signals(stop.signal).name,
                        epoch + 1,
                        i + 1,
                        ck.stem if ck else "(written by rank 0)",
                    )
                    return summary
            mx.nd.waitall()  # every update of the epoch done (and, distributed, every pull answered)
            train_top1, train_top5 = train_metric.get()
            epoch_time = time.perf_counter() - epoch_start
            record = {
                "epoch": epoch + 1,
                "steps": (epoch + 1) * data.iters_per_epoch,
                "lr": lr,
                "train_loss": loss_sum / max(loss_count, 1),
                "train_top1": train_top1,
                "train_top5": train_top5,
                "images_per_sec": (data.iters_per_epoch - (skip_batches if epoch == start_epoch else 0))
                * batch
                / epoch_time,
                "epoch_time": epoch_time,
                "val_top1": None,
                "val_top5": None,
            }
            val = data.val() if rank == 0 else None
            if val is not None and ((epoch + 1) % args.val_interval == 0 or epoch + 1 == args.num_epochs):
                metric, speed = evaluate(net, val, ctx)
                record["val_top1"], record["val_top5"] = metric.get()
                record["val_images"] = metric.count
                log.info(
                    "Epoch[%d] validation: top1 %.4f top5 %.4f on %d images (%.1f img/s)",
                    epoch + 1,
                    *metric.get(),
                    metric.count,
                    speed,
                )
            history.append(record)
            improved = record["val_top1"] is not None and record["val_top1"] > best_top1
            if improved:
                best_top1 = record["val_top1"]
            if rank == 0:
                metrics_log.write(record)
                plot_curves(history, os.path.join(args.save_dir, "curves.png"), args.model)
                log.info(
                    "Epoch[%d] done: loss %.4f train top1 %.4f, %.1f img/s, %s",
                    epoch + 1,
                    record["train_loss"],
                    train_top1,
                    record["images_per_sec"],
                    fmt_time(epoch_time),
                )
            last = epoch + 1 == args.num_epochs
            if (epoch + 1) % args.save_frequency == 0 or last or improved or stop.signal is not None:
                ck = save(epoch + 1, 0, record)
                if improved and ck is not None:
                    checkpoint.save_best(args.save_dir, args.model, ck)
            if stop.signal is not None and not last:
                summary.update(stopped=True)
                log.info(
                    "stopped by %s after epoch %d; resume with the same command plus --resume",
                    signal.Signals(stop.signal).name,
                    epoch + 1,
                )
                return summary
    barrier(kv, dist)  # no worker leaves the job while rank 0 still saves
    summary.update(history=history, best_top1=best_top1, epochs=args.num_epochs)
    if rank == 0:
        log.info(
            "finished %d epochs; best validation top1 %s; checkpoints, train.log, metrics.jsonl and "
            "curves.png are in %s",
            args.num_epochs,
            f"{best_top1:.4f}" if best_top1 >= 0 else "not measured",
            args.save_dir,
        )
    return summary


class LRSchedulerAdapter(mx.lr_scheduler.LRScheduler):
    """The schedule for optimizers that run on kvstore servers (dist_async), driven by their
    update count."""

    def __init__(self, schedule):
        super().__init__(base_lr=schedule.lr)
        self.schedule = schedule

    def __call__(self, num_update):
        return self.schedule(num_update)


__all__ = ["DataError", "DeviceError", "TrainError", "fit"]
