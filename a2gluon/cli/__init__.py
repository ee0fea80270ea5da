"""The one door: `a2gluon CMD ...` (or `python -m a2gluon CMD ...`).  Argument parsing lives here
only; each command is a thin function over the library layers.

Every command module has ``main(argv=None, prog=...)`` returning an exit code: 0 done, 1 failed,
2 bad input or usage, 128+N stopped by signal N.
"""

import importlib
import sys

from ..signals import Terminated, stop_on_signals

# name -> (module in a2gluon.cli, one line for `a2gluon --help`)
COMMANDS = {
    "train": ("train", "train a model on ImageNet RecordIO (or synthetic) data"),
    "train-video": ("train_video", "train a video model on video files (Kinetics, UCF-101, class folders)"),
    "eval": ("evaluate", "single centre-crop top-1/top-5 of a checkpoint, exported model or run"),
    "eval-video": ("eval_video", "clip and video top-1/top-5 of a video model (clips x crops per video)"),
    "export": ("export", "write symbol JSON + params (and ONNX) for deployment"),
    "predict": ("predict", "top-k classes of image files with a trained or exported model"),
    "profile": ("profile", "count a model's parameters and multiply-adds (the paper's tables)"),
    "pack": ("pack", "pack ImageNet class folders into im2rec .rec/.idx/.lst records"),
    "pack-video": (
        "pack_video",
        "re-encode a video set at a smaller size, with its list file and classes.json",
    ),
    "check-records": ("check_records", "check a .rec/.idx pair; --deep decodes every image"),
    "digits": ("digits", "write scikit-learn's digit scans as ImageNet class folders (demo data)"),
    "launch": ("launch", "run a command as a parameter-server job (scheduler, servers, workers)"),
    "demo": ("demo", "the end-to-end demo on the bundled digits: pack, train, eval, export, predict"),
}


def require_positive(parser, args, names):
    """parser.error (one line, exit 2) for any integer option in `names` given as 0 or less."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def usage():
    width = max(map(len, COMMANDS))
    lines = ["usage: a2gluon COMMAND [options]   (a2gluon COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"a2gluon {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"a2gluon: error: unknown command {name!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run(name, rest, prog=f"a2gluon {name}")


def run(name, argv=None, prog=None):
    """Run command `name` (a key of COMMANDS) on `argv`: what ``a2gluon NAME`` and the scripts
    at the top (``train_imagenet.py`` ...) do.

    Importing MXNet and the rest takes a few seconds; a SIGTERM or Ctrl-C then is one line and
    exit 128+N (Python would print an import traceback, or die without a word on SIGTERM).  The
    handlers are the defaults again when the command starts, which installs its own.
    """
    prog = prog or f"a2gluon {name}"
    try:
        with stop_on_signals():
            module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    except Terminated as stop:
        print(f"{prog}: stopped by {stop} while starting; nothing done", file=sys.stderr)
        return 128 + stop.signum
    return module.main(argv, prog=prog)
