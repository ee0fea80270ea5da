"""Command line of eval_imagenet.py: single centre-crop top-1/top-5 of a trained or exported
model on RecordIO or an ImageNet folder, or of every checkpoint in a directory."""

import argparse
import csv
import json
import os
import sys

import mxnet as mx
from tqdm import tqdm

from ..data import check_records, folder_val_loader, read_classes, scan_image_folder, val_iter
from ..deploy import load_gluon_model, load_symbol_model
from ..deploy.command import run_command
from ..deploy.export import check_input_shape
from ..deploy.loading import ModelLoadError
from ..engine import checkpoint
from ..engine.devices import get_contexts, to_bfloat16
from ..engine.evaluate import evaluate

PROG = "eval_imagenet.py"


class EvalError(ModelLoadError):
    """Data and model do not fit together, or the arguments do not say what to score."""


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Single centre-crop top-1/top-5 accuracy of a model on ImageNet-style validation data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data (RecordIO or an ImageNet folder)")
    data.add_argument("--rec-val", help="validation .rec (python -m a2gluon.data.pack)")
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
        "--symbol", metavar="PREFIX", help="exported model: PREFIX-symbol.json + PREFIX-EEEE.params"
    )
    model.add_argument("--epoch", type=int, default=0, help="with --symbol: the EEEE of the params file")
    model.add_argument("--checkpoints", metavar="DIR", help="score every checkpoint in DIR and name the best")
    model.add_argument("--num-classes", type=int, help="default: the class list beside the data, else 1000")
    run = p.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=32, help="images per device")
    run.add_argument("--num-gpus", type=int, default=0)
    run.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
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
    if args.params and not args.model and not os.path.exists(args.params[: -len(".params")] + ".json"):
        parser.error("--params needs --model NAME (no trainer meta JSON beside it names the model)")
    if bool(args.rec_val) == bool(args.data_dir):
        parser.error("give the data as --rec-val FILE --rec-val-idx FILE, or as --data-dir DIR")
    if args.rec_val and not args.rec_val_idx:
        parser.error("--rec-val needs --rec-val-idx")
    for flag in ("batch_size", "num_classes", "input_size"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
    if not 0 < args.crop_ratio <= 1:
        parser.error(f"--crop-ratio must be in (0, 1], got {args.crop_ratio}")


def data_classes(args):
    """(class names beside the data or None when unknown, number of images or None)."""
    if args.rec_val:
        return read_classes(args.rec_val), None
    classes, items, _ = scan_image_folder(args.data_dir)  # the labelling the folder loader uses
    return classes, len(items)


def load(args, params, ctx, num_classes):
    if args.symbol:
        return load_symbol_model(args.symbol, args.epoch, ctx=ctx)
    return load_gluon_model(args.model, params, num_classes=num_classes, ctx=ctx)


def check_agreement(loaded, classes, num_classes, source):
    """The data's classes and the model's must agree in count and, where both are named, in names."""
    if loaded.num_classes is not None and loaded.num_classes != num_classes:
        raise EvalError(
            f"the model has {loaded.num_classes} classes but the data ({source}) has {num_classes}; "
            "evaluate on data with the model's classes (or pass --num-classes for unlabeled class lists)"
        )
    if classes and loaded.classes and list(loaded.classes) != list(classes):
        differ = next(i for i, (a, b) in enumerate(zip(loaded.classes, classes)) if a != b)
        raise EvalError(
            f"the model's class {differ} is {loaded.classes[differ]!r} but the data's is "
            f"{classes[differ]!r}: the data was packed with another class list; "
            "pack it with --classes TRAIN.classes.json"
        )


def prepare(net, dtype, ctx):
    net.hybridize(static_alloc=True, static_shape=True)
    if dtype == "float32":
        return net
    if dtype == "bfloat16":
        if any(c.device_type == "gpu" for c in ctx):
            raise EvalError("--dtype bfloat16 is for CPUs in MXNet 1.9.1; use float16 on GPUs")
        return to_bfloat16(net, ctx[0])
    if not any(c.device_type == "gpu" for c in ctx):
        raise EvalError("--dtype float16 needs GPUs (MXNet has no float16 matrix products on CPUs)")
    from mxnet.contrib import amp

    return amp.convert_hybrid_block(net, target_dtype="float16", ctx=ctx[0])


def score(args, params, ctx, classes, num_classes, source, input_size):
    loaded = load(args, params, ctx, num_classes)
    check_agreement(loaded, classes, num_classes, source)
    size = args.input_size or loaded.input_size or input_size or 224
    if loaded.input_shape is not None and len(loaded.input_shape) != 3:
        raise EvalError(
            f"{loaded.model or 'the model'} is a video model; eval_imagenet.py scores image models"
        )
    check_input_shape(loaded.net, (3, size, size), loaded.model)
    batch = args.batch_size * len(ctx)
    if args.rec_val:
        data = val_iter(
            args.rec_val,
            args.rec_val_idx,
            batch,
            input_size=size,
            crop_ratio=args.crop_ratio,
            num_workers=args.num_data_workers,
        )
    else:
        data, _ = folder_val_loader(
            args.data_dir, batch, input_size=size, crop_ratio=args.crop_ratio, num_workers=0, classes=classes
        )
    net = prepare(loaded.net, args.dtype, ctx)
    bar = tqdm(
        total=args.num_images,
        unit="img",
        desc=os.path.basename(loaded.source or "model"),
        disable=args.no_progress,
    )
    try:
        metric, speed = evaluate(net, data, ctx, num_classes=num_classes, progress=bar.update)
    except mx.base.MXNetError as err:
        text = str(err)
        if "Shape" in text or "shape" in text:
            raise EvalError(
                f"the model does not accept {size}x{size} inputs ({text.strip().splitlines()[0][:160]}); "
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


def run(args):
    ctx = get_contexts(args.num_gpus)
    classes, args.num_images = data_classes(args)
    if args.rec_val:
        source = args.rec_val
    else:
        source = args.data_dir
    num_classes = args.num_classes or (len(classes) if classes else 1000)
    if args.num_classes and classes and len(classes) != args.num_classes:
        raise EvalError(f"--num-classes is {args.num_classes} but {source} has {len(classes)} classes")
    if args.rec_val:
        args.num_images = check_records(args.rec_val, args.rec_val_idx, num_classes).num_images

    if args.checkpoints:
        found = checkpoint.list_checkpoints(args.checkpoints)
        found = [c for c in found if c.batch == 0]
        if not found:
            raise EvalError(
                f"no complete checkpoint (imagenet-MODEL-EEEE.params + .json) in {args.checkpoints}"
            )
        results = []
        for ck in found:
            result, metric = score(
                args, ck.params, ctx, classes, num_classes, source, ck.meta.get("input_size")
            )
            result["epoch"] = ck.epoch
            results.append(result)
            print(
                f"epoch {ck.epoch:4d}  top-1 {pct(result['top1']):>7}  "
                f"top-5 {pct(result['top5']):>7}  {ck.params}"
            )
        best = max(results, key=lambda r: r["top1"])
        print(
            f"best: epoch {best['epoch']} ({best['source']}), top-1 {pct(best['top1'])}, "
            f"top-5 {pct(best['top5'])}"
        )
        out = dict(best, checkpoints=results, best=best["source"])
    else:
        out, metric = score(args, args.params, ctx, classes, num_classes, source, None)
        chance = 1 / num_classes
        print(
            f"{out['model'] or args.symbol}: top-1 {pct(out['top1'])}  top-5 {pct(out['top5'])}  "
            f"on {out['images']} images ({out['images_per_sec']:.1f} img/s; chance top-1 {pct(chance)})"
        )
        if args.per_class:
            write_per_class(args.per_class, metric, classes)
            print(f"per-class accuracy: {args.per_class}")
    out["data"] = source
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_usage(parser, args)
    return run_command(PROG, run, args)


if __name__ == "__main__":
    sys.exit(main())
