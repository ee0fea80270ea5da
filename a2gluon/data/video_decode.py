"""The one home of video decoding and encoding: PyAV (FFmpeg's maintained binding), chosen by measurement.

Why PyAV and not decord (measured with ``python benchmarks/video_decode.py``, table in
``benchmarks/results/video_decode.md``: training clips of 16 frames 2 apart at a random start,
one decoder thread, fresh processes, 3 per cell):

- exact frames: both returned exactly the requested indices in all 150 requests per file
  (frames that spell their own index; MPEG-4 part 2 ``.avi``, H.264 ``.mp4`` / ``.mkv`` with
  B-frames, VP8 ``.webm``), PyAV through this module's seek-then-number-by-timestamp;
- speed, clips per CPU-second, PyAV / decord: 104 / 61 (320x240x300 ``.avi``), 21 / 17
  (``.mp4``), 21 / 17 (``.mkv``), 27 / 22 (``.webm``), 385 / 220 and 192 / 189 (the 96x72 motion
  set, ``.avi`` / ``.mp4``): PyAV as fast or faster on every file;
- memory: decord's readers grew the peak RSS by up to 15 MiB, PyAV's by under 1 MiB;
- ``import decord`` before ``import mxnet`` aborts the process (SIGABRT, "random_device could
  not be read"), a trap for any module that imports it; decord 0.6.0 (2021) has had no release
  since and cannot encode, while PyAV is maintained and also encodes (the motion test set,
  ``a2gluon pack-video``), so one library does both.

Everything else in a2gluon decodes through :func:`probe`, :func:`read_frames` and
:func:`iter_frames` and encodes through :class:`VideoWriter` / :func:`write_video`, so a change
of library is a change of this file.  Frames are RGB ``uint8`` arrays ``H x W x 3``.
"""

import os
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np

from .layout import DataError
from .pipeline import shorter_side_shape

LIBRARY = f"PyAV {av.__version__}"
# Encoders by suffix: MPEG-4 part 2 in .avi (what UCF-101 ships, Xvid), H.264 in .mp4 / .mkv
# (what Kinetics downloads are), VP8 in .webm.
CODECS = {".avi": "mpeg4", ".mp4": "libx264", ".mkv": "libx264", ".webm": "libvpx"}


class VideoInfo(NamedTuple):
    num_frames: int
    fps: float
    height: int
    width: int


def _open(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such video file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (0 bytes); remove or replace it")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable video ({_reason(err)}); remove or replace it") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream; remove or replace it")
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1  # parallelism comes from worker processes
    return container, stream


def _reason(err):
    """FFmpeg's reason without its error number and file name ("Invalid data found when
    processing input")."""
    text = getattr(err, "strerror", None) or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    return text.replace(os.linesep, " ")


def probe(path):
    """:class:`VideoInfo` of the first video stream.  The frame count comes from the container
    when it records one (``.avi``, ``.mp4``), else from counting packets (``.mkv``, ``.webm``:
    one packet per frame), without decoding.  Raises DataError for a missing, empty or unreadable
    file."""
    container, stream = _open(path)
    try:
        num_frames = stream.frames
        if not num_frames:
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate
        ctx = stream.codec_context
        return VideoInfo(int(num_frames), float(rate) if rate else 0.0, ctx.height, ctx.width)
    except av.FFmpegError as err:
        raise DataError(f"{path}: cannot read its packets ({_reason(err)}); remove or replace it") from None
    finally:
        container.close()


def _to_array(frame, short_side):
    if short_side:
        height, width = shorter_side_shape(frame.height, frame.width, short_side)
        return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
    return frame.to_ndarray(format="rgb24")


def _frame_index(frame, start, time_base, rate):
    return round((frame.pts - start) * time_base * rate)


def _decode_wanted(container, stream, wanted, short_side, seek):
    """{index: array} of the wanted indices, numbering frames by timestamp after a seek to the key
    frame before the first one (seek=True), else by counting from the first frame."""
    got = {}
    last = max(wanted)
    rate = stream.average_rate or stream.guessed_rate
    start = stream.start_time or 0
    time_base = stream.time_base
    if seek:
        first = min(wanted)
        container.seek(start + int(first / (rate * time_base)), stream=stream, backward=True, any_frame=False)
    count = 0
    frame = None
    for frame in container.decode(stream):
        if seek:
            if frame.pts is None:
                return None
            index = _frame_index(frame, start, time_base, rate)
            if not got and index > min(wanted):  # the seek overshot: number by counting instead
                return None
        else:
            index = count
            count += 1
        if index in wanted and index not in got:
            got[index] = _to_array(frame, short_side)
        if index >= last:
            break
    else:  # the video ended before the last wanted index: remember its last frame
        if frame is not None and not seek:
            got[-1] = _to_array(frame, short_side)
    return got


def read_frames(path, indices, short_side=None):
    """The frames at ``indices`` (0-based, any order, repeats allowed) of the video at ``path`` as
    one ``uint8`` array ``len(indices) x H x W x 3`` (RGB), exactly those frames.

    Seeks to the key frame before the first wanted index when it is not near the start and numbers
    the decoded frames by their timestamps (constant frame rate, as the test videos and every
    dataset here); when the timestamps cannot say (missing, or the seek landed past the frame), it
    decodes from the start and counts.  ``short_side`` resizes while converting (bilinear, the
    shorter side to that size, as :func:`~a2gluon.data.pipeline.shorter_side_shape`).  An index at
    or past the end of a video whose header promised more frames than it holds gets the last
    frame.  Raises DataError (one line) for a missing, empty or undecodable file or one that
    decodes to no frame.
    """
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("read_frames needs at least one frame index")
    if min(indices) < 0:
        raise ValueError(f"frame indices must be 0 or more, got {min(indices)}")
    wanted = set(indices)
    got = None
    container, stream = _open(path)
    try:
        try:
            if min(wanted) >= 8 and stream.average_rate:
                got = _decode_wanted(container, stream, wanted, short_side, seek=True)
            if got is None or len(got) < len(wanted):
                container.close()
                container, stream = _open(path)
                got = _decode_wanted(container, stream, wanted, short_side, seek=False)
        except (av.FFmpegError, ValueError) as err:
            raise DataError(f"{path}: cannot decode ({_reason(err)}); remove or replace it") from None
    finally:
        container.close()
    last = got.pop(-1, None)
    if not got and last is None:
        raise DataError(f"{path}: no frame decodes; remove or replace it")
    if len(got) < len(wanted):  # past the real end: the last frame
        got.update({i: last for i in wanted if i not in got})
    return np.stack([got[i] for i in indices])


def iter_frames(path, short_side=None):
    """Every frame of the video in order (RGB uint8 arrays), resized as in :func:`read_frames`.
    Raises DataError when the file cannot be opened or a packet cannot be decoded."""
    container, stream = _open(path)
    try:
        for frame in container.decode(stream):
            yield _to_array(frame, short_side)
    except (av.FFmpegError, ValueError) as err:
        raise DataError(f"{path}: cannot decode ({_reason(err)}); remove or replace it") from None
    finally:
        container.close()


class VideoWriter:
    """Encode RGB frames into ``path``; the codec follows the suffix (:data:`CODECS`).

    ``quality``: MPEG-4 part 2 ``qscale`` (2 best .. 31) or H.264 / VP8 ``crf``; None = a good
    default.  Odd frame sizes are fine for MPEG-4 part 2; H.264 and VP8 need even sizes (the
    caller's job, :func:`even_shape`).  Use as a context manager; frames are added with
    :meth:`write`.
    """

    def __init__(self, path, width, height, fps=25, quality=None):
        self.path = os.fspath(path)
        suffix = os.path.splitext(self.path)[1].lower()
        if suffix not in CODECS:
            # a temporary name such as OUT.mp4.tmp-123: the suffix before it
            suffix = next((s for s in CODECS if self.path.lower().split(".tmp-")[0].endswith(s)), None)
        if suffix is None:
            raise DataError(f"{self.path}: cannot tell the codec; use one of {', '.join(CODECS)}")
        codec = CODECS[suffix]
        fmt = {".avi": "avi", ".mp4": "mp4", ".mkv": "matroska", ".webm": "webm"}[suffix]
        self._container = av.open(self.path, "w", format=fmt)
        rate = fps if isinstance(fps, Fraction) else Fraction(fps or 25).limit_denominator(1001)
        stream = self._container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "mpeg4":
            # ffmpeg's -q:v: a fixed quantiser (global_quality = q * FF_QP2LAMBDA)
            stream.options = {"flags": "+qscale", "global_quality": str((quality or 3) * 118)}
            stream.codec_tag = "XVID"  # as UCF-101's files
        elif codec == "libx264":
            stream.options = {"crf": str(quality or 20), "preset": "fast"}
        else:
            stream.options = {"crf": str(quality or 10), "b": "1M", "deadline": "realtime", "cpu-used": "8"}
        self._stream = stream
        self.frames = 0

    def write(self, frame):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self):
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def even_shape(height, width):
    """(height, width) rounded down to even numbers, as H.264 and VP8 in 4:2:0 need."""
    return max(2, height - height % 2), max(2, width - width % 2)


def write_video(path, frames, fps=25, quality=None):
    """Encode ``frames`` (T x H x W x 3 uint8 RGB, or a sequence of such frames) into ``path``."""
    frames = list(frames)
    if not frames:
        raise ValueError("write_video needs at least one frame")
    height, width = frames[0].shape[:2]
    with VideoWriter(path, width, height, fps=fps, quality=quality) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def transcode(src, dst, short_side=None, quality=None):
    """Re-encode the video ``src`` into ``dst`` (codec by suffix, :data:`CODECS`) with its shorter
    side resized to ``short_side`` (None keeps the size; sides rounded down to even numbers, as
    4:2:0 needs), keeping the frame rate.  Returns (frames written, width, height).  Raises
    DataError (one line) when ``src`` cannot be decoded or has no frame; ``dst`` may then be
    partly written (the caller writes to a temporary name)."""
    container, stream = _open(src)
    rate = stream.average_rate or stream.guessed_rate or 25
    writer = None
    try:
        for frame in container.decode(stream):
            if writer is None:
                height, width = frame.height, frame.width
                if short_side:
                    height, width = shorter_side_shape(height, width, short_side)
                height, width = even_shape(height, width)
                writer = VideoWriter(dst, width, height, fps=Fraction(rate), quality=quality)
            writer.write(
                frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
            )
    except (av.FFmpegError, ValueError) as err:
        raise DataError(f"{src}: cannot decode ({_reason(err)}); remove or replace it") from None
    finally:
        container.close()
        if writer is not None:
            writer.close()
    if writer is None or writer.frames == 0:
        raise DataError(f"{src}: the video has no frames; remove or replace it")
    return writer.frames, width, height
