"""Pack an ImageNet-layout folder of images into im2rec-format ``.lst`` / ``.rec`` / ``.idx``.

    a2gluon pack ROOT OUT_PREFIX [--resize 480] [--quality 95]
        [--num-workers N] [--classes CLASSES.json] [--pass-through] [--force] [--quiet]

Writes ``OUT_PREFIX.lst`` (``index<TAB>label<TAB>relative/path``, label printed as im2rec does,
e.g. ``3.000000``), ``OUT_PREFIX.rec`` + ``OUT_PREFIX.idx`` (``mx.recordio.MXIndexedRecordIO``,
one ``mx.recordio.pack_img`` JPEG record per image, header id = index = idx key, so
``mx.io.ImageRecordIter`` and every MXNet tool read them) and ``OUT_PREFIX.classes.json`` (the
label -> class-name list; schema in :mod:`a2gluon.data.layout`).

Labels are the sorted class folder names, or the order of ``--classes FILE`` (a training set's
``.classes.json``, so that a validation set gets the same labels).  Images are decoded with
OpenCV (3-channel BGR, as im2rec), the shorter side resized to ``--resize`` with bilinear
interpolation and im2rec's rounding (0 keeps the size), and re-encoded as JPEG at ``--quality``.
Records are in sorted path order whatever the number of workers.  An unreadable image, and a
file whose name the ``.lst`` cannot hold (not UTF-8, or with a tab or line break), is skipped and
reported at the end; a class folder without images is kept as a class (labels stay the folder
order) and reported.  Outputs are written under temporary names (``OUT.rec.tmp-PID``) and renamed
when complete; SIGTERM or Ctrl-C removes them and ends the workers, and leftovers of a killed
earlier run (whose PID is gone) are removed by the next pack of the same prefix.  Existing
outputs are kept unless ``--force``.
"""

import contextlib
import multiprocessing
import os
import re
import signal
from pathlib import Path

import cv2
import mxnet as mx

from ..signals import Terminated, signals_held, stop_on_signals
from .layout import (
    DataError,
    classes_path,
    name_problem,
    printable_name,
    read_classes,
    scan_image_folder,
    write_classes,
)
from .pipeline import decode_image, shorter_side_shape

OUTPUT_SUFFIXES = (".lst", ".rec", ".idx", ".classes.json")


def resize_shorter(img, size):
    """Resize ``img`` so that its shorter side is ``size`` (im2rec's rounding, bilinear)."""
    height, width = img.shape[:2]
    new_height, new_width = shorter_side_shape(height, width, size)
    if (new_height, new_width) == (height, width):
        return img
    return cv2.resize(img, (new_width, new_height), interpolation=cv2.INTER_LINEAR)


def _encode(task):
    """Worker: (index, path, label, resize, quality, pass_through) -> (index, record, error)."""
    index, path, label, resize, quality, pass_through = task
    try:
        data, img = decode_image(path)
        if img is None:
            return index, None, "not a decodable image"
        header = mx.recordio.IRHeader(0, float(label), index, 0)
        if pass_through:
            return index, mx.recordio.pack(header, data.tobytes()), None
        if resize:
            img = resize_shorter(img, resize)
        return index, mx.recordio.pack_img(header, img, quality=quality, img_fmt=".jpg"), None
    except Exception as err:  # any failure on one image skips that image, never the whole run
        return index, None, f"{type(err).__name__}: {err}"


def _worker_init():
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent ends us


def pool_context():
    """A multiprocessing context whose workers start clean: a fresh forkserver where available.

    A plain fork would copy the caller's OpenCV and MXNet thread pools in whatever state they
    are, and the workers then hang (seen after the caller had resized images with OpenCV).
    As with any spawn/forkserver pool, a script that uses workers must do so under
    ``if __name__ == "__main__":``.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__ if __name__ != "__main__" else "a2gluon.data.pack"])
        return ctx
    return multiprocessing.get_context("spawn")


def _make_pool(num_workers):
    return pool_context().Pool(num_workers, initializer=_worker_init)


def _tmp_name(path):
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):  # not a possible PID
        return False
    return True


def remove_stale_tmp(paths):
    """Delete ``PATH.tmp-PID`` files of ``paths`` left by a killed run (PID no longer alive).

    Returns the removed paths.  Files of a live process (a pack still running) are kept.
    """
    removed = []
    by_folder = {}
    for path in map(Path, paths):
        by_folder.setdefault(path.parent, []).append(path.name)
    for folder, names in by_folder.items():
        if not folder.is_dir():
            continue
        pattern = re.compile("(?:" + "|".join(map(re.escape, names)) + r")\.tmp-(\d+)")
        for entry in os.listdir(folder):
            found = pattern.fullmatch(entry)
            if found and not _pid_alive(int(found.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    (folder / entry).unlink()
                    removed.append(str(folder / entry))
    return removed


def pack(
    root,
    out_prefix,
    resize=480,
    quality=95,
    num_workers=None,
    classes=None,
    force=False,
    progress=True,
    pass_through=False,
):
    """Pack ``root/<class>/<image>`` into ``out_prefix``.{lst,rec,idx,classes.json}.

    ``classes``: a list of class names in label order, or the path of a ``.classes.json`` (or of
    the ``.rec`` / prefix beside it) to reuse.  ``num_workers``: decoding processes (default: all
    cores; 0 or 1 decodes in this process; a script that uses workers must call ``pack`` under
    ``if __name__ == "__main__":``).  ``pass_through=True`` (needs ``resize=0``) stores each
    file's bytes unchanged, after checking that they decode, as im2rec's ``--pass-through``.

    Returns a summary dict: ``images`` (records written), ``skipped`` (list of
    ``(relative_path, reason)``: undecodable images and names the ``.lst`` cannot hold, shown
    with :func:`~a2gluon.data.layout.printable_name`), ``ignored`` (non-image files),
    ``classes``, ``counts`` (images per label), ``empty_classes`` (class folders that gave no
    image), ``removed_stale`` (temporary files of a killed earlier pack, removed) and the
    output paths ``lst``, ``rec``, ``idx``, ``classes_json``.  Raises :class:`DataError` for
    bad input or existing outputs without ``force``, and :class:`Terminated` on SIGTERM or
    SIGINT (temporary files removed, workers ended).
    """
    if resize < 0:
        raise DataError(f"--resize must be 0 (keep the size) or positive, got {resize}")
    if pass_through and resize:
        raise DataError("--pass-through stores the files unchanged; combine it with --resize 0")
    if not 1 <= quality <= 100:
        raise DataError(f"--quality must be between 1 and 100, got {quality}")
    if num_workers is not None and num_workers < 0:
        raise DataError(
            f"--num-workers must be 0 or more (0 or 1 decodes in this process), got {num_workers}"
        )
    root = Path(root)
    out_prefix = Path(out_prefix)
    outputs = {s: Path(str(out_prefix) + s) for s in OUTPUT_SUFFIXES}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not force:
        raise DataError(f"{existing[0]} exists; use --force (force=True) to overwrite it")
    if isinstance(classes, (str, os.PathLike)):
        source = classes
        classes = read_classes(source)
        if classes is None:
            raise DataError(f"{classes_path(source)}: no such classes file")
    class_names, items, ignored = scan_image_folder(root, classes)
    for name in class_names:
        problem = name_problem(name)
        if problem and (root / name).is_dir():
            raise DataError(
                f"{root}: class folder '{printable_name(name)}': {problem}; rename it "
                "(the labels follow the folder names)"
            )
    skipped = []
    usable = []
    for rel, label in items:
        problem = name_problem(rel)
        if problem:
            skipped.append((printable_name(rel), f"{problem}; rename it"))
        else:
            usable.append((rel, label))
    items = usable
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    removed_stale = remove_stale_tmp(outputs.values())

    tasks = [
        (index, str(root / rel), label, resize, quality, pass_through)
        for index, (rel, label) in enumerate(items)
    ]
    tmp = {s: _tmp_name(p) for s, p in outputs.items()}
    counts = [0] * len(class_names)
    written = 0
    committed = False
    bar = None
    pool = None
    try:
        with stop_on_signals():
            record = mx.recordio.MXIndexedRecordIO(str(tmp[".idx"]), str(tmp[".rec"]), "w")
            with open(tmp[".lst"], "w", encoding="utf-8") as lst:
                if num_workers > 1 and len(tasks) > 1:
                    with signals_held():
                        pool = _make_pool(num_workers)
                    results = pool.imap(_encode, tasks, chunksize=8)
                else:
                    results = map(_encode, tasks)
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=len(tasks), unit="img", desc=f"packing {out_prefix.name}")
                for index, payload, error in results:
                    rel, label = items[index]
                    if bar is not None:
                        bar.update(1)
                    if payload is None:
                        skipped.append((rel, error))
                        continue
                    if written != index:  # keys stay 0..N-1 in record order when images are skipped
                        header, img = mx.recordio.unpack(payload)
                        payload = mx.recordio.pack(header._replace(id=written), img)
                    record.write_idx(written, payload)
                    lst.write(f"{written}\t{float(label):f}\t{rel}\n")
                    counts[label] += 1
                    written += 1
            record.close()
            if written == 0:
                raise DataError(f"{root}: none of the {len(items) + len(skipped)} images could be packed")
            skipped.sort()
            empty_classes = [c for c, n in zip(class_names, counts) if n == 0 and (root / c).is_dir()]
            write_classes(
                tmp[".classes.json"],
                class_names,
                counts=counts,
                num_images=written,
                skipped=[rel for rel, _ in skipped],
                empty_classes=empty_classes,
                root=str(root.resolve()),
                resize=resize,
                quality=None if pass_through else quality,
                pass_through=pass_through,
            )
            with signals_held():  # all four outputs or none
                for suffix in OUTPUT_SUFFIXES:
                    os.replace(tmp[suffix], outputs[suffix])
                committed = True
    except Terminated as stop:
        stop.outputs_written = committed
        raise
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        for path in tmp.values():
            if path.exists():
                path.unlink()
    return {
        "images": written,
        "skipped": skipped,
        "ignored": [printable_name(rel) for rel in ignored],
        "classes": class_names,
        "counts": counts,
        "empty_classes": empty_classes,
        "removed_stale": removed_stale,
        "lst": str(outputs[".lst"]),
        "rec": str(outputs[".rec"]),
        "idx": str(outputs[".idx"]),
        "classes_json": str(outputs[".classes.json"]),
    }
