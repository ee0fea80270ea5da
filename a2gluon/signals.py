"""SIGTERM and Ctrl-C in the commands: raised as :class:`Terminated` where the job can clean up.

Light on purpose (no MXNet): :func:`a2gluon.cli.run` uses it while a command's modules import.
"""

import _thread
import contextlib
import signal
import sys
import threading
import time


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived during a long data job; ``signum`` says which.

    ``outputs_written`` is true when the job's outputs were already complete.
    """

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.outputs_written = False


# see signals_held; "pending": a signal handled where Python would ignore the exception (_defer)
_HOLD = {"on": False, "caught": [], "pending": None, "hook": sys.__unraisablehook__}


def would_be_ignored(frame):
    """True when an exception raised by a signal handler at ``frame`` would be printed and dropped.

    Python ignores exceptions that leave a ``__del__`` (an MXNet array freed by the garbage
    collector, say) or ``sys.unraisablehook``, and the job would go on as if no signal had come.
    """
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code is _unraisable.__code__:
            return True
        frame = frame.f_back
    return False


def redeliver(signum, wanted=lambda: True):
    """Have the main thread's handler of ``signum`` run again a moment later, if ``wanted()``.

    From a helper thread, so that the ``__del__`` the signal came in has returned: run again at
    once, the handler would run inside it again.
    """

    def later():
        time.sleep(0.01)
        if wanted():
            _thread.interrupt_main(signum)  # a no-op once the handler is SIG_DFL again

    threading.Thread(target=later, name=f"redeliver-{signal.Signals(signum).name}", daemon=True).start()


def _defer(signum):
    _HOLD["pending"] = signum
    redeliver(signum, lambda: _HOLD["pending"] == signum)


def _unraisable(unraisable):
    """``sys.unraisablehook`` inside :func:`stop_on_signals`: a :class:`Terminated` that Python
    ignored all the same (raised in a weakref callback, say) is raised again instead of lost."""
    if isinstance(unraisable.exc_value, Terminated):
        _defer(unraisable.exc_value.signum)
    else:
        _HOLD["hook"](unraisable)


def _raise_terminated(signum, frame):
    if _HOLD["on"]:
        _HOLD["caught"].append(signum)
    elif would_be_ignored(frame):
        _defer(signum)
    else:
        _HOLD["pending"] = None
        raise Terminated(signum)


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGINT into :class:`Terminated` inside the block (main thread only).

    The exception runs the ``finally`` blocks that remove temporary files and end worker pools;
    the default action of SIGTERM would skip them.  A handler the caller installed is kept.  A
    signal that comes while a ``__del__`` runs (where Python would ignore the exception) is
    raised a moment after it returns, or when the block ends.
    """
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
            if signal.getsignal(sig) is default:
                installed[sig] = signal.signal(sig, _raise_terminated)
    if installed:
        _HOLD["hook"], sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        yield
    finally:
        pending = None
        if installed:  # the outermost block
            pending, _HOLD["pending"] = _HOLD["pending"], None
            sys.unraisablehook = _HOLD["hook"]
        for sig, previous in installed.items():
            signal.signal(sig, previous)
    if pending:
        raise Terminated(pending)


@contextlib.contextmanager
def signals_held():
    """Let a step finish before a SIGTERM / SIGINT caught by :func:`stop_on_signals` stops the job.

    For steps that must not be cut in half: starting a worker pool (a half-started one leaves
    processes behind and the forkserver prints a traceback) and the renames that publish the
    outputs.  :class:`Terminated` is raised when the block ends.
    """
    if _HOLD["on"]:
        yield
        return
    _HOLD["on"] = True
    try:
        yield
    finally:
        _HOLD["on"] = False
    if _HOLD["caught"]:
        signum = _HOLD["caught"][0]
        _HOLD["caught"].clear()
        raise Terminated(signum)
