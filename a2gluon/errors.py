"""Turning an exception into the one line a user reads: what went wrong, and the file involved;
and making a fatal signal inside MXNet print something instead of nothing."""

import errno
import faulthandler
import os
import re
import subprocess
import sys

import mxnet as mx

# Lines of a traceback, not of the message: MXNet 1.9.1 puts "Traceback (most recent call
# last):" and its C++ frames ('File "../src/ndarray/ndarray.cc", line 1860') before the message
# line; other builds put "Stack trace:" and "[bt] (0) ..." frames after it.
_TRACEBACK_LINE = re.compile(r'^(Traceback \(most recent call last\):|File "|Stack trace|\[bt\] )')
_ERROR_KIND = re.compile(r"^[A-Za-z_][\w.]*: ")  # "MXNetError: ", "LocalFileSystem.GetPathInfo: "
_LOG_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # "[18:30:03] ../src/io/x.h:89: "
# dmlc's errors about a file: 'LocalFileSystem: Check failed: allow_null: :Open "PATH": REASON'
# and 'LocalFileSystem.GetPathInfo: PATH error: REASON'.
_FILE_ERRORS = (
    re.compile(r'^LocalFileSystem: .*:Open "(?P<path>[^"]*)": (?P<reason>.+)$'),
    re.compile(r"^LocalFileSystem\.GetPathInfo: (?P<path>.+) error: (?P<reason>.+)$"),
)
# "Check failed: COND: MESSAGE" / "Check failed: A == B (x vs. y) : MESSAGE"; MXNet writes C++'s
# "std::fwrite" as "std: :fwrite", hence a separator is a ": " not followed by ":".
_CHECK = re.compile(r"^Check failed: (?P<cond>.*?): (?!:)(?P<message>.+)$")
# What MXNet says when a write fails part-way, which on a local disk means it is full.
_WRITE_INCOMPLETE = "FileStream.Write incomplete"


def _mxnet_message(line):
    """The message of MXNet's error line without its error kind, log prefix and check condition."""
    for pattern in _FILE_ERRORS:
        match = pattern.match(line)
        if match:
            return f"{match['reason'].strip()}: {match['path']}"
    line = _ERROR_KIND.sub("", line, count=1)
    line = _LOG_PREFIX.sub("", line, count=1).strip()
    match = _CHECK.match(line)
    if match:
        line = match["message"].strip()
    else:
        line = line.rstrip(":").strip()
    if line.endswith(_WRITE_INCOMPLETE):
        line += " (is the disk full?)"
    return line


def error_line(err):
    """The one line that says what went wrong in `err`, for an error message to a user.

    An MXNetError's text starts with "Traceback (most recent call last):" and C++ frames; this
    returns its message line instead, without the error kind, log prefix and "Check failed:
    COND" ("Invalid NDArray file format"; "No such file or directory: PATH" for a file MXNet
    cannot open).  An OSError gives its reason and the file it names ("Permission denied:
    PATH"; for ENOSPC "no space left on device: PATH; free some space and run again").  Any
    other exception gives the first line of its message that is not a traceback line, or its
    type name when it has no message."""
    if isinstance(err, OSError) and err.strerror:
        paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
        where = ": " + " -> ".join(paths) if paths else ""
        if err.errno == errno.ENOSPC:
            return f"no space left on device{where}; free some space and run again"
        return f"{err.strerror}{where}"
    text = str(err)
    mxnet_text = isinstance(err, mx.base.MXNetError) or "Traceback (most recent call last):" in text
    for line in text.splitlines():
        line = line.strip()
        if not line or _TRACEBACK_LINE.match(line):
            continue
        return (_mxnet_message(line) if mxnet_text else line) or type(err).__name__
    return type(err).__name__


# The crash reporter: a tiny process that copies what faulthandler writes when this process dies
# of a fatal signal to stderr, then prints the caller's one-line explanation after it.  It ignores
# the signals that stop a job, and ends when the pipe closes (this process ended, however).
_REPORTER = """
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
seen = False
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    seen = True
    os.write(2, chunk)
if seen:
    os.write(2, (sys.argv[1] + chr(10)).encode())
"""
_crash_pipe = None  # the write end faulthandler writes to; kept open for the life of the process


def show_fatal_signals(explanation=None):
    """Make a fatal signal print the Python stack of every thread before the process dies, and
    then `explanation` (one line, e.g. "train_imagenet.py: error: the process was killed by
    SIGFPE inside MXNet's image decoder while reading X: ...") when given.

    A damaged image can kill MXNet's decoder with SIGFPE, which no Python code can catch; without
    this the process ends without a word.  The explanation is printed by a small reporter process,
    since nothing runs in this one after the signal.  Keeps a handler that is already enabled
    (pytest's, `python -X faulthandler`)."""
    global _crash_pipe
    if faulthandler.is_enabled() or sys.stderr is None:
        return
    try:
        if explanation is None:
            faulthandler.enable()
            return
        read_end, write_end = os.pipe()
        subprocess.Popen(
            [sys.executable, "-S", "-c", _REPORTER, explanation], stdin=read_end, stdout=subprocess.DEVNULL
        )
        os.close(read_end)
        _crash_pipe = os.fdopen(write_end, "wb", buffering=0)
        faulthandler.enable(file=_crash_pipe)
    except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor
        pass
