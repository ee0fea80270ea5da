"""decord against PyAV (clips per second per core, exact frame indices, memory), and the video
training pipeline's clips per second against what a CPU training step of a2_resnet26_3d consumes.

Test videos: a camera panning over one of scikit-learn's sample photographs with a strip of 10
black/white blocks at the top that spells each frame's index in binary, so that every decoded
frame says which frame it is. "kinetics": 320×240 (what `a2gluon pack-video --short-side 240`
gives), 300 frames at 30 fps (10 s, a Kinetics clip), as MPEG-4 part 2 `.avi` (UCF-101's codec),
H.264 `.mp4` and `.mkv` (libx264 defaults: B-frames, key frame every 250 frames) and VP8 `.webm`;
"motion": the motion test set's size (96×72, 32 frames, `a2gluon.data.motion`). All written
with PyAV.

- **clips/s**, **clips/CPU-s**: training clips (16 frames 2 apart at a random start, seeded, the
  same clips for both libraries) decoded to RGB arrays at the native size, one video reader per
  clip as a loader opens each video, decoder threads 1 (parallelism comes from worker
  processes), OMP_NUM_THREADS=1; median over fresh processes. clips/CPU-s counts the process's
  CPU time, so other load on the machine does not lower it.
- **exact**: clips (training clips and 10-clip evaluation index sets spread over the video,
  requested in one call each) whose decoded frames carry exactly the requested indices.
- **peak MiB**: peak RSS of the process after the clips minus before the first one.
- decord is imported after MXNet, as a2gluon would: `import decord` *before* `import mxnet`
  aborts the process (`random_device could not be read`, SIGABRT), recorded in the JSON.

The training pipeline: `VideoSource` (`a2gluon.data.video`) over motion-set videos
(`write_motion_set`: 5 classes × 2 photographs, 300 frames of 320×240 at 30 fps, all `.avi` or
all `.mp4`) giving batches (`--batch`, 4) of training clips (random start, shorter side
jittered from S to 1.25 S while decoding, random crop, flip, ImageNet mean/std, float32) with 1
and 2 `--num-data-workers`, at the paper's ablation clip 16×112×112 (frame step 2, shorter side
128, as `configs/a2_resnet26_3d_kinetics_ablation.yaml`) and a small 8×64×64 (step 4, shorter
side 72).

- **clips/s**: timed batches after untimed ones (worker start-up, prefetch), all in one epoch
  (`steps_per_epoch` raised, the shard wraps around, as a Kinetics epoch of 240k videos would),
  OMP_NUM_THREADS=1; median over fresh processes. **clips/CPU-s**: per CPU-second of the main
  process and its loading workers together (not lowered by other load on the machine).
- **training step**: a2_resnet26_3d (400 classes), hybridized, forward + backward + SGD update
  (momentum) on random clips of the same shape and batch, all cores (`--threads`); clips/CPU-s
  from the process's CPU time.
- **× step**: pipeline clips/s over training clips/s (≥ 1: the loader keeps up), and per core:
  clips per CPU-second over training clips per CPU-second (≥ 1: one core of loading feeds more
  than one core of training). **loading's CPU share**: the part of the cores loading takes
  when it and training share them, (1/P) / (1/P + 1/T) with P, T the clips per CPU-second.

Usage: python benchmarks/video_decode.py [--quick] [--parts decoders,pipeline] [--rounds N]
       [--clips N] [--shapes ablation,small] [--formats avi,mp4] [--data-workers 1,2] [--out DIR]
       [--render]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness as h

LIBRARIES = ("pyav", "decord")
FILES = {
    "kinetics-avi": ((320, 240, 300), ".avi"),
    "kinetics-mp4": ((320, 240, 300), ".mp4"),
    "kinetics-mkv": ((320, 240, 300), ".mkv"),
    "kinetics-webm": ((320, 240, 300), ".webm"),
    "motion-avi": ((96, 72, 32), ".avi"),
    "motion-mp4": ((96, 72, 32), ".mp4"),
}
BITS, NEW_LENGTH, NEW_STEP, EVAL_CLIPS = 10, 16, 2, 10
PARTS = ("decoders", "pipeline")
# clip shapes: (frames, frame step, crop, shorter side); the ablation's as its recipe file
SHAPES = {"ablation": (16, 2, 112, 128), "small": (8, 4, 64, 72)}
FORMATS = {"avi": ".avi", "mp4": ".mp4"}  # MPEG-4 part 2, H.264 (write_video's codecs)
FORMAT_NAMES = {"avi": "`.avi` MPEG-4 part 2", "mp4": "`.mp4` H.264"}
TRAIN_MODEL, TRAIN_CLASSES = "a2_resnet26_3d", 400
DECODER_KEYS = ("files", "cases", "import_order")  # the decoder comparison's part of the report


def index_frames(width, height, count):
    """`count` RGB frames panning over a sample photograph, frame i's index in the top strip."""
    import cv2
    import numpy as np
    from sklearn.datasets import load_sample_images

    photo = load_sample_images().images[0]
    block = width // BITS
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        x = int((photo.shape[1] - width * 1.2) * i / max(count - 1, 1))
        view = photo[60 : 60 + int(height * 1.2), x : x + int(width * 1.2)]
        frames[i] = cv2.resize(view, (width, height), interpolation=cv2.INTER_AREA)
        for b in range(BITS):
            frames[i, :block, b * block : (b + 1) * block] = 255 if (i >> b) & 1 else 0
    return frames


def read_index(frame):
    """The index a decoded frame spells (the inner half of each block, thresholded)."""
    block = frame.shape[1] // BITS
    inner = slice(block // 4, block - block // 4)
    bits = [frame[inner, b * block : (b + 1) * block][:, inner].mean() > 127 for b in range(BITS)]
    return sum(1 << b for b, bit in enumerate(bits) if bit)


def index_sets(num_frames, clips, seed=0):
    """The requested index lists: `clips` training clips, then `clips // 4` evaluation sets."""
    import numpy as np

    from a2gluon.data.video import train_indices, view_indices

    rng = np.random.RandomState(seed)
    train = [train_indices(num_frames, NEW_LENGTH, NEW_STEP, rng).tolist() for _ in range(clips)]
    evals = [view_indices(num_frames, NEW_LENGTH, NEW_STEP, EVAL_CLIPS).ravel().tolist()]
    return train, evals * max(1, clips // 4)


def reader(library):
    """read(path, indices) -> N x H x W x 3 uint8 for `library` (MXNet imported first)."""
    import mxnet  # noqa: F401  (as in a2gluon; decord before mxnet aborts the process)

    if library == "pyav":
        from a2gluon.data.video_decode import read_frames

        return read_frames
    import decord

    def read(path, indices):
        return decord.VideoReader(path, num_threads=1).get_batch(list(indices)).asnumpy()

    return read


def measure(case):
    """One worker's measurement: a decoder, the training pipeline or the training step."""
    kinds = {"pipeline": measure_pipeline, "train": measure_train}
    return kinds.get(case.get("kind"), measure_decoder)(case)


def rates(clips, wall, cpu):
    """Clips per second and per CPU-second (None without CPU time)."""
    return {"clips_per_s": clips / wall, "clips_per_cpu_s": h.ratio(clips, cpu)}


def measure_decoder(case):
    """Clips/s, clips/CPU-s, exactness and memory of one library on one file."""
    read = reader(case["library"])
    train, evals = index_sets(case["num_frames"], case["clips"])
    read(case["path"], train[0])  # warm-up: libraries loaded, file cached
    before = h.peak_rss_mib()
    cpu, start = time.process_time(), time.perf_counter()
    exact = 0
    for indices in train:
        frames = read(case["path"], indices)
        exact += [read_index(f) for f in frames] == list(indices)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    exact += sum([read_index(f) for f in read(case["path"], ix)] == list(ix) for ix in evals)
    peak = h.peak_rss_mib()
    result = dict(rates(len(train), wall, cpu), exact=exact, requests=len(train) + len(evals))
    return dict(result, peak_mib=peak - before, peak_rss_mib=peak)


def measure_pipeline(case):
    """Clips/s and clips per CPU-second of VideoSource's training batches."""
    from a2gluon.data.video import VideoSource

    frames, step, size, short_side = SHAPES[case["shape"]]
    clip = dict(new_length=frames, new_step=step, input_size=size, short_side=short_side)
    source = VideoSource(case["root"], **clip, num_data_workers=case["workers"], seed=0)
    try:
        source.check(source.num_classes)  # probes the videos in the loading processes (they start)
        source.plan(case["batch"])
        source.steps_per_epoch = case["skip"] + case["batches"]  # one epoch: no boundary drains the prefetch
        batches = source.train(0)
        for _ in range(case["skip"]):
            batches.next().data[0].wait_to_read()
        executor = source.pool._executor
        pids = [os.getpid(), *(getattr(executor, "_processes", None) or {})]
        cpu, start = h.cpu_seconds(pids), time.perf_counter()
        for _ in range(case["batches"]):
            batches.next().data[0].wait_to_read()
        wall, cpu = time.perf_counter() - start, h.cpu_seconds(pids) - cpu
        # Let the clips in flight finish before the pool ends: WorkerPool.close() terminates the
        # workers, and one killed while writing its clip left the result reader blocked for good.
        batches.reset()  # the batch generator closed: tasks not yet started are cancelled
        if source.pool._executor is not None:
            source.pool._executor.shutdown(wait=True)
    finally:
        source.close()
    result = dict(rates(case["batches"] * case["batch"], wall, cpu), processes=len(pids))
    result.update(skipped=len(source.skipped), load_average=os.getloadavg()[0])
    return dict(result, peak_rss_mib=h.peak_rss_mib())


def measure_train(case):
    """Passes, clips/s and clips per CPU-second of one training step of TRAIN_MODEL on random clips."""
    frames, _, size, _ = SHAPES[case["shape"]]
    batch = case["batch"]
    step = h.sgd_step(TRAIN_MODEL, TRAIN_CLASSES, (batch, 3, frames, size, size))
    warm = [h.timed_ms(step) for _ in range(case["warmup"])]
    cpu = time.process_time()
    result = h.passes(step, 0, case["steps"])
    cpu = time.process_time() - cpu
    timed = rates(batch * case["steps"], sum(result["timings_ms"]) / 1e3, cpu)
    return dict(result, warmup_ms=warm, **timed, load_average=os.getloadavg()[0])


def import_order():
    """Exit codes of `import decord; import mxnet` and the other way round."""
    out = {}
    codes = {"decord_then_mxnet": "import decord, mxnet", "mxnet_then_decord": "import mxnet, decord"}
    for name, code in codes.items():
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        out[name] = {"exit_code": proc.returncode, "stderr_tail": proc.stderr.strip().splitlines()[-1:]}
    return out


def description(part):
    """The module docstring's description of the decoder comparison (0) or of the pipeline (1)."""
    decoders, pipeline = h.description(__doc__).split("\n\nThe training pipeline: ")
    return decoders if part == 0 else "The training pipeline: " + pipeline


def render_decoders(report):
    """The decoder comparison's table and its notes."""
    s = report.get("decoder_settings") or report["settings"]
    rows = []
    for name in report["files"]:
        cells = [name, report["files"][name]["size"], f"{report['files'][name]['bytes'] / 1024:.0f}"]
        for library in LIBRARIES:
            res = report["cases"][f"{library}/{name}"]
            cells += [h.spread(res, "clips_per_s"), h.spread(res, "clips_per_cpu_s")]
        for library in LIBRARIES:
            res = report["cases"][f"{library}/{name}"]
            cells.append(f"{res['exact']}/{res['requests']}" if "exact" in res else h.fmt(res, "exact"))
        cells += [h.fmt(report["cases"][f"{lib}/{name}"], "peak_mib", "{:.0f}") for lib in LIBRARIES]
        rows.append(cells)
    header = "video|size|file KiB|PyAV clips/s|PyAV clips/CPU-s|decord clips/s|decord clips/CPU-s|PyAV exact"
    header += "|decord exact|PyAV peak MiB|decord peak MiB"
    code = report["import_order"]["decord_then_mxnet"]["exit_code"]
    order = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    sets = max(1, s["clips"] // 4)
    settings = f"{s['clips']} training clips per process and {sets} evaluation index sets of {EVAL_CLIPS}×"
    settings += f"{NEW_LENGTH} frames, {s['rounds']} processes per cell; `import decord, mxnet` {order}."
    carried = report.get("carried", {}).get("decoders")
    if carried:
        before, after = carried["load_average_before"][0], carried["load_average_after"][0]
        settings += f" Kept from the run of {carried['date']} (1-minute load average {before:.2f} before, "
        settings += f"{after:.2f} after it)."
    return h.table(header, rows, "llrrrrrrrrr") + ["", description(0), f"- {settings}"]


def spread(result, key):
    """h.spread's 'median (lowest–highest)' with 2 decimals below 10 (a training step's clips/s)."""
    values = [v for v in [result.get(key), *result.get("round_" + key, [])] if v is not None]
    if not values:
        return h.fmt(result, key)
    digits = 2 if max(values) < 10 else 1
    text = f"{result[key]:.{digits}f}"
    if len(values) > 2:
        text += f" ({min(values[1:]):.{digits}f}–{max(values[1:]):.{digits}f})"
    return text


def render_pipeline(report):
    """The pipeline's table against the training step, and its notes."""
    part = report["pipeline"]
    s, rows = part["settings"], []
    loads = []
    for shape in part["shapes"]:
        frames, step, size, short_side = SHAPES[shape]
        clip = f"{frames}×{size}×{size} (step {step}, short side {short_side})"
        train = part["train"][shape]
        loads += train.get("round_load_average", [])
        t_wall, t_cpu = train.get("clips_per_s"), train.get("clips_per_cpu_s")
        for fmt in part["formats"]:
            for workers in part["workers"]:
                res = part["cases"][f"{shape}/{fmt}/{workers}"]
                loads += res.get("round_load_average", [])
                p_cpu = res.get("clips_per_cpu_s")
                share = f"{(1 / p_cpu) / (1 / p_cpu + 1 / t_cpu):.1%}" if p_cpu and t_cpu else "n/a"
                speeds = [spread(res, "clips_per_s"), spread(res, "clips_per_cpu_s")]
                times = [
                    h.times(h.ratio(res.get("clips_per_s"), t_wall), 1),
                    h.times(h.ratio(p_cpu, t_cpu), 1),
                ]
                rows.append([clip, FORMAT_NAMES[fmt], workers, *speeds, *times, share])
        step_cells = [f"*{spread(train, key)}*" for key in ("clips_per_s", "clips_per_cpu_s")]
        step_label = f"*{TRAIN_MODEL} training step, batch {s['batch']}*"
        rows.append([clip, step_label, f"*{s['threads']} threads*", *step_cells, "1×", "1×", ""])
    header = "clip|videos|loading workers|clips/s|clips/CPU-s|× step|× step per core|loading's CPU share"
    video = part["videos"]
    settings = (
        f"{video['count']} videos of {video['size']} per format ({', '.join(video['kib'])} KiB in all); "
        f"batch {s['batch']}, {s['batches']} timed batches after {s['skip']} per process, "
        f"{s['rounds']} processes per row; training: {s['train_steps']} timed steps after "
        f"{s['train_warmup']} per process, {s['rounds']} processes; all processes alternating (A B B A)."
    )
    if loads:
        settings += f" 1-minute load average during the processes: {min(loads):.1f}–{max(loads):.1f}."
    title = "### The training pipeline against a training step"
    return ["", title, "", *h.table(header, rows, "lllrrrrr"), "", description(1), f"- {settings}"]


def render(report):
    """The tables and their notes."""
    lines = []
    if "cases" in report:
        lines += render_decoders(report)
    if "pipeline" in report:
        lines += render_pipeline(report)
    return "\n".join(lines + [h.machine_line(report), ""])


def write_videos(folder, fmt, size):
    """A motion set of `size` (width, height, frames) videos, all in format `fmt`: its class-folder
    root, its number of videos and their bytes."""
    from a2gluon.data.motion import write_motion_set

    width, height, frames = size
    videos = dict(frames=frames, width=width, height=height, fps=30, formats=(FORMATS[fmt],))
    made = write_motion_set(os.path.join(folder, fmt), train_photos=2, val_photos=0, force=True, **videos)
    size_bytes = sum(f.stat().st_size for f in Path(made["train"]).rglob("*") if f.is_file())
    return made["train"], made["train_videos"], size_bytes


def run_decoders(run, args, tmp):
    """The decoder comparison: {'files', 'cases', 'import_order'}."""
    from a2gluon.data.video_decode import write_video

    files = {}
    for name in args.files:
        (width, height, count), suffix = FILES[name]
        path = os.path.join(tmp, name + suffix)
        h.say(f"writing {path}")
        write_video(path, index_frames(width, height, count), fps=30)
        size = f"{width}×{height}×{count}"
        files[name] = {"path": path, "num_frames": count, "size": size, "bytes": os.path.getsize(path)}
    keys = [(lib, name) for name in args.files for lib in LIBRARIES]

    def case_of(key):
        library, name = key
        return dict(files[name], library=library, clips=args.clips)

    rounds = run.rounds(keys, case_of, timeout=600, threads=1)
    cases = {}
    for key, results in rounds.items():
        res = h.combine(results, per_process=("clips_per_s", "clips_per_cpu_s"))
        done = [r for r in results if "error" not in r]
        if done:
            res.update(exact=sum(r["exact"] for r in done), requests=sum(r["requests"] for r in done))
        cases["/".join(key)] = res
    files = {name: {k: v for k, v in f.items() if k != "path"} for name, f in files.items()}
    return {"files": files, "cases": cases, "import_order": import_order()}


def run_pipeline(run, args, tmp):
    """The pipeline against the training step, all processes alternating: {'pipeline': ...}."""
    roots, count, kib = {}, 0, []
    for fmt in args.formats:
        h.say(f"writing the {fmt} motion set ({'×'.join(map(str, args.video_size))})")
        roots[fmt], count, size_bytes = write_videos(tmp, fmt, args.video_size)
        kib.append(f"{fmt} {size_bytes / 1024:.0f}")
    keys = [("train", shape) for shape in args.shapes]
    keys += [(shape, fmt, w) for shape in args.shapes for fmt in args.formats for w in args.data_workers]

    def case_of(key):
        if key[0] == "train":
            steps = dict(warmup=args.train_warmup, steps=args.train_steps)
            return dict(batch=args.batch, kind="train", shape=key[1], **steps)
        shape, fmt, workers = key
        loading = dict(root=roots[fmt], workers=workers, skip=args.skip, batches=args.batches)
        return dict(batch=args.batch, kind="pipeline", shape=shape, **loading)

    out = run.rounds(keys, case_of, timeout=900, threads=lambda key: args.threads if key[0] == "train" else 1)
    per = ("clips_per_s", "clips_per_cpu_s", "load_average")
    cases = {"/".join(map(str, key)): h.combine(out[key], per) for key in keys if key[0] != "train"}
    train = {key[1]: h.combine(out[key], per) for key in keys if key[0] == "train"}
    width, height, frames = args.video_size
    names = ("batch", "skip", "batches", "rounds", "train_steps", "train_warmup", "threads")
    settings = {k: getattr(args, k) for k in names}
    videos = {"count": count, "size": f"{width}×{height}×{frames}", "kib": kib}
    part = {"settings": settings, "videos": videos, "shapes": args.shapes, "formats": args.formats}
    return {"pipeline": dict(part, workers=args.data_workers, cases=cases, train=train)}


def carried(args, parts):
    """The parts not run this time, from the report in --out (a full run replaces them)."""
    path = args.out / "video_decode.json" if args.out is not None else None
    if path is None or not path.exists():
        return {}
    old = json.loads(path.read_text(encoding="utf-8"))
    out, note = {}, {}
    loads = {k: old["environment"][k] for k in ("load_average_before", "load_average_after")}
    since = dict(date=old["date"], **loads)
    if "decoders" not in parts and "cases" in old:
        out.update({k: old[k] for k in DECODER_KEYS})
        out["decoder_settings"] = old.get("decoder_settings") or old["settings"]
        note["decoders"] = old.get("carried", {}).get("decoders") or since
    if "pipeline" not in parts and "pipeline" in old:
        out["pipeline"] = old["pipeline"]
        note["pipeline"] = old.get("carried", {}).get("pipeline") or since
    if note:
        out["carried"] = note
    return out


def size_3(text):
    """argparse type: WIDTHxHEIGHTxFRAMES, as a tuple of integers."""
    values = text.lower().replace("×", "x").split("x")
    if len(values) != 3 or not all(v.isdigit() and int(v) > 0 for v in values):
        raise argparse.ArgumentTypeError(f"give WIDTHxHEIGHTxFRAMES such as 320x240x300, got {text!r}")
    return tuple(int(v) for v in values)


def options(p):
    kept = "what to measure (default both; a part left out is kept from --out's JSON)"
    p.add_argument("--parts", type=h.names(PARTS), default=list(PARTS), help=kept)
    h.number(p, "--clips", 40, "decoders: training clips per process")
    files = "decoders: subset of " + ",".join(FILES)
    p.add_argument("--files", type=h.names(FILES), default=list(FILES), help=files)
    p.add_argument("--shapes", type=h.names(SHAPES), default=list(SHAPES), help="pipeline: clip shapes")
    p.add_argument("--formats", type=h.names(FORMATS), default=list(FORMATS), help="pipeline: video formats")
    workers = "pipeline: loading processes (default 1,2)"
    p.add_argument("--data-workers", type=h.integers, default=[1, 2], help=workers)
    size = "pipeline: WxHxFRAMES of the videos"
    p.add_argument("--video-size", type=size_3, default=(320, 240, 300), help=size)
    h.number(p, "--batch", 4, "pipeline and training: clips per batch")
    h.number(p, "--skip", 2, "pipeline: untimed batches per process", least=0)
    h.number(p, "--batches", 12, "pipeline: timed batches per process")
    h.number(p, "--train-steps", 2, "training: timed steps per process")
    h.number(p, "--train-warmup", 1, "training: untimed steps per process", least=0)
    decoders = {"rounds": 1, "clips": 4, "files": ["motion-avi"]}
    pipeline = {"shapes": ["small"], "formats": ["avi"], "data_workers": [1], "video_size": (160, 120, 64)}
    return dict(decoders, **pipeline, batch=2, skip=1, batches=3, train_steps=1)


def bench(run, args):
    report = carried(args, args.parts)
    with tempfile.TemporaryDirectory(prefix="a2gluon-video-bench-") as tmp:
        if "decoders" in args.parts:
            report.update(run_decoders(run, args, tmp))
        if "pipeline" in args.parts:
            report.update(run_pipeline(run, args, tmp))
    return report


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, measure, render, rounds=3, worker_threads=1)
