"""Pack an ImageNet-layout folder of images into im2rec-format ``.lst`` / ``.rec`` / ``.idx``.

    python -m a2gluon.data.pack ROOT OUT_PREFIX [--resize 480] [--quality 95]
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
Records are in sorted path order whatever the number of workers.  An unreadable image is skipped
and reported at the end.  Outputs are written under temporary names and renamed when complete;
existing outputs are kept unless ``--force``.
"""

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np

from .layout import DataError, classes_path, read_classes, scan_image_folder, write_classes

OUTPUT_SUFFIXES = (".lst", ".rec", ".idx", ".classes.json")


def resize_shorter(img, size):
    """Resize ``img`` so that its shorter side is ``size`` (im2rec's rounding, bilinear)."""
    height, width = img.shape[:2]
    if height > width:
        new_size = (size, height * size // width)  # cv2 takes (width, height)
    else:
        new_size = (width * size // height, size)
    if new_size == (width, height):
        return img
    return cv2.resize(img, new_size, interpolation=cv2.INTER_LINEAR)


def _encode(task):
    """Worker: (index, path, label, resize, quality, pass_through) -> (index, record, error)."""
    index, path, label, resize, quality, pass_through = task
    try:
        data = np.fromfile(path, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
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


def _make_pool(num_workers):
    """Worker processes that start clean: forked from a fresh forkserver where available.

    A plain fork would copy the caller's OpenCV and MXNet thread pools in whatever state they
    are, and the workers then hang (seen after the caller had resized images with OpenCV).
    As with any spawn/forkserver pool, a script calling ``pack`` with workers must do so under
    ``if __name__ == "__main__":``.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__ if __name__ != "__main__" else "a2gluon.data.pack"])
    else:
        ctx = multiprocessing.get_context("spawn")
    return ctx.Pool(num_workers, initializer=_worker_init)


def _tmp_name(path):
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


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
    ``(relative_path, reason)``), ``ignored`` (non-image files), ``classes``, ``counts`` (images
    per label) and the output paths ``lst``, ``rec``, ``idx``, ``classes_json``.  Raises
    :class:`DataError` for bad input or existing outputs without ``force``.
    """
    if resize < 0:
        raise DataError(f"--resize must be 0 (keep the size) or positive, got {resize}")
    if pass_through and resize:
        raise DataError("--pass-through stores the files unchanged; combine it with --resize 0")
    if not 1 <= quality <= 100:
        raise DataError(f"--quality must be between 1 and 100, got {quality}")
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
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    out_prefix.parent.mkdir(parents=True, exist_ok=True)

    tasks = [
        (index, str(root / rel), label, resize, quality, pass_through)
        for index, (rel, label) in enumerate(items)
    ]
    tmp = {s: _tmp_name(p) for s, p in outputs.items()}
    skipped = []
    counts = [0] * len(class_names)
    written = 0
    bar = None
    pool = None
    try:
        record = mx.recordio.MXIndexedRecordIO(str(tmp[".idx"]), str(tmp[".rec"]), "w")
        with open(tmp[".lst"], "w", encoding="utf-8") as lst:
            if num_workers > 1 and len(tasks) > 1:
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
            raise DataError(f"{root}: none of the {len(items)} images could be decoded")
        write_classes(
            tmp[".classes.json"],
            class_names,
            counts=counts,
            num_images=written,
            skipped=[rel for rel, _ in skipped],
            root=str(root.resolve()),
            resize=resize,
            quality=None if pass_through else quality,
            pass_through=pass_through,
        )
        for suffix in OUTPUT_SUFFIXES:
            os.replace(tmp[suffix], outputs[suffix])
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
        "ignored": ignored,
        "classes": class_names,
        "counts": counts,
        "lst": str(outputs[".lst"]),
        "rec": str(outputs[".rec"]),
        "idx": str(outputs[".idx"]),
        "classes_json": str(outputs[".classes.json"]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m a2gluon.data.pack",
        description="Pack ROOT/<class>/<image> into OUT_PREFIX.lst/.rec/.idx/.classes.json (im2rec format).",
    )
    parser.add_argument("root", help="folder with one sub-folder of images per class")
    parser.add_argument("out_prefix", help="output prefix: writes OUT_PREFIX.rec, .idx, .lst, .classes.json")
    parser.add_argument(
        "--resize", type=int, default=480, help="shorter side in pixels (default 480; 0 keeps the size)"
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1-100 (default 95)")
    parser.add_argument(
        "--num-workers", type=int, default=None, help="decoding processes (default: all cores)"
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="a training set's OUT_PREFIX.classes.json whose labels to reuse (for validation sets)",
    )
    parser.add_argument(
        "--pass-through",
        action="store_true",
        help="store the image files unchanged (with --resize 0), as im2rec's --pass-through",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        summary = pack(
            args.root,
            args.out_prefix,
            resize=args.resize,
            quality=args.quality,
            num_workers=args.num_workers,
            classes=args.classes,
            force=args.force,
            progress=not args.quiet,
            pass_through=args.pass_through,
        )
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable folders, a full disk, ...: no output is left behind
        print(f"error: {err}; no output written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - start
    print(
        f"packed {summary['images']} images of {len(summary['classes'])} classes into "
        f"{summary['rec']} in {elapsed:.1f} s"
    )
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable images:", file=sys.stderr)
        for rel, reason in summary["skipped"]:
            print(f"  {rel}: {reason}", file=sys.stderr)
    if summary["ignored"]:
        shown = ", ".join(summary["ignored"][:5]) + (" ..." if len(summary["ignored"]) > 5 else "")
        print(f"ignored {len(summary['ignored'])} files that are not images: {shown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
