"""Deep check of im2rec records: decode every image with MXNet's own decoder, as the pipelines do.

Why it is needed.  ``mx.io.ImageRecordIter`` decodes with the OpenCV 3.4.2 built into libmxnet
(``cv::imdecode(buf, 1)``; this wheel has no TurboJPEG path).  An image it cannot decode comes
out as an empty picture, and then

* the evaluation pipeline (:func:`~a2gluon.data.val_iter`: shorter side resized) computes
  ``resize * rows / cols`` with ``cols == 0`` (``image_aug_default.cc``) and the process dies
  of SIGFPE: exit code 136, not a word of output, nothing Python can catch;
* the training pipeline (:func:`~a2gluon.data.train_iter`: random resized crop) stops with an
  MXNetError from OpenCV's ``resize`` (``!ssize.empty()``), which names no record.

Both were reproduced on a packed folder with one record's JPEG bytes damaged in place (frame
header height or width zeroed, component count zeroed, start-of-image marker zeroed, all
bytes after the header scrambled or zeroed): every one of them gave SIGFPE in ``val_iter`` and
the MXNetError in ``train_iter``.  :func:`~a2gluon.data.check_records` reads only headers and
cannot see it.

How.  :func:`verify_records` sends chunks of records to worker processes (a forkserver pool,
as the packer's).  A worker copies the chunk's image bytes into a temporary record file and
reads it with an ``ImageRecordIter`` (no resize, 1 x 1 centre crop): the very decoder of the
pipelines, so its verdict is theirs (it agreed with the real pipeline on 400 of 400 randomly
damaged images).  A chunk that fails is halved until the failing records are found.  Neither
Python's ``cv2`` (another OpenCV build: it rejected 44 of those 400 that MXNet reads fine) nor
``mx.image.imdecode`` (for a JPEG whose frame header parses, it decodes into a preallocated
array and reports success even when libjpeg gave up) would do.  A worker that dies on a record
(a fatal signal in native code) does not stop the check: the chunks in flight are checked
again in fresh processes, one record at a time where needed, and the record that kills its
process is reported as having crashed the decoder.

The result is cached beside the index as ``IDX.verified.json``, keyed by the sizes and
modification times (ns) of the ``.rec`` and the ``.idx``, so the check runs once per file;
:func:`known_bad_records` reads a fresh cache without decoding anything.  Bad records are
removed by re-packing (the packer skips images that do not decode) or by
:func:`write_clean_records`, which copies every other record into a new ``.rec`` / ``.idx``.
An index that merely leaves the bad records out does not help: MXNet reads each indexed
record as the bytes up to the next indexed offset, so the left-out record is read (and
crashes the decoder) all the same.

Command line: ``a2gluon check-records REC --deep``.
"""

import concurrent.futures
import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import tempfile
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import mxnet as mx
import numpy as np

from ..signals import signals_held, stop_on_signals
from .layout import DataError
from .pack import pool_context
from .pipeline import _require_files, check_records, read_index

__all__ = [
    "BadRecord",
    "VerifyResult",
    "cache_path",
    "clean_outputs",
    "crash_signal_name",
    "describe_crash",
    "known_bad_records",
    "refuse_known_bad_records",
    "verify_records",
    "write_clean_records",
]

CHECK_COMMAND = "a2gluon check-records"
CACHE_SUFFIX = ".verified.json"
CACHE_FORMAT = "a2gluon.verified"
CACHE_VERSION = 1  # bump when the check changes, so that older verdicts are not trusted
# Test hook, honoured only inside the checking workers: comma-separated record keys on which a
# worker kills itself with SIGFPE, as the decoder does on a damaged image in val_iter.  Read in
# the calling process and handed to the workers with each chunk.
CRASH_KEYS_ENV = "A2GLUON_VERIFY_CRASH_KEYS"
CHUNK = 256  # records per task: one ImageRecordIter (about 0.06 s to set up) per chunk
MAX_SHOWN = 20
FATAL_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGFPE", "SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT")
    if hasattr(signal, name)
)

# Every message about damaged records lives here.
UNDECODABLE = (
    "MXNet's image decoder cannot decode it "
    "(val_iter would die of SIGFPE, train_iter stop with an MXNetError)"
)
EMPTY_IMAGE = "the record holds no image bytes"
CRASHED = "crashed the decoder ({how})"
ADVICE = (
    "re-pack the images (a2gluon pack skips images that do not decode), or copy the other "
    "records: {command} {rec} --deep --write-clean NEW_PREFIX"
)


class BadRecord(NamedTuple):
    """One record the pipelines cannot read: its index key, byte offset in the ``.rec`` and why."""

    key: int
    offset: int
    reason: str


@dataclass
class VerifyResult:
    """What :func:`verify_records` found: ``bad`` lists :class:`BadRecord` in file order."""

    rec: str
    idx: str
    num_records: int
    bad: list
    seconds: float  # decoding time of the run that produced the result
    cached: bool = False  # read from IDX.verified.json instead of decoding
    cache_path: str = None  # where the result is cached (None: not written)
    cache_error: str = field(default=None, repr=False)  # why the cache could not be written
    checked_at: str = field(default=None, repr=False)  # local time of the decoding run

    @property
    def ok(self):
        return not self.bad

    @property
    def bad_keys(self):
        return [b.key for b in self.bad]

    def report(self, limit=MAX_SHOWN):
        """The result for people: a summary line, the first ``limit`` bad records, what to do."""
        when = f"cached result of {self.checked_at}" if self.cached else f"{self.seconds:.1f} s"
        if self.ok:
            return f"{self.rec}: all {self.num_records} records decode ({when})"
        lines = [
            f"{self.rec}: {len(self.bad)} of {self.num_records} records cannot be read by MXNet's "
            f"image pipeline ({when}):"
        ]
        paths = _lst_paths(self.rec, {b.key for b in self.bad[:limit]})
        for bad in self.bad[:limit]:
            where = f", {paths[bad.key]}" if bad.key in paths else ""
            lines.append(f"  key {bad.key} (byte {bad.offset}{where}): {bad.reason}")
        if len(self.bad) > limit:
            lines.append(
                f"  ... and {len(self.bad) - limit} more (all keys in {self.cache_path or 'the result'})"
            )
        lines.append("what to do: " + ADVICE.format(command=CHECK_COMMAND, rec=shlex.quote(self.rec)))
        return "\n".join(lines)


def bad_records_message(result):
    """One line saying that ``result.rec`` has bad records, which, and what to do."""
    keys = ", ".join(str(k) for k in result.bad_keys[:5]) + (", ..." if len(result.bad) > 5 else "")
    return (
        f"{result.rec}: {len(result.bad)} of {result.num_records} images cannot be decoded by MXNet "
        f"(keys {keys}; deep check of {result.checked_at}); "
        + ADVICE.format(command=CHECK_COMMAND, rec=shlex.quote(result.rec))
    )


def crash_signal_name(returncode):
    """``'SIGFPE'`` etc. when ``returncode`` says a process died of a fatal signal, else ``None``.

    Takes a ``subprocess`` return code (``-8``) or a shell exit status (``136`` = 128 + 8).
    """
    if returncode is None:
        return None
    signum = -returncode if returncode < 0 else returncode - 128
    if signum in FATAL_SIGNALS:
        return signal.Signals(signum).name
    return None


def describe_crash(paths, returncode=None):
    """The line to print when a process reading the records ``paths`` died of a fatal signal.

    ``paths``: one ``.rec`` path or several; ``returncode``: the dead process's return code or
    exit status, to name the signal (default: "SIGFPE/SIGSEGV").
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    name = crash_signal_name(returncode) or "SIGFPE/SIGSEGV"
    runs = " and ".join(f"`{CHECK_COMMAND} {shlex.quote(p)} --deep`" for p in paths)
    return (
        f"the process was killed by {name} inside MXNet's image decoder while reading "
        f"{' or '.join(paths)}: a damaged image; run {runs}"
    )


def cache_path(idx):
    """Where the deep-check result of ``idx`` is cached: ``IDX.verified.json``."""
    return Path(os.fspath(idx) + CACHE_SUFFIX)


def _stamp(rec, idx):
    """What the cache is keyed by: name, size and mtime (ns) of both files."""
    out = {}
    for what, path in (("rec", rec), ("idx", idx)):
        st = os.stat(path)
        out[what] = {"name": os.path.basename(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def _read_cache(rec, idx):
    """The cached :class:`VerifyResult` when ``IDX.verified.json`` is fresh, else ``None``."""
    path = cache_path(idx)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
            return None
        if meta.get("files") != _stamp(rec, idx):
            return None
        bad = [BadRecord(int(k), int(o), str(r)) for k, o, r in meta["bad"]]
        return VerifyResult(
            rec=rec,
            idx=idx,
            num_records=int(meta["num_records"]),
            bad=bad,
            seconds=float(meta["seconds"]),
            cached=True,
            cache_path=str(path),
            checked_at=meta.get("checked_at"),
        )
    except (OSError, ValueError, KeyError, TypeError):  # missing, unreadable or foreign: not fresh
        return None


def _write_cache(result, stamp):
    path = cache_path(result.idx)
    meta = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "files": stamp,
        "num_records": result.num_records,
        "bad": [list(b) for b in result.bad],
        "seconds": round(result.seconds, 3),
        "checked_at": result.checked_at,
    }
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:  # e.g. a read-only dataset folder: the result stands, uncached
        tmp.unlink(missing_ok=True)
        return None, f"{err.strerror or err}: {path}"
    return str(path), None


def known_bad_records(rec, idx):
    """The cached deep-check result of ``rec`` / ``idx`` when it is fresh, else ``None``.

    Decodes nothing: a trainer or evaluator can call it before any work and refuse records
    that are known to be bad (``result.bad``); see :func:`refuse_known_bad_records`.
    """
    rec, idx = os.fspath(rec), os.fspath(idx)
    if not (os.path.isfile(rec) and os.path.isfile(idx)):
        return None
    return _read_cache(rec, idx)


def refuse_known_bad_records(rec, idx):
    """Raise :class:`DataError` (one line, with what to do) when a fresh deep check found bad
    records in ``rec``; return the cached result (or ``None`` when there is none)."""
    result = known_bad_records(rec, idx)
    if result is not None and result.bad:
        raise DataError(bad_records_message(result))
    return result


def _crash_keys():
    text = os.environ.get(CRASH_KEYS_ENV, "").strip()
    return frozenset(int(k) for k in text.split(",") if k.strip()) if text else frozenset()


def _worker_init():
    """Checking workers: no Ctrl-C (the parent ends them), libjpeg/libpng chatter silenced."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _read_images(rec, items):
    """([(key, offset, image bytes)], [BadRecord]) of the records at ``items`` = [(key, offset)]."""
    images, bad = [], []
    reader = mx.recordio.MXRecordIO(rec, "r")
    try:
        for key, offset in items:
            # what MXIndexedRecordIO.seek does, without loading the whole index in every worker
            mx.base.check_call(mx.base._LIB.MXRecordIOReaderSeek(reader.handle, ctypes.c_size_t(offset)))
            payload = reader.read()
            try:
                _, img = mx.recordio.unpack(payload)
            except (TypeError, ValueError, IndexError) as err:  # a header the pipelines cannot parse
                bad.append(BadRecord(key, offset, f"unreadable record ({type(err).__name__}: {err})"))
                continue
            if len(img) == 0:
                bad.append(BadRecord(key, offset, EMPTY_IMAGE))
            else:
                images.append((key, offset, img))
    finally:
        reader.close()
    return images, bad


def _decode_error(images, tmpdir, crash_keys):
    """The last line of the error ``ImageRecordIter`` raises on these images, or ``None``."""
    if crash_keys and not crash_keys.isdisjoint(key for key, _, _ in images):
        os.kill(os.getpid(), signal.SIGFPE)  # the CRASH_KEYS_ENV test hook
    path = os.path.join(tmpdir, f"{os.getpid()}.rec")
    writer = mx.recordio.MXRecordIO(path, "w")
    try:
        for i, (_, _, img) in enumerate(images):
            writer.write(mx.recordio.pack(mx.recordio.IRHeader(0, 0.0, i, 0), img))
        writer.close()
        it = mx.io.ImageRecordIter(
            path_imgrec=path,
            data_shape=(3, 1, 1),  # any decoded image has a 1 x 1 centre; no resize: no SIGFPE
            batch_size=min(len(images), 32),
            preprocess_threads=1,
            shuffle=False,
            round_batch=False,
            verbose=False,
        )
        seen = sum(batch.data[0].shape[0] - batch.pad for batch in it)
        del it
        if seen != len(images):
            return f"the record iterator returned {seen} of {len(images)} images"
        return None
    except mx.base.MXNetError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        return lines[-1] if lines else "MXNetError"
    finally:
        writer.close()  # a no-op when closed above
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _reason(error):
    if "!ssize.empty()" in error:
        return UNDECODABLE
    if "!buf.empty()" in error:
        return EMPTY_IMAGE
    return f"MXNet's image pipeline fails on it: {error}"


def _undecodable(images, tmpdir, crash_keys):
    """BadRecords among ``images``: decode them together, halve the set while that fails."""
    if not images:
        return []
    error = _decode_error(images, tmpdir, crash_keys)
    if error is None:
        return []
    if len(images) == 1:
        key, offset, _ = images[0]
        return [BadRecord(key, offset, _reason(error))]
    half = len(images) // 2
    return _undecodable(images[:half], tmpdir, crash_keys) + _undecodable(images[half:], tmpdir, crash_keys)


def _check_chunk(rec, items, tmpdir, crash_keys=frozenset()):
    """Worker task: the BadRecords among ``items`` = [(key, offset)] of ``rec``."""
    images, bad = _read_images(rec, items)
    return bad + _undecodable(images, tmpdir, crash_keys)


def _check_groups(rec, groups, tmpdir, crash_keys, conn):
    """Fresh-process target: check each group of items, send its BadRecords as soon as done."""
    _worker_init()
    for items in groups:
        conn.send(_check_chunk(rec, items, tmpdir, crash_keys))
    conn.close()


def _how(exitcode):
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"its process exited with code {exitcode}"


def _isolate(ctx, rec, items, tmpdir, crash_keys):
    """Check a chunk whose worker died, in fresh processes.

    First the whole chunk in one process; if that dies too, one record at a time, resuming
    after each record that kills its process (which is reported as crashing the decoder).
    """
    bad = []
    groups = [items]
    while groups:
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_check_groups, args=(rec, groups, tmpdir, crash_keys, sender), daemon=True)
        proc.start()
        sender.close()
        done = 0
        try:
            while done < len(groups):
                bad.extend(receiver.recv())
                done += 1
        except EOFError:  # the process died
            pass
        finally:
            receiver.close()
            if done == len(groups):
                proc.join()
            else:
                proc.join(timeout=60)
                if proc.is_alive():  # neither finished nor dead: end it, count the record as crashing
                    proc.kill()
                    proc.join()
        if done == len(groups):
            break
        if len(groups) == 1 and len(groups[0]) > 1:  # the whole chunk crashed: one record at a time
            groups = [[item] for item in groups[0]]
            continue
        key, offset = groups[done][0]
        bad.append(BadRecord(key, offset, CRASHED.format(how=_how(proc.exitcode))))
        groups = groups[done + 1 :]
    return bad


def _end_pool(executor, kill):
    if kill:  # interrupted: do not wait for chunks in flight
        for proc in list((getattr(executor, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


def _check_all(rec, items, num_workers, bar):
    """BadRecords of all ``items``, checked in chunks by a pool of ``num_workers`` processes."""
    ctx = pool_context()
    crash_keys = _crash_keys()
    size = max(1, min(CHUNK, -(-len(items) // num_workers)))
    pending = [items[i : i + size] for i in range(0, len(items), size)][::-1]  # pop() from the end
    bad = []
    tmpdir = tempfile.mkdtemp(prefix="a2gluon-verify-")
    executor = None
    finished = False
    try:
        while pending:
            executor = concurrent.futures.ProcessPoolExecutor(
                num_workers, mp_context=ctx, initializer=_worker_init
            )
            running = {}
            crashed = []
            while (pending or running) and not crashed:
                while pending and len(running) < 2 * num_workers:
                    chunk = pending.pop()
                    with signals_held():  # may start a worker: not half-way
                        running[executor.submit(_check_chunk, rec, chunk, tmpdir, crash_keys)] = chunk
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    chunk = running.pop(future)
                    try:
                        bad.extend(future.result())
                        bar.update(len(chunk))
                    except BrokenProcessPool:
                        crashed.append(chunk)
            crashed.extend(running.values())  # in flight when a worker died: suspects too
            _end_pool(executor, kill=bool(crashed))
            executor = None
            for chunk in crashed:
                bad.extend(_isolate(ctx, rec, chunk, tmpdir, crash_keys))
                bar.update(len(chunk))
        finished = True
    finally:
        if executor is not None:
            _end_pool(executor, kill=not finished)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return sorted(bad, key=lambda b: b.offset)


def verify_records(rec, idx, num_workers=None, progress=True, cache=True):
    """Decode every record of ``rec`` / ``idx`` as MXNet's image pipelines do; a :class:`VerifyResult`.

    First the header check of :func:`~a2gluon.data.check_records` (raises :class:`DataError`
    for a broken pair).  Then every image is decoded by ``num_workers`` processes (default:
    all cores), with a progress bar (records/s, ETA) unless ``progress=False``.  A record is
    bad when MXNet's decoder cannot decode it, when its header cannot be parsed, or when it
    kills the decoding process.  ``cache=True`` returns the result stored in
    ``IDX.verified.json`` when that is fresh (same sizes and modification times of both
    files) and stores a new result there otherwise; ``cache=False`` neither reads nor writes
    it.  A ``Terminated`` (SIGTERM) or Ctrl-C ends the workers and removes temporary files.
    """
    rec, idx = os.fspath(rec), os.fspath(idx)
    _require_files(rec, idx)
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    if num_workers < 1:
        raise DataError(f"--num-workers must be 1 or more (decoding processes), got {num_workers}")
    if cache:
        hit = _read_cache(rec, idx)
        if hit is not None:
            return hit
    stamp = _stamp(rec, idx)
    check_records(rec, idx)
    keys, offsets = read_index(idx)
    order = np.argsort(offsets, kind="stable")
    items = [(int(keys[i]), int(offsets[i])) for i in order]
    num_workers = min(num_workers, len(items))
    from tqdm import tqdm

    start = time.perf_counter()
    checked_at = time.strftime("%Y-%m-%d %H:%M:%S")
    with (
        stop_on_signals(),
        tqdm(
            total=len(items), unit="rec", desc=f"decoding {os.path.basename(rec)}", disable=not progress
        ) as bar,
    ):
        bad = _check_all(rec, items, num_workers, bar)
    result = VerifyResult(
        rec=rec,
        idx=idx,
        num_records=len(items),
        bad=bad,
        seconds=time.perf_counter() - start,
        checked_at=checked_at,
    )
    if cache:
        if _stamp(rec, idx) == stamp:  # unchanged while decoding
            result.cache_path, result.cache_error = _write_cache(result, stamp)
        else:
            result.cache_error = f"{rec} or {idx} changed during the check; not cached"
    return result


def _lst_paths(rec, keys):
    """{key: image path} from the ``.lst`` beside ``rec`` (written by the packer), for ``keys``."""
    lst = Path(rec[: -len(".rec")] + ".lst") if rec.endswith(".rec") else None
    found = {}
    if not keys or lst is None or not lst.is_file():
        return found
    try:
        with open(lst, encoding="utf-8", errors="backslashreplace") as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 3 and fields[0].isdigit() and int(fields[0]) in keys:
                    found[int(fields[0])] = fields[-1]
    except OSError:
        return {}
    return found


def clean_outputs(out_prefix, inputs=(), force=False):
    """The output paths of :func:`write_clean_records` for ``out_prefix``, after checking them.

    Raises :class:`DataError` when one exists (unless ``force``) or is one of ``inputs``.
    """
    outputs = {s: Path(str(out_prefix) + s) for s in (".rec", ".idx", ".lst", ".classes.json")}
    for path in outputs.values():
        if path.exists() and any(os.path.samefile(path, source) for source in inputs):
            raise DataError(f"{path} is an input; give --write-clean another prefix")
        if path.exists() and not force:
            raise DataError(f"{path} exists; use --force to overwrite it")
    return outputs


def write_clean_records(rec, idx, bad_keys, out_prefix, force=False, progress=True):
    """Copy ``rec`` / ``idx`` to ``out_prefix``.rec/.idx without the records of ``bad_keys``.

    The other records are copied byte for byte in file order, with their keys (so the ``.lst``
    keeps its meaning); ``out_prefix``.lst and ``.classes.json`` are written from the ones
    beside ``rec`` when those exist (the excluded keys recorded in ``excluded``, the counts
    updated).  All outputs appear together, under temporary names until complete.  Refuses
    existing outputs unless ``force`` and an ``out_prefix`` that would overwrite the input.
    Returns a dict: ``rec``, ``idx``, ``records`` (copied), ``excluded`` (keys), and ``lst`` /
    ``classes_json`` when written.
    """
    rec, idx = os.fspath(rec), os.fspath(idx)
    info = check_records(rec, idx)
    keys, offsets = read_index(idx)
    excluded = sorted({int(k) for k in bad_keys})
    unknown = sorted(set(excluded) - set(keys.tolist()))
    if unknown:
        raise DataError(f"{idx}: no record has key {unknown[0]}; give keys of this index")
    outputs = clean_outputs(out_prefix, (rec, idx), force)
    src_prefix = rec[: -len(".rec")] if rec.endswith(".rec") else None
    src_lst = Path(src_prefix + ".lst") if src_prefix else None
    src_meta = Path(src_prefix + ".classes.json") if src_prefix else None
    drop = np.isin(keys, np.array(excluded, dtype=np.int64))
    order = np.argsort(offsets, kind="stable")
    size = os.path.getsize(rec)
    ends = np.append(offsets[order][1:], size)  # MXNet reads a record up to the next indexed one
    new_offset = np.full(keys.size, -1, dtype=np.int64)
    Path(out_prefix).parent.mkdir(parents=True, exist_ok=True)
    tmp = {s: p.with_name(f"{p.name}.tmp-{os.getpid()}") for s, p in outputs.items()}
    written = []
    from tqdm import tqdm

    try:
        with stop_on_signals():
            with (
                open(rec, "rb") as src,
                open(tmp[".rec"], "wb") as dst,
                tqdm(
                    total=size, unit="B", unit_scale=True, desc="copying records", disable=not progress
                ) as bar,
            ):
                position = 0
                for i, end in zip(order, ends):
                    length = int(end - offsets[i])
                    bar.update(length)
                    if drop[i]:
                        continue
                    src.seek(int(offsets[i]))
                    dst.write(src.read(length))
                    new_offset[i] = position
                    position += length
            with open(tmp[".idx"], "w", encoding="ascii") as out:
                for key, offset in zip(keys, new_offset):
                    if offset >= 0:
                        out.write(f"{key}\t{offset}\n")
            written = [".rec", ".idx"]
            clean = check_records(tmp[".rec"], tmp[".idx"])
            if src_lst is not None and src_lst.is_file():
                gone = {str(k) for k in excluded}
                with (
                    open(src_lst, encoding="utf-8", errors="surrogateescape") as lines,
                    open(tmp[".lst"], "w", encoding="utf-8", errors="surrogateescape") as out,
                ):
                    out.writelines(line for line in lines if line.split("\t", 1)[0] not in gone)
                written.append(".lst")
            if src_meta is not None and src_meta.is_file():
                meta = json.loads(src_meta.read_text(encoding="utf-8"))
                num_classes = len(meta.get("classes", [])) or (clean.label_max + 1)
                meta["counts"] = [clean.label_counts.get(label, 0) for label in range(num_classes)]
                meta["num_images"] = clean.num_images
                meta["excluded"] = {"from": os.path.abspath(rec), "keys": excluded}
                tmp[".classes.json"].write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
                written.append(".classes.json")
            with signals_held():
                for suffix in written:
                    os.replace(tmp[suffix], outputs[suffix])
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    out = {
        "rec": str(outputs[".rec"]),
        "idx": str(outputs[".idx"]),
        "records": info.num_images - int(drop.sum()),
        "excluded": excluded,
    }
    if ".lst" in written:
        out["lst"] = str(outputs[".lst"])
    if ".classes.json" in written:
        out["classes_json"] = str(outputs[".classes.json"])
    return out
