"""Training checkpoints: written atomically, found again by epoch, resumed from the newest
complete one.

A checkpoint of model MODEL after E completed epochs is three files in the save directory::

    imagenet-MODEL-EEEE.params   network parameters (Gluon ``save_parameters``)
    imagenet-MODEL-EEEE.states   trainer states (optimizer momentum, update counts)
    imagenet-MODEL-EEEE.json     what it is: model, model_kwargs, num_classes, input_size,
                                 classes, epoch, batch, top1, top5, best_top1, args, history

Each file is written under a temporary name and renamed into place, and the JSON is written
last: a checkpoint whose JSON exists is complete, and nothing else is ever loaded.  A run
interrupted by SIGINT/SIGTERM saves ``imagenet-MODEL-EEEE-bBBBBBB.*`` (E completed epochs plus
B batches of the next); the best by validation top-1 is copied to ``imagenet-MODEL-best.*``.
"""

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

PREFIX = "imagenet"
_NAME = re.compile(r"^imagenet-(?P<model>.+?)-(?P<epoch>\d{4})(?:-b(?P<batch>\d{6}))?\.json$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found or read; the message says what to do."""


@dataclass
class Checkpoint:
    """A complete checkpoint on disk: ``stem`` + .params / .states / .json."""

    stem: str
    epoch: int  # completed epochs
    batch: int  # batches done of the next epoch (0 for an end-of-epoch checkpoint)
    meta: dict

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


def stem(save_dir, model, epoch, batch=0):
    """The path without extension of the checkpoint of `model` after `epoch` epochs (+ `batch`)."""
    name = f"{PREFIX}-{model}-{epoch:04d}" + (f"-b{batch:06d}" if batch else "")
    return os.path.join(save_dir, name)


def best_stem(save_dir, model):
    return os.path.join(save_dir, f"{PREFIX}-{model}-best")


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


def save(save_dir, model, net, trainer, meta, epoch, batch=0):
    """Write a complete checkpoint (params, states, then the JSON that marks it complete)."""
    os.makedirs(save_dir, exist_ok=True)
    base = stem(save_dir, model, epoch, batch)
    atomic_write(base + ".params", net.save_parameters)
    if trainer is not None:
        atomic_write(base + ".states", trainer.save_states)
    meta = dict(meta, epoch=epoch, batch=batch, params_file=os.path.basename(base + ".params"))
    write_json(base + ".json", meta)
    return Checkpoint(base, epoch, batch, meta)


def save_best(save_dir, model, checkpoint):
    """Copy `checkpoint` to imagenet-MODEL-best.params/.json (atomically, JSON last)."""
    base = best_stem(save_dir, model)
    atomic_write(base + ".params", lambda tmp: shutil.copyfile(checkpoint.params, tmp))
    write_json(base + ".json", dict(checkpoint.meta, best_of=os.path.basename(checkpoint.stem)))


def read_meta(path):
    """The JSON meta of a checkpoint (`path` = its .json, .params or stem), or None."""
    base = path[: -len(".params")] if path.endswith(".params") else path
    base = base[: -len(".json")] if base.endswith(".json") else base
    try:
        with open(base + ".json") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{base}.json is not a readable checkpoint description ({err})") from None


def list_checkpoints(save_dir, model=None):
    """Complete checkpoints in `save_dir` (those whose .json and .params exist), oldest first.
    Interrupted (mid-epoch) ones are included; the -best copy is not."""
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
        meta = read_meta(base)
        found.append(Checkpoint(base, int(match["epoch"]), int(match["batch"] or 0), meta))
    return sorted(found, key=lambda c: c.progress)


def find_resume(save_dir, model, epoch=None):
    """The checkpoint to resume from: the newest complete one, or the one after `epoch` epochs."""
    found = [c for c in list_checkpoints(save_dir, model) if os.path.exists(c.states)]
    if epoch is not None:
        found = [c for c in found if c.epoch == epoch and c.batch == 0]
        if not found:
            raise CheckpointError(
                f"no complete checkpoint of {model} after epoch {epoch} in {save_dir}; "
                "resume without an epoch to take the newest"
            )
    return found[-1] if found else None
