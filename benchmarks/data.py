"""Throughput of the training input pipelines against what one CPU training step consumes.

Builds a synthetic-but-realistic JPEG set: ``--images`` (default 500) random crops of
scikit-learn's two bundled photographs (``load_sample_images``: china.jpg and flower.jpg,
427 x 640), randomly flipped and tinted, resized to 500 x 375 or 375 x 500 (the typical ImageNet
size) and saved at JPEG quality 90, in two class folders; then packs them with
``a2gluon.data.pack`` (``--resize 0``, quality 95) into a temporary directory.

Measures, each case in a fresh worker process (this script with ``--worker``), ``--rounds``
times:

* ``ImageRecordIter`` (``a2gluon.data.train_iter``) with ``preprocess_threads`` 1 and 2 (MXNet
  1.9.1 caps it at max(cores / 2 - 1, 1): a 2-core machine decodes with one thread either way);
* a Gluon ``DataLoader`` over ``ImageRecordDataset`` (the same records) with Gluon-CV's training
  transforms (RandomResizedCrop(224), RandomFlipLeftRight, RandomColorJitter(0.4, 0.4, 0.4),
  RandomLighting(0.1), ToTensor, Normalize, as in Gluon-CV's ``train_imagenet.py``) with
  ``num_workers`` 0, 1 and 2.

Both decode and augment at 224 x 224 with the same jitter (0.4) and lighting (0.1), batch
``--batch-size`` (default 16).  After ``--skip`` batches (start-up, and the prefetch buffers
drained to their steady state) the next ``--batches`` are timed: images/s.  "Per core" divides
by the CPU time that all the case's processes (main and workers, from /proc) spent in that
window, i.e. images per CPU-second, so it does not depend on how many cores were free.

Then one training step of ``a2_resnet26`` (hybridized with static_alloc/static_shape, batch 16 at
224, softmax cross-entropy, SGD with momentum, forward + backward + update on random data) is
timed the same way (``--train-rounds`` fresh processes, ``--train-warmup`` untimed and
``--train-steps`` timed steps each, OMP_NUM_THREADS = all cores): the images/s the model consumes.
Reported are medians over all timed batches / steps of all rounds.

Data cases run with OMP_NUM_THREADS=1 (the decoding threads or worker processes are the
parallelism being measured); all workers get OMP_WAIT_POLICY=PASSIVE (as benchmarks/block.py).
The load average before and after is recorded: other processes on the machine distort timings.

Writes <out>/data.json and <out>/data.md and prints the Markdown table.

Usage: python benchmarks/data.py [--images N] [--rounds N] [--batches N] [--skip N]
       [--train-rounds N] [--train-steps N] [--out benchmarks/results]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INPUT_SIZE = 224
JITTER = 0.4
LIGHTING = 0.1
TRAIN_MODEL = "a2_resnet26"
TRAIN_BATCH = 16

CASES = {
    "recorditer-1": {"label": "ImageRecordIter", "kind": "recorditer", "workers": 1},
    "recorditer-2": {"label": "ImageRecordIter", "kind": "recorditer", "workers": 2},
    "dataloader-0": {"label": "Gluon DataLoader + Gluon-CV transforms", "kind": "dataloader", "workers": 0},
    "dataloader-1": {"label": "Gluon DataLoader + Gluon-CV transforms", "kind": "dataloader", "workers": 1},
    "dataloader-2": {"label": "Gluon DataLoader + Gluon-CV transforms", "kind": "dataloader", "workers": 2},
}


def make_images(folder, count, seed=0):
    """`count` JPEGs of 500 x 375 / 375 x 500 cut from scikit-learn's two sample photographs."""
    import cv2
    import numpy as np
    from sklearn.datasets import load_sample_images

    photos = [img[:, :, ::-1] for img in load_sample_images().images]  # RGB -> BGR for OpenCV
    rng = np.random.RandomState(seed)
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        scale = rng.uniform(0.5, 1.0)
        crop_h, crop_w = int(height * scale), int(width * scale)
        y, x = rng.randint(0, height - crop_h + 1), rng.randint(0, width - crop_w + 1)
        img = photo[y : y + crop_h, x : x + crop_w]
        if rng.rand() < 0.5:
            img = img[:, ::-1]
        size = (500, 375) if rng.rand() < 0.75 else (375, 500)  # (width, height)
        img = cv2.resize(np.ascontiguousarray(img), size, interpolation=cv2.INTER_AREA)
        img = np.clip(img * rng.uniform(0.8, 1.2, size=3), 0, 255).astype(np.uint8)
        target = folder / f"class{index % 2}" / f"{index:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def cpu_seconds(pids):
    """User + system CPU seconds of the processes `pids` so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def data_worker(case, prefix, batch_size, skip, batches):
    """Time one pipeline case in this process; print a JSON line."""
    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.data import MEAN_RGB, STD_RGB, train_iter

    cfg = CASES[case]
    rec, idx = prefix + ".rec", prefix + ".idx"
    pids = [os.getpid()]
    if cfg["kind"] == "recorditer":
        it = train_iter(
            rec,
            idx,
            batch_size,
            input_size=INPUT_SIZE,
            jitter=JITTER,
            pca_noise=LIGHTING,
            num_workers=cfg["workers"],
        )

        def batch_stream():
            while True:
                try:
                    yield it.next().data[0]
                except StopIteration:
                    it.reset()
    else:
        from mxnet.gluon.data.vision import ImageRecordDataset, transforms

        transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(INPUT_SIZE),
                transforms.RandomFlipLeftRight(),
                transforms.RandomColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER),
                transforms.RandomLighting(LIGHTING),
                transforms.ToTensor(),
                transforms.Normalize([m / 255 for m in MEAN_RGB], [s / 255 for s in STD_RGB]),
            ]
        )
        dataset = ImageRecordDataset(rec).transform_first(transform)
        loader = mx.gluon.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, last_batch="discard", num_workers=cfg["workers"]
        )
        pool = getattr(loader, "_worker_pool", None)
        pids += [p.pid for p in getattr(pool, "_pool", [])]

        def batch_stream():
            while True:
                for data, _ in loader:
                    yield data

    stream = batch_stream()
    for _ in range(skip):
        next(stream).wait_to_read()
    times = []
    cpu_start, wall_start = cpu_seconds(pids), time.perf_counter()
    for _ in range(batches):
        start = time.perf_counter()
        next(stream).wait_to_read()
        times.append(time.perf_counter() - start)
    wall = time.perf_counter() - wall_start
    cpu = cpu_seconds(pids) - cpu_start
    images = batches * batch_size
    print(
        json.dumps(
            {
                "case": case,
                "images_per_s": images / wall,
                "images_per_cpu_s": images / cpu if cpu > 0 else None,
                "cpu_s": cpu,
                "wall_s": wall,
                "batch_ms": [t * 1e3 for t in times],
                "processes": len(pids),
            }
        )
    )


def train_worker(warmup, steps):
    """Time training steps of the model on random data in this process; print a JSON line."""
    import mxnet as mx
    from mxnet import autograd, gluon

    sys.path.insert(0, str(ROOT))
    from a2gluon.models import get_model

    mx.random.seed(0)
    net = get_model(TRAIN_MODEL, classes=1000)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    data = mx.nd.random.normal(shape=(TRAIN_BATCH, 3, INPUT_SIZE, INPUT_SIZE))
    label = mx.nd.array([i % 1000 for i in range(TRAIN_BATCH)])

    def step():
        start = time.perf_counter()
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(TRAIN_BATCH)
        mx.nd.waitall()
        return time.perf_counter() - start

    warmup_s = [step() for _ in range(warmup)]
    step_s = [step() for _ in range(steps)]
    print(json.dumps({"step_s": step_s, "warmup_s": warmup_s}))


def run(cmd, env):
    """Run a worker; its JSON result, or an error description."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "error": f"worker exited with code {proc.returncode}",
            "stderr_tail": proc.stderr.splitlines()[-5:],
        }
    result = json.loads(lines[-1])
    result["process_wall_s"] = time.perf_counter() - start
    return result


def markdown(report):
    """The results as a Markdown table followed by notes on how they were measured."""
    train = report["train_step"]
    consumed = train.get("images_per_s")
    recorditer_cap = report["environment"]["recorditer_max_threads"]
    lines = [
        "| pipeline | decoding threads / worker processes | images/s | images/s per CPU core | "
        f"× what {TRAIN_MODEL} training consumes |",
        "|---|---|---:|---:|---:|",
    ]
    for case in report["cases"]:
        res = case["result"]
        if "error" in res:
            lines.append(f"| {case['label']} | {case['workers']} | failed ({res['error']}) | | |")
            continue
        workers = f"{case['workers']}" + (" (in the main process)" if case["workers"] == 0 else "")
        if case["kind"] == "recorditer" and case["workers"] > recorditer_cap:
            workers += f" (MXNet uses {recorditer_cap})"
        ratio = f"{res['images_per_s'] / consumed:.0f}×" if consumed else "n/a"
        lines.append(
            f"| {case['label']} | {workers} | {res['images_per_s']:.0f} | "
            f"{res['images_per_cpu_s']:.0f} | {ratio} |"
        )
    if consumed:
        lines.append(
            f"| *{TRAIN_MODEL} training step, batch {TRAIN_BATCH}* | *all cores* | *{consumed:.1f}* | | 1× |"
        )
    else:
        lines.append(f"| *{TRAIN_MODEL} training step* | | failed ({train.get('error')}) | | |")
    env, settings = report["environment"], report["settings"]
    lines += [
        "",
        f"Training input pipelines (decode + augment to {INPUT_SIZE}×{INPUT_SIZE}, batch "
        f"{settings['batch_size']}) on {settings['images']} JPEGs of 500×375 cut from scikit-learn's "
        "sample photographs, packed with `a2gluon.data.pack --resize 0`; both with colour jitter "
        f"{JITTER} and PCA lighting {LIGHTING}. ImageRecordIter is `a2gluon.data.train_iter`; the "
        "DataLoader reads the same records (`ImageRecordDataset`) with Gluon-CV's training "
        "transforms.",
        "",
        f"- **images/s**: median over {settings['rounds']} fresh processes per row of the images/s "
        f"of {settings['batches']} timed batches after {settings['skip']} untimed ones "
        "(start-up, prefetch buffers drained); OMP_NUM_THREADS=1.",
        "- **per CPU core**: images per CPU-second spent by all of the row's processes (main and "
        "workers) in the timed window.",
        "- **ImageRecordIter threads**: MXNet 1.9.1 caps `preprocess_threads` at "
        "max(cores / 2 − 1, 1), assuming hyper-threads (`iter_image_recordio_2.cc`): "
        f"{recorditer_cap} on this {env['cpu_count']}-core machine, 3 on 8 cores, 31 on 64.",
        f"- **training**: {TRAIN_MODEL}, hybridized, batch {TRAIN_BATCH} at {INPUT_SIZE}, forward + "
        f"backward + SGD update on random data, OMP_NUM_THREADS={env['cpu_count']}; median of "
        f"{train.get('steps', 0)} steps ({settings['train_rounds']} processes × "
        f"{settings['train_steps']}, after {settings['train_warmup']} untimed each): "
        f"{train.get('median_step_s', float('nan')):.2f} s per step.",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, shared; 1-minute load average "
        f"{env['load_average_before'][0]:.2f} before and {env['load_average_after'][0]:.2f} after the "
        f"run; MXNet {env['mxnet']}, Python {env['python']}; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Input pipeline throughput against a CPU training step.")
    parser.add_argument("--images", type=int, default=500, help="JPEGs in the test set (default 500)")
    parser.add_argument("--batch-size", type=int, default=16, help="pipeline batch size (default 16)")
    parser.add_argument("--skip", type=int, default=4, help="untimed batches per process (default 4)")
    parser.add_argument("--batches", type=int, default=24, help="timed batches per process (default 24)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per pipeline case (default 3)")
    parser.add_argument("--train-rounds", type=int, default=2, help="fresh training processes (default 2)")
    parser.add_argument("--train-warmup", type=int, default=1, help="untimed training steps (default 1)")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps (default 3)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of the cases")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for option in ("images", "batch_size", "batches", "rounds", "train_rounds", "train_steps"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")

    if args.worker == "train":
        train_worker(args.train_warmup, args.train_steps)
        return
    if args.worker:
        data_worker(args.worker, args.prefix, args.batch_size, args.skip, args.batches)
        return
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    if not names or any(n not in CASES for n in names):
        parser.error(f"--cases: choose from {','.join(CASES)}")

    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.data import pack

    load_before = os.getloadavg()
    started = time.perf_counter()
    script = str(Path(__file__).resolve())
    base_env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    with tempfile.TemporaryDirectory(prefix="a2gluon-data-bench-") as tmp:
        tmp = Path(tmp)
        print(f"writing {args.images} JPEGs and packing them", file=sys.stderr, flush=True)
        make_images(tmp / "images", args.images)
        summary = pack(tmp / "images", tmp / "train", resize=0, quality=95, progress=False)
        prefix = str(tmp / "train")
        rec_mib = os.path.getsize(summary["rec"]) / 2**20

        cases = []
        data_env = dict(base_env, OMP_NUM_THREADS="1")
        for name in names:
            rounds = []
            for index in range(args.rounds):
                print(f"measuring {name}, round {index + 1} of {args.rounds}", file=sys.stderr, flush=True)
                cmd = [sys.executable, script, "--worker", name, "--prefix", prefix]
                cmd += ["--batch-size", str(args.batch_size), "--skip", str(args.skip)]
                cmd += ["--batches", str(args.batches)]
                rounds.append(run(cmd, data_env))
            done = [r for r in rounds if "error" not in r]
            result = {"error": rounds[0].get("error", "no rounds")} if not done else {}
            if done:
                result = {
                    "images_per_s": statistics.median(r["images_per_s"] for r in done),
                    "images_per_cpu_s": statistics.median(r["images_per_cpu_s"] for r in done),
                    "round_images_per_s": [r["images_per_s"] for r in done],
                    "round_images_per_cpu_s": [r["images_per_cpu_s"] for r in done],
                    "processes": done[0]["processes"],
                }
            cases.append(dict(CASES[name], name=name, result=result, rounds=rounds))

        train_env = dict(base_env, OMP_NUM_THREADS=str(os.cpu_count() or 1))
        train_rounds = []
        for index in range(args.train_rounds):
            print(f"measuring {TRAIN_MODEL} training, round {index + 1}", file=sys.stderr, flush=True)
            cmd = [sys.executable, script, "--worker", "train", "--train-warmup", str(args.train_warmup)]
            cmd += ["--train-steps", str(args.train_steps)]
            train_rounds.append(run(cmd, train_env))
    steps = [s for r in train_rounds if "error" not in r for s in r["step_s"]]
    train = {"rounds": train_rounds, "steps": len(steps)}
    if steps:
        train["median_step_s"] = statistics.median(steps)
        train["images_per_s"] = TRAIN_BATCH / train["median_step_s"]
    else:
        train["error"] = train_rounds[0].get("error")

    report = {
        "benchmark": "training input pipeline images/s vs a2_resnet26 training step, CPU",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "images": args.images,
            "image_size": "500x375 (25 % portrait)",
            "rec_mib": rec_mib,
            "input_size": INPUT_SIZE,
            "batch_size": args.batch_size,
            "skip": args.skip,
            "batches": args.batches,
            "rounds": args.rounds,
            "jitter": JITTER,
            "lighting": LIGHTING,
            "train_model": TRAIN_MODEL,
            "train_batch": TRAIN_BATCH,
            "train_rounds": args.train_rounds,
            "train_warmup": args.train_warmup,
            "train_steps": args.train_steps,
        },
        "environment": {
            "mxnet": mx.__version__,
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "omp_wait_policy": base_env["OMP_WAIT_POLICY"],
            # MXNet's ImageRecordIter uses at most max(cores / 2 - 1, 1) decoding threads
            "recorditer_max_threads": max((os.cpu_count() or 1) // 2 - 1, 1),
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "cases": cases,
        "train_step": train,
        "total_wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "data.md").write_text(table, encoding="utf-8")
    print(table, end="")


if __name__ == "__main__":
    main()
