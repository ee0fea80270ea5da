"""Prepare a video set for training: re-encode every video with a smaller shorter side.

    a2gluon pack-video ROOT OUT [--short-side 256] [--format mp4|avi] [--num-workers N]
        [--dataset folder|ucf101|kinetics] [--list FILE] [--split N] [--subset train|test]
        [--classes CLASSES.json] [--force] [--quiet]

Decoding cost falls with the pixel count, so videos are re-encoded once with their shorter side
at ``--short-side`` (the first author's video code and Gluon-CV's Kinetics preparation do the
same).  ``--format mp4`` (H.264, the default) gives files about 7x smaller than ``avi`` (MPEG-4
part 2), which takes about 5x less CPU to decode (``benchmarks/results/video_decode.md``: 320x240,
21 against 104 training clips per CPU-second); choose avi when decoding limits training.
Writes::

    OUT/<class>/<video>.avi|.mp4   every readable video of ROOT's set (read as a2gluon.data.video
                                   reads it), same relative path, new suffix
    OUT/list.txt                   Gluon-CV's list format: path num_frames label
    OUT/classes.json               the class names (schema of a2gluon.data.layout) + counts,
                                   skipped videos, settings

Train on it with ``--data-dir OUT --train-list OUT/list.txt`` (``--dataset folder``); UCF-101's
official split lists also find the re-encoded videos (same path, other suffix).  A video that
cannot be decoded or has no frame is skipped and listed at the end (never a crash half-way,
never a silent drop), as is one whose decoder kills its process.  Everything is written into
``OUT.tmp-PID`` and renamed to ``OUT`` when complete (an existing ``OUT`` with ``--force`` is
replaced only then); SIGTERM or Ctrl-C removes the temporary folder, and the leftovers of a
killed earlier run are removed by the next one.
"""

import contextlib
import os
import shutil
from pathlib import Path

from ..signals import Terminated, signals_held, stop_on_signals
from . import video_decode
from .layout import DataError, printable_name
from .pack import _pid_alive
from .video import CLASSES_FILE, WorkerPool, read_video_set, write_video_classes, write_video_list

LIST_FILE = "list.txt"
FORMATS = {"avi": ".avi", "mp4": ".mp4"}


def _transcode(task):
    """Worker: (src, dst, short_side) -> number of frames written."""
    src, dst, short_side = task
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    return video_decode.transcode(src, dst, short_side)[0]


def _relative(path, root):
    try:
        return Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:  # a video outside ROOT (a list naming absolute paths): its class/name
        return Path(Path(path).parent.name) / Path(path).name


def remove_stale(out):
    """Delete ``OUT.tmp-PID`` folders of killed runs (PID no longer alive); returns them."""
    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    prefix = out.name + ".tmp-"
    for entry in os.listdir(out.parent):
        pid = entry[len(prefix) :].removesuffix("-old")
        if entry.startswith(prefix) and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(out.parent / entry, ignore_errors=True)
            removed.append(str(out.parent / entry))
    return removed


def pack_videos(
    root,
    out,
    short_side=256,
    video_format="mp4",
    num_workers=None,
    dataset="folder",
    list_file=None,
    split=1,
    subset="train",
    classes=None,
    force=False,
    progress=True,
    timeout=3600.0,
):
    """Re-encode the videos of ``root`` (layout ``dataset``, see :func:`read_video_set`) into
    ``out`` (module docstring).  Returns a summary dict: ``videos`` (written), ``frames``,
    ``skipped`` (list of (path, reason)), ``classes``, ``counts``, ``removed_stale``, ``list``,
    ``classes_json``, ``out``.  Raises DataError for bad input, an existing ``out`` without
    ``force`` or when no video could be packed, and :class:`~a2gluon.signals.Terminated` on
    SIGTERM / SIGINT (temporary folder removed, workers ended)."""
    if short_side is not None and short_side < 1:
        raise DataError(f"--short-side must be a positive number of pixels, got {short_side}")
    if video_format not in FORMATS:
        raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {video_format!r}")
    if num_workers is not None and num_workers < 0:
        raise DataError(
            f"--num-workers must be 0 or more (0 or 1 encodes in this process), got {num_workers}"
        )
    out = Path(out)
    if out.exists() and not force:
        raise DataError(f"{out} exists; use --force to replace it")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; remove it or choose another OUT")
    video_set = read_video_set(root, list_file, dataset, classes=classes, split=split, subset=subset)
    if out.resolve() == Path(root).resolve() or Path(root).resolve() in out.resolve().parents:
        raise DataError(f"{out} is inside {root}; write the packed videos elsewhere")
    suffix = FORMATS[video_format]
    num_workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    out.parent.mkdir(parents=True, exist_ok=True)
    removed_stale = remove_stale(out)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    rels = [_relative(path, root).with_suffix(suffix) for path, _ in video_set.items]
    seen = set()
    skipped = [(f"{m}", "listed but not on disk") for m in video_set.missing]
    entries, counts, frames_total = [], [0] * len(video_set.classes), 0
    pool = WorkerPool(num_workers if num_workers > 1 else 0, timeout)
    bar = None
    committed = False
    try:
        with stop_on_signals():
            tmp.mkdir()
            tasks = []
            for (path, _), rel in zip(video_set.items, rels):
                if rel in seen:  # the same name with two suffixes: keep the first
                    tasks.append(None)
                    continue
                seen.add(rel)
                tasks.append(("call", path, None, (_transcode, (path, str(tmp / rel), short_side))))
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(tasks), unit="video", desc=f"packing {out.name}", dynamic_ncols=True)
            results = pool.map(t for t in tasks if t is not None)
            for index, task in enumerate(tasks):
                path, label = video_set.items[index]
                if task is None:
                    skipped.append(
                        (
                            printable_name(str(_relative(path, root))),
                            f"another video is also packed as {rels[index]}",
                        )
                    )
                else:
                    status, result = next(results)
                    if status == "ok":
                        entries.append((rels[index].as_posix(), result, label))
                        counts[label] += 1
                        frames_total += result
                    else:
                        reason = result[len(path) + 2 :] if result.startswith(f"{path}: ") else result
                        skipped.append((printable_name(str(_relative(path, root))), reason))
                        with contextlib.suppress(FileNotFoundError):
                            (tmp / rels[index]).unlink()
                if bar is not None:
                    bar.update(1)
            if not entries:
                raise DataError(f"{root}: none of the {len(video_set.items)} videos could be packed")
            write_video_list(tmp / LIST_FILE, entries)
            write_video_classes(
                tmp / CLASSES_FILE,
                video_set.classes,
                counts=counts,
                num_videos=len(entries),
                num_frames=frames_total,
                skipped=[path for path, _ in skipped],
                root=str(Path(root).resolve()),
                dataset=dataset,
                short_side=short_side,
                format=video_format,
            )
            with signals_held():  # the old OUT is replaced only by a complete new one
                old = None
                if out.exists():
                    old = out.with_name(f"{out.name}.tmp-{os.getpid()}-old")
                    os.replace(out, old)
                os.replace(tmp, out)
                committed = True
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
    except Terminated as stop:
        stop.outputs_written = committed
        raise
    finally:
        if bar is not None:
            bar.close()
        pool.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "videos": len(entries),
        "frames": frames_total,
        "skipped": skipped,
        "classes": video_set.classes,
        "counts": counts,
        "removed_stale": removed_stale,
        "list": str(out / LIST_FILE),
        "classes_json": str(out / CLASSES_FILE),
        "out": str(out),
    }
