"""a2gluon export: write PREFIX-symbol.json + PREFIX-0000.params (and PREFIX.onnx)
from trained Gluon params, with the model description and class list beside them."""

import argparse
import sys

from ..deploy import export_model, load_gluon_model, model_input_shape, read_class_names
from ..deploy.command import run_command
from ..deploy.export import check_prefix
from . import require_positive

PROG = "a2gluon export"


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Export trained Gluon params to an MXNet symbol + params pair (read by "
        "mx.gluon.SymbolBlock.imports and mx.mod.Module.load without a2gluon) and, with --onnx, "
        "to ONNX.",
    )
    p.add_argument(
        "--model",
        help="registry name (a2gluon profile --list); may be left out when the "
        "training meta JSON beside --params names it",
    )
    p.add_argument("--params", required=True, help="Gluon .params file (net.save_parameters)")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    p.add_argument(
        "--num-classes",
        type=int,
        help="class count (default: from the meta JSON, else read off the params)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        help="spatial input size (default: the meta JSON's, else the paper's: 224, 112 for "
        "the small video models)",
    )
    p.add_argument("--frames", type=int, help="clip length for video models (default: the paper's)")
    p.add_argument("--classes", help="class list (JSON with a 'classes' list, or one name a line)")
    p.add_argument("--onnx", action="store_true", help="also write PREFIX.onnx (needs the onnx extra)")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier export to PREFIX: overwrite its files and remove those this export "
        "does not write (default: refuse)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args):
    check_prefix(args.out)  # before the model is loaded
    loaded = load_gluon_model(args.model, args.params, num_classes=args.num_classes)
    classes = read_class_names(args.classes) if args.classes else None
    input_size = args.input_size or loaded.input_size
    input_shape = model_input_shape(loaded.model, input_size, args.frames)
    files = export_model(loaded, args.out, input_shape, classes=classes, onnx=args.onnx, force=args.force)
    for kind, path in files.items():
        print(f"{kind:8s} {path}")


def main(argv=None, prog=PROG):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    require_positive(parser, args, ("num_classes", "input_size", "frames"))
    return run_command(prog, run, args)


if __name__ == "__main__":
    sys.exit(main())
