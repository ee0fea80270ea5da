"""The training loop: a model from the registry, a data source (a2gluon.data.sources), SGD with
a warm-up + step/cosine/poly schedule over an MXNet kvstore or Horovod, AMP, validation,
atomic checkpoints, resume, and a clean stop on SIGINT/SIGTERM/SIGHUP.

    fit(TrainSettings(...), RecordSource(...))

``fit`` reads top to bottom as the run goes: set-up (devices, store, the save directory, the
model, the optimizer), resume, then per epoch: train, save, validate.  What a run guarantees
(tests/test_train.py and tests/test_reliability.py check each):

- one run per save directory: a lock held for the run, and a directory that holds another
  run's checkpoints is refused unless ``--resume`` (continue it) or ``--force`` (start over);
- every setting is checked before any work, and ``--resume`` refuses a model, attention, class
  count or (mid-epoch) batch that differs from the checkpoint's, naming what differs;
- a checkpoint is written (waiting for every pending operation first) before validation runs,
  so a crash in validation loses nothing; damaged checkpoints are skipped on resume, naming why;
- SIGINT/SIGTERM/SIGHUP stop every worker after the same batch, rank 0 writes a mid-epoch
  checkpoint, and every worker leaves through the final barrier.
"""

import dataclasses
import logging
import math
import os
import pickle
import signal
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data import DataError
from ..errors import error_line
from ..models import get_model
from ..signals import redeliver, stop_on_signals, would_be_ignored
from . import checkpoint
from .accumulate import GradientAccumulator
from .devices import DeviceError, cpu_supports_bfloat16, get_contexts
from .distributed import METRIC_KEY, StopVote, WorkerSum, barrier, create_kvstore, make_trainer
from .ema import ModelEMA, ema_path
from .evaluate import evaluate
from .metrics import MetricsLog, TopK, plot_curves
from .pretrained import start_from
from .schedule import Schedule, plateau_decay_epochs
from .settings import MODEL_SETTINGS, TrainError, TrainSettings, flag, resolve_batch

log = logging.getLogger("a2gluon.train")

# Flags that say nothing about the run being continued: not reported when they change on resume.
RUN_CONTROL = ("resume", "resume_epoch", "force", "save_dir")


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


def contexts(settings):
    """The devices of this worker, after checking that they can run `settings.dtype`."""
    if settings.num_gpus:
        if settings.dtype == "bfloat16":
            raise TrainError("--dtype bfloat16 is for CPUs in MXNet 1.9.1; use --dtype float16 on GPUs")
        return get_contexts(settings.num_gpus)
    if settings.dtype == "float16":
        raise TrainError(
            "--dtype float16 needs GPUs: MXNet has no float16 matrix products on CPUs; "
            "use --dtype bfloat16 (CPUs with AVX-512) or float32"
        )
    if settings.dtype == "bfloat16" and not cpu_supports_bfloat16():
        raise TrainError(
            "--dtype bfloat16 on CPU needs AVX-512 (oneDNN bf16 kernels); use --dtype float32 here"
        )
    return [mx.cpu(i) for i in range(settings.num_cpus)]


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
        if self.signal is None:
            self.signal = signum
        elif would_be_ignored(frame):  # a second signal inside a __del__: stop when it returns
            redeliver(signum)
        else:  # a second signal: stop now
            raise KeyboardInterrupt

    @property
    def name(self):
        return signal.Signals(self.signal).name if self.signal else "another worker"

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def settle_shapes(net, input_shape, ctx):
    """Give deferred parameter shapes (Gluon-CV models) their values before the kvstore sees them.
    The pass runs in training mode: an inference pass lets oneDNN keep convolution weights in
    a blocked layout, which the parameter server then receives broken ("init K first").  It
    leaves the BatchNorm running statistics as initialised."""
    if not any(p._deferred_init for p in net.collect_params().values()):
        return
    x = mx.nd.zeros((2,) + tuple(input_shape), ctx=ctx[0])
    with autograd.record():
        net(x)
    net.collect_params(".*running_mean|.*running_var").initialize(force_reinit=True, ctx=ctx)


def soft_labels(label, num_classes, smoothing):
    one_hot = mx.nd.one_hot(label, num_classes)
    if smoothing:
        one_hot = one_hot * (1 - smoothing) + smoothing / num_classes
    return one_hot


# --- the save directory: one run at a time, never mixed with another run's files ----------------


def claim_save_dir(settings):
    """Lock the save directory for this run (rank 0) and make sure it holds only this run's
    files: refuse a directory with another run's checkpoints unless --resume or --force (which
    deletes them), and remove what killed writers left.  Returns the held RunLock and the lines
    to log (logging starts after this: a refused run writes nothing into the directory)."""
    lock = checkpoint.RunLock(settings.save_dir).acquire()
    notes = []
    try:
        found = checkpoint.run_files(settings.save_dir)
        resuming = settings.resume or settings.resume_epoch is not None
        held = [p for p in found if checkpoint.is_checkpoint_file(os.path.basename(p))]
        if held and not resuming and not settings.force:
            newest = checkpoint.list_checkpoints(settings.save_dir)
            what = os.path.basename(newest[-1].stem if newest else held[-1])
            raise TrainError(
                f"{settings.save_dir} already holds the checkpoints of a run (newest {what}); continue "
                "it with --resume, or start over with --force (deletes them) or another --save-dir"
            )
        if settings.force and found:
            for path in found:
                os.remove(path)
            notes.append(f"--force: removed {len(found)} files of an earlier run from {settings.save_dir}")
        stale = checkpoint.remove_tmp_files(settings.save_dir)
        if stale:
            notes.append(f"removed {len(stale)} temporary files of an interrupted writer: {', '.join(stale)}")
    except BaseException:
        lock.release()
        raise
    return lock, notes


# --- resume: the newest checkpoint that loads, of the same network ------------------------------


def _param_shapes(net):
    return {name: p.shape for name, p in net._collect_params_with_prefix().items()}


def _differing(saved_flags, flags, names):
    return [
        f"{flag(n)} {saved_flags.get(n)!r} -> {flags.get(n)!r}"
        for n in names
        if n in saved_flags and saved_flags.get(n) != flags.get(n)
    ]


def check_resume_fits(ck, flags, net, num_classes, global_batch, saved, classes=None):
    """Raise TrainError when checkpoint `ck` (its arrays `saved`) cannot be continued with these
    `flags` (every setting and data flag by name): another network (model, attention, blocks,
    reduction, class count), data whose class names differ from the checkpoint's (`classes`: the
    data's, in label order, when known) or, for a mid-epoch checkpoint, another global batch.  Log
    the other flags that changed."""
    meta = ck.meta
    saved_flags = meta.get("args") or {}
    name = os.path.basename(ck.stem)
    if meta.get("model") != flags["model"]:
        raise TrainError(
            f"--resume: {name} is a checkpoint of {meta.get('model')} but --model is {flags['model']}; "
            f"resume with --model {meta.get('model')}, or start over with --force or another --save-dir"
        )
    shapes = _param_shapes(net)
    mismatch = sorted(set(shapes) ^ set(saved)) or [
        n for n, shape in shapes.items() if 0 not in shape and tuple(saved[n].shape) != tuple(shape)
    ]
    if mismatch:
        differ = _differing(saved_flags, flags, MODEL_SETTINGS[1:-1])
        if meta.get("num_classes") not in (None, num_classes):
            differ.append(f"classes {meta['num_classes']} -> {num_classes}")
        what = "; ".join(differ) or f"parameter {mismatch[0]} differs"
        raise TrainError(
            f"--resume: {name} holds another network than these flags build ({what}); resume with "
            "the checkpoint's flags, or start over with --force or another --save-dir"
        )
    saved_classes = meta.get("classes")
    if classes and saved_classes and list(saved_classes) != list(classes):
        differ = [
            f"label {i}: {a!r} -> {b!r}" for i, (a, b) in enumerate(zip(saved_classes, classes)) if a != b
        ]
        differ = differ or [f"{len(saved_classes)} -> {len(classes)} classes"]
        raise TrainError(
            f"--resume: {name} was trained on other classes ({differ[0]}"
            f"{f' and {len(differ) - 1} more' if len(differ) > 1 else ''}): its labels would change "
            "meaning; resume on the data it was trained on, or start over with --force or another "
            "--save-dir (--pretrained to start from its weights)"
        )
    if ck.batch and meta.get("global_batch") not in (None, global_batch):
        raise TrainError(
            f"--resume: {name} stopped after batch {ck.batch} of epoch {ck.epoch + 1} with a global "
            f"batch of {meta['global_batch']}, but these flags give {global_batch}; resume with the "
            f"same --batch-size, devices and workers (or from the end of epoch {ck.epoch} with "
            f"--resume-epoch {ck.epoch})"
        )
    for change in _differing(saved_flags, flags, [k for k in flags if k not in RUN_CONTROL + MODEL_SETTINGS]):
        note = " (the schedule continues from the checkpoint's step with the new base lr)"
        log.info("changed since %s: %s%s", name, change, note if change.startswith("--lr ") else "")


def load_resume(settings, flags, net, ctx, num_classes, global_batch, classes=None):
    """Load the newest usable checkpoint into `net`; returns it (None to start from scratch).
    Damaged checkpoints (unreadable JSON, files that differ from their recorded checksums, params
    or states that do not load) are skipped, each with a log line saying why."""
    candidates = checkpoint.resume_candidates(settings.save_dir, settings.resume_epoch)
    if not candidates:
        log.info("--resume: no complete checkpoint in %s, starting from scratch", settings.save_dir)
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
        check_resume_fits(ck, flags, net, num_classes, global_batch, saved, classes)
        net.load_parameters(ck.params, ctx=ctx)
        if skipped:
            log.info("--resume: using %s, the newest checkpoint that loads", os.path.basename(ck.stem))
        return ck
    raise TrainError(
        f"--resume: no checkpoint in {settings.save_dir} loads ({'; '.join(skipped)}); "
        "start over with --force or another --save-dir"
    )


# --- the run --------------------------------------------------------------------------------------


def fit(settings, source):
    """Train as `settings` (a TrainSettings) says on `source` (a data source, see
    a2gluon.data.sources).  Returns a summary dict: save_dir, stopped, and for a finished run
    history, best_top1, epochs."""
    settings.check()
    ctx = contexts(settings)
    try:
        kv, dist = create_kvstore(settings.kvstore, len(ctx))
    except (ValueError, RuntimeError) as err:
        raise TrainError(str(err)) from None
    lock, notes = claim_save_dir(settings) if dist.rank == 0 else (None, [])
    try:
        # SIGTERM / SIGINT while the data are checked, the model built or a checkpoint loaded: a
        # Terminated (nothing is saved yet); from the first step on, StopFlag saves and stops.
        with stop_on_signals():
            run = Run(settings, source, ctx, kv, dist, notes)
            run.resume()
        with StopFlag() as stop:
            for epoch in range(run.start_epoch, run.num_epochs):
                record = run.train_epoch(epoch, stop)
                if record is None or not run.end_epoch(epoch, record, stop):
                    break
        return run.finish()
    finally:
        if lock is not None:
            lock.release()


class Run:
    """One worker's training run, in the steps ``fit`` takes: set-up (here), ``resume``, then
    ``train_epoch`` and ``end_epoch`` (save, validate, record) per epoch, and ``finish``."""

    def __init__(self, settings, source, ctx, kv, dist, notes=()):
        self.settings, self.source, self.ctx, self.kv, self.dist = settings, source, ctx, kv, dist
        self.rank = dist.rank
        setup_logging(settings.save_dir, self.rank)
        for note in notes:
            log.info("%s", note)
        mx.random.seed(settings.seed + self.rank)
        np.random.seed(settings.seed + self.rank)

        self.batch = settings.batch_size * len(ctx)  # examples per batch on this worker
        self.accumulate, self.lr, note = resolve_batch(settings, len(ctx), dist.num_workers)
        if note and self.rank == 0:
            log.info("%s", note)
        self.global_batch = self.batch * dist.num_workers * self.accumulate  # examples per update
        self.num_classes = settings.num_classes or source.num_classes or 1000
        source.check(self.num_classes)
        self.steps = source.plan(self.batch, dist.num_workers, dist.rank)
        self.flags = dict(settings.as_dict(), **source.flags)
        # --num-epochs / --lr-decay-epoch, or --num-iters / --lr-decay-iters (a last epoch cut short)
        self.num_epochs, self.total_steps, decay_epochs = settings.iteration_plan(self.steps, self.accumulate)

        if settings.dtype != "float32":
            from mxnet.contrib import amp

            amp.init(target_dtype=settings.dtype)
        self.net = self._build_net()
        self.schedule = Schedule(
            lr=self.lr,
            num_epochs=self.total_steps / self.steps,
            iters_per_epoch=self.steps,
            mode=settings.lr_mode,
            decay=settings.lr_decay,
            decay_epochs=decay_epochs,
            warmup_epochs=settings.warmup_epochs,
            warmup_lr=settings.warmup_lr,
        )
        self.history, self.best_top1, self.start_epoch, self.skip_batches = [], -1.0, 0, 0
        self.resumed_from = None
        self.sparse_label = not (settings.label_smoothing or settings.mixup)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=self.sparse_label)
        self.metrics_log = (
            MetricsLog(os.path.join(settings.save_dir, "metrics.jsonl")) if self.rank == 0 else None
        )
        self.meta_base = {
            "model": settings.model,
            "model_kwargs": settings.model_kwargs(),
            "num_classes": self.num_classes,
            "input_size": source.input_size,
            "input_shape": list(source.input_shape),
            "crop_ratio": source.flags.get("crop_ratio", 0.875),
            "classes": source.classes,
            "global_batch": self.global_batch,
            "iters_per_epoch": self.steps,
            "args": self.flags,
        }
        self.summary = {"save_dir": settings.save_dir, "stopped": False}
        self.run_start, self.steps_done_here = time.perf_counter(), 0

    def _build_net(self):
        settings = self.settings
        try:
            net = get_model(settings.model, classes=self.num_classes, **settings.model_kwargs())
        except (ValueError, TypeError) as err:
            raise TrainError(f"cannot build --model {settings.model}: {err}") from None
        net.initialize(mx.init.MSRAPrelu(), ctx=self.ctx)
        start_from(net, settings, log)  # --pretrained-2d / --pretrained, before any forward pass
        if settings.no_wd:
            for param in net.collect_params(".*beta|.*gamma|.*bias").values():
                param.wd_mult = 0.0
        return net

    def _make_trainer(self):
        settings, dist = self.settings, self.dist
        optimizer_params = {
            "learning_rate": self.schedule(0),
            "wd": settings.wd,
            "momentum": settings.momentum,
        }
        if dist.update_on_kvstore:  # dist_async: the servers update, so they hold the schedule
            optimizer_params["lr_scheduler"] = LRSchedulerAdapter(self.schedule)
        if settings.dtype == "float16":
            optimizer_params["multi_precision"] = True
        optimizer = "nag" if settings.nesterov else "sgd"
        trainer = make_trainer(self.net.collect_params(), optimizer, optimizer_params, self.kv, dist)
        if settings.dtype == "float16":
            from mxnet.contrib import amp

            amp.init_trainer(trainer)
        return trainer

    # -- resume --

    def resume(self):
        """Load the checkpoint to continue from (with --resume), make the optimizer, and put the
        metrics file in step with the checkpoint."""
        settings = self.settings
        if settings.resume or settings.resume_epoch is not None:
            self.resumed_from = load_resume(
                settings,
                self.flags,
                self.net,
                self.ctx,
                self.num_classes,
                self.global_batch,
                self.source.classes,
            )
        self.net.hybridize(static_alloc=True, static_shape=True)
        settle_shapes(self.net, self.source.input_shape, self.ctx)
        self.trainer = self._make_trainer()
        self.vote = StopVote(self.kv, self.dist)
        self.metric_sum = WorkerSum(self.kv, self.dist, METRIC_KEY, 5)
        self.accumulator = GradientAccumulator(self.net.collect_params(), self.trainer, self.accumulate)
        self.ema = self.ema_net = None
        if settings.model_ema:
            self.ema = ModelEMA(self.net, settings.model_ema_decay, self.ctx[0])
        ck = self.resumed_from
        if ck is not None:
            self.trainer.load_states(ck.states)
            self.history = list(ck.meta.get("history", []))
            self.best_top1 = ck.meta.get("best_top1", -1.0)
            self.start_epoch, self.skip_batches = ck.epoch, ck.batch
            if self.ema is not None and os.path.isfile(ema_path(ck.stem)):
                self.ema.load(ema_path(ck.stem))
            elif self.ema is not None:
                log.info("--model-ema: %s has no EMA weights; the average starts from them", ck.stem)
            log.info(
                "resumed from %s (epoch %d%s)",
                os.path.basename(ck.stem),
                ck.epoch,
                f", batch {ck.batch}" if ck.batch else "",
            )
        self._plateau()
        if self.rank == 0:
            # The metrics file says what the checkpoint says: a resumed run drops the epochs after it.
            self.metrics_log.rewrite(self.history)
            self._log_start()
            if ck is not None and ck.meta.get("val_pending") and self.history:
                log.info("validating epoch %d, which %s could not", ck.epoch, os.path.basename(ck.stem))
                self.validate(ck, self.history[-1], ck.epoch)
                self.metrics_log.rewrite(self.history)

    def _log_start(self):
        settings = self.settings
        log.info(
            "training %s (%d classes) on %s: %d examples, %d batches per epoch of %d per device "
            "x %d device(s) x %d worker(s), updates of %d (accumulate %d), %s, %d epochs, lr %g (%s)",
            settings.model,
            self.num_classes,
            ", ".join(str(c) for c in self.ctx),
            self.source.num_images,
            self.steps,
            settings.batch_size,
            len(self.ctx),
            self.dist.num_workers,
            self.global_batch,
            self.accumulate,
            settings.dtype,
            self.num_epochs,
            self.lr,
            settings.lr_mode,
        )
        if settings.num_iters is not None or settings.lr_decay_iters is not None:
            log.info(
                "iterations (updates of %d): %d in all%s",
                self.global_batch,
                -(-self.total_steps // self.accumulate),
                f", lr x {settings.lr_decay:g} at {settings.lr_decay_iters}"
                if settings.lr_decay_iters
                else "",
            )

    # -- one epoch --

    def train_epoch(self, epoch, stop):
        """Train one epoch; returns its record, or None when a stop signal ended it mid-way (after
        rank 0 saved a mid-epoch checkpoint)."""
        settings = self.settings
        self.train_metric = TopK(k=5)
        loss_sum, loss_count = 0.0, 0
        epoch_start = time.perf_counter()
        mixing = epoch < settings.mixup_epochs
        first = self.skip_batches if epoch == self.start_epoch else 0
        self.stopping = False
        steps = min(self.steps, self.total_steps - epoch * self.steps)  # fewer in a cut-short last epoch
        for i, batch in enumerate(self.source.train(epoch)):
            if i >= steps:
                break
            if i < first:
                continue  # done before the interruption we resume from
            step = epoch * self.steps + i
            lr = self.schedule(step)
            loss_sum += self._step(batch, lr, mixing, epoch, i)
            loss_count += batch.data[0].shape[0]
            if self.accumulator.done(self.batch, last=i + 1 == steps) and self.ema is not None:
                self.ema.update()
            self.steps_done_here += 1
            if (i + 1) % settings.log_interval == 0 or i + 1 == steps:
                self._log_progress(epoch, i, step, lr, loss_sum / max(loss_count, 1))
            if not self.accumulator.at_boundary:
                continue  # a run stops only between updates, with no gradient waiting
            self.stopping = self.vote(stop.signal is not None)  # every worker stops after the same batch
            if self.stopping and i + 1 < steps:
                ck = self.save(epoch, i + 1)
                self.summary.update(stopped=True, checkpoint=ck and ck.stem)
                log.info(
                    "stopped by %s in epoch %d after batch %d; checkpoint %s. Resume with the same "
                    "command plus --resume",
                    stop.name,
                    epoch + 1,
                    i + 1,
                    ck.stem if ck else "(written by rank 0)",
                )
                return None
        mx.nd.waitall()  # every update of the epoch done (and, distributed, every pull answered)
        epoch_time = time.perf_counter() - epoch_start
        # the epoch's figures over every worker's examples (the plateau rule decides on them)
        m = self.train_metric
        sums = self.metric_sum([m.top1, m.topk, m.count, loss_sum, loss_count])
        top1, topk, count, loss_sum, loss_count = (float(v) for v in sums)
        return {
            "epoch": epoch + 1,
            "steps": epoch * self.steps + steps,
            "lr": lr,
            "train_loss": loss_sum / max(loss_count, 1),
            "train_top1": top1 / count if count else float("nan"),
            "train_top5": topk / count if count else float("nan"),
            "images_per_sec": (steps - first) * self.batch / epoch_time,
            "epoch_time": epoch_time,
            "val_top1": None,
            "val_top5": None,
        }

    def _step(self, batch, lr, mixing, epoch, i):
        """One optimizer step on `batch`; returns the summed loss."""
        settings = self.settings
        if not self.dist.update_on_kvstore:
            self.trainer.set_learning_rate(lr)
        x = gluon.utils.split_and_load(batch.data[0], self.ctx, even_split=False)
        y = gluon.utils.split_and_load(batch.label[0], self.ctx, even_split=False)
        targets = y
        if not self.sparse_label:
            targets = [soft_labels(label, self.num_classes, settings.label_smoothing) for label in y]
        if mixing:
            lam = float(np.random.beta(settings.mixup_alpha, settings.mixup_alpha))
            x = [lam * d + (1 - lam) * d.flip(axis=0) for d in x]
            targets = [lam * t + (1 - lam) * t.flip(axis=0) for t in targets]
            if lam < 0.5:  # the hard labels for accuracy: the larger component's
                y = [label.flip(axis=0) for label in y]
        with autograd.record():
            outputs = [self.net(d) for d in x]
            losses = [self.loss_fn(o, t) for o, t in zip(outputs, targets)]
            if settings.dtype == "float16":
                from mxnet.contrib import amp

                with amp.scale_loss(losses, self.trainer) as scaled:
                    autograd.backward(scaled)
            else:
                autograd.backward(losses)
        # the update (GradientAccumulator.done) divides the gradients summed over this worker's
        # devices by its examples; make_trainer has synchronous kvstores and Horovod average over
        # the workers
        batch_loss = sum(float(loss.sum().asscalar()) for loss in losses)
        if not math.isfinite(batch_loss):
            raise TrainError(
                f"the loss became {batch_loss} at epoch {epoch + 1}, batch {i + 1} (lr {lr:.4g}); "
                "nothing was saved after it. Lower --lr, add --warmup-epochs, or resume from the "
                f"last checkpoint in {settings.save_dir}"
            )
        for label, out in zip(y, outputs):
            self.train_metric.update(label, out)
        return batch_loss

    def _log_progress(self, epoch, i, step, lr, loss):
        elapsed = time.perf_counter() - self.run_start
        speed = self.steps_done_here * self.batch / elapsed
        left = self.total_steps - (step + 1)
        top1, top5 = self.train_metric.get()
        log.info(
            "Epoch[%d/%d] Batch[%d/%d] loss %.4f top1 %.4f top5 %.4f lr %.5g | %.1f img/s | ETA %s",
            epoch + 1,
            self.num_epochs,
            i + 1,
            self.steps,
            loss,
            top1,
            top5,
            lr,
            speed,
            fmt_time(left * self.batch / speed if speed else float("nan")),
        )

    # -- the end of an epoch: save, validate, record --

    def end_epoch(self, epoch, record, stop):
        """Save the epoch's checkpoint first (a crash in validation must not lose the epoch),
        then validate and record.  Returns False when the run is to stop here."""
        settings = self.settings
        self.history.append(record)
        last = epoch + 1 == self.num_epochs
        validating = (
            self.rank == 0
            and self.source.has_val
            and ((epoch + 1) % settings.val_interval == 0 or last)
            and not self.stopping
        )
        ck = None
        if (epoch + 1) % settings.save_frequency == 0 or last or self.stopping:
            ck = self.save(epoch + 1, 0, val_pending=validating)
        if validating:
            self.validate(ck, record, epoch + 1)
        if self.rank == 0 and settings.keep_checkpoints:
            removed = checkpoint.prune(settings.save_dir, settings.model, settings.keep_checkpoints)
            if removed:
                log.info("--keep-checkpoints %d: removed %s", settings.keep_checkpoints, ", ".join(removed))
        self._plateau(announce=True)
        if self.rank == 0:
            self.metrics_log.write(record)
            plot_curves(self.history, os.path.join(settings.save_dir, "curves.png"), settings.model)
            log.info(
                "Epoch[%d] done: loss %.4f train top1 %.4f, %.1f img/s, %s",
                epoch + 1,
                record["train_loss"],
                record["train_top1"],
                record["images_per_sec"],
                fmt_time(record["epoch_time"]),
            )
        if self.stopping and not last:
            self.summary.update(stopped=True)
            log.info(
                "stopped by %s after epoch %d; resume with the same command plus --resume",
                stop.name,
                epoch + 1,
            )
            return False
        return True

    def save(self, epoch, batch_done, **extra):
        """Rank 0 writes a checkpoint after `epoch` epochs and `batch_done` batches."""
        if self.rank != 0:
            return None
        meta = dict(self.meta_base, history=self.history, best_top1=self.best_top1, **extra)
        files = {"ema": ("-ema.params", self.ema.save)} if self.ema is not None else None
        return checkpoint.save(
            self.settings.save_dir,
            self.settings.model,
            self.net,
            self.trainer,
            meta,
            epoch,
            batch_done,
            files,
        )

    def _plateau(self, announce=False):
        """--lr-mode plateau: the epochs where training accuracy saturated, decided from the
        history (so a resumed run decides as an uninterrupted one), into the schedule."""
        settings = self.settings
        if settings.lr_mode != "plateau":
            return
        cuts = plateau_decay_epochs(
            [h.get("train_top1") for h in self.history],
            settings.plateau_threshold,
            settings.plateau_patience,
            settings.plateau_max_decays,
        )
        if announce and cuts != self.schedule.decay_epochs and self.rank == 0:
            log.info(
                "training top-1 saturated (no gain of %g in %d epochs): lr x %g from epoch %d",
                settings.plateau_threshold,
                settings.plateau_patience,
                settings.lr_decay,
                cuts[-1] + 1,
            )
        self.schedule = dataclasses.replace(self.schedule, decay_epochs=cuts)

    def validate(self, ck, record, epoch):
        """Score the validation data after `epoch` epochs into `record`, then record the result in
        the end-of-epoch checkpoint `ck` already on disk (writing one when this epoch had none
        but is the best so far) and in -best."""
        metric, speed = evaluate(self.net, self.source.val(), self.ctx)
        record["val_top1"], record["val_top5"] = metric.get()
        record["val_images"] = metric.count
        if self.ema is not None:
            ema_metric, _ = evaluate(self._ema_net(), self.source.val(), self.ctx)
            record["val_top1_ema"], record["val_top5_ema"] = ema_metric.get()
            log.info("Epoch[%d] validation of the EMA: top1 %.4f top5 %.4f", epoch, *ema_metric.get())
        log.info(
            "Epoch[%d] validation: top1 %.4f top5 %.4f on %d images (%.1f img/s)",
            epoch,
            *metric.get(),
            metric.count,
            speed,
        )
        improved = record["val_top1"] > self.best_top1
        if improved:
            self.best_top1 = record["val_top1"]
        result = dict(top1=record["val_top1"], top5=record["val_top5"])
        if ck is None and improved:  # not a save epoch, but the best model so far
            ck = self.save(epoch, 0, **result)
        elif ck is not None:
            ck = checkpoint.update_meta(
                ck, history=self.history, best_top1=self.best_top1, val_pending=False, **result
            )
        if improved and ck is not None:
            checkpoint.save_best(self.settings.save_dir, self.settings.model, ck)

    def _ema_net(self):
        """A network of the same architecture holding the EMA weights, for validation."""
        if self.ema_net is None:
            settings = self.settings
            self.ema_net = get_model(settings.model, classes=self.num_classes, **settings.model_kwargs())
            self.ema_net.hybridize(static_alloc=True, static_shape=True)
        for name, param in self.ema_net._collect_params_with_prefix().items():
            param._load_init(self.ema.values[name], self.ctx)
        return self.ema_net

    def finish(self):
        """Leave through the barrier (no worker leaves the job while rank 0 still saves)."""
        barrier(self.kv, self.dist)
        if self.summary["stopped"]:
            return self.summary
        settings = self.settings
        self.summary.update(history=self.history, best_top1=self.best_top1, epochs=self.num_epochs)
        if self.rank == 0:
            log.info(
                "finished %d epochs; best validation top1 %s; checkpoints, train.log, metrics.jsonl and "
                "curves.png are in %s",
                self.num_epochs,
                f"{self.best_top1:.4f}" if self.best_top1 >= 0 else "not measured",
                settings.save_dir,
            )
        return self.summary


class LRSchedulerAdapter(mx.lr_scheduler.LRScheduler):
    """The schedule for optimizers that run on kvstore servers (dist_async), driven by their
    update count."""

    def __init__(self, schedule):
        super().__init__(base_lr=schedule.lr)
        self.schedule = schedule

    def __call__(self, num_update):
        return self.schedule(num_update)


__all__ = ["DataError", "DeviceError", "Run", "TrainError", "TrainSettings", "fit"]
