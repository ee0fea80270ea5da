"""Training checkpoints: written atomically, found again by epoch, resumed from the newest
complete one.

A checkpoint of model MODEL after E completed epochs is three files in the save directory::

    imagenet-MODEL-EEEE.params   network parameters (Gluon ``save_parameters``)
    imagenet-MODEL-EEEE.states   trainer states (optimizer momentum, update counts)
    imagenet-MODEL-EEEE.json     what it is: model, model_kwargs, num_classes, input_size,
                                 classes, epoch, batch, top1, top5, best_top1, args, history

Each file is written under a temporary name and renamed into place, and the JSON is written
last: a checkpoint whose JSON exists is complete, and nothing else is ever loaded.  The JSON
records the size and SHA-256 of the .params and .states files (``files``), so a checkpoint
damaged later (a truncated copy, a flipped bit) is recognised and skipped on resume.  A run
interrupted by SIGINT/SIGTERM saves ``imagenet-MODEL-EEEE-bBBBBBB.*`` (E completed epochs plus
B batches of the next); the best by validation top-1 is copied to ``imagenet-MODEL-best.*``.
Video networks' checkpoints are named the same way with ``video-`` (:func:`name_prefix`).
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass

import mxnet as mx

PREFIXES = ("imagenet", "video")  # checkpoint names: PREFIX-MODEL-...; see name_prefix
_PREFIX = "(?:" + "|".join(PREFIXES) + ")-"
_NAME = re.compile(_PREFIX + r"(?P<model>.+?)-(?P<epoch>\d{4})(?:-b(?P<batch>\d{6}))?\.json$")
# Files of one run besides its checkpoints: what `--force` removes with them.
RUN_FILES = ("metrics.jsonl", "curves.png", "train.log")
_RANK_LOG = re.compile(r"^train-rank\d+\.log$")
LOCK_NAME = ".lock"
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found or read; the message says what to do."""


@dataclass
class Checkpoint:
    """A complete checkpoint on disk: ``stem`` + .params / .states / .json."""

    stem: str
    epoch: int  # completed epochs
    batch: int  # batches done of the next epoch (0 for an end-of-epoch checkpoint)
    meta: dict  # None when the JSON cannot be read (then `error` says why)
    error: str = None  # why this checkpoint cannot be used, when that is known without loading it

    @property
    def params(self):
        return self.stem + ".params"

    @property
    def states(self):
        return self.stem + ".states"

    @property
    def json(self):
        return self.stem + ".json"

    @property
    def progress(self):
        return (self.epoch, self.batch)


def name_prefix(model):
    """'video' for a registered video network, 'imagenet' for every other model (Gluon-CV's name
    for its ImageNet checkpoints)."""
    from ..models import model_spec

    try:
        return "video" if model_spec(model).is_video else "imagenet"
    except ValueError:  # not a2gluon's: a Gluon-CV image model
        return "imagenet"


def stem(save_dir, model, epoch, batch=0):
    """The path without extension of the checkpoint of `model` after `epoch` epochs (+ `batch`)."""
    name = f"{name_prefix(model)}-{model}-{epoch:04d}" + (f"-b{batch:06d}" if batch else "")
    return os.path.join(save_dir, name)


def best_stem(save_dir, model):
    return os.path.join(save_dir, f"{name_prefix(model)}-{model}-best")


def is_checkpoint_file(name):
    """Whether file `name` (no folder) is a file of a checkpoint (any model, -best too)."""
    return bool(re.match(_PREFIX, name)) and name.endswith((".params", ".states", ".json"))


def atomic_write(path, write):
    """Call write(tmp_path), then rename tmp_path to path (same directory, so the rename is
    atomic): a reader sees the old file or the whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; others of a shared cluster may read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, obj):
    def dump(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")

    atomic_write(path, dump)


def file_digest(path):
    """{"bytes": size, "sha256": hex digest} of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def save(save_dir, model, net, trainer, meta, epoch, batch=0, extra=None):
    """Write a complete checkpoint (params, states, `extra` files, then the JSON that marks it
    complete).  `extra`: {kind: (suffix, write(path))}, e.g. the EMA weights as STEM-ema.params.

    Every pending operation is waited for first: MXNet runs the last step asynchronously, and
    without the wait the BatchNorm running statistics of the last batch may not be written yet."""
    mx.nd.waitall()
    os.makedirs(save_dir, exist_ok=True)
    base = stem(save_dir, model, epoch, batch)
    writers = {"params": (".params", net.save_parameters)}
    if trainer is not None:
        writers["states"] = (".states", trainer.save_states)
    writers.update(extra or {})
    files = {}
    for kind, (suffix, write) in writers.items():
        atomic_write(base + suffix, write)
        files[kind] = dict(file_digest(base + suffix), file=os.path.basename(base + suffix))
    meta = dict(meta, epoch=epoch, batch=batch, params_file=os.path.basename(base + ".params"), files=files)
    write_json(base + ".json", meta)
    return Checkpoint(base, epoch, batch, meta)


def update_meta(checkpoint, **changes):
    """Rewrite the JSON of a complete checkpoint with `changes` (e.g. the validation result
    measured after it was written); returns the updated Checkpoint."""
    meta = dict(checkpoint.meta, **changes)
    write_json(checkpoint.json, meta)
    return Checkpoint(checkpoint.stem, checkpoint.epoch, checkpoint.batch, meta)


def save_best(save_dir, model, checkpoint):
    """Copy `checkpoint` to PREFIX-MODEL-best.params/.json (and its extra files, as
    -best-ema.params; atomically, JSON last)."""
    base = best_stem(save_dir, model)
    atomic_write(base + ".params", lambda tmp: shutil.copyfile(checkpoint.params, tmp))
    for kind, record in (checkpoint.meta.get("files") or {}).items():
        if kind not in ("params", "states") and "file" in record:
            suffix = record["file"][len(os.path.basename(checkpoint.stem)) :]
            source = os.path.join(os.path.dirname(checkpoint.stem), record["file"])
            atomic_write(base + suffix, lambda tmp, source=source: shutil.copyfile(source, tmp))
    write_json(base + ".json", dict(checkpoint.meta, best_of=os.path.basename(checkpoint.stem)))


def meta_path(path):
    """The meta JSON of a checkpoint or exported model: `path` (its .params, .json or stem)
    with the extension .json.  A checkpoint's EMA weights (STEM-ema.params) share STEM.json."""
    path = os.fspath(path)
    for suffix in (".params", ".json"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if path.endswith("-ema") and not os.path.exists(path + ".json"):
        path = path[: -len("-ema")]
    return path + ".json"


def read_meta(path):
    """The JSON meta (a dict) of a checkpoint (`path` = its .json, .params or stem), or None when
    there is none; CheckpointError when it is not a readable JSON object."""
    json_path = meta_path(path)
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{json_path} is not a readable checkpoint description ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{json_path} is not a checkpoint description (a JSON object)")
    return meta


def list_checkpoints(save_dir, model=None):
    """Complete checkpoints in `save_dir` (those whose .json and .params exist), oldest first.
    Interrupted (mid-epoch) ones are included; the -best copy is not.  One whose JSON cannot be
    read is listed with ``meta=None`` and the reason in ``error``."""
    if not os.path.isdir(save_dir):
        return []
    found = []
    for name in os.listdir(save_dir):
        match = _NAME.match(name)
        if not match or (model is not None and match["model"] != model):
            continue
        base = os.path.join(save_dir, name[: -len(".json")])
        if not os.path.exists(base + ".params"):
            continue
        try:
            meta, error = read_meta(base), None
        except CheckpointError as err:
            meta, error = None, str(err)
        found.append(Checkpoint(base, int(match["epoch"]), int(match["batch"] or 0), meta, error))
    return sorted(found, key=lambda c: c.progress)


def damage(checkpoint):
    """Why `checkpoint` cannot be resumed from (unreadable JSON, a missing file, or a file whose
    size or SHA-256 differs from what its JSON recorded), or None when it looks intact."""
    if checkpoint.error:
        return checkpoint.error
    recorded_files = checkpoint.meta.get("files") or {}
    folder = os.path.dirname(checkpoint.stem)
    for kind in sorted(set(recorded_files) | {"params", "states"}):
        recorded = recorded_files.get(kind)
        if recorded and "file" in recorded:
            path = os.path.join(folder, recorded["file"])
        else:
            path = getattr(checkpoint, kind)
        if not os.path.isfile(path):
            return f"{path} is missing"
        if recorded is None:
            continue  # written before checksums were recorded
        if os.path.getsize(path) != recorded["bytes"]:
            return f"{path} has {os.path.getsize(path)} bytes but was written with {recorded['bytes']}"
        if file_digest(path)["sha256"] != recorded["sha256"]:
            return f"{path} is damaged (its SHA-256 differs from the one recorded when it was written)"
    return None


def resume_candidates(save_dir, epoch=None, model=None):
    """Complete checkpoints in `save_dir` (of every model, or of `model`) to resume from, newest
    first (only the one after `epoch` epochs when given).  Damaged ones are included: check
    with damage()."""
    found = list_checkpoints(save_dir, model)
    if epoch is not None:
        found = [c for c in found if c.epoch == epoch and c.batch == 0]
        if not found:
            raise CheckpointError(
                f"no complete checkpoint after epoch {epoch} in {save_dir}; "
                "resume without --resume-epoch to take the newest"
            )
    return found[::-1]


def find_resume(save_dir, model=None, epoch=None):
    """The newest intact checkpoint (of `model`, when given) to resume from, or the one after
    `epoch` epochs; None when there is none."""
    for ck in resume_candidates(save_dir, epoch, model):
        if damage(ck) is None:
            return ck
    return None


_FILE = re.compile(_PREFIX + r"(?P<model>.+?)-(?P<epoch>\d{4})(?:-b(?P<batch>\d{6}))?(?P<rest>(-ema)?\.\w+)$")


def prune(save_dir, model, keep):
    """Keep the `keep` newest complete end-of-epoch checkpoints of `model` (and -best): delete the
    older ones, every mid-epoch checkpoint older than the newest end-of-epoch one, and what a
    killed prune left.  The JSON goes first, so a kill -9 half-way leaves a checkpoint that is no
    longer complete, never fewer than `keep` complete ones.  Call only after the newest checkpoint
    is complete.  Returns the names of the deleted checkpoints."""
    found = [c for c in list_checkpoints(save_dir, model) if c.error is None]
    ends = [c for c in found if c.batch == 0]
    if keep < 1 or len(ends) <= keep:
        return []
    newest = ends[-1].progress
    doomed = ends[:-keep] + [c for c in found if c.batch and c.progress < newest]
    for ck in doomed:
        os.remove(ck.json)
    kept = {os.path.basename(c.stem) for c in found if c not in doomed}
    for name in os.listdir(save_dir):
        match = _FILE.match(name)
        if not match or match["model"] != model:
            continue
        base = name[: -len(match["rest"])]
        progress = (int(match["epoch"]), int(match["batch"] or 0))
        if base not in kept and progress < newest:
            os.remove(os.path.join(save_dir, name))
    return [os.path.basename(c.stem) for c in doomed]


def run_files(save_dir):
    """The files an earlier run left in `save_dir`: checkpoints (every model, -best too), the
    metrics, curves and log files, sorted."""
    if not os.path.isdir(save_dir):
        return []
    names = []
    for name in os.listdir(save_dir):
        if is_checkpoint_file(name):
            names.append(name)
        elif name in RUN_FILES or _RANK_LOG.match(name):
            names.append(name)
    return [os.path.join(save_dir, n) for n in sorted(names)]


def remove_tmp_files(save_dir):
    """Delete the temporary files a killed writer left (``.tmp-*``); returns their names.
    Call only while holding the directory's RunLock, so that no live writer owns them."""
    removed = []
    for name in os.listdir(save_dir):
        if name.startswith(".tmp-"):
            try:
                os.remove(os.path.join(save_dir, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


class RunLock:
    """An exclusive lock on a save directory for the life of one training run.

    ``save_dir/.lock`` is locked with ``fcntl.flock`` (released by the kernel when the process
    ends, however it ends) and holds the owner's pid, host, start time and command, so a second
    trainer pointed at the same directory is refused with who holds it."""

    def __init__(self, save_dir):
        self.path = os.path.join(save_dir, LOCK_NAME)
        self._fd = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            os.close(fd)
            raise CheckpointError(
                f"{os.path.dirname(self.path)} is in use by another training run "
                f"({holder or 'owner unknown'}); wait for it to end or use another --save-dir"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(
            fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}: {' '.join(sys.argv)}\n".encode()
        )
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
