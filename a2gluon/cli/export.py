"""a2gluon export: write PREFIX-symbol.json + PREFIX-0000.params (and PREFIX.onnx)
from trained Gluon params, with the model description and class list beside them; with --fused
and --int8 also the oneDNN-fused fp32 graph (PREFIX-fused-*) and the calibrated INT8 graph
(PREFIX-int8-*)."""

import argparse
import json
import sys

from ..deploy import export_model, load_gluon_model, model_input_shape, read_class_names
from ..deploy.command import run_command
from ..deploy.export import check_prefix
from ..deploy.int8 import (
    CALIB_MODES,
    DEFAULT_CALIB_IMAGES,
    DEFAULT_FP32,
    FP32_CHOICES,
    Int8Error,
    Int8Options,
    calibration_set,
    require_int8_cpu,
)
from ..errors import show_fatal_signals
from . import require_positive

PROG = "a2gluon export"


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Export trained Gluon params to an MXNet symbol + params pair (read by "
        "mx.gluon.SymbolBlock.imports and mx.mod.Module.load without a2gluon) and, with --onnx, "
        "to ONNX; --fused and --int8 add the oneDNN-fused fp32 graph and a calibrated INT8 graph.",
    )
    p.add_argument(
        "--model",
        help="registry name (a2gluon profile --list); may be left out when the "
        "training meta JSON beside --params names it",
    )
    p.add_argument("--params", required=True, help="Gluon .params file (net.save_parameters)")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    p.add_argument(
        "--ema",
        action="store_true",
        help="export the exponential moving average of the weights saved beside --params by "
        "training with --model-ema (STEM-ema.params) instead of the weights themselves",
    )
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
    fast = p.add_argument_group(
        "CPU inference graphs (each also a complete export, under PREFIX-fused / PREFIX-int8)"
    )
    fast.add_argument(
        "--fused",
        action="store_true",
        help="also write PREFIX-fused-symbol.json + PREFIX-fused-0000.params: oneDNN's fused fp32 graph "
        "(convolution + BatchNorm + ReLU folded; MXNet builds with oneDNN load it)",
    )
    fast.add_argument(
        "--int8",
        action="store_true",
        help="also write PREFIX-int8-symbol.json + PREFIX-int8-0000.params: the calibrated INT8 graph "
        "(x86 CPUs, fastest with AVX-512 VNNI); with --onnx also PREFIX-int8.onnx",
    )
    fast.add_argument(
        "--calib-rec", metavar="REC", help="calibration images: a .rec (e.g. the training records)"
    )
    fast.add_argument("--calib-idx", metavar="IDX", help="the .idx of --calib-rec")
    fast.add_argument(
        "--calib-dir", metavar="DIR", help="calibration images: a folder of images (any layout)"
    )
    fast.add_argument(
        "--num-calib-images",
        type=int,
        default=DEFAULT_CALIB_IMAGES,
        help=f"calibration images, a seeded sample of the set (default {DEFAULT_CALIB_IMAGES})",
    )
    fast.add_argument(
        "--calib-mode",
        choices=CALIB_MODES,
        default="naive",
        help="thresholds from the layer outputs' min/max (naive, default) or by KL divergence (entropy)",
    )
    fast.add_argument(
        "--int8-fp32",
        metavar="KINDS",
        default=",".join(DEFAULT_FP32),
        help="layers the INT8 graph keeps in fp32 besides the attention products and softmax, "
        f"comma-separated from {', '.join(FP32_CHOICES)}, or 'none' (default: {','.join(DEFAULT_FP32)})",
    )
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
    calib = args.calib_rec or args.calib_idx or args.calib_dir
    if args.int8:
        require_int8_cpu()
        if not calib:
            raise Int8Error(
                "--int8 needs calibration images: give --calib-rec REC --calib-idx IDX (e.g. the training "
                "records) or --calib-dir FOLDER"
            )
    loaded = load_gluon_model(args.model, args.params, num_classes=args.num_classes, ema=args.ema)
    classes = read_class_names(args.classes) if args.classes else None
    input_size = args.input_size or loaded.input_size
    trained = loaded.input_shape if loaded.input_shape and len(loaded.input_shape) == 4 else None
    input_shape = model_input_shape(loaded.model, input_size, args.frames or (trained and trained[1]))
    int8 = None
    if args.int8:
        if len(input_shape) != 3:
            raise Int8Error(
                f"{loaded.model} is a video model; --int8 (calibrated on images) is for image models"
            )
        images = calibration_set(
            args.calib_rec, args.calib_idx, args.calib_dir, args.num_calib_images, input_shape[-1]
        )
        keep = [k.strip() for k in args.int8_fp32.split(",") if k.strip() and k.strip() != "none"]
        int8 = Int8Options(images, args.calib_mode, tuple(keep), onnx=args.onnx)
    files = export_model(
        loaded, args.out, input_shape, classes, args.onnx, force=args.force, fused=args.fused, int8=int8
    )
    width = max(map(len, files))
    for kind, path in files.items():
        print(f"{kind:{width}s} {path}")
    if int8 is not None:
        with open(files["int8-meta"], encoding="utf-8") as f:
            info = json.load(f)["int8"]
        print(
            f"INT8: calibrated ({info['calib_mode']}) on {info['calib_images']} of {info['calib_available']} "
            f"images of {info['calib_source']}; top-1 agrees with fp32 on "
            f"{100 * info['check_top1_agreement']:.1f} % of {info['check_images']} of them"
        )


def main(argv=None, prog=PROG):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    require_positive(parser, args, ("num_classes", "input_size", "frames", "num_calib_images"))
    calib = [f"--{n.replace('_', '-')}" for n in ("calib_rec", "calib_idx", "calib_dir") if getattr(args, n)]
    if calib and not args.int8:
        parser.error(f"{calib[0]} goes with --int8 (calibration images for the INT8 graph)")
    if args.calib_dir and (args.calib_rec or args.calib_idx):
        parser.error(
            "give the calibration images as --calib-rec REC --calib-idx IDX or as --calib-dir DIR, not both"
        )
    if args.int8:  # calibration decodes images: a damaged one can kill MXNet's decoder
        from ..data.verify import describe_crash

        show_fatal_signals(f"{prog}: error: {describe_crash(args.calib_rec)}" if args.calib_rec else None)
    return run_command(prog, run, args)


if __name__ == "__main__":
    sys.exit(main())
