"""The end-to-end demo (`make demo`): real images → packed records → train a2_resnet26 →
evaluate the best checkpoint → export symbol/params/ONNX → predict one image → summary.

Every step runs the project's own command line, printed before it runs, so the demo is also a
recipe: the same commands work on ImageNet with other paths and sizes.  The data are
scikit-learn's bundled handwritten digits (1797 real 8 x 8 scans, 10 classes), laid out as
ImageNet class folders; nothing is downloaded.

a2gluon demo [--out runs/demo] [--epochs 6] [--input-size 32]
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROG = "a2gluon demo"


def step(title, cmd, log=None):
    """Run one command of the recipe, printing it; its output goes to the console (and `log`)."""
    print(f"\n== {title}\n$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=log is not None)
    if log is not None:
        with open(log, "w") as f:
            f.write(proc.stdout + proc.stderr)
        sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        if log is not None:
            sys.stderr.write(proc.stderr)
        raise SystemExit(f"demo: step '{title}' failed (exit {proc.returncode}); see the output above")
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    return proc


def gpus_for_training():
    """1 when MXNet can train on a GPU here, else 0 (CPU)."""
    from ..engine.devices import DeviceError, get_contexts

    try:
        get_contexts(1)
    except DeviceError:
        return 0
    return 1


def main(argv=None, prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "demo"), help="where everything is written")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", default="a2_resnet26")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.input_size < 32 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be at least 1, --input-size at least 32")
    py = sys.executable
    out = os.path.abspath(args.out)
    data, records, run, export = (os.path.join(out, d) for d in ("images", "records", "train", "export"))
    start = time.perf_counter()
    print(f"a2gluon demo: train {args.model} (ResNet-26 with two double attention blocks) on real images")
    print(f"everything goes to {out}")
    if os.path.isdir(run):
        shutil.rmtree(run)  # the demo's own previous run; a fresh one each time
    os.makedirs(records, exist_ok=True)

    step("1. a dataset of real images in ImageNet layout", [py, "-m", "a2gluon", "digits", data])
    size = str(args.input_size)
    step(
        "2. pack the training images (im2rec format)",
        [py, "-m", "a2gluon", "pack", f"{data}/train", f"{records}/train", "--resize", size, "--force"],
    )
    step(
        "   pack the validation images with the training classes",
        [py, "-m", "a2gluon", "pack", f"{data}/val", f"{records}/val", "--resize", size, "--force"]
        + ["--classes", f"{records}/train.classes.json"],
    )
    gpus = gpus_for_training()
    train_cmd = [py, "train_imagenet.py", "--model", args.model, "--input-size", size]
    train_cmd += ["--rec-train", f"{records}/train.rec", "--rec-train-idx", f"{records}/train.idx"]
    train_cmd += ["--rec-val", f"{records}/val.rec", "--rec-val-idx", f"{records}/val.idx"]
    train_cmd += ["--batch-size", str(args.batch_size), "--num-epochs", str(args.epochs), "--lr", "0.02"]
    train_cmd += ["--lr-mode", "cosine", "--warmup-epochs", "1", "--min-random-area", "0.8", "--no-wd"]
    train_cmd += ["--num-data-workers", "2", "--log-interval", "20", "--save-dir", run]
    train_cmd += ["--num-gpus", "1"] if gpus else []
    step(f"3. train on {'a GPU' if gpus else 'the CPU'}", train_cmd)

    best = os.path.join(run, f"imagenet-{args.model}-best.params")
    result_json = os.path.join(out, "eval.json")
    step(
        "4. score the best checkpoint (single centre crop)",
        [py, "eval_imagenet.py", "--params", best, "--rec-val", f"{records}/val.rec"]
        + [
            "--rec-val-idx",
            f"{records}/val.idx",
            "--json-out",
            result_json,
            "--per-class",
            f"{out}/per_class.csv",
        ],
    )
    prefix = os.path.join(export, args.model)
    step(
        "5. export symbol + params and ONNX",
        [py, "-m", "a2gluon", "export", "--params", best, "--out", prefix, "--onnx", "--force"],
    )
    image = sorted(
        os.path.join(f"{data}/val/digit7", f)
        for f in os.listdir(f"{data}/val/digit7")
        if not f.startswith(".")
    )[0]
    step(
        "6. predict one image with the exported model",
        [py, "-m", "a2gluon", "predict", image, "--symbol", prefix, "--topk", "3"],
    )

    with open(result_json) as f:
        result = json.load(f)
    with open(os.path.join(records, "train.classes.json")) as f:
        num_classes = len(json.load(f)["classes"])
    chance1, chance5 = 1 / num_classes, min(5, num_classes) / num_classes
    print("\n== summary")
    print(
        f"{args.model} after {args.epochs} epochs: top-1 {100 * result['top1']:.1f} % "
        f"(chance {100 * chance1:.0f} %), top-5 {100 * result['top5']:.1f} % (chance {100 * chance5:.0f} %) "
        f"on {result['images']} held-out images"
    )
    for what, path in (
        (
            "checkpoints",
            f"{run}/imagenet-{args.model}-EEEE.params/.states/.json (best: {os.path.basename(best)})",
        ),
        ("training log", f"{run}/train.log, {run}/metrics.jsonl"),
        ("training curves", f"{run}/curves.png"),
        ("evaluation", f"{result_json}, {out}/per_class.csv"),
        (
            "exported model",
            f"{prefix}-symbol.json, {prefix}-0000.params, {prefix}.onnx, {prefix}.classes.json",
        ),
    ):
        print(f"  {what:16s} {path}")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(
            {
                "model": args.model,
                "epochs": args.epochs,
                "top1": result["top1"],
                "top5": result["top5"],
                "chance_top1": chance1,
                "images": result["images"],
                "save_dir": run,
                "export_prefix": prefix,
                "seconds": time.perf_counter() - start,
            },
            f,
            indent=1,
        )
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
