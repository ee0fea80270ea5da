"""Data sources for the training loop: what it asks of the data, whatever the data are.

A source knows its classes, the shape of one example, and gives each worker its batches::

    source.check(num_classes)             # before any work: files, labels, class lists
    n = source.plan(batch, num_parts, part_index)   # steps per epoch, the same on every worker
    for batch in source.train(epoch): ...  # exactly n DataBatch (data[0], label[0]) per epoch
    val = source.val()                     # this worker's validation batches (.pad marked), or None

``RecordSource`` reads ImageNet RecordIO (``a2gluon pack``); ``SyntheticSource`` gives random
batches for measuring a model without input.  The engine (a2gluon.engine.trainer) sees only this
interface, so another kind of data (video clips) is another source, not another loop.
"""

import math

import mxnet as mx

from .layout import DataError, read_classes
from .pipeline import SyntheticIter, check_records, part_sizes, resize_size, train_iter, val_iter
from .verify import refuse_known_bad_records


def _flag(name):
    return "--" + name.replace("_", "-")


def _check_ranges(values, at_least=(), fractions=(), non_negative=()):
    """One-line DataErrors for values out of range, named by their flags."""
    for name, low in at_least:
        if values[name] < low:
            raise DataError(f"{_flag(name)} must be at least {low}, got {values[name]}")
    for name in fractions:
        if not 0 < values[name] <= 1:
            raise DataError(f"{_flag(name)} must be in (0, 1], got {values[name]}")
    for name in non_negative:
        if values[name] < 0:
            raise DataError(f"{_flag(name)} must be 0 or more, got {values[name]}")


class _Source:
    """What every source shares: its flags (for checkpoint metadata) and the epoch plan."""

    classes = None  # class names in label order, when the data has them
    num_images = 0  # training examples, all workers together
    has_val = False  # whether val() gives batches

    def plan(self, batch, num_parts=1, part_index=0):
        """Fix this worker's share: `batch` examples per step, part `part_index` of `num_parts`.
        Returns the steps per epoch (the same on every worker)."""
        self.batch, self.num_parts, self.part_index = batch, num_parts, part_index
        per_part = min(part_sizes(self.num_images, num_parts))
        if per_part < batch:
            raise DataError(
                f"a step takes {batch} examples per worker but the training data has only "
                f"{self.num_images} ({per_part} for the smallest of {num_parts} worker shard(s)); "
                "use a smaller --batch-size"
            )
        self.steps_per_epoch = math.ceil(self.num_images / (num_parts * batch))
        return self.steps_per_epoch

    @property
    def input_size(self):
        return self.input_shape[-1]


class SyntheticSource(_Source):
    """`synthetic_batches` steps per epoch of random examples (the same on every worker), no
    validation: the model's speed without input."""

    def __init__(self, input_size=224, synthetic_batches=100, seed=0):
        self.flags = dict(synthetic=True, input_size=input_size, synthetic_batches=synthetic_batches)
        _check_ranges(self.flags, at_least=[("input_size", 1), ("synthetic_batches", 1)])
        self.input_shape = (3, input_size, input_size)
        self.synthetic_batches = synthetic_batches
        self.seed = seed
        self.num_classes = None

    def check(self, num_classes):
        self.num_classes = num_classes

    def plan(self, batch, num_parts=1, part_index=0):
        self.num_images = self.synthetic_batches * batch * num_parts
        return super().plan(batch, num_parts, part_index)

    def train(self, epoch):
        return SyntheticIter(
            self.batch, self.input_size, self.num_classes, self.steps_per_epoch, seed=self.seed + epoch
        )

    def val(self):
        return None


class RecordSource(_Source):
    """ImageNet RecordIO: the training pipeline (random resized crop, flip, jitter) over
    `rec_train`, sharded per worker, and the centre-crop validation pipeline over `rec_val`."""

    def __init__(
        self,
        rec_train,
        rec_train_idx,
        rec_val=None,
        rec_val_idx=None,
        input_size=224,
        crop_ratio=0.875,
        min_random_area=0.08,
        color_jitter=0.0,
        pca_noise=0.0,
        num_data_workers=4,
        seed=0,
    ):
        self.flags = dict(
            rec_train=rec_train,
            rec_train_idx=rec_train_idx,
            rec_val=rec_val,
            rec_val_idx=rec_val_idx,
            input_size=input_size,
            crop_ratio=crop_ratio,
            min_random_area=min_random_area,
            color_jitter=color_jitter,
            pca_noise=pca_noise,
            num_data_workers=num_data_workers,
        )
        for name in ("rec_train", "rec_train_idx"):
            if not self.flags[name]:
                raise DataError(f"{_flag(name)} is required (or --synthetic to train on random data)")
        if bool(rec_val) != bool(rec_val_idx):
            raise DataError("give both --rec-val and --rec-val-idx, or neither")
        _check_ranges(
            self.flags,
            at_least=[("input_size", 1), ("num_data_workers", 1)],
            fractions=["crop_ratio", "min_random_area"],
            non_negative=["color_jitter", "pca_noise"],
        )
        resize_size(input_size, crop_ratio)
        self.input_shape = (3, input_size, input_size)
        self.seed = seed
        self.classes = read_classes(rec_train)
        self.num_classes = len(self.classes) if self.classes else None
        self.val_images = 0

    def check(self, num_classes):
        """Check the records against the model's class count (labels, the validation set's class
        list) and against what a deep check found (a2gluon check-records --deep); raises
        DataError."""
        flags = self.flags
        if self.classes and len(self.classes) != num_classes:
            raise DataError(
                f"--num-classes is {num_classes} but the training data has {len(self.classes)} classes "
                f"({flags['rec_train']}); give --num-classes {len(self.classes)} or other data"
            )
        self.num_images = check_records(flags["rec_train"], flags["rec_train_idx"], num_classes).num_images
        refuse_known_bad_records(flags["rec_train"], flags["rec_train_idx"])
        if flags["rec_val"]:
            refuse_known_bad_records(flags["rec_val"], flags["rec_val_idx"])
            val_classes = read_classes(flags["rec_val"])
            if self.classes and val_classes and val_classes != self.classes:
                raise DataError(
                    f"the validation classes ({flags['rec_val']}) differ from the training classes; "
                    "pack validation with --classes TRAIN_PREFIX.classes.json"
                )
            self.val_images = check_records(flags["rec_val"], flags["rec_val_idx"], num_classes).num_images

    def train(self, epoch):
        """This worker's training batches of `epoch`: a fresh iterator seeded by the epoch, so a
        resumed run sees the same order, resized to the same count on every worker."""
        flags = self.flags
        it = train_iter(
            flags["rec_train"],
            flags["rec_train_idx"],
            self.batch,
            input_size=flags["input_size"],
            num_parts=self.num_parts,
            part_index=self.part_index,
            seed=self.seed + epoch,
            min_area=flags["min_random_area"],
            jitter=flags["color_jitter"],
            pca_noise=flags["pca_noise"],
            num_workers=flags["num_data_workers"],
        )
        return mx.io.ResizeIter(it, self.steps_per_epoch)

    @property
    def has_val(self):
        return self.val_images > 0

    def val(self):
        if not self.val_images:
            return None
        return val_iter(
            self.flags["rec_val"],
            self.flags["rec_val_idx"],
            self.batch,
            input_size=self.flags["input_size"],
            crop_ratio=self.flags["crop_ratio"],
            num_workers=self.flags["num_data_workers"],
        )
