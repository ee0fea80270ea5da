"""Training and validation input pipelines over im2rec records, record checks, synthetic data
and a folder loader for evaluation.

Every pipeline normalises with the ImageNet statistics on the 0-255 scale, mean
``MEAN_RGB`` = 123.68/116.779/103.939 and std ``STD_RGB`` = 58.393/57.12/57.375, and yields
N x 3 x S x S float32 data (RGB) with N labels.
"""

import math
import os
import struct
from dataclasses import dataclass, field

import cv2
import mxnet as mx
import numpy as np

from .layout import DataError, read_classes, scan_image_folder

__all__ = [
    "MEAN_RGB",
    "STD_RGB",
    "DataError",
    "RecordInfo",
    "SyntheticIter",
    "ValIter",
    "check_records",
    "eval_transform",
    "folder_val_loader",
    "part_sizes",
    "read_classes",
    "read_index",
    "resize_size",
    "train_iter",
    "val_iter",
]

MEAN_RGB = (123.68, 116.779, 103.939)
STD_RGB = (58.393, 57.12, 57.375)

RECORDIO_MAGIC = 0xCED7230A  # dmlc::RecordIOWriter::kMagic, the first 4 bytes of every record
_IR_FORMAT = "IfQQ"  # mx.recordio's image record header: flag, label, id, id2
_IR_SIZE = struct.calcsize(_IR_FORMAT)
_HEAD = 8 + _IR_SIZE  # magic + length word + image record header
_CHUNK = 1 << 16  # records whose headers check_records gathers at once


@dataclass
class RecordInfo:
    """What :func:`check_records` found in a ``.rec`` / ``.idx`` pair."""

    rec: str
    idx: str
    num_images: int
    label_min: int
    label_max: int
    num_labels_seen: int  # distinct labels
    label_counts: dict = field(repr=False)  # label -> number of records
    classes: list = field(default=None, repr=False)  # from the .classes.json beside the .rec
    ids_match_keys: bool = True  # every header id equals its idx key (true for im2rec / pack)
    file_bytes: int = 0


def read_index(idx):
    """Keys and byte offsets of an ``.idx`` file as two int64 arrays (file order)."""
    if os.path.getsize(idx) == 0:
        raise DataError(f"{idx}: empty index; re-pack the records")
    try:
        table = np.loadtxt(idx, dtype=np.int64, delimiter="\t", ndmin=2)
    except (OSError, ValueError) as err:
        raise DataError(f"{idx}: not a RecordIO index ('key<TAB>offset' lines): {err}") from None
    if table.size == 0:
        raise DataError(f"{idx}: empty index; re-pack the records")
    if table.shape[1] != 2:
        raise DataError(f"{idx}: expected 2 columns 'key<TAB>offset', found {table.shape[1]}")
    return table[:, 0], table[:, 1]


def _require_files(rec, idx):
    for path, what in ((rec, "record file"), (idx, "index")):
        if not os.path.isfile(path):
            hint = "pack the images with `a2gluon pack ROOT PREFIX`"
            if path == idx:
                hint = "give --rec-*-idx / the .idx written with the .rec, or re-pack"
            raise DataError(f"{path}: {what} not found; {hint}")


def check_records(rec, idx, num_classes=None):
    """Check that ``idx`` indexes ``rec`` and read every label, without decoding any image.

    Raises :class:`DataError` when a file is missing, an offset lies outside the record file or
    does not point at a record header (RecordIO magic number, a start-of-record flag and a length
    that stays inside the file), two keys share an offset, the indexed records do not cover the
    whole file (an index that misses records, e.g. truncated), a label is negative or not an
    integer, or (given ``num_classes``) a label is ``>= num_classes``.  Reads only the 32 header bytes of
    each record through a memory map.  Measured on a 2-core AMD EPYC, files in the page cache,
    per million records: 0.2-0.4 s when the records are small and contiguous, 3.5-4.5 s with
    ImageNet-sized records (110 kB apart, so one 4 KiB page per record); from a cold disk add one
    small read per record (in offset order, so the kernel's read-ahead helps).
    """
    rec, idx = os.fspath(rec), os.fspath(idx)
    _require_files(rec, idx)
    keys, offsets = read_index(idx)
    size = os.path.getsize(rec)
    hint = "the .idx does not belong to this .rec (truncated or swapped?); re-pack or use the matching pair"
    bad = np.flatnonzero((offsets < 0) | (offsets + _HEAD > size) | (offsets % 4 != 0))
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{idx}: key {keys[i]} points to byte {offsets[i]} but {rec} has {size} bytes; {hint}"
        )
    if np.unique(offsets).size != offsets.size:
        raise DataError(f"{idx}: several keys point to the same record; {hint}")
    mm = np.memmap(rec, dtype=np.uint8, mode="r")
    heads = np.empty((offsets.size, _HEAD), dtype=np.uint8)
    span = np.arange(_HEAD)
    for start in range(0, offsets.size, _CHUNK):  # chunks bound the index array's memory
        stop = start + _CHUNK
        heads[start:stop] = mm[offsets[start:stop, None] + span]  # only these bytes are read
    del mm
    words = heads[:, :8].copy().view("<u4")
    magic, lrec = words[:, 0], words[:, 1]
    cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
    bad = np.flatnonzero(
        (magic != RECORDIO_MAGIC) | (cflag > 1) | (length < _IR_SIZE) | (offsets + 8 + length > size)
    )
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{idx}: key {keys[i]} -> byte {offsets[i]} is not the start of a record in {rec}; {hint}"
        )
    if not cflag.any():  # whole records: sorted by offset they must tile the file exactly
        order = np.argsort(offsets)
        ends = offsets[order] + 8 + ((length[order].astype(np.int64) + 3) // 4) * 4
        gap = np.flatnonzero(ends != np.append(offsets[order][1:], size))
        if gap.size:
            i = order[gap[0]]
            raise DataError(
                f"{idx}: the record of key {keys[i]} ends at byte {ends[gap[0]]} but no indexed "
                f"record starts there ({size} bytes in {rec}): the index misses records; re-pack"
            )
    body = heads[:, 8:].copy()
    flag = body[:, 0:4].view("<u4")[:, 0]
    labels = body[:, 4:8].view("<f4")[:, 0].astype(np.float64)
    ids = body[:, 8:16].view("<u8")[:, 0]
    multi = np.flatnonzero(flag > 0)
    if multi.size:  # label arrays (flag floats after the header): check their first entry
        with open(rec, "rb") as handle:
            for i in multi:
                handle.seek(int(offsets[i]) + _HEAD)
                labels[i] = struct.unpack("<f", handle.read(4))[0]
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)) or labels.min() < 0:
        i = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0))[0]
        raise DataError(f"{rec}: key {keys[i]} has label {labels[i]!r}, not a class index 0, 1, ...")
    labels = labels.astype(np.int64)
    if num_classes is not None and labels.max() >= num_classes:
        i = int(np.argmax(labels))
        raise DataError(
            f"{rec}: key {keys[i]} has label {labels[i]} but the model has {num_classes} classes; "
            "set the number of classes to match the data"
        )
    classes = read_classes(rec)
    if classes is not None and labels.max() >= len(classes):
        raise DataError(
            f"{rec}: label {labels.max()} but its .classes.json names {len(classes)} classes; re-pack"
        )
    values, counts = np.unique(labels, return_counts=True)
    return RecordInfo(
        rec=rec,
        idx=idx,
        num_images=int(labels.size),
        label_min=int(labels.min()),
        label_max=int(labels.max()),
        num_labels_seen=int(values.size),
        label_counts={int(v): int(c) for v, c in zip(values, counts)},
        classes=classes,
        ids_match_keys=bool(np.all(ids == keys.astype(np.uint64))),
        file_bytes=size,
    )


def part_sizes(num_images, num_parts):
    """Images in each part as ``ImageRecordIter`` shards an indexed record file.

    dmlc's IndexedRecordIOSplitter gives part r the records [r*step, (r+1)*step) in offset order,
    step = ceil(num_images / num_parts), so the last parts can be smaller (or empty).
    """
    step = -(-num_images // num_parts)
    return [max(0, min(step, num_images - r * step)) for r in range(num_parts)]


def _check_part(num_images, num_parts, part_index, rec):
    if num_parts < 1 or not 0 <= part_index < num_parts:
        raise DataError(f"part_index {part_index} is not in [0, num_parts={num_parts})")
    size = part_sizes(num_images, num_parts)[part_index]
    if size == 0:
        raise DataError(
            f"{rec}: part {part_index} of {num_parts} would be empty ({num_images} images); "
            "use fewer parts (workers)"
        )
    return size


def _open_part(rec, idx, num_parts, part_index):
    """(rec, idx, images in this part) after checking the files and the part."""
    rec, idx = os.fspath(rec), os.fspath(idx)
    _require_files(rec, idx)
    num_images = read_index(idx)[0].size
    return rec, idx, _check_part(num_images, num_parts, part_index, rec)


def _normalise_args(input_size):
    return dict(
        data_shape=(3, input_size, input_size),
        mean_r=MEAN_RGB[0],
        mean_g=MEAN_RGB[1],
        mean_b=MEAN_RGB[2],
        std_r=STD_RGB[0],
        std_g=STD_RGB[1],
        std_b=STD_RGB[2],
    )


def train_iter(
    rec,
    idx,
    batch_size,
    input_size=224,
    num_parts=1,
    part_index=0,
    seed=0,
    min_area=0.08,
    jitter=0.0,
    pca_noise=0.0,
    num_workers=4,
    shuffle=True,
    **kwargs,
):
    """The ImageNet training pipeline as an ``mx.io.ImageRecordIter``.

    Random resized crop (``min_area``-100 % of the area, aspect ratio 3/4-4/3) resized to
    ``input_size``, random horizontal flip, optional brightness / contrast / saturation jitter
    (each ``jitter``) and PCA lighting noise (``pca_noise``), normalisation with ``MEAN_RGB`` /
    ``STD_RGB``; shuffled every epoch (``seed`` fixes the order and the augmentation), sharded
    into ``num_parts`` with this worker's ``part_index``.  ``num_workers`` is the decoding
    threads (``preprocess_threads``), which MXNet 1.9.1 caps at max(cores / 2 - 1, 1) (it
    assumes hyper-threads): one on a 2-core machine, 3 on 8 cores, 31 on 64.  The last batch of
    an epoch is filled by wrapping around (``round_batch``), as usual for training.  Extra
    keyword arguments go to ``ImageRecordIter``.

    The returned iterator also has ``num_images`` (images in this part) and ``num_batches``
    (``ceil(num_images / batch_size)``).  Beware: because the wrapped-around images are taken
    from the next epoch, epochs vary in length (478 images at batch 64: 8, 7, 8, 7, 8 batches;
    12 at batch 5: 3, 2, 3, 2, 2), and the last part can be smaller than the others (:func:`part_sizes`).  For
    a fixed epoch length, required with ``dist_sync`` where every worker must run the same
    number of batches, wrap it: ``mx.io.ResizeIter(it, it.num_batches)`` (with the same count
    on every worker, e.g. that of part 0, the largest).
    """
    rec, idx, size = _open_part(rec, idx, num_parts, part_index)
    args = dict(
        path_imgrec=rec,
        path_imgidx=idx,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        shuffle_chunk_seed=seed,
        num_parts=num_parts,
        part_index=part_index,
        preprocess_threads=num_workers,
        random_resized_crop=True,
        min_random_area=min_area,
        max_random_area=1.0,
        min_aspect_ratio=3.0 / 4.0,
        max_aspect_ratio=4.0 / 3.0,
        rand_mirror=True,
        brightness=jitter,
        contrast=jitter,
        saturation=jitter,
        pca_noise=pca_noise,
        verbose=False,
        **_normalise_args(input_size),
    )
    args.update(kwargs)
    it = mx.io.ImageRecordIter(**args)
    it.num_images = size  # images in this part
    it.num_batches = -(-size // batch_size)  # see the docstring: epochs vary in length
    return it


class ValIter(mx.io.DataIter):
    """Every image of one part exactly once, the last partial batch marked with ``batch.pad``.

    MXNet 1.9.1's ``ImageRecordIter(round_batch=False)`` returns the last partial batch with
    ``pad == 0`` and stale or uninitialised rows after the real images (an upstream bug), so this
    wrapper counts the images of its part, sets ``pad`` on the last batch and zeroes the padded
    rows (data and label).  Consumers must drop the last ``batch.pad`` rows of each batch:
    ``n = batch_size - batch.pad``, use ``outputs[:n]`` and ``labels[:n]``
    (``mx.mod.Module.score`` / ``iter_predict`` already do so).
    """

    def __init__(self, base, num_images, batch_size):
        super().__init__(batch_size)
        self._base = base
        self.num_images = num_images
        self.num_batches = -(-num_images // batch_size)
        self._seen = 0
        self.provide_data = base.provide_data
        self.provide_label = base.provide_label

    def reset(self):
        self._base.reset()
        self._seen = 0

    def next(self):
        if self._seen >= self.num_images:
            raise StopIteration
        try:
            batch = self._base.next()
        except StopIteration:
            raise DataError(
                f"the record iterator stopped after {self._seen} of {self.num_images} images; "
                "check the records with check_records()"
            ) from None
        real = min(self.batch_size, self.num_images - self._seen)
        self._seen += real
        pad = self.batch_size - real
        if pad:
            for array in list(batch.data) + list(batch.label):
                array[real:] = 0
        return mx.io.DataBatch(
            data=batch.data,
            label=batch.label,
            pad=pad,
            index=batch.index,
            provide_data=self.provide_data,
            provide_label=self.provide_label,
        )

    def __len__(self):
        return self.num_batches


def val_iter(
    rec,
    idx,
    batch_size,
    input_size=224,
    crop_ratio=0.875,
    num_parts=1,
    part_index=0,
    num_workers=4,
    **kwargs,
):
    """The ImageNet evaluation pipeline: a :class:`ValIter` over an ``ImageRecordIter``.

    Shorter side resized to ``ceil(input_size / crop_ratio)`` (256 for 224) with bilinear
    interpolation, centre crop of ``input_size``, normalisation with ``MEAN_RGB`` / ``STD_RGB``,
    file order.  Every image of the part once; the last batch carries ``pad`` (see
    :class:`ValIter`: drop the last ``pad`` rows).  ``len(it)`` is the number of batches and
    ``it.num_images`` the number of images of this part.
    """
    rec, idx, size = _open_part(rec, idx, num_parts, part_index)
    args = dict(
        path_imgrec=rec,
        path_imgidx=idx,
        batch_size=batch_size,
        shuffle=False,
        round_batch=False,
        num_parts=num_parts,
        part_index=part_index,
        preprocess_threads=num_workers,
        resize=resize_size(input_size, crop_ratio),
        inter_method=1,
        rand_crop=False,
        rand_mirror=False,
        verbose=False,
        **_normalise_args(input_size),
    )
    args.update(kwargs)
    return ValIter(mx.io.ImageRecordIter(**args), size, batch_size)


def shorter_side_shape(height, width, size):
    """(new height, new width) with the shorter side `size`, the other rounded down, as
    ImageRecordIter's resize, Gluon's Resize(keep_ratio=True) and im2rec compute it."""
    if height > width:
        return height * size // width, size
    return size, width * size // height


def decode_image(path):
    """(the file's bytes as a uint8 array, the BGR image, or None when it does not decode): the
    packer's rule for what counts as an image (OpenCV's imdecode, 3 channels), which evaluation on
    a folder and predict apply too."""
    data = np.fromfile(path, dtype=np.uint8)
    return data, (cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None)


def resize_size(input_size, crop_ratio):
    """Shorter side before the centre crop: ceil(input_size / crop_ratio), 256 for 224 / 0.875."""
    if not 0 < crop_ratio <= 1:
        raise DataError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    return int(math.ceil(input_size / crop_ratio))


class SyntheticIter(mx.io.DataIter):
    """``num_batches`` batches of random data and labels, for timing a model without I/O.

    The data (uniform normal, N x 3 x S x S float32) and labels (uniform in [0, num_classes))
    are drawn once from ``seed`` and returned for every batch, so producing a batch costs
    nothing.  Names as ``ImageRecordIter``'s: ``data`` and ``softmax_label``.
    """

    def __init__(self, batch_size, input_size, num_classes, num_batches, seed=0, ctx=None):
        super().__init__(batch_size)
        rng = np.random.RandomState(seed)
        shape = (batch_size, 3, input_size, input_size)
        ctx = ctx or mx.cpu()
        self._data = mx.nd.array(rng.standard_normal(shape).astype(np.float32), ctx=ctx)
        self._label = mx.nd.array(rng.randint(0, num_classes, size=batch_size).astype(np.float32), ctx=ctx)
        self.num_batches = num_batches
        self._current = 0
        self.provide_data = [mx.io.DataDesc("data", shape, np.float32)]
        self.provide_label = [mx.io.DataDesc("softmax_label", (batch_size,), np.float32)]

    def reset(self):
        self._current = 0

    def next(self):
        if self._current >= self.num_batches:
            raise StopIteration
        self._current += 1
        return mx.io.DataBatch(
            data=[self._data],
            label=[self._label],
            pad=0,
            provide_data=self.provide_data,
            provide_label=self.provide_label,
        )

    def __len__(self):
        return self.num_batches


class _FolderDataset(mx.gluon.data.Dataset):
    """(image, label) pairs of an ImageNet-layout folder, decoded as RGB uint8 H x W x 3."""

    def __init__(self, root, classes=None, exclude=()):
        self.root = os.fspath(root)
        self.classes, items, self.ignored = scan_image_folder(root, classes)
        leave_out = set(exclude)
        self.items = [item for item in items if item[0] not in leave_out]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        rel, label = self.items[index]
        path = os.path.join(self.root, rel)
        try:
            with open(path, "rb") as handle:
                img = mx.image.imdecode(handle.read(), flag=1, to_rgb=True)
        except (OSError, mx.base.MXNetError) as err:
            raise DataError(
                f"{path}: cannot decode ({str(err).splitlines()[0]}); remove or replace it"
            ) from None
        return img, np.float32(label)


def eval_transform(input_size=224, crop_ratio=0.875):
    """Gluon-CV's evaluation transform with this package's normalisation.

    ``Resize(ceil(input_size / crop_ratio), keep_ratio=True)``, ``CenterCrop(input_size)``,
    ``ToTensor()``, ``Normalize(MEAN_RGB / 255, STD_RGB / 255)`` from
    ``mx.gluon.data.vision.transforms``, as in ``gluoncv.data.transforms.presets.imagenet``.
    The preset itself normalises with mean 0.485/0.456/0.406 (123.68/116.28/103.53 on 0-255),
    which differs from the statistics every record pipeline here (and Gluon-CV's own
    ImageRecordIter training) uses by up to 0.5 levels; this keeps both evaluation paths identical.
    """
    from mxnet.gluon.data.vision import transforms

    return transforms.Compose(
        [
            transforms.Resize(resize_size(input_size, crop_ratio), keep_ratio=True, interpolation=1),
            transforms.CenterCrop(input_size),
            transforms.ToTensor(),
            transforms.Normalize(
                mean=tuple(m / 255.0 for m in MEAN_RGB), std=tuple(s / 255.0 for s in STD_RGB)
            ),
        ]
    )


def folder_val_loader(
    data_dir, batch_size, input_size=224, crop_ratio=0.875, num_workers=0, classes=None, exclude=()
):
    """A Gluon ``DataLoader`` over ``data_dir/<class>/<image>`` with the evaluation transform.

    Yields ``(data, label)``: N x 3 x S x S float32 and N float32 labels; the last batch is
    simply smaller (no padding).  ``classes``: class names in label order (or the path of a
    ``.classes.json`` / ``.rec``) so that labels match a training set; by default the sorted
    folder names.  ``exclude``: relative paths of images to leave out (labels do not change).
    Returns ``(loader, class_names)``.  Transform: :func:`eval_transform`.
    """
    if isinstance(classes, (str, os.PathLike)):
        names = read_classes(classes)
        if names is None:
            raise DataError(f"{classes}: no .classes.json found there")
        classes = names
    dataset = _FolderDataset(data_dir, classes, exclude)
    transform = eval_transform(input_size, crop_ratio)
    loader = mx.gluon.data.DataLoader(
        dataset.transform_first(transform),
        batch_size=batch_size,
        shuffle=False,
        last_batch="keep",
        num_workers=num_workers,
    )
    return loader, dataset.classes
