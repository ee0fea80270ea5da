"""Command line of eval_imagenet.py: single centre-crop top-1/top-5 of a trained or exported
model on RecordIO or an ImageNet folder, or of every checkpoint in a directory.  In float32 on a
CPU the model runs as oneDNN's fused graph (same outputs within float error, faster; --no-fuse
runs it as loaded); exported fused and INT8 graphs run as they are.  The graph it ran is printed
and recorded in --json-out."""

import argparse
import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mxnet as mx
from tqdm import tqdm

from ..data import check_records, folder_val_loader, read_classes, scan_image_folder, val_iter
from ..data.pipeline import decode_image
from ..data.verify import describe_crash, refuse_known_bad_records
from ..deploy import load_gluon_model, load_symbol_model
from ..deploy.command import run_command
from ..deploy.export import check_input_shape
from ..deploy.graph import describe_graph, inference_graph, is_cpu
from ..deploy.loading import ModelLoadError
from ..engine import checkpoint
from ..engine.checkpoint import meta_path, write_json
from ..engine.devices import get_contexts, to_bfloat16
from ..engine.evaluate import evaluate
from ..engine.settings import DTYPES
from ..errors import error_line, show_fatal_signals
from . import require_positive

PROG = "a2gluon eval"


class EvalError(ModelLoadError):
    """Data and model do not fit together, or the arguments do not say what to score."""


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Single centre-crop top-1/top-5 accuracy of a model on ImageNet-style validation data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data (RecordIO or an ImageNet folder)")
    data.add_argument("--rec-val", help="validation .rec (a2gluon pack)")
    data.add_argument("--rec-val-idx", help="validation .idx")
    data.add_argument("--data-dir", help="ImageNet layout folder: DATA_DIR/<class>/<image>")
    data.add_argument(
        "--input-size", type=int, default=None, help="crop size (default: the checkpoint's, else 224)"
    )
    data.add_argument("--crop-ratio", type=float, default=0.875, help="crop / resized shorter side")
    data.add_argument("--num-data-workers", "-j", type=int, default=4)
    model = p.add_argument_group("model (one of three ways)")
    model.add_argument("--model", help="registry name (with --params)")
    model.add_argument("--params", help="Gluon params from train_imagenet.py")
    model.add_argument(
        "--ema",
        action="store_true",
        help="with --params or --checkpoints: score the moving average of the weights saved beside "
        "each by --model-ema (STEM-ema.params)",
    )
    model.add_argument(
        "--symbol", metavar="PREFIX", help="exported model: PREFIX-symbol.json + PREFIX-EEEE.params"
    )
    model.add_argument("--epoch", type=int, default=0, help="with --symbol: the EEEE of the params file")
    model.add_argument("--checkpoints", metavar="DIR", help="score every checkpoint in DIR and name the best")
    model.add_argument(
        "--num-classes", type=int, help="default: the class list beside the data, else the model's"
    )
    run = p.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=32, help="images per device")
    run.add_argument("--num-gpus", type=int, default=0)
    run.add_argument("--dtype", default="float32", choices=DTYPES)
    run.add_argument(
        "--no-fuse",
        action="store_true",
        help="run the model as loaded instead of oneDNN's fused fp32 graph (float32 on a CPU)",
    )
    run.add_argument("--json-out", metavar="FILE", help="write the results as JSON")
    run.add_argument("--per-class", metavar="FILE.csv", help="write per-class accuracy")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def check_usage(parser, args):
    ways = [bool(args.params), bool(args.symbol), bool(args.checkpoints)]
    if sum(ways) != 1:
        parser.error(
            "give one of --model NAME --params FILE, --symbol PREFIX [--epoch E], or --checkpoints DIR"
        )
    if args.ema and args.symbol:
        parser.error("--ema goes with --params or --checkpoints (export with --ema to get the EMA's symbol)")
    if args.params and not args.model and not os.path.exists(meta_path(args.params)):
        parser.error("--params needs --model NAME (no trainer meta JSON beside it names the model)")
    if bool(args.rec_val) == bool(args.data_dir):
        parser.error("give the data as --rec-val FILE --rec-val-idx FILE, or as --data-dir DIR")
    if args.rec_val and not args.rec_val_idx:
        parser.error("--rec-val needs --rec-val-idx")
    require_positive(parser, args, ("batch_size", "num_classes", "input_size"))
    if not 0 < args.crop_ratio <= 1:
        parser.error(f"--crop-ratio must be in (0, 1], got {args.crop_ratio}")


@dataclass
class EvalData:
    """The validation data as checked before any model is scored."""

    source: str  # the .rec or the folder, for messages
    classes: list  # class names in label order, None when the data has no class list
    num_classes: int  # from --num-classes or the class list; None: the model's
    num_images: int
    label_max: int = None  # the largest label in the records (None for a folder)
    skipped: list = None  # (relative path, reason) of the folder's images that do not decode


def decode_problem(path):
    """Why the image file `path` does not decode, or None when it does; the packer's rule (the
    bytes through OpenCV's imdecode, 3 channels) and its reason text."""
    try:
        return None if decode_image(path)[1] is not None else "not a decodable image"
    except OSError as err:
        return error_line(err)


def undecodable_images(root, items, workers=1):
    """[(relative path, reason)] of the images among `items` ((relative path, label) pairs of
    scan_image_folder) that the packer would skip, checked in `workers` threads (OpenCV
    decodes without holding the GIL)."""
    paths = [os.path.join(root, rel) for rel, _ in items]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(decode_problem, paths))
    return [(rel, reason) for (rel, _), reason in zip(items, reasons) if reason is not None]


def read_data(args):
    """Check the data once for every model to be scored: the class list beside it, the record
    labels, or (for a folder) which images decode."""
    if args.rec_val:
        source, classes = args.rec_val, read_classes(args.rec_val)
    else:
        source = args.data_dir
        classes, items, _ = scan_image_folder(args.data_dir)  # the labelling the folder loader uses
    if args.num_classes and classes and len(classes) != args.num_classes:
        raise EvalError(f"--num-classes is {args.num_classes} but {source} has {len(classes)} classes")
    num_classes = args.num_classes or (len(classes) if classes else None)
    if args.rec_val:
        info = check_records(args.rec_val, args.rec_val_idx, num_classes)
        refuse_known_bad_records(args.rec_val, args.rec_val_idx)
        return EvalData(source, classes, num_classes, info.num_images, label_max=info.label_max)
    skipped = undecodable_images(args.data_dir, items, args.num_data_workers)
    if len(skipped) == len(items):
        raise EvalError(
            f"{source}: none of its {len(items)} images decode; give a folder of JPEG or PNG images"
        )
    if skipped:  # reported as the packer reports them
        print(
            f"{args.prog}: skipped {len(skipped)} of {len(items)} images in {source} that do not decode "
            "(the packer skips them too):",
            file=sys.stderr,
        )
        for rel, reason in skipped:
            print(f"  {rel}: {reason}", file=sys.stderr)
    return EvalData(source, classes, num_classes, len(items) - len(skipped), skipped=skipped)


def load(args, params, ctx):
    """The model to score; the class count comes from the model (its meta or params file) unless
    --num-classes was given."""
    if args.symbol:
        return load_symbol_model(args.symbol, args.epoch, ctx=ctx)
    return load_gluon_model(args.model, params, num_classes=args.num_classes, ctx=ctx, ema=args.ema)


def class_count(loaded, data, given):
    """The class count to score `loaded` with: the data's (`given`: from --num-classes), which
    must be the model's, or the model's when the data does not say."""
    if data.num_classes is None:
        num_classes = loaded.num_classes or 1000
        if data.label_max is not None and data.label_max >= num_classes:
            raise EvalError(
                f"{data.source} has label {data.label_max} but the model has {num_classes} classes; "
                "evaluate on data with the model's classes"
            )
        return num_classes
    if loaded.num_classes is not None and loaded.num_classes != data.num_classes:
        if given and not data.classes:
            raise EvalError(
                f"the model has {loaded.num_classes} classes but --num-classes is {data.num_classes}; "
                f"pass --num-classes {loaded.num_classes} or leave it out"
            )
        raise EvalError(
            f"the model has {loaded.num_classes} classes but the data ({data.source}) has "
            f"{data.num_classes}; evaluate on data with the model's classes"
        )
    if data.classes and loaded.classes and list(loaded.classes) != list(data.classes):
        differ = next(i for i, (a, b) in enumerate(zip(loaded.classes, data.classes)) if a != b)
        raise EvalError(
            f"the model's class {differ} is {loaded.classes[differ]!r} but the data's is "
            f"{data.classes[differ]!r}: the data was packed with another class list; "
            "pack it with --classes TRAIN.classes.json"
        )
    return data.num_classes


def prepare(loaded, dtype, ctx, fused=True):
    """(network, graph kind) to score: in float32 the inference graph (deploy.graph: oneDNN-fused
    on a CPU unless `fused` is False; an exported fused or INT8 graph as it is), else the
    network cast to bfloat16 (CPU) or float16 (GPU); hybridized with static memory."""
    kind = loaded.graph or "gluon"
    if kind in ("fp32-fused", "int8"):
        if dtype != "float32":
            raise EvalError(
                f"{loaded.source} is an exported {kind} graph and runs as it is; drop --dtype {dtype}"
            )
        if not is_cpu(ctx):
            raise EvalError(f"{loaded.source} is an exported {kind} graph for CPUs; drop --num-gpus")
    if dtype == "float32":
        net, kind = inference_graph(loaded, ctx, fused)
        net.hybridize(static_alloc=True, static_shape=True)
        return net, kind
    net = loaded.net
    net.hybridize(static_alloc=True, static_shape=True)
    if dtype == "bfloat16":
        if any(c.device_type == "gpu" for c in ctx):
            raise EvalError("--dtype bfloat16 is for CPUs in MXNet 1.9.1; use float16 on GPUs")
        return to_bfloat16(net, ctx[0]), f"{kind} in bfloat16"
    if not any(c.device_type == "gpu" for c in ctx):
        raise EvalError("--dtype float16 needs GPUs (MXNet has no float16 matrix products on CPUs)")
    from mxnet.contrib import amp

    return amp.convert_hybrid_block(net, target_dtype="float16", ctx=ctx[0]), f"{kind} in float16"


def score(args, loaded, data, num_classes, ctx, input_size):
    size = args.input_size or loaded.input_size or input_size or 224
    if loaded.input_shape is not None and len(loaded.input_shape) != 3:
        raise EvalError(
            f"{loaded.model or 'the model'} is a video model; eval_imagenet.py scores image models"
        )
    check_input_shape(loaded.net, (3, size, size), loaded.model)
    batch = args.batch_size * len(ctx)
    if args.rec_val:
        source = val_iter(
            args.rec_val,
            args.rec_val_idx,
            batch,
            input_size=size,
            crop_ratio=args.crop_ratio,
            num_workers=args.num_data_workers,
        )
    else:
        source, _ = folder_val_loader(
            args.data_dir,
            batch,
            input_size=size,
            crop_ratio=args.crop_ratio,
            num_workers=0,
            classes=data.classes,
            exclude=[rel for rel, _ in data.skipped],
        )
    net, graph = prepare(loaded, args.dtype, ctx, fused=not args.no_fuse)
    print(f"graph: {describe_graph(graph, loaded)}")
    bar = tqdm(
        total=data.num_images,
        unit="img",
        desc=os.path.basename(loaded.source or "model"),
        disable=args.no_progress,
    )
    try:
        metric, speed = evaluate(net, source, ctx, num_classes=num_classes, progress=bar.update)
    except mx.base.MXNetError as err:
        if "shape" in str(err).lower():
            raise EvalError(
                f"the model does not accept {size}x{size} inputs ({error_line(err)[:160]}); "
                "give the --input-size it was trained at"
            ) from None
        raise
    finally:
        bar.close()
    top1, top5 = metric.get()
    return {
        "model": loaded.model,
        "source": loaded.source,
        "top1": top1,
        "top5": top5,
        "images": metric.count,
        "images_per_sec": speed,
        "input_size": size,
        "crop_ratio": args.crop_ratio,
        "dtype": args.dtype,
        "graph": graph,
        "num_classes": num_classes,
    }, metric


def pct(fraction):
    return f"{100 * fraction:.2f} %"


def write_per_class(path, metric, classes):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "class", "images", "top1", "top5"])
        for label in range(len(metric.class_total)):
            n = int(metric.class_total[label])
            name = classes[label] if classes and label < len(classes) else str(label)
            top1 = metric.class_top1[label] / n if n else ""
            top5 = metric.class_topk[label] / n if n else ""
            w.writerow([label, name, n, top1, top5])


def score_checkpoints(args, data, ctx):
    """Score every end-of-epoch checkpoint in --checkpoints; one that cannot be loaded (an
    unreadable JSON, a truncated .params, other classes) is skipped with a line on stderr."""
    found = [c for c in checkpoint.list_checkpoints(args.checkpoints) if c.batch == 0]
    if not found:
        raise EvalError(f"no complete checkpoint (PREFIX-MODEL-EEEE.params + .json) in {args.checkpoints}")
    results, skipped = [], []
    for ck in found:
        try:
            if ck.error:
                raise checkpoint.CheckpointError(ck.error)
            loaded = load(args, ck.params, ctx)
            num_classes = class_count(loaded, data, args.num_classes is not None)
        except (ModelLoadError, checkpoint.CheckpointError, mx.base.MXNetError) as err:
            reason = error_line(err)
            print(f"{args.prog}: skipped {ck.params}: {reason}", file=sys.stderr)
            skipped.append({"checkpoint": ck.params, "reason": reason})
            continue
        result, _ = score(args, loaded, data, num_classes, ctx, ck.meta.get("input_size"))
        result["epoch"] = ck.epoch
        results.append(result)
        top1, top5 = pct(result["top1"]), pct(result["top5"])
        print(f"epoch {ck.epoch:4d}  top-1 {top1:>7}  top-5 {top5:>7}  {ck.params}")
    if not results:
        raise EvalError(
            f"none of the {len(found)} checkpoints in {args.checkpoints} could be scored (each is "
            "skipped above with the reason)"
        )
    best = max(results, key=lambda r: r["top1"])
    print(
        f"best: epoch {best['epoch']} ({best['source']}), top-1 {pct(best['top1'])}, "
        f"top-5 {pct(best['top5'])}" + (f"; {len(skipped)} checkpoints skipped" if skipped else "")
    )
    return dict(best, checkpoints=results, skipped_checkpoints=skipped, best=best["source"])


def run(args):
    ctx = get_contexts(args.num_gpus)
    data = read_data(args)
    if args.checkpoints:
        out = score_checkpoints(args, data, ctx)
    else:
        loaded = load(args, args.params, ctx)
        num_classes = class_count(loaded, data, args.num_classes is not None)
        out, metric = score(args, loaded, data, num_classes, ctx, None)
        print(
            f"{out['model'] or args.symbol}: top-1 {pct(out['top1'])}  top-5 {pct(out['top5'])}  "
            f"on {out['images']} images ({out['images_per_sec']:.1f} img/s; chance top-1 "
            f"{pct(1 / num_classes)})"
        )
        if args.per_class:
            write_per_class(args.per_class, metric, data.classes)
            print(f"per-class accuracy: {args.per_class}")
    out["data"] = data.source
    if data.skipped:
        out["skipped_images"] = [{"image": rel, "reason": reason} for rel, reason in data.skipped]
    if args.json_out:
        write_json(args.json_out, out)  # atomically: a reader never sees half a file
    return 0


def main(argv=None, prog=PROG):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    args.prog = prog
    check_usage(parser, args)
    show_fatal_signals(f"{prog}: error: {describe_crash(args.rec_val)}" if args.rec_val else None)
    return run_command(prog, run, args)


if __name__ == "__main__":
    sys.exit(main())
