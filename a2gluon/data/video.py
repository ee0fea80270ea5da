"""Video data: the layouts users have, clip sampling, and the training / validation source.

Layouts (:func:`read_video_set`, ``dataset=``):

- ``"folder"``: Kinetics-style class folders ``DATA_DIR/<class>/<video>`` (suffixes
  :data:`VIDEO_EXTENSIONS`); or, with a list file, Gluon-CV's list format ``path num_frames
  label`` per line (paths relative to ``DATA_DIR``, with or without the suffix; what
  ``a2gluon pack-video`` writes, with its ``classes.json`` beside it).
- ``"ucf101"``: ``DATA_DIR/<Class>/v_<Class>_gXX_cYY.avi`` with the official
  ``ucfTrainTestlist/`` (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``); the list
  argument is that folder (or one of its files), ``split`` picks N, ``subset`` train or test.
  Labels follow ``classInd.txt`` (alphabetical for UCF-101).  A listed video whose suffix
  changed (a re-encoded copy from ``pack-video``) is found under its other suffix.
- ``"kinetics"``: an annotation CSV ``label,youtube_id,time_start,time_end,split``; each video is
  ``DATA_DIR/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` or any file ``<youtube_id>*``
  in ``DATA_DIR/<label>/`` or ``DATA_DIR/``.  Videos named in the CSV but not on disk are skipped
  and reported (every Kinetics copy lacks some: YouTube removes videos), never an error unless
  none is found.

Class names are sorted as for ImageNet (Python's string order) unless given (``classes=``, a
training set's list): then labels follow that list and a class not in it is a one-line
:class:`DataError`.  They are written and read with the ``classes.json`` schema of
:mod:`a2gluon.data.layout`.

Clips (``new_length`` frames ``new_step`` apart, spanning ``(new_length - 1) * new_step + 1``
frames):

- training (:func:`train_indices`): a random start; a video shorter than the span is **looped**
  (frame indices wrap around, from a random start), as Gluon-CV's loader does.  Scale jitter:
  the shorter side is resized to a random size in ``[short_side, 1.25 * short_side]`` (SlowFast's
  256-320 for 224), then a random ``input_size`` square crop and a horizontal flip with
  probability 1/2;
- validation and test (:func:`view_indices`, :func:`video_views`): ``num_clips`` clips spread
  evenly over the video (the centre of each of ``num_clips`` equal segments of the possible
  starts, Gluon-CV's rule), shorter side resized to ``short_side``, ``num_crops`` crops of
  ``input_size`` (1 = centre; 3 = left/centre/right along the longer side, the Non-local /
  SlowFast protocol), view index ``clip * num_crops + crop``; the centre view (one centre clip,
  centre crop) is clip ``num_clips // 2``, crop ``num_crops // 2``.

Every clip is float32 ``3 x T x H x W`` (RGB), normalised with ImageNet's ``MEAN_RGB`` /
``STD_RGB`` on the 0-255 scale.  Decoding is :mod:`a2gluon.data.video_decode`.  Loading runs in
worker processes (a fresh forkserver, as ``a2gluon pack``); a worker that dies or stops answering
for ``timeout`` seconds ends the job with a one-line DataError, never a hang.
"""

import concurrent.futures
import csv
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx
import numpy as np

from ..signals import signals_held
from . import video_decode
from .layout import DataError, _is_hidden, class_folders, printable_name, read_class_list, write_classes
from .pipeline import MEAN_RGB, STD_RGB, part_sizes
from .sources import _check_ranges, _Source

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
DATASETS = ("folder", "ucf101", "kinetics")
CLASSES_FILE = "classes.json"
JITTER = 1.25  # training scale jitter: shorter side in [short_side, JITTER * short_side]
TIMEOUT = 300.0  # seconds a worker may take for one video before the job ends

log = logging.getLogger("a2gluon.data.video")

_MEAN = np.array(MEAN_RGB, np.float32).reshape(3, 1, 1, 1)
_STD = np.array(STD_RGB, np.float32).reshape(3, 1, 1, 1)


# Layouts ---------------------------------------------------------------------------------------


@dataclass
class VideoSet:
    """Videos of one layout: ``items`` (path, label) in a fixed order, ``classes`` (names in label
    order), ``num_frames`` (per item, or None where only decoding can tell), ``missing`` (listed
    but not on disk, skipped: Kinetics CSVs only), ``ignored`` (files that are not videos)."""

    items: list
    classes: list
    num_frames: list = None
    missing: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    source: str = ""

    def __post_init__(self):
        if self.num_frames is None:
            self.num_frames = [None] * len(self.items)

    def __len__(self):
        return len(self.items)


def _labels_for(names, classes, where):
    """(class list, {name: label}): sorted ``names``, or ``classes`` checked to hold all of them."""
    if classes is None:
        classes = sorted(set(names))
    else:
        classes = list(classes)
        known = set(classes)
        for name in sorted(set(names)):
            if name not in known:
                raise DataError(
                    f"{where}: class {name!r} is not one of the training set's {len(classes)} classes; "
                    "remove it or train with it"
                )
    return classes, {name: label for label, name in enumerate(classes)}


def _find_video(path):
    """``path`` if it exists, else the same stem with another video suffix (or the suffix added)."""
    if path.is_file():
        return path
    stem = path.with_suffix("") if path.suffix.lower() in VIDEO_EXTENSIONS else path
    for suffix in VIDEO_EXTENSIONS:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def _require_listed(found, missing, list_file):
    if missing:
        raise DataError(
            f"{list_file}: {len(missing)} listed videos are missing, e.g. {missing[0]}; "
            "fix the list or the data directory"
        )
    if not found:
        raise DataError(f"{list_file}: lists no video")


def _scan_folders(root, classes):
    root = Path(root)
    folders, ignored = class_folders(root, "ROOT/<class>/<video>")
    classes, label_of = _labels_for(folders, classes, root)
    items = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            for name in sorted(filenames):
                if _is_hidden(name):
                    continue
                path = Path(dirpath) / name
                if path.suffix.lower() in VIDEO_EXTENSIONS:
                    items.append((str(path), label_of[folder]))
                else:
                    ignored.append(printable_name(str(path.relative_to(root))))
    if not items:
        raise DataError(
            f"{root}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in its {len(folders)} class folders"
        )
    return VideoSet(items, classes, ignored=ignored, source=str(root))


def _classes_beside(list_file):
    """The class names of the ``classes.json`` beside a list file (``LIST.classes.json`` or
    ``classes.json`` in its folder), or None."""
    list_file = Path(list_file)
    for candidate in (Path(str(list_file) + ".classes.json"), list_file.with_suffix(".classes.json"),
                      list_file.parent / CLASSES_FILE):  # fmt: skip
        if candidate.is_file():
            return read_class_list(candidate)
    return None


def _read_gluon_list(root, list_file, classes):
    list_file = Path(list_file)
    if not list_file.is_file():
        raise DataError(f"list file {list_file} does not exist")
    rows = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 2)
        if len(parts) != 3 or not parts[1].lstrip("-").isdigit() or not parts[2].isdigit():
            raise DataError(f"{list_file}:{number}: expected 'path num_frames label', got {line.strip()!r}")
        rows.append((parts[0], int(parts[1]), int(parts[2])))
    names = _classes_beside(list_file)
    top = max((label for _, _, label in rows), default=-1)
    if names is None and classes is None:
        # class i is label i: a label no video has (a typo, say 71 for 17) would be a class to learn
        unused = sorted(set(range(top + 1)) - {label for _, _, label in rows})
        if unused:
            raise DataError(
                f"{list_file}: labels go up to {top} but {len(unused)} of 0-{top} have no video "
                f"(e.g. {', '.join(map(str, unused[:5]))}); fix the labels, or give the class names "
                f"in {Path(str(list_file) + '.classes.json').name} beside the list"
            )
        names = [str(label) for label in range(top + 1)]
    elif names is None:
        names = classes
    if top >= len(names):
        raise DataError(
            f"{list_file}: label {top} but only {len(names)} classes; fix the list or its classes.json"
        )
    if classes is not None and list(classes) != list(names):
        used = sorted({names[label] for _, _, label in rows})
        _, label_of = _labels_for(used, classes, list_file)
        rows = [(p, n, label_of[names[label]]) for p, n, label in rows]
        names = list(classes)
    items, frames, missing = [], [], []
    for rel, num_frames, label in rows:
        path = _find_video(Path(root) / rel)
        if path is None:
            missing.append(rel)
            continue
        items.append((str(path), label))
        frames.append(num_frames if num_frames > 0 else None)
    _require_listed(items, missing, list_file)
    return VideoSet(items, list(names), frames, source=str(list_file))


def _ucf_lists(list_path, split, subset):
    list_path = Path(list_path)
    folder = list_path if list_path.is_dir() else list_path.parent
    if not folder.is_dir():
        raise DataError(f"{list_path}: no such folder; give UCF-101's ucfTrainTestlist folder")
    name = "trainlist" if subset == "train" else "testlist"
    split_file = list_path if list_path.is_file() else folder / f"{name}{int(split):02d}.txt"
    for path in (folder / "classInd.txt", split_file):
        if not path.is_file():
            raise DataError(
                f"{path} does not exist; give UCF-101's ucfTrainTestlist folder and --split 1, 2 or 3"
            )
    return folder / "classInd.txt", split_file


def _read_ucf101(root, list_path, classes, split, subset):
    if list_path is None:
        raise DataError(
            "--dataset ucf101 needs the ucfTrainTestlist folder as the list (--train-list / --val-list)"
        )
    class_ind, split_file = _ucf_lists(list_path, split, subset)
    names = []
    for line in class_ind.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            names.append(parts[1])
        elif line.strip():
            raise DataError(f"{class_ind}: expected 'number ClassName' lines, got {line.strip()!r}")
    if not names:
        raise DataError(f"{class_ind}: no classes")
    items, missing, used = [], [], []
    for line in split_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rel = line.split()[0]
        name = rel.replace("\\", "/").split("/")[0]
        if name not in names:
            raise DataError(f"{split_file}: class {name!r} of {rel} is not in {class_ind}")
        path = _find_video(Path(root) / rel)
        if path is None:
            missing.append(rel)
            continue
        items.append((str(path), name))
        used.append(name)
    _require_listed(items, missing, split_file)
    if classes is None:
        classes = names
    classes, label_of = _labels_for(used, classes, split_file)
    return VideoSet([(p, label_of[n]) for p, n in items], classes, source=str(split_file))


def _read_kinetics(root, csv_file, classes):
    if csv_file is None:
        raise DataError("--dataset kinetics needs the annotation CSV as the list (--train-list / --val-list)")
    csv_file, root = Path(csv_file), Path(root)
    if not csv_file.is_file():
        raise DataError(f"annotation file {csv_file} does not exist")
    with open(csv_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise DataError(
                f"{csv_file}: expected the columns label,youtube_id,time_start,time_end,split "
                f"(a test CSV without labels cannot train or score), got {reader.fieldnames}"
            )
        rows = list(reader)
    if not rows:
        raise DataError(f"{csv_file}: no videos")
    classes, label_of = _labels_for([r["label"] for r in rows], classes, csv_file)
    listing = {}  # folder -> sorted names, listed once

    def names_in(folder):
        if folder not in listing:
            listing[folder] = sorted(os.listdir(folder)) if folder.is_dir() else []
        return listing[folder]

    items, missing = [], []
    for row in rows:
        youtube_id, label = row["youtube_id"], row["label"]
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise DataError(f"{csv_file}: time_start/time_end of {youtube_id} are not numbers") from None
        exact = root / label / f"{youtube_id}_{start:06d}_{end:06d}.mp4"
        found = exact if exact.is_file() else None
        for folder in (root / label, root):
            if found is not None:
                break
            match = [
                n
                for n in names_in(folder)
                if n.startswith(youtube_id) and Path(n).suffix.lower() in VIDEO_EXTENSIONS
            ]
            found = folder / match[0] if match else None
        if found is None:
            missing.append(f"{label}/{youtube_id}")
        else:
            items.append((str(found), label_of[label]))
    if not items:
        raise DataError(f"{csv_file}: none of its {len(rows)} videos is in {root}; check the data directory")
    if missing:
        log.warning(
            "%s: %d of %d videos are not in %s (skipped), e.g. %s",
            csv_file,
            len(missing),
            len(rows),
            root,
            missing[0],
        )
    return VideoSet(items, classes, missing=missing, source=str(csv_file))


def read_video_set(data_dir, list_file=None, dataset="folder", classes=None, split=1, subset="train"):
    """The :class:`VideoSet` of ``data_dir`` in layout ``dataset`` (see the module docstring).

    ``classes``: names in label order to use (the training set's, for validation), or a path of a
    ``classes.json`` / text file; a class not in it is a one-line DataError.  ``split`` (1-3) and
    ``subset`` ("train" or "test") pick UCF-101's list file when ``list_file`` is its folder.
    """
    if dataset not in DATASETS:
        raise DataError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if data_dir is None:
        raise DataError("--data-dir is required: the folder that holds the videos")
    if isinstance(classes, (str, os.PathLike)):
        classes = read_class_list(classes)
    if dataset == "ucf101":
        return _read_ucf101(data_dir, list_file, classes, split, subset)
    if dataset == "kinetics":
        return _read_kinetics(data_dir, list_file, classes)
    if list_file:
        return _read_gluon_list(data_dir, list_file, classes)
    return _scan_folders(data_dir, classes)


def write_video_list(path, entries):
    """Write a Gluon-CV list file: ``path num_frames label`` per line (``entries``: tuples)."""
    with open(path, "w", encoding="utf-8") as handle:
        for rel, num_frames, label in entries:
            handle.write(f"{rel} {int(num_frames)} {int(label)}\n")
    return path


def write_video_classes(path, classes, **extra):
    """Write ``classes.json`` (the schema of :mod:`a2gluon.data.layout`) for a video set."""
    return write_classes(path, classes, **extra)


# Clip sampling ---------------------------------------------------------------------------------


def clip_span(new_length, new_step):
    """Frames one clip spans: (new_length - 1) * new_step + 1."""
    return (new_length - 1) * new_step + 1


def train_indices(num_frames, new_length, new_step, rng):
    """Frame indices of one training clip: a random start, ``new_length`` frames ``new_step``
    apart; a video shorter than the span loops (indices wrap around from a random start)."""
    span = clip_span(new_length, new_step)
    offsets = np.arange(new_length) * new_step
    if num_frames >= span:
        return rng.randint(0, num_frames - span + 1) + offsets
    return (rng.randint(0, num_frames) + offsets) % num_frames


def view_indices(num_frames, new_length, new_step, num_clips):
    """Frame indices (num_clips x new_length) of the evaluation clips: the centre of each of
    ``num_clips`` equal segments of the possible starts (Gluon-CV's test sampling); a video
    shorter than one clip loops from frame 0."""
    span = clip_span(new_length, new_step)
    offsets = np.arange(new_length) * new_step
    if num_frames < span:
        return np.stack([offsets % num_frames] * num_clips)
    segment = (num_frames - span + 1) / num_clips
    starts = [int(segment / 2 + segment * i) for i in range(num_clips)]
    return np.stack([start + offsets for start in starts])


def centre_view(num_clips, num_crops):
    """The index of the centre clip's centre crop (one clip per video: clip accuracy) among the
    views of :func:`video_views` with ``centre=True``: the middle clip's middle crop for an odd
    ``num_clips`` (the same clip, :func:`view_indices`), else the extra view after the others."""
    if num_clips % 2:
        return (num_clips // 2) * num_crops + num_crops // 2
    return num_clips * num_crops


def crop_offsets(height, width, size, num_crops):
    """(y, x) of the ``num_crops`` evaluation crops: 1 = centre, 3 = start/centre/end of the
    longer side (left/centre/right for landscape, top/centre/bottom for portrait), centred on
    the shorter side."""
    if num_crops not in (1, 3):
        raise DataError(f"--num-crops must be 1 or 3, got {num_crops}")
    centre = ((height - size) // 2, (width - size) // 2)
    if num_crops == 1:
        return [centre]
    if width >= height:
        return [(centre[0], 0), centre, (centre[0], width - size)]
    return [(0, centre[1]), centre, (height - size, centre[1])]


def normalise(frames):
    """T x H x W x 3 uint8 RGB frames -> float32 3 x T x H x W, ImageNet mean/std (0-255 scale)."""
    data = np.asarray(frames, np.float32).transpose(3, 0, 1, 2)
    return (data - _MEAN) / _STD


def _fit(frames, size):
    """Frames whose shorter side is at least ``size`` (a video smaller than a crop is enlarged)."""
    height, width = frames.shape[1:3]
    if min(height, width) >= size:
        return frames
    import cv2

    scale = size / min(height, width)
    shape = (max(size, round(width * scale)), max(size, round(height * scale)))
    return np.stack([cv2.resize(f, shape, interpolation=cv2.INTER_LINEAR) for f in frames])


def _num_frames(path, known):
    if known:
        return known
    num_frames = video_decode.probe(path).num_frames
    if num_frames < 1:
        raise DataError(f"{path}: the video has no frames; remove or replace it")
    return num_frames


def train_clip(path, num_frames, new_length, new_step, input_size, short_side, rng):
    """One augmented training clip of the video at ``path`` (float32 3 x T x S x S)."""
    num_frames = _num_frames(path, num_frames)
    indices = train_indices(num_frames, new_length, new_step, rng)
    side = rng.randint(short_side, int(round(short_side * JITTER)) + 1)
    frames = _fit(video_decode.read_frames(path, indices, short_side=side), input_size)
    height, width = frames.shape[1:3]
    y, x = rng.randint(0, height - input_size + 1), rng.randint(0, width - input_size + 1)
    frames = frames[:, y : y + input_size, x : x + input_size]
    if rng.rand() < 0.5:
        frames = frames[:, :, ::-1]
    return normalise(frames)


def video_views(
    path, new_length, new_step, input_size, short_side, num_clips=1, num_crops=1, num_frames=None,
    centre=False,
):  # fmt: skip
    """The evaluation views of one video: float32 ``(num_clips * num_crops) x 3 x T x S x S``,
    view ``clip * num_crops + crop`` (module docstring).  With ``centre``, an even ``num_clips``
    (which has no middle clip) gets one more view, the centre clip's centre crop, last
    (:func:`centre_view`).  Raises DataError (one line) for a missing, unreadable or empty video."""
    num_frames = _num_frames(path, num_frames)
    clips = view_indices(num_frames, new_length, new_step, num_clips)
    crops = [num_crops] * num_clips
    if centre and centre_view(num_clips, num_crops) == num_clips * num_crops:
        clips = np.concatenate([clips, view_indices(num_frames, new_length, new_step, 1)])
        crops.append(1)
    wanted = sorted(set(clips.ravel().tolist()))
    frames = _fit(video_decode.read_frames(path, wanted, short_side=short_side), input_size)
    position = {index: i for i, index in enumerate(wanted)}
    height, width = frames.shape[1:3]
    views = np.empty((sum(crops), 3, new_length, input_size, input_size), np.float32)
    for c, (clip, count) in enumerate(zip(clips, crops)):
        chosen = frames[[position[i] for i in clip]]
        for k, (y, x) in enumerate(crop_offsets(height, width, input_size, count)):
            views[c * num_crops + k] = normalise(chosen[:, y : y + input_size, x : x + input_size])
    return views


def _check_clip_args(new_length, new_step, input_size, short_side, num_clips=1, num_crops=1):
    values = dict(new_length=new_length, new_step=new_step, input_size=input_size, short_side=short_side,
                  num_clips=num_clips)  # fmt: skip
    _check_ranges(values, at_least=[(name, 1) for name in values])
    if num_crops not in (1, 3):
        raise DataError(f"--num-crops must be 1 or 3, got {num_crops}")
    if short_side < input_size:
        raise DataError(
            f"--short-side {short_side} is smaller than --input-size {input_size}; the crop must fit: "
            f"give --short-side {input_size} or more"
        )


# Worker processes ------------------------------------------------------------------------------


def _process_alive(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc: ask the kernel
        from .pack import _pid_alive

        return _pid_alive(pid)


def _exit_with(pid, interval=1.0):
    """Worker thread: end this process when process ``pid`` (the one that started the pool) is
    gone.  A pool's workers otherwise outlive a parent killed by SIGKILL, the OOM killer or an
    unhandled SIGTERM for ever: they wait on a queue whose write end they hold themselves, and
    keep the forkserver alive."""
    import time

    while _process_alive(pid):
        time.sleep(interval)
    os._exit(1)


def _worker_init(parent=None):
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent ends us
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _run_task(task):
    """Worker: (kind, path, num_frames, args) -> ("ok", result) or ("error", one line)."""
    kind, path, num_frames, args = task
    try:
        if kind == "train":
            seed, rest = args
            return "ok", train_clip(path, num_frames, *rest, rng=np.random.RandomState(seed))
        if kind == "views":
            views, centre = args
            return "ok", video_views(path, *views, num_frames=num_frames, centre=centre)
        if kind == "probe":
            return "ok", _num_frames(path, num_frames)
        if kind == "call":  # (function, argument): another job on videos, e.g. pack-video's
            function, argument = args
            return "ok", function(argument)
        raise ValueError(f"unknown task {kind}")
    except DataError as err:
        return "error", str(err)
    except Exception as err:  # one bad video never ends the job
        return "error", f"{path}: {type(err).__name__}: {err}"


def _submit(executor, task):
    """``executor.submit(_run_task, task)``, or a future holding BrokenProcessPool when a worker
    has died since the last result (the task then runs again as those in flight do).

    A submit may start a worker; a SIGTERM or Ctrl-C then waits for it to be up, since a worker
    cut off half-way fails in the forkserver with a traceback on the terminal.
    """
    try:
        with signals_held():
            return executor.submit(_run_task, task)
    except concurrent.futures.process.BrokenProcessPool as err:
        future = concurrent.futures.Future()
        future.set_exception(err)
        return future


class WorkerPool:
    """``num_workers`` loading processes (0: load in this process), with a time limit per task.

    :meth:`map` yields the results of the tasks in order, keeping at most ``prefetch`` tasks in
    flight.  A worker that dies (a decoder crash) does not end the job: the tasks that were in
    flight run again one at a time in fresh processes, and the one that kills its process again
    gives ``("error", "... the decoding process died ...")``.  A task that takes longer than
    ``timeout`` seconds raises a one-line DataError naming its video; the processes are ended,
    never left behind.
    """

    def __init__(self, num_workers, timeout=TIMEOUT):
        self.num_workers, self.timeout = num_workers, timeout
        self._executor = None

    def _start(self, workers=None):
        if self._executor is None and self.num_workers > 0:
            from .pack import pool_context

            ctx = pool_context()
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(["a2gluon.data.video"])
            self._executor = concurrent.futures.ProcessPoolExecutor(
                workers or self.num_workers,
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
        return self._executor

    def _wait(self, task, future):
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            self.close(kill=True)
            raise DataError(
                f"a data worker has not finished {task[1]} in {self.timeout:g} s; "
                "check that video (decode it alone) or raise the time limit"
            ) from None

    def _alone(self, task):
        """Run ``task`` in a fresh single process; an error result if that process dies."""
        self.close()
        executor = self._start(workers=1)
        try:
            result = self._wait(task, _submit(executor, task))
        except concurrent.futures.process.BrokenProcessPool:
            result = (
                "error",
                f"{task[1]}: the decoding process died on this video (a decoder crash); "
                "remove or re-encode it",
            )
        self.close()
        return result

    def map(self, tasks, prefetch=None):
        if self.num_workers <= 0:
            for task in tasks:
                yield _run_task(task)
            return
        prefetch = prefetch or 2 * self.num_workers
        pending = []
        tasks = iter(tasks)
        try:
            while True:
                executor = self._start()
                while len(pending) < prefetch:
                    task = next(tasks, None)
                    if task is None:
                        break
                    pending.append((task, _submit(executor, task)))
                if not pending:
                    return
                task, future = pending.pop(0)
                try:
                    result = self._wait(task, future)
                except concurrent.futures.process.BrokenProcessPool:
                    again = [task] + [t for t, _ in pending]
                    pending = []
                    for retry in again:
                        yield self._alone(retry)
                    continue
                yield result
        finally:
            for _, future in pending:
                future.cancel()

    def close(self, kill=False):
        """End the processes: tasks not started are cancelled, those running finish (a worker
        ended while it writes its result back would leave the executor waiting for ever);
        `kill`: end them now (a worker that hangs)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if not kill:
            executor.shutdown(wait=True, cancel_futures=True)
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
        for process in processes:
            process.join(timeout=10)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class ViewIterator:
    """Iterates (index, label, views) over videos in worker processes (:func:`iter_video_views`);
    ``skipped`` lists (path, reason) of the videos that failed to decode."""

    def __init__(self, items, new_length, new_step, input_size, short_side, num_clips, num_crops,
                 num_workers, num_frames=None, timeout=TIMEOUT, pool=None, centre=False):  # fmt: skip
        _check_clip_args(new_length, new_step, input_size, short_side, num_clips, num_crops)
        self.items = list(items)
        self.num_frames = list(num_frames) if num_frames is not None else [None] * len(self.items)
        self.args = ((new_length, new_step, input_size, short_side, num_clips, num_crops), centre)
        self._own_pool = pool is None
        self.pool = pool if pool is not None else WorkerPool(num_workers, timeout)
        self.skipped = []

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        tasks = (("views", path, n, self.args) for (path, _), n in zip(self.items, self.num_frames))
        try:
            for index, (status, result) in enumerate(self.pool.map(tasks)):
                if status == "ok":
                    yield index, self.items[index][1], result
                else:
                    self.skipped.append((self.items[index][0], result))
                    log.warning("skipped %s", result)
        finally:
            if self._own_pool:
                self.pool.close()


def iter_video_views(items, new_length, new_step, input_size, short_side, num_clips=1, num_crops=1,
                     num_workers=0, num_frames=None, timeout=TIMEOUT, pool=None, centre=False):  # fmt: skip
    """Yield ``(index, label, views)`` for each (path, label) of ``items`` in order (views as
    :func:`video_views`, ``centre`` too), loaded by ``num_workers`` processes (0: in this process).
    Videos that fail to decode are skipped and listed in the returned iterator's ``skipped`` (path,
    reason); argument errors are raised at once.  ``num_frames``: the frame count of each item
    where known (a list file's), else probed; ``pool``: a :class:`WorkerPool` to share (kept open)."""
    return ViewIterator(items, new_length, new_step, input_size, short_side, num_clips, num_crops,
                        num_workers, num_frames, timeout, pool, centre)  # fmt: skip


def probe_videos(video_set, pool, what):
    """Fill in the frame counts ``video_set`` does not know by probing those videos in ``pool``'s
    processes (:class:`WorkerPool`).  Videos that cannot be read are dropped from the set,
    reported on stderr (one line each, then a count) and returned as (path, reason); DataError
    when none is left.  ``what`` names the set in messages ("training", "validation")."""
    skipped = []
    todo = [i for i, n in enumerate(video_set.num_frames) if not n]
    if todo:
        tasks = (("probe", video_set.items[i][0], None, None) for i in todo)
        for i, (status, result) in zip(todo, pool.map(tasks)):
            if status == "ok":
                video_set.num_frames[i] = result
            else:
                skipped.append((video_set.items[i][0], result))
                print(f"skipped {what} video: {result}", file=sys.stderr)
    good = [i for i, n in enumerate(video_set.num_frames) if n]
    if not good:
        raise DataError(
            f"none of the {len(video_set.items)} {what} videos ({video_set.source}) can be decoded; "
            "check the data (a2gluon pack-video lists unreadable videos)"
        )
    if len(good) < len(video_set.items):
        print(
            f"{what} data: {len(video_set.items) - len(good)} of {len(video_set.items)} videos skipped",
            file=sys.stderr,
        )
        video_set.items = [video_set.items[i] for i in good]
        video_set.num_frames = [video_set.num_frames[i] for i in good]
    return skipped


def check_clip_length(video_set, new_length, new_step, what):
    """DataError when one clip (``new_length`` frames ``new_step`` apart) is longer than every
    video of ``video_set`` (frame counts known): every clip would repeat frames, a setting error,
    not data.  Videos shorter than a clip are looped (module docstring); their count is said on
    stderr."""
    span = clip_span(new_length, new_step)
    counts = [n for n in video_set.num_frames if n]
    short = sum(n < span for n in counts)
    if counts and short == len(counts):
        raise DataError(
            f"a clip of --new-length {new_length} frames --new-step {new_step} apart spans {span} frames, "
            f"more than every {what} video has (the longest has {max(counts)}); give a --new-length "
            f"and --new-step whose span (new_length - 1) * new_step + 1 is at most {max(counts)}"
        )
    if short:
        print(
            f"{what} data: {short} of {len(counts)} videos are shorter than one clip ({span} frames); "
            "their frames are looped",
            file=sys.stderr,
        )


# The source ------------------------------------------------------------------------------------


def _data_desc(batch, shape):
    return [mx.io.DataDesc("data", (batch, *shape), np.float32)], [
        mx.io.DataDesc("softmax_label", (batch,), np.float32)
    ]


class _BatchIter(mx.io.DataIter):
    """An mx.io.DataIter over a generator function of DataBatches (``make()`` starts it anew)."""

    def __init__(self, make, batch, shape, num_batches):
        super().__init__(batch)
        self._make, self.num_batches = make, num_batches
        self.provide_data, self.provide_label = _data_desc(batch, shape)
        self._it = None

    def reset(self):
        if self._it is not None:
            self._it.close()
        self._it = None

    def next(self):
        if self._it is None:
            self._it = self._make()
        return next(self._it)

    def __len__(self):
        return self.num_batches


class VideoSource(_Source):
    """Video clips for the training loop (the interface of :mod:`a2gluon.data.sources`).

    Training: every epoch a permutation of the training videos seeded by (seed, epoch), the same
    on every worker; worker ``part_index`` of ``num_parts`` takes its share of it (disjoint
    shards, sizes as :func:`~a2gluon.data.pipeline.part_sizes`) and gives exactly
    ``steps_per_epoch`` batches, wrapping around its share.  Each clip (module docstring) is drawn
    with a random state seeded by (seed, epoch, part, position), so a resumed run sees the same
    clips whatever the number of loading processes.  A video that fails to decode is replaced by
    the next of the shard, skipped from then on, and listed in ``skipped``.

    Validation: one centre clip, centre crop per video of ``val_data_dir`` (the whole set on
    every worker, as the image source), the last batch padded (``pad``).
    """

    def __init__(
        self,
        data_dir,
        train_list=None,
        val_data_dir=None,
        val_list=None,
        dataset="folder",
        new_length=16,
        new_step=1,
        input_size=112,
        short_side=128,
        num_data_workers=2,
        seed=0,
        split=1,
        timeout=TIMEOUT,
    ):
        self.flags = dict(
            data_dir=None if data_dir is None else str(data_dir),
            train_list=None if train_list is None else str(train_list),
            val_data_dir=None if val_data_dir is None else str(val_data_dir),
            val_list=None if val_list is None else str(val_list),
            dataset=dataset,
            new_length=new_length,
            new_step=new_step,
            input_size=input_size,
            short_side=short_side,
            num_data_workers=num_data_workers,
            split=split,
        )
        _check_clip_args(new_length, new_step, input_size, short_side)
        _check_ranges(self.flags, non_negative=["num_data_workers"])
        self.seed, self.timeout = seed, timeout
        self.input_shape = (3, new_length, input_size, input_size)
        self.train_set = read_video_set(data_dir, train_list, dataset, split=split, subset="train")
        self.classes = self.train_set.classes
        self.num_classes = len(self.classes)
        self.val_set = None
        if val_data_dir is not None or val_list is not None:
            self.val_set = read_video_set(
                val_data_dir if val_data_dir is not None else data_dir,
                val_list,
                dataset,
                classes=self.classes,
                split=split,
                subset="test",
            )
        self.num_images = len(self.train_set)
        self.skipped = []  # (path, reason) of videos left out
        self._pool = None
        self._checked = False

    # -- checks before any work
    def check(self, num_classes):
        """Check the class count and probe every video whose frame count is not known (in the
        loading processes): unreadable and empty videos are skipped and reported, DataError when
        none is left or when a clip is longer than every video (:func:`check_clip_length`).
        SIGTERM / SIGINT meanwhile end the loading processes and raise
        :class:`~a2gluon.signals.Terminated`."""
        from ..signals import Terminated, stop_on_signals

        if num_classes != self.num_classes:
            raise DataError(
                f"--num-classes is {num_classes} but the training data has {self.num_classes} classes "
                f"({self.train_set.source}); give --num-classes {self.num_classes} or other data"
            )
        try:
            with stop_on_signals():
                self._probe(self.train_set, "training")
                if self.val_set is not None:
                    self._probe(self.val_set, "validation")
        except Terminated:
            self.close(kill=True)
            raise
        self.num_images = len(self.train_set)
        self._checked = True

    def _probe(self, video_set, what):
        self.skipped += probe_videos(video_set, self.pool, what)
        check_clip_length(video_set, self.flags["new_length"], self.flags["new_step"], what)

    @property
    def pool(self):
        if self._pool is None:
            self._pool = WorkerPool(self.flags["num_data_workers"], self.timeout)
        return self._pool

    def close(self, kill=False):
        if self._pool is not None:
            self._pool.close(kill=kill)

    # -- training
    def shard(self, epoch, num_parts=None, part_index=None):
        """Indices into the training items of this worker's share of ``epoch``."""
        num_parts = self.num_parts if num_parts is None else num_parts
        part_index = self.part_index if part_index is None else part_index
        order = np.random.RandomState([self.seed, epoch, 7]).permutation(len(self.train_set))
        sizes = part_sizes(len(order), num_parts)
        start = sum(sizes[:part_index])
        return order[start : start + sizes[part_index]]

    def train(self, epoch):
        """This worker's ``steps_per_epoch`` training batches of ``epoch`` (an mx.io.DataIter)."""
        if not self._checked:
            self.check(self.num_classes)
        return _BatchIter(
            lambda: self._train_batches(epoch), self.batch, self.input_shape, self.steps_per_epoch
        )

    def _train_tasks(self, epoch, shard, bad):
        flags = self.flags
        rest = (flags["new_length"], flags["new_step"], flags["input_size"], flags["short_side"])
        position = 0
        while True:
            index = shard[position % len(shard)]
            if index not in bad:
                seed = [self.seed, epoch, self.part_index, position]
                path = self.train_set.items[index][0]
                yield index, ("train", path, self.train_set.num_frames[index], (seed, rest))
            position += 1
            if position >= 100 * len(shard) and len(bad) >= len(set(shard.tolist())):
                raise DataError(f"none of the {len(shard)} training videos of this worker decodes")

    def _train_batches(self, epoch):
        shard = self.shard(epoch)
        bad = {i for i, (p, _) in enumerate(self.train_set.items) if p in {s for s, _ in self.skipped}}
        labels = [label for _, label in self.train_set.items]
        tasks = self._train_tasks(epoch, shard, bad)
        current = []  # item indices of the tasks handed out, in order
        clips, clip_labels = [], []

        def feed():
            for index, task in tasks:
                current.append(index)
                yield task

        results = self.pool.map(feed())
        for _step in range(self.steps_per_epoch):
            while len(clips) < self.batch:
                status, result = next(results)
                index = current.pop(0)
                if status == "ok":
                    clips.append(result)
                    clip_labels.append(labels[index])
                elif index not in bad:
                    bad.add(index)
                    self.skipped.append((self.train_set.items[index][0], result))
                    print(f"skipped training video: {result}", file=sys.stderr)
            data = mx.nd.array(np.stack(clips[: self.batch]))
            label = mx.nd.array(np.asarray(clip_labels[: self.batch], np.float32))
            del clips[: self.batch], clip_labels[: self.batch]
            yield mx.io.DataBatch([data], [label], pad=0)
        results.close()

    # -- validation
    @property
    def has_val(self):
        return self.val_set is not None and len(self.val_set) > 0

    @property
    def val_videos(self):
        return len(self.val_set) if self.val_set is not None else 0

    def val(self):
        """One centre clip, centre crop per validation video, in batches (the last with ``pad``)."""
        if not self.has_val:
            return None
        num_batches = math.ceil(len(self.val_set) / self.batch)
        return _BatchIter(self._val_batches, self.batch, self.input_shape, num_batches)

    def _val_batches(self):
        flags = self.flags
        views = iter_video_views(
            self.val_set.items, flags["new_length"], flags["new_step"], flags["input_size"],
            flags["short_side"], 1, 1, num_frames=self.val_set.num_frames, pool=self.pool,
        )  # fmt: skip
        data, labels = [], []
        for _, label, clip in views:
            data.append(clip[0])
            labels.append(label)
            if len(data) == self.batch:
                yield self._padded(data, labels)
                data, labels = [], []
        if data:
            yield self._padded(data, labels)
        for item in views.skipped:
            self.skipped.append(item)

    def _padded(self, data, labels):
        pad = self.batch - len(data)
        batch = np.zeros((self.batch, *self.input_shape), np.float32)
        batch[: len(data)] = np.stack(data)
        label = np.zeros(self.batch, np.float32)
        label[: len(labels)] = labels
        return mx.io.DataBatch([mx.nd.array(batch)], [mx.nd.array(label)], pad=pad)
