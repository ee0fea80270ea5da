"""Run a command-line entry point so that every expected failure is one line on stderr and a
non-zero exit (2: bad input or usage, 1: anything else), with the traceback only under --debug."""

import sys

import mxnet as mx

from ..data import DataError
from ..engine.checkpoint import CheckpointError
from ..engine.devices import DeviceError
from ..errors import error_line
from .export import ExportError
from .int8 import Int8Error
from .loading import ModelLoadError
from .onnx_export import OnnxExportError
from .preprocess import ImageReadError

INPUT_ERRORS = (
    ModelLoadError,
    ExportError,
    Int8Error,
    ImageReadError,
    DataError,
    CheckpointError,
    DeviceError,
)


def run_command(prog, fn, args):
    """Call fn(args); return its exit status (0 when it returns None)."""
    try:
        return fn(args) or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (every failure becomes one line)
        if getattr(args, "debug", False):
            raise
        if isinstance(err, INPUT_ERRORS):
            code, msg = 2, error_line(err)
        elif isinstance(err, OnnxExportError):
            code, msg = 1, error_line(err)
        elif isinstance(err, OSError):
            code, msg = 2, error_line(err)
        elif isinstance(err, mx.base.MXNetError):
            code, msg = 1, f"MXNet failed: {error_line(err)}; rerun with --debug for details"
        else:
            code = 1
            msg = f"unexpected {type(err).__name__}: {error_line(err)}; rerun with --debug for the traceback"
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return code
