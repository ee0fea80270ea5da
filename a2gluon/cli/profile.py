"""a2gluon profile MODEL: a model's trainable parameters and multiply-adds (a2gluon.profile)."""

import argparse
import json
import sys

from ..models import list_models, model_options
from ..models.registry import ATTENTION_CHOICES

PROG = "a2gluon profile"


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4) or min(shape) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an input shape: give C,H,W (3,224,224) or C,T,H,W (3,16,112,112)"
        )
    return shape


def build_parser(prog=PROG):
    parser = argparse.ArgumentParser(
        prog=prog, description="Count a model's trainable parameters and multiply-adds (batch 1)."
    )
    parser.add_argument("model", help="a model name (see --list)", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the model names and exit")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument(
        "--input-shape",
        type=_shape,
        default=None,
        help="C,H,W or C,T,H,W without the batch axis (default: the model's paper input)",
    )
    parser.add_argument("--attention", choices=ATTENTION_CHOICES, default=None)
    parser.add_argument("--blocks", default=None, help="where: convS:U[,convS:U...] (1-based unit)")
    parser.add_argument("--reduction", type=int, default=None)
    parser.add_argument("--per-layer", action="store_true", help="also print (or include) each layer")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv=None, prog=PROG):
    import mxnet as mx

    from ..errors import error_line
    from ..profile import format_table, profile_model

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(list_models()))
        return 0
    if not args.model:
        parser.error(f"give a model name ({prog} --list shows them)")
    try:
        kwargs = model_options(args.attention, args.blocks, args.reduction)
        prof = profile_model(args.model, args.input_shape, classes=args.classes, **kwargs)
    except (ValueError, mx.base.MXNetError) as err:
        print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(prof.to_json(per_layer=args.per_layer)))
        return 0
    if args.per_layer:
        print(format_table(prof))
    shape = "x".join(map(str, prof.input_shape))
    print(
        f"{prof.model} @ {shape}: {prof.params / 1e6:.2f} M parameters, {prof.macs / 1e9:.3f} G multiply-adds"
    )
    return 0
