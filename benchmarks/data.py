"""Throughput of the training input pipelines against what one CPU training step consumes.

Training input pipelines (decode + augment to 224×224, colour jitter 0.4, PCA lighting 0.1) on
JPEGs of 500×375 / 375×500 cut from scikit-learn's sample photographs, packed with
`a2gluon.data.pack --resize 0`. ImageRecordIter is `a2gluon.data.train_iter`; the DataLoader
reads the same records (`ImageRecordDataset`) with Gluon-CV's training transforms
(RandomResizedCrop, flip, colour jitter, lighting, ToTensor, Normalize).

- **images/s**: median over fresh processes (OMP_NUM_THREADS=1) of the images/s of the timed
  batches after the untimed ones (start-up, prefetch buffers drained).
- **per CPU core**: images per CPU-second spent by all of the row's processes (main and
  workers) in the timed window.
- **ImageRecordIter threads**: MXNet 1.9.1 caps `preprocess_threads` at max(cores / 2 − 1, 1),
  assuming hyper-threads (`iter_image_recordio_2.cc`): 1 on 2 cores, 3 on 8, 31 on 64.
- **training**: a2_resnet26, hybridized, 224×224, forward + backward + SGD update (momentum) on
  random data, all the cores: the images/s one training step consumes.
"""

import os
import tempfile
import time
from pathlib import Path

import _harness as h

INPUT_SIZE, JITTER, LIGHTING = 224, 0.4, 0.1
TRAIN_MODEL = "a2_resnet26"
LABELS = {"recorditer": "ImageRecordIter", "dataloader": "Gluon DataLoader + Gluon-CV transforms"}
CASES = {f"recorditer-{n}": ("recorditer", n) for n in (1, 2)}
CASES.update({f"dataloader-{n}": ("dataloader", n) for n in (0, 1, 2)})


def make_records(folder, count, seed=0):
    """`count` JPEGs of 500 x 375 / 375 x 500 cut from scikit-learn's two sample photographs, in
    two class folders under folder/images, packed into folder/train.rec (+ .idx); the prefix."""
    import cv2
    import numpy as np
    from sklearn.datasets import load_sample_images

    from a2gluon.data import pack

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
        target = Path(folder) / "images" / f"class{index % 2}" / f"{index:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    pack(Path(folder) / "images", Path(folder) / "train", resize=0, quality=95, progress=False, num_workers=1)
    return str(Path(folder) / "train")


def batches(kind, workers, prefix, batch_size):
    """An endless stream of augmented batches from one pipeline, and its processes' ids."""
    import mxnet as mx
    from mxnet.gluon.data.vision import ImageRecordDataset, transforms

    from a2gluon.data import MEAN_RGB, STD_RGB, train_iter

    if kind == "recorditer":
        it = train_iter(prefix + ".rec", prefix + ".idx", batch_size, input_size=INPUT_SIZE, jitter=JITTER,
                        pca_noise=LIGHTING, num_workers=workers)  # fmt: skip
        while True:
            try:
                yield it.next().data[0], [os.getpid()]
            except StopIteration:
                it.reset()
    crop, flip = transforms.RandomResizedCrop(INPUT_SIZE), transforms.RandomFlipLeftRight()
    jitter = transforms.RandomColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER)
    normalize = transforms.Normalize([m / 255 for m in MEAN_RGB], [s / 255 for s in STD_RGB])
    augment = [crop, flip, jitter, transforms.RandomLighting(LIGHTING), transforms.ToTensor(), normalize]
    dataset = ImageRecordDataset(prefix + ".rec").transform_first(transforms.Compose(augment))
    loader = mx.gluon.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, last_batch="discard", num_workers=workers
    )
    pids = [os.getpid()] + [p.pid for p in getattr(getattr(loader, "_worker_pool", None), "_pool", [])]
    while True:
        for data, _ in loader:
            yield data, pids


def measure(case):
    """Images/s of one pipeline case, or the passes of the training step."""
    if case["case"] == "train":
        return train_step(case["batch"], case["warmup"], case["steps"])
    stream = batches(*CASES[case["case"]], case["prefix"], case["batch_size"])
    for _ in range(case["skip"]):  # start-up; the prefetch buffers drained to their steady state
        data, pids = next(stream)
        data.wait_to_read()
    cpu, start = h.cpu_seconds(pids), time.perf_counter()
    for _ in range(case["batches"]):
        next(stream)[0].wait_to_read()
    wall, cpu = time.perf_counter() - start, h.cpu_seconds(pids) - cpu
    images = case["batches"] * case["batch_size"]
    per_cpu = h.ratio(images, cpu)
    return {"images_per_s": images / wall, "images_per_cpu_s": per_cpu, "pipeline_processes": len(pids)}


def train_step(batch, warmup, steps):
    """Passes of one training step of TRAIN_MODEL on random data."""
    step = h.sgd_step(TRAIN_MODEL, 1000, (batch, 3, INPUT_SIZE, INPUT_SIZE))
    return h.passes(step, warmup, steps)


def render(report):
    """The table and its notes."""
    s, env, train = report["settings"], report["environment"], report["train_step"]
    consumed, cap = train.get("images_per_s"), max((env["cpu_count"] or 1) // 2 - 1, 1)
    rows = []
    for case in report["cases"]:
        res, kind, workers = case["result"], case["kind"], case["workers"]
        text = f"{workers}" + (" (in the main process)" if workers == 0 else "")
        text += f" (MXNet uses {cap})" if kind == "recorditer" and workers > cap else ""
        cells = [h.fmt(res, "images_per_s", "{:.0f}"), h.fmt(res, "images_per_cpu_s", "{:.0f}")]
        rows.append([LABELS[kind], text, *cells, h.times(h.ratio(res.get("images_per_s"), consumed), 0)])
    step = f"*{TRAIN_MODEL} training step, batch {s['train_batch']}*"
    speed = f"*{consumed:.1f}*" if consumed else h.fmt(train, "")
    rows.append([step, "*all cores*", speed, "", "1×" if consumed else ""])
    header = "pipeline|decoding threads / worker processes|images/s|images/s per CPU core|× what "
    median = f"{train['median_ms'] / 1e3:.2f} s" if "median_ms" in train else "no"
    settings = (
        f"Batch {s['batch_size']}, {s['images']} JPEGs, {s['rounds']} processes per row, {s['batches']} "
        f"timed batches after {s['skip']}; training: {sum(train.get('repeat', []))} steps "
        f"({s['train_rounds']} processes × {s['train_steps']} after {s['train_warmup']}), {median} per step."
    )
    table = h.table(header + f"{TRAIN_MODEL} training consumes", rows, "llrrr")
    return "\n".join(table + h.notes(__doc__, report, settings))


def options(p):
    h.number(p, "--images", 500, "JPEGs in the test set")
    h.number(p, "--batch-size", 16, "pipeline batch size")
    h.number(p, "--skip", 4, "untimed batches per process")
    h.number(p, "--batches", 24, "timed batches per process")
    h.number(p, "--train-rounds", 2, "fresh training processes")
    h.number(p, "--train-steps", 3, "timed training steps")
    h.number(p, "--train-batch", 16, "training batch")
    h.number(p, "--train-warmup", 1, "untimed training steps", least=0)
    p.add_argument("--cases", type=h.names(CASES), default=list(CASES), help="subset of " + ",".join(CASES))
    quick = {"images": 48, "rounds": 1, "skip": 1, "batches": 2, "cases": ["recorditer-1", "dataloader-0"]}
    return dict(quick, train_rounds=1, train_warmup=1, train_steps=1, train_batch=2)


def bench(run, args):
    with tempfile.TemporaryDirectory(prefix="a2gluon-data-bench-") as tmp:
        h.say(f"writing {args.images} JPEGs and packing them")
        prefix = make_records(tmp, args.images)
        settings = {k: getattr(args, k) for k in ("batch_size", "skip", "batches")}
        rounds = run.rounds(args.cases, lambda n: dict(settings, case=n, prefix=prefix), threads=1)
    cases = [
        {"name": name, "kind": CASES[name][0], "workers": CASES[name][1],
         "result": h.combine(rounds[name], per_process=("images_per_s", "images_per_cpu_s"))}
        for name in args.cases
    ]  # fmt: skip
    case = dict(case="train", batch=args.train_batch, warmup=args.train_warmup, steps=args.train_steps)
    train = h.combine(run.rounds(["train"], lambda _: case, count=args.train_rounds)["train"])
    if "median_ms" in train:
        train["images_per_s"] = args.train_batch / train["median_ms"] * 1e3
    return {"cases": cases, "train_step": train}


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, measure, render, rounds=3, threads=False)
