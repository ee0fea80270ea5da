"""Turning an exception into the one line a user reads: what went wrong, and the file involved;
and making a fatal signal inside MXNet print something instead of nothing."""

import errno
import faulthandler
import re
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


def show_fatal_signals():
    """Make a fatal signal print the Python stack of every thread before the process dies.

    A damaged image can kill MXNet's decoder with SIGFPE, which no Python code can catch; without
    this the process ends without a word.  Keeps a handler that is already enabled (pytest's,
    `python -X faulthandler`)."""
    if not faulthandler.is_enabled() and sys.stderr is not None:
        try:
            faulthandler.enable()
        except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor
            pass
