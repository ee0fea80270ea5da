"""The ImageNet training loop: a model from the registry, RecordIO (or synthetic) data, SGD with
a warm-up + step/cosine/poly schedule over an MXNet kvstore or Horovod, AMP, validation,
atomic checkpoints, resume, and a clean stop on SIGINT/SIGTERM/SIGHUP.

What a run guarantees (tests/test_train.py and tests/test_reliability.py check each):

- one run per save directory: a lock held for the run, and a directory that holds another
  run's checkpoints is refused unless ``--resume`` (continue it) or ``--force`` (start over);
- every argument is checked before any work, and ``--resume`` refuses a model, attention, class
  count or (mid-epoch) batch that differs from the checkpoint's, naming what differs;
- a checkpoint is written (waiting for every pending operation first) before validation runs,
  so a crash in validation loses nothing; damaged checkpoints are skipped on resume, naming why;
- SIGINT/SIGTERM/SIGHUP stop every worker after the same batch, rank 0 writes a mid-epoch
  checkpoint, and every worker leaves through the final barrier.
"""

import logging
import math
import os
import pickle
import signal
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data import DataError, SyntheticIter, check_records, part_sizes, read_classes, train_iter, val_iter
from ..errors import error_line
from ..models import get_model
from . import checkpoint
from .devices import DeviceError, cpu_supports_bfloat16, get_contexts
from .distributed import KVSTORES, StopVote, barrier, create_kvstore, make_trainer, shard
from .evaluate import evaluate
from .metrics import MetricsLog, TopK, plot_curves
from .schedule import MODES, Schedule, parse_decay_epochs

log = logging.getLogger("a2gluon.train")

DTYPES = ("float32", "float16", "bfloat16")
# Flags that define the network: a checkpoint only resumes into the same ones.
MODEL_FLAGS = ("model", "attention", "blocks", "reduction", "num_classes")
# Flags that say nothing about the run being continued: not reported when they change on resume.
RUN_CONTROL_FLAGS = ("resume", "resume_epoch", "force", "debug", "save_dir", "decay_epochs")


class TrainError(ValueError):
    """The run cannot start or go on; the message says what is wrong and what to do."""


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


def _flag(name):
    return "--" + name.replace("_", "-")


def check_args(args):
    """Reject impossible settings before any work is done (each one line: what, and the range)."""
    at_least = {
        "batch_size": 1,
        "num_epochs": 1,
        "input_size": 1,
        "save_frequency": 1,
        "val_interval": 1,
        "log_interval": 1,
        "synthetic_batches": 1,
        "num_data_workers": 1,
        "num_gpus": 0,
        "num_cpus": 1,
        "mixup_off_epoch": 0,
    }
    for name, low in at_least.items():
        if getattr(args, name) < low:
            raise TrainError(f"{_flag(name)} must be at least {low}, got {getattr(args, name)}")
    for name in ("reduction", "num_classes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TrainError(f"{_flag(name)} must be at least 1, got {value}")
    if args.resume_epoch is not None and args.resume_epoch < 1:
        raise TrainError(f"--resume-epoch counts completed epochs (1, 2, ...), got {args.resume_epoch}")
    positive = ("lr", "lr_decay", "mixup_alpha")
    for name in positive:
        if not getattr(args, name) > 0:
            raise TrainError(f"{_flag(name)} must be positive, got {getattr(args, name)}")
    fractions = {"crop_ratio": "(0, 1]", "min_random_area": "(0, 1]"}
    for name, span in fractions.items():
        if not 0 < getattr(args, name) <= 1:
            raise TrainError(f"{_flag(name)} must be in {span}, got {getattr(args, name)}")
    for name in ("color_jitter", "pca_noise", "wd", "warmup_epochs", "warmup_lr"):
        if getattr(args, name) < 0:
            raise TrainError(f"{_flag(name)} must be 0 or more, got {getattr(args, name)}")
    if not 0 <= args.momentum < 1:
        raise TrainError(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.lr_mode not in MODES:
        raise TrainError(f"--lr-mode must be one of {', '.join(MODES)}, got {args.lr_mode!r}")
    if args.dtype not in DTYPES:
        raise TrainError(f"--dtype must be one of {', '.join(DTYPES)}, got {args.dtype!r}")
    if str(args.kvstore).lower() not in KVSTORES:
        raise TrainError(f"unknown --kvstore {args.kvstore!r}; choose one of: {', '.join(KVSTORES)}")
    if not 0 <= args.label_smoothing < 1:
        raise TrainError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.num_gpus and args.num_cpus > 1:
        raise TrainError("give --num-gpus or --num-cpus, not both")
    if args.resume and args.force:
        raise TrainError("give --resume (continue the run) or --force (start over), not both")
    if args.force and args.resume_epoch is not None:
        raise TrainError("give --resume-epoch (continue the run) or --force (start over), not both")
    if args.attention == "none" and (args.blocks or args.reduction):
        raise TrainError(
            "--attention none builds the network without attention blocks; drop "
            + ("--blocks" if args.blocks else "--reduction")
        )
    if not args.synthetic:
        for flag in ("rec_train", "rec_train_idx"):
            if not getattr(args, flag):
                raise TrainError(f"{_flag(flag)} is required (or --synthetic to train on random data)")
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
    return [mx.cpu(i) for i in range(args.num_cpus)]


def model_kwargs(args):
    """get_model keyword arguments from the model flags; --attention none means no attention
    blocks on every model (also those built with blocks by default)."""
    kwargs = {}
    if args.attention == "none":
        kwargs["attention"] = None
        kwargs["blocks"] = None
    elif args.attention:
        kwargs["attention"] = args.attention
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
    """Records SIGINT/SIGTERM/SIGHUP so the loop can finish its batch, save and exit cleanly."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    @property
    def name(self):
        return signal.Signals(self.signal).name if self.signal else "another worker"

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


# --- the save directory: one run at a time, never mixed with another run's files ----------------


def claim_save_dir(args):
    """Lock `--save-dir` for this run (rank 0) and make sure it holds only this run's files:
    refuse a directory with another run's checkpoints unless --resume or --force (which deletes
    them), and remove what killed writers left.  Returns the held RunLock and the lines to log
    (logging starts after this: a refused run writes nothing into the directory)."""
    lock = checkpoint.RunLock(args.save_dir).acquire()
    notes = []
    try:
        found = checkpoint.run_files(args.save_dir)
        resuming = args.resume or args.resume_epoch is not None
        held = [p for p in found if os.path.basename(p).startswith(checkpoint.PREFIX + "-")]
        if held and not resuming and not args.force:
            newest = checkpoint.list_checkpoints(args.save_dir)
            what = os.path.basename(newest[-1].stem if newest else held[-1])
            raise TrainError(
                f"{args.save_dir} already holds the checkpoints of a run (newest {what}); continue it "
                "with --resume, or start over with --force (deletes them) or another --save-dir"
            )
        if args.force and found:
            for path in found:
                os.remove(path)
            notes.append(f"--force: removed {len(found)} files of an earlier run from {args.save_dir}")
        stale = checkpoint.remove_tmp_files(args.save_dir)
        if stale:
            notes.append(f"removed {len(stale)} temporary files of an interrupted writer: {', '.join(stale)}")
    except BaseException:
        lock.release()
        raise
    return lock, notes


def _param_shapes(net):
    return {name: p.shape for name, p in net._collect_params_with_prefix().items()}


def _differing_flags(meta_args, args, names):
    return [
        f"{_flag(n)} {meta_args.get(n)!r} -> {getattr(args, n)!r}"
        for n in names
        if n in meta_args and meta_args.get(n) != getattr(args, n)
    ]


def check_resume_fits(ck, args, net, num_classes, global_batch, saved):
    """Raise TrainError when checkpoint `ck` (its arrays `saved`) cannot be continued with
    `args`: another network (model, attention, blocks, reduction, class count) or, for a
    mid-epoch checkpoint, another global batch.  Log the other flags that changed."""
    meta = ck.meta
    meta_args = meta.get("args") or {}
    name = os.path.basename(ck.stem)
    if meta.get("model") != args.model:
        raise TrainError(
            f"--resume: {name} is a checkpoint of {meta.get('model')} but --model is {args.model}; "
            f"resume with --model {meta.get('model')}, or start over with --force or another --save-dir"
        )
    shapes = _param_shapes(net)
    mismatch = sorted(set(shapes) ^ set(saved)) or [
        n for n, shape in shapes.items() if 0 not in shape and tuple(saved[n].shape) != tuple(shape)
    ]
    if mismatch:
        differ = _differing_flags(meta_args, args, MODEL_FLAGS[1:-1])
        if meta.get("num_classes") not in (None, num_classes):
            differ.append(f"classes {meta['num_classes']} -> {num_classes}")
        what = "; ".join(differ) or f"parameter {mismatch[0]} differs"
        raise TrainError(
            f"--resume: {name} holds another network than these flags build ({what}); resume with "
            "the checkpoint's flags, or start over with --force or another --save-dir"
        )
    if ck.batch and meta.get("global_batch") not in (None, global_batch):
        raise TrainError(
            f"--resume: {name} stopped after batch {ck.batch} of epoch {ck.epoch + 1} with a global "
            f"batch of {meta['global_batch']}, but these flags give {global_batch}; resume with the "
            f"same --batch-size, devices and workers (or from the end of epoch {ck.epoch} with "
            f"--resume-epoch {ck.epoch})"
        )
    changed = _differing_flags(
        meta_args, args, [k for k in vars(args) if k not in RUN_CONTROL_FLAGS + MODEL_FLAGS]
    )
    for change in changed:
        note = " (the schedule continues from the checkpoint's step with the new base lr)"
        log.info("changed since %s: %s%s", name, change, note if change.startswith("--lr ") else "")


def load_resume(args, net, ctx, num_classes, global_batch):
    """Load the newest usable checkpoint into `net`; returns it (None to start from scratch).
    Damaged checkpoints (unreadable JSON, files that differ from their recorded checksums, params
    or states that do not load) are skipped, each with a log line saying why."""
    candidates = checkpoint.resume_candidates(args.save_dir, args.resume_epoch)
    if not candidates:
        log.info("--resume: no complete checkpoint in %s, starting from scratch", args.save_dir)
        return None
    skipped = []
    for ck in candidates:
        reason = checkpoint.damage(ck)
        saved = None
        if reason is None:
            try:
                saved = mx.nd.load(ck.params)
                with open(ck.states, "rb") as f:
                    pickle.loads(f.read())
            except Exception as err:  # noqa: BLE001  (a damaged file, whatever the error)
                reason = f"{ck.params if saved is None else ck.states} does not load ({error_line(err)})"
        if reason is not None:
            log.info("--resume: skipping %s: %s", os.path.basename(ck.stem), reason)
            skipped.append(f"{os.path.basename(ck.stem)}: {reason}")
            continue
        check_resume_fits(ck, args, net, num_classes, global_batch, saved)
        net.load_parameters(ck.params, ctx=ctx)
        if skipped:
            log.info("--resume: using %s, the newest checkpoint that loads", os.path.basename(ck.stem))
        return ck
    raise TrainError(
        f"--resume: no checkpoint in {args.save_dir} loads ({'; '.join(skipped)}); "
        "start over with --force or another --save-dir"
    )


# --- the loop ----------------------------------------------------------------------------------


def fit(args):
    """Train as `args` (from a2gluon.cli.train) says.  Returns a summary dict."""
    check_args(args)
    ctx = contexts(args)
    try:
        kv, dist = create_kvstore(args.kvstore, len(ctx))
    except (ValueError, RuntimeError) as err:
        raise TrainError(str(err)) from None
    rank = dist.rank
    lock, notes = claim_save_dir(args) if rank == 0 else (None, [])
    try:
        return _fit(args, ctx, kv, dist, notes)
    finally:
        if lock is not None:
            lock.release()


def _fit(args, ctx, kv, dist, notes):
    rank = dist.rank
    num_parts, part_index = shard(dist)
    setup_logging(args.save_dir, rank)
    for note in notes:
        log.info("%s", note)
    mx.random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)

    batch = args.batch_size * len(ctx)
    global_batch = batch * num_parts
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
        resume = load_resume(args, net, ctx, num_classes, global_batch)
    net.hybridize(static_alloc=True, static_shape=True)
    settle_shapes(net, args.input_size, ctx)

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
    vote = StopVote(kv, dist)

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
    metrics_log = None
    if rank == 0:
        # The metrics file says what the checkpoint says: a resumed run drops the epochs after it.
        metrics_log = MetricsLog(os.path.join(args.save_dir, "metrics.jsonl"))
        metrics_log.rewrite(history)
    meta_base = {
        "model": args.model,
        "model_kwargs": kwargs,
        "num_classes": num_classes,
        "input_size": args.input_size,
        "crop_ratio": args.crop_ratio,
        "classes": data.classes,
        "global_batch": global_batch,
        "iters_per_epoch": data.iters_per_epoch,
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

    def save(epoch, batch_done, **extra):
        if rank != 0:
            return None
        meta = dict(meta_base, history=history, best_top1=best_top1, **extra)
        return checkpoint.save(args.save_dir, args.model, net, trainer, meta, epoch, batch_done)

    def validate(epoch, record):
        """Score the validation data after `epoch` epochs into `record`; True when it is the
        best so far."""
        nonlocal best_top1
        metric, speed = evaluate(net, data.val(), ctx)
        record["val_top1"], record["val_top5"] = metric.get()
        record["val_images"] = metric.count
        log.info(
            "Epoch[%d] validation: top1 %.4f top5 %.4f on %d images (%.1f img/s)",
            epoch,
            *metric.get(),
            metric.count,
            speed,
        )
        if record["val_top1"] > best_top1:
            best_top1 = record["val_top1"]
            return True
        return False

    def finish_validation(ck, record, epoch):
        """Validate an end-of-epoch checkpoint `ck` already on disk, then record the result in
        its meta, the metrics file and -best."""
        improved = validate(epoch, record)
        if ck is None and improved:  # not a save epoch, but the best model so far
            ck = save(epoch, 0, top1=record["val_top1"], top5=record["val_top5"])
        elif ck is not None:
            ck = checkpoint.update_meta(
                ck,
                history=history,
                best_top1=best_top1,
                top1=record["val_top1"],
                top5=record["val_top5"],
                val_pending=False,
            )
        if improved and ck is not None:
            checkpoint.save_best(args.save_dir, args.model, ck)

    if resume is not None and resume.meta.get("val_pending") and rank == 0 and history:
        log.info("validating epoch %d, which %s could not", resume.epoch, os.path.basename(resume.stem))
        finish_validation(resume, history[-1], resume.epoch)
        metrics_log.rewrite(history)

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
            stopping = False
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
                stopping = vote(stop.signal is not None)  # every worker stops after the same batch
                if stopping and i + 1 < data.iters_per_epoch:
                    ck = save(epoch, i + 1)
                    summary.update(stopped=True, checkpoint=ck and ck.stem)
                    log.info(
                        "stopped by %s in epoch %d after batch %d; checkpoint %s. Resume with the "
                        "same command plus --resume",
                        stop.name,
                        epoch + 1,
                        i + 1,
                        ck.stem if ck else "(written by rank 0)",
                    )
                    break
            if summary["stopped"]:
                break
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
            history.append(record)
            last = epoch + 1 == args.num_epochs
            validating = (
                rank == 0
                and data.val_images > 0
                and ((epoch + 1) % args.val_interval == 0 or last)
                and not stopping
            )
            # The checkpoint first: a crash in validation must not lose the epoch.
            ck = None
            if (epoch + 1) % args.save_frequency == 0 or last or stopping:
                ck = save(epoch + 1, 0, val_pending=validating)
            if validating:
                finish_validation(ck, record, epoch + 1)
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
            if stopping and not last:
                summary.update(stopped=True)
                log.info(
                    "stopped by %s after epoch %d; resume with the same command plus --resume",
                    stop.name,
                    epoch + 1,
                )
                break
    barrier(kv, dist)  # every path: no worker leaves the job while rank 0 still saves
    if summary["stopped"]:
        return summary
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
