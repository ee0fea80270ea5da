"""A² against Non-local against no block at the stages of resnet26_3d, and a sweep over L.

Part 1, the paper's comparison (1/4 reduction, Non-local without sub-sampling) at the outputs of
the conv2, conv3 and conv4 stages of ``resnet26_3d`` for a 16 x 112 x 112 clip (checked against
the model at start-up): conv2 128 channels x 8 x 56 x 56 (L = 25,088 positions), conv3 256 x 8 x
28 x 28 (L = 6,272), conv4 512 x 8 x 14 x 14 (L = 1,568).  For each stage,
``DoubleAttention(c, reduction=4, dims=3)`` and ``NonLocal(c, reduction=4, dims=3)`` are timed at
batch 1, float32, hybridized with static_alloc and static_shape, in two modes:

* ``train``: forward + backward (gradients of the input and of every parameter), what a training
  step pays for the block;
* ``forward``: inference mode.

"No block" is the identity: it costs nothing; its row gives the input's size for scale.

Every case runs in a fresh worker process (this script with ``--worker``): build, initialise,
hybridize, allocate the input, ``--warmup`` untimed passes, then ``--repeat`` timed passes (each
ended by waiting for all results), or ``--slow-repeat`` when the last warm-up pass took over a
second; ``--rounds`` processes per case (one when the first one's warm-up pass took over five
seconds: the Non-local block at conv2), the median of all timed passes is reported.  Memory is
the worker's peak RSS after the passes minus its peak RSS before the first one (as in
benchmarks/block.py).

The Non-local block at conv2 has an L x L = 25,088² float32 matrix per sample: 2.35 GiB, and the
softmax output and the two gradients as much again.  Before a Non-local case the script compares
an estimate (2 such matrices forward, 4 for training, plus 1 GiB) with MemAvailable and skips the
case, saying so in the table, when it does not fit; a worker that fails (e.g. killed for memory)
is reported as failed, not raised.

Part 2, a sweep over the number of positions L: 2-D inputs with 256 channels and H = W from 8 to
96 (L = 64 .. 9,216), forward pass, batch 1, one fresh process per point.  A² costs O(L c m)
(1x1 convolutions and the m x n global descriptors) and the Non-local block O(L c d + L² d):
the fitted log-log slopes of time over L should be about 1 and 2 at large L.  Slopes are fitted
by least squares on log(time) against log(L), over the points with L >= --fit-from (default
1,024; below it fixed per-operator costs dominate) and over all points; both are saved.
The plot is <out>/blocks_sweep.png.

Workers get OMP_NUM_THREADS = --threads (default $OMP_NUM_THREADS, else all cores),
OMP_WAIT_POLICY=PASSIVE and OMP_PROC_BIND=true unless set (see benchmarks/block.py).  The load
average before and after is recorded: other processes on the machine distort timings.

Writes <out>/blocks.json, <out>/blocks.md and <out>/blocks_sweep.png; prints the Markdown.

Usage: python benchmarks/blocks.py [--quick] [--rounds N] [--repeat N] [--stages conv2,conv3,conv4]
       [--modes train,forward] [--sweep 8,12,16,...] [--no-sweep] [--out benchmarks/results]
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = "resnet26_3d"
MODEL_INPUT = (3, 16, 112, 112)
STAGES = {  # stage: (channels, T, H, W) of its output for MODEL_INPUT
    "conv2": (128, 8, 56, 56),
    "conv3": (256, 8, 28, 28),
    "conv4": (512, 8, 14, 14),
}
KINDS = ("a2", "nonlocal")
LABELS = {"a2": "A²", "nonlocal": "Non-local", "none": "no block"}
MODES = ("train", "forward")
REDUCTION = 4
SWEEP_CHANNELS = 256
SWEEP_SIZES = (8, 12, 16, 24, 32, 48, 64, 96)
FIT_FROM = 1024
SLOW_SECONDS = 1.0
VERY_SLOW_SECONDS = 5.0
GIB = 2**30


def positions(shape):
    return math.prod(shape[1:])


def nonlocal_bytes(L, mode):
    """Estimated extra memory of the Non-local block: L x L float32 matrices (scores, softmax;
    and their gradients when training) plus 1 GiB for everything else."""
    return (2 if mode == "forward" else 4) * L * L * 4 + GIB


def mem_available():
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def max_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def stage_shapes():
    """The output shape (without batch) of the stages of MODEL for MODEL_INPUT, from the model."""
    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.models import get_model

    net = get_model(MODEL, classes=10)
    sym, shapes = mx.sym.var("data"), {}
    for child in net.features._children.values():
        sym = child(sym)
        stage = child.name.rsplit("_", 1)[-1]
        if stage in STAGES:
            _, out, _ = sym.infer_shape(data=(1,) + MODEL_INPUT)
            shapes[stage] = tuple(out[0][1:])
    return shapes


def make_block(kind, channels, dims):
    sys.path.insert(0, str(ROOT))
    from a2gluon.nn import DoubleAttention, NonLocal

    if kind == "a2":
        return DoubleAttention(channels, reduction=REDUCTION, dims=dims)
    return NonLocal(channels, reduction=REDUCTION, dims=dims)


def worker(kind, shape, mode, warmup, repeat, slow_repeat):
    """Time one block on one input shape in this process; print a JSON line."""
    import mxnet as mx
    from mxnet import autograd

    mx.random.seed(0)
    block = make_block(kind, shape[0], len(shape) - 1)
    block.initialize(ctx=mx.cpu())
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(1,) + tuple(shape))
    if mode == "train":
        x.attach_grad()
    mx.nd.waitall()
    baseline_kib = max_rss_kib()

    def one_pass():
        start = time.perf_counter()
        if mode == "train":
            with autograd.record():
                y = block(x)
            y.backward()
        else:
            y = block(x)
        mx.nd.waitall()
        return time.perf_counter() - start

    warmup_s = [one_pass() for _ in range(warmup)]
    count = slow_repeat if warmup_s and warmup_s[-1] > SLOW_SECONDS else repeat
    timings = [one_pass() for _ in range(count)]
    print(
        json.dumps(
            {
                "median_ms": statistics.median(timings) * 1e3,
                "timings_ms": [t * 1e3 for t in timings],
                "warmup_ms": [t * 1e3 for t in warmup_s],
                "peak_mib": (max_rss_kib() - baseline_kib) / 1024,
                "baseline_rss_mib": baseline_kib / 1024,
            }
        )
    )


def run_worker(args, env, kind, shape, mode):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, mode]
    cmd += ["--shape", ",".join(map(str, shape)), "--warmup", str(args.warmup)]
    cmd += ["--repeat", str(args.repeat), "--slow-repeat", str(args.slow_repeat)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        code = proc.returncode
        reason = "killed (out of memory?)" if code in (-9, 137) else f"exited with code {code}"
        return {"error": f"worker {reason}", "stderr_tail": proc.stderr.splitlines()[-5:]}
    result = json.loads(lines[-1])
    result["worker_wall_s"] = time.perf_counter() - start
    return result


def very_slow(rounds):
    """Whether a case's first process took over VERY_SLOW_SECONDS per warm-up pass: one
    process is then enough (its passes are seconds long) and keeps the run within minutes."""
    warm = rounds[0].get("warmup_ms") if rounds else None
    return bool(warm) and warm[-1] / 1e3 > VERY_SLOW_SECONDS


def combine(rounds):
    done = [r for r in rounds if "error" not in r]
    if not done:
        return {"error": rounds[0]["error"] if rounds else "not run", "rounds": rounds}
    timings = [t for r in done for t in r["timings_ms"]]
    return {
        "median_ms": statistics.median(timings),
        "timings_ms": timings,
        "round_median_ms": [r["median_ms"] for r in done],
        "peak_mib": max(r["peak_mib"] for r in done),
        "passes": [len(r["timings_ms"]) for r in done],
        "warmup_ms": [r["warmup_ms"] for r in done],
        "failed_rounds": [r for r in rounds if "error" in r],
    }


def fit_slope(points):
    """Least-squares slope of log(ms) against log(L) over [(L, ms)]; None for < 2 points."""
    if len(points) < 2:
        return None
    xs = [math.log(L) for L, _ in points]
    ys = [math.log(ms) for _, ms in points]
    mx_, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx_) ** 2 for x in xs)
    return sum((x - mx_) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def plot_sweep(sweep, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for kind, marker in (("a2", "o"), ("nonlocal", "s")):
        pts = [(p["L"], p[kind]["median_ms"]) for p in sweep["points"] if "median_ms" in p[kind]]
        if not pts:
            continue
        slope = sweep["slopes"][kind]["large_L"]
        label = f"{LABELS[kind]} (slope {slope:.2f} for L ≥ {sweep['fit_from']:,})" if slope else LABELS[kind]
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
    ax.set_xlabel("positions L = H·W")
    ax.set_ylabel("forward time, ms (median)")
    ax.set_title(f"{SWEEP_CHANNELS}-channel block, reduction {REDUCTION}, batch 1, CPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt_ms(res):
    if "median_ms" in res:
        return f"{res['median_ms']:.1f}" if res["median_ms"] < 1000 else f"{res['median_ms']:,.0f}"
    return res.get("note") or f"failed ({res.get('error', 'not run')})"


def fmt_mib(res):
    return f"{res['peak_mib']:.0f}" if "peak_mib" in res else "—"


def ratio_text(value):
    return "—" if value is None else f"{value:.0f}×" if value >= 10 else f"{value:.1f}×"


def markdown(report):
    s, env = report["settings"], report["environment"]
    lines = [
        "| stage (C × T×H×W) | L | mode | no block | A² ms | Non-local ms | NL / A² time "
        "| A² peak MiB | Non-local peak MiB | NL / A² peak |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for st in report["stages"]:
        shape = st["shape"]
        name = f"{st['stage']} ({shape[0]} × {'×'.join(map(str, shape[1:]))})"
        for mode in s["modes"]:
            res = st["results"][mode]
            r = st["ratios"][mode]
            lines.append(
                f"| {name} | {st['L']:,} | {mode} | 0 ms, input {st['input_mib']:.1f} MiB "
                f"| {fmt_ms(res['a2'])} | {fmt_ms(res['nonlocal'])} | {ratio_text(r['time'])} "
                f"| {fmt_mib(res['a2'])} | {fmt_mib(res['nonlocal'])} | {ratio_text(r['peak_mib'])} |"
            )
    goal = report["goal"]
    lines += [
        "",
        f"Goal: the A² block at conv2 of {MODEL} at least {goal['target']:.0f}× cheaper than the "
        f"Non-local block there (training): {goal['text']}.",
        "",
        f"`DoubleAttention(c, reduction={REDUCTION}, dims=3)` against `NonLocal(c, reduction={REDUCTION}, "
        f"dims=3)` (Embedded Gaussian, no sub-sampling: the paper's comparison) on the stage outputs of "
        f"`{MODEL}` for a {'×'.join(map(str, MODEL_INPUT))} clip, batch 1, float32, CPU, "
        "hybridized (static_alloc, static_shape). No block = identity.",
        "",
        "- **train**: forward + backward (input and parameter gradients); **forward**: inference mode.",
        f"- **ms**: median of all timed passes of {s['rounds']} fresh process(es) per cell (1 when a "
        f"warm-up pass took over {VERY_SLOW_SECONDS:g} s), each after "
        f"{s['warmup']} warm-up pass(es) ({s['repeat']} timed passes, {s['slow_repeat']} when a "
        f"warm-up pass took over {SLOW_SECONDS:g} s).",
        "- **peak MiB**: peak RSS after the passes minus peak RSS before the first one (block built, "
        "input allocated): the extra memory at the peak, including MXNet's pool; the largest over the "
        "processes. The Non-local block at conv2 holds 25,088² float32 scores: 2.35 GiB per matrix.",
    ]
    sw = report.get("sweep")
    if sw:
        lines += [
            "",
            f"Sweep over the number of positions (forward, batch 1, {SWEEP_CHANNELS} channels, 2-D, H = W):",
            "",
        ]
        lines.append("| H = W | L | A² ms | Non-local ms | NL / A² |")
        lines.append("|---:|---:|---:|---:|---:|")
        for p in sw["points"]:
            a, n = p["a2"], p["nonlocal"]
            r = n["median_ms"] / a["median_ms"] if "median_ms" in a and "median_ms" in n else None
            lines.append(f"| {p['size']} | {p['L']:,} | {fmt_ms(a)} | {fmt_ms(n)} | {ratio_text(r)} |")
        sl = sw["slopes"]

        def slope(v):
            return "n/a" if v is None else f"{v:.2f}"

        lines += [
            "",
            f"Fitted log-log slopes of time over L (least squares; L ≥ {sw['fit_from']:,} / all points): "
            f"A² {slope(sl['a2']['large_L'])} / {slope(sl['a2']['all'])}, Non-local "
            f"{slope(sl['nonlocal']['large_L'])} / {slope(sl['nonlocal']['all'])} (linear = 1, "
            f"quadratic = 2). One fresh process per point, median of its timed passes.",
            "",
            "![A² and Non-local forward time against L](benchmarks/results/blocks_sweep.png)",
        ]
    lines += [
        "",
        f"Machine: {env['cpu_model']}, {env['cpu_count']} cores, shared; OMP_NUM_THREADS="
        f"{env['omp_num_threads']}, OMP_WAIT_POLICY={env['omp_wait_policy']}, OMP_PROC_BIND="
        f"{env['omp_proc_bind']}; 1-minute load average {env['load_average_before'][0]:.2f} before and "
        f"{env['load_average_after'][0]:.2f} after the run; MXNet {env['mxnet']}, Python "
        f"{env['python']}; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def ratio(results, key):
    a, n = results["a2"], results["nonlocal"]
    if key in a and key in n and a[key] > 0:
        return n[key] / a[key]
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description="A² vs Non-local vs no block: time, memory, sweep over L.")
    p.add_argument("--quick", action="store_true", help="conv3/conv4 only, 1 round, short sweep")
    p.add_argument("--rounds", type=int, default=2, help="fresh processes per case (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per process (default 1)")
    p.add_argument("--repeat", type=int, default=10, help="timed passes (default 10)")
    p.add_argument("--slow-repeat", type=int, default=3, help="timed passes of slow cases (default 3)")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of conv2,conv3,conv4")
    p.add_argument("--modes", default=",".join(MODES), help="train,forward (default both)")
    p.add_argument("--sweep", default=",".join(map(str, SWEEP_SIZES)), help="H = W values of the sweep")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep over L")
    p.add_argument("--fit-from", type=int, default=FIT_FROM, help="least L of the large-L slope fit")
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1),
        help="OMP_NUM_THREADS for the workers",
    )
    p.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for option in ("rounds", "repeat", "slow_repeat", "threads"):
        if getattr(args, option) < 1:
            p.error(f"--{option.replace('_', '-')} must be at least 1")

    if args.worker:
        kind, mode = args.worker
        shape = tuple(int(v) for v in args.shape.split(","))
        worker(kind, shape, mode, args.warmup, args.repeat, args.slow_repeat)
        return

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    sizes = [int(v) for v in args.sweep.split(",") if v.strip()]
    if args.quick:
        stages = [s for s in stages if s != "conv2"] or ["conv4"]
        args.rounds, args.repeat, args.slow_repeat = 1, 3, 2
        sizes = [s for s in sizes if s <= 32]
    if any(s not in STAGES for s in stages) or any(m not in MODES for m in modes):
        p.error(f"--stages from {','.join(STAGES)}, --modes from {','.join(MODES)}")

    import mxnet as mx

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "true")
    load_before = os.getloadavg()
    started = time.perf_counter()

    measured = stage_shapes()
    shape_check = {s: {"expected": list(STAGES[s]), "model": list(measured.get(s, ()))} for s in STAGES}
    for stage, shapes in shape_check.items():
        if shapes["model"] and tuple(shapes["model"]) != STAGES[stage]:
            raise SystemExit(f"{MODEL} {stage} output is {shapes['model']}, expected {STAGES[stage]}")

    results_by_stage = []
    for stage in stages:
        shape = STAGES[stage]
        L = positions(shape)
        results = {}
        for mode in modes:
            results[mode] = {}
            rounds = {kind: [] for kind in KINDS}
            skip = {}
            for kind in KINDS:
                if kind == "nonlocal":
                    need, avail = nonlocal_bytes(L, mode), mem_available()
                    if avail is not None and need > avail:
                        skip[kind] = f"not run: needs ~{need / GIB:.1f} GiB, {avail / GIB:.1f} GiB available"
            for index in range(args.rounds):
                for kind in KINDS:
                    if kind in skip or (index and very_slow(rounds[kind])):
                        continue
                    print(f"{stage} {mode} {kind}, round {index + 1}", file=sys.stderr, flush=True)
                    rounds[kind].append(run_worker(args, env, kind, shape, mode))
            for kind in KINDS:
                results[mode][kind] = {"note": skip[kind]} if kind in skip else combine(rounds[kind])
        results_by_stage.append(
            {
                "stage": stage,
                "shape": list(shape),
                "L": L,
                "input_mib": math.prod(shape) * 4 / 2**20,
                "results": results,
                "ratios": {
                    m: {"time": ratio(results[m], "median_ms"), "peak_mib": ratio(results[m], "peak_mib")}
                    for m in modes
                },
            }
        )

    goal = {"target": 20.0, "stage": "conv2", "mode": "train"}
    conv2 = next((s for s in results_by_stage if s["stage"] == "conv2"), None)
    value = None
    if conv2:
        value = conv2["ratios"].get("train", {}).get("time") or conv2["ratios"].get("forward", {}).get("time")
        goal["mode"] = "train" if conv2["ratios"].get("train", {}).get("time") else "forward"
    goal["ratio"] = value
    goal["met"] = None if value is None else value >= goal["target"]
    goal["text"] = (
        "not measured (conv2 not run)"
        if value is None
        else f"{value:.0f}× ({goal['mode']}): {'met' if goal['met'] else 'NOT met'}"
    )

    sweep = None
    if not args.no_sweep and sizes:
        points = []
        for size in sizes:
            shape = (SWEEP_CHANNELS, size, size)
            point = {"size": size, "L": size * size}
            for kind in KINDS:
                print(f"sweep {size}x{size} {kind}", file=sys.stderr, flush=True)
                point[kind] = combine([run_worker(args, env, kind, shape, "forward")])
            points.append(point)
        slopes = {}
        for kind in KINDS:
            pts = [(pt["L"], pt[kind]["median_ms"]) for pt in points if "median_ms" in pt[kind]]
            slopes[kind] = {
                "large_L": fit_slope([q for q in pts if q[0] >= args.fit_from]),
                "all": fit_slope(pts),
            }
        sweep = {
            "channels": SWEEP_CHANNELS,
            "dims": 2,
            "mode": "forward",
            "fit_from": args.fit_from,
            "points": points,
            "slopes": slopes,
        }

    report = {
        "benchmark": f"A² vs Non-local vs no block at the stages of {MODEL}; sweep over L",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "model": MODEL,
            "model_input": list(MODEL_INPUT),
            "reduction": REDUCTION,
            "nonlocal_subsample": False,
            "batch": 1,
            "dtype": "float32",
            "rounds": args.rounds,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "slow_repeat": args.slow_repeat,
            "modes": modes,
            "quick": args.quick,
            "hybridize": {"static_alloc": True, "static_shape": True},
        },
        "stage_shapes": shape_check,
        "environment": {
            "mxnet": mx.__version__,
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "mem_total_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
            "omp_num_threads": args.threads,
            "omp_wait_policy": env["OMP_WAIT_POLICY"],
            "omp_proc_bind": env["OMP_PROC_BIND"],
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "stages": results_by_stage,
        "goal": goal,
        "sweep": sweep,
        "total_wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "blocks.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if sweep:
        plot_sweep(sweep, args.out / "blocks_sweep.png")
    table = markdown(report)
    (args.out / "blocks.md").write_text(table, encoding="utf-8")
    print(table, end="")


if __name__ == "__main__":
    main()
