"""Model cost on CPU: forward and forward+backward time per image, against multiply-adds.

The paper's efficiency claim is that ResNet-50 with five A² blocks (``a2_resnet50``) beats
ResNet-152 with over 40 % fewer FLOPs, and that the block costs little beyond its arithmetic.
This script measures what that means in wall time for

    resnet50, a2_resnet50, resnet50_v1b, resnet152_v1b, se_resnet50_v1

(built by ``a2gluon.models.get_model``, random initialisation, 1000 classes), each in a fresh
worker process (this script with ``--worker``): the worker hybridizes the model with
static_alloc and static_shape, allocates a random batch (``--batch``, default 16, at 224 x 224),
runs ``--warmup`` (at least one) untimed forward passes in inference mode and as many
forward+backward passes (``autograd.record()`` forward, then ``backward()`` with a head gradient
of ones, i.e. the gradient of the summed outputs; no optimizer step), and reads its peak RSS.
Then it builds ``resnet50`` beside it (same batch, same settings), warms it up, and times
``--repeat`` passes of each phase alternating model, resnet50, model, ... (a forward pass ends
with ``wait_to_read`` on the output, a forward+backward pass with ``mx.nd.waitall()``).

Why pairs: the machine this was written on is shared, and the load changed within minutes, so
models timed one after the other in separate processes gave ratios off by 2x in either
direction.  Timed alternately in one process, a model and resnet50 see the same load, and their
ratio holds.  The ratio to resnet50 is the median over the passes of each pass's time over
that of the resnet50 pass right after it; the ratio between two other models
(a2_resnet50 / resnet152_v1b) is the ratio of their ratios to resnet50.  The time per image
is the model's own median pass divided by the batch (inflated by whatever else ran).
``--rounds`` repeats every model in a new process (every other round in reverse order),
pooling the passes.  The multiply-add ratios come from ``a2gluon.profile.profile_model`` (batch 1).

Memory is the worker's peak resident set size (``ru_maxrss``, MXNet has no CPU memory query):
reported as the peak after the model's forward warm-up passes and after its forward+backward
ones (before resnet50 is built), and the latter minus the peak just before the first pass
(model built and initialised, batch allocated) in the JSON.

Threads: as ``benchmarks/block.py``, OMP_NUM_THREADS = ``--threads`` (default: the
OMP_NUM_THREADS already set, else all cores) and, unless set, OMP_WAIT_POLICY=PASSIVE and
OMP_PROC_BIND=true.  The load average before and after is recorded: the timings are only as
good as the machine was idle.

Goals (issue: model cost on CPU): a2_resnet50's forward+backward time over resnet50's within
10 % of their multiply-add ratio, and at most 0.65 times resnet152_v1b's.

Writes <out>/models.json and <out>/models.md and prints the Markdown table.

Usage: python benchmarks/models.py [--batch 16] [--repeat 3] [--warmup 1] [--rounds 2]
       [--models resnet50,a2_resnet50,...] [--threads N] [--quick] [--out benchmarks/results]
"""

import argparse
import json
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
MODELS = ("resnet50", "a2_resnet50", "resnet50_v1b", "resnet152_v1b", "se_resnet50_v1")
BASELINE = "resnet50"
IMAGE = (3, 224, 224)
MAC_TOLERANCE = 0.10  # goal: a2/resnet50 fwd+bwd time ratio within 10 % of the MAC ratio
RESNET152_GOAL = 0.65  # goal: a2_resnet50 at most 0.65 x resnet152_v1b's time
PHASES = ("forward", "train")  # train = forward+backward


def max_rss_kib():
    """Peak resident set size of this process so far (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def build(name, batch):
    """Model `name` hybridized with static memory, and the functions of one forward pass and
    one forward+backward pass on a random batch."""
    import mxnet as mx
    from mxnet import autograd

    sys.path.insert(0, str(ROOT))
    from a2gluon.models import get_model

    mx.random.seed(0)
    net = get_model(name, classes=1000)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(batch,) + IMAGE, ctx=mx.cpu())
    mx.nd.waitall()

    def forward():
        net(x).wait_to_read()

    def train():
        with autograd.record():
            y = net(x)
        y.backward()
        mx.nd.waitall()

    return {"forward": forward, "train": train}


def timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def worker(name, batch, repeat, warmup):
    """Measure one model in this process; print one JSON line.

    The model alone first: its warm-up passes (at least one per phase), after which the peak
    RSS is read.  Then, unless it is the baseline itself, resnet50 is built in the same process
    and the timed passes alternate model, resnet50, model, ...: the pair sees the same load, so
    their ratio survives other processes on the machine better than separate runs do."""
    import mxnet as mx

    runs = build(name, batch)
    result = {"model": name, "batch": batch, "baseline_rss_mib": max_rss_kib() / 1024}
    for phase in PHASES:
        result[phase] = {"warmup_s": [timed(runs[phase]) for _ in range(max(warmup, 1))]}
        mx.nd.waitall()
        result[phase]["peak_rss_mib"] = max_rss_kib() / 1024
    result["train_extra_mib"] = result["train"]["peak_rss_mib"] - result["baseline_rss_mib"]
    base = build(BASELINE, batch) if name != BASELINE else None
    for phase in PHASES:
        own, paired = [], []
        if base is not None:
            for _ in range(max(warmup, 1)):
                base[phase]()
        for _ in range(repeat):
            own.append(timed(runs[phase]))
            if base is not None:
                paired.append(timed(base[phase]))
        result[phase].update(median_s=statistics.median(own), timings_s=own)
        if paired:
            result[phase].update(baseline_median_s=statistics.median(paired), baseline_timings_s=paired)
    result["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    result["load_average_end"] = list(os.getloadavg())
    print(json.dumps(result))


def run_worker(name, args, env):
    """One model in a fresh process: its result dict, or an error description."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    cmd += ["--batch", str(args.batch), "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall_s = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {
            "model": name,
            "error": f"worker exited with code {proc.returncode}",
            "stderr_tail": proc.stderr.strip().splitlines()[-5:],
            "worker_wall_s": wall_s,
        }
    result = json.loads(lines[-1])
    result["worker_wall_s"] = wall_s
    return result


def paired_ratio(own, paired):
    """Median over the passes of a model's pass time over the adjacent resnet50 pass's."""
    if not paired:
        return 1.0
    return statistics.median(a / b for a, b in zip(own, paired))


def combine(rounds, batch):
    """One model's result from its rounds (one worker process each)."""
    done = [r for r in rounds if "error" not in r]
    out = {"rounds": len(rounds), "failed_rounds": [r for r in rounds if "error" in r]}
    if not done:
        out["error"] = rounds[0]["error"]
        return out
    for phase in PHASES:
        timings = [t for r in done for t in r[phase]["timings_s"]]
        median = statistics.median(timings)
        paired = [t for r in done for t in r[phase].get("baseline_timings_s", [])]
        out[phase] = {
            # the time over resnet50's, both timed alternately in the same processes: the
            # median of the pass-by-pass ratios (a ratio of pooled medians would mix rounds
            # run under different loads)
            "paired_ratio": paired_ratio(timings, paired),
            "baseline_timings_s": paired,
            "round_paired_ratio": [
                r[phase]["median_s"] / r[phase].get("baseline_median_s", r[phase]["median_s"]) for r in done
            ],
            "median_s": median,
            "ms_per_image": median / batch * 1e3,
            "timings_s": timings,
            "round_median_s": [r[phase]["median_s"] for r in done],
            "warmup_s": [r[phase]["warmup_s"] for r in done],
            "peak_rss_mib": max(r[phase]["peak_rss_mib"] for r in done),
        }
    out["baseline_rss_mib"] = max(r["baseline_rss_mib"] for r in done)
    out["train_extra_mib"] = max(r["train_extra_mib"] for r in done)
    out["worker_wall_s"] = [r["worker_wall_s"] for r in done]
    return out


def time_ratio(results, name, phase, other=BASELINE):
    """`name`'s time over `other`'s: each model is timed alternately with resnet50 in its own
    processes, so the ratio to another model goes through resnet50's (a ratio of ratios)."""
    a, b = results.get(name, {}).get(phase), results.get(other, {}).get(phase)
    if not a or not b:
        return None
    return a["paired_ratio"] / b["paired_ratio"]


def goals(report):
    """The issue's two goals, from the measured ratios."""
    res, macs = report["results"], report["macs"]
    out = {}
    train_ratio = time_ratio(res, "a2_resnet50", "train")
    if train_ratio is not None and "a2_resnet50" in macs and BASELINE in macs:
        mac_ratio = macs["a2_resnet50"] / macs[BASELINE]
        excess = train_ratio / mac_ratio - 1
        out["a2_over_resnet50"] = {
            "train_time_ratio": train_ratio,
            "forward_time_ratio": time_ratio(res, "a2_resnet50", "forward"),
            "mac_ratio": mac_ratio,
            "excess_over_macs": excess,
            "met": abs(excess) <= MAC_TOLERANCE,
            "pass_train_time_ratios": [
                a / b
                for a, b in zip(
                    res["a2_resnet50"]["train"]["timings_s"],
                    res["a2_resnet50"]["train"]["baseline_timings_s"],
                )
            ],
        }
    vs152 = time_ratio(res, "a2_resnet50", "train", "resnet152_v1b")
    if vs152 is not None:
        out["a2_over_resnet152"] = {
            "train_time_ratio": vs152,
            "forward_time_ratio": time_ratio(res, "a2_resnet50", "forward", "resnet152_v1b"),
            "mac_ratio": macs["a2_resnet50"] / macs["resnet152_v1b"],
            "goal": RESNET152_GOAL,
            "met": vs152 <= RESNET152_GOAL,
        }
    return out


def markdown(report):
    res, macs, settings = report["results"], report["macs"], report["settings"]
    batch = settings["batch"]
    lines = [
        "| model | G multiply-adds | MAC ratio | forward ms/image | forward ratio "
        "| fwd+bwd ms/image | fwd+bwd ratio | fwd+bwd ratio / MAC ratio | peak RSS forward MiB "
        "| peak RSS fwd+bwd MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in report["models"]:
        r = res.get(name, {})
        mac = macs.get(name)
        mac_ratio = mac / macs[BASELINE] if mac and macs.get(BASELINE) else None
        if "error" in r:
            lines.append(f"| `{name}` | {mac / 1e9:.2f} | {mac_ratio:.2f}× | failed ({r['error']}) |")
            continue
        fwd_ratio = time_ratio(res, name, "forward")
        train_ratio = time_ratio(res, name, "train")
        cells = [
            f"`{name}`",
            f"{mac / 1e9:.2f}",
            f"{mac_ratio:.2f}×",
            f"{r['forward']['ms_per_image']:.1f}",
            "n/a" if fwd_ratio is None else f"{fwd_ratio:.2f}×",
            f"{r['train']['ms_per_image']:.1f}",
            "n/a" if train_ratio is None else f"{train_ratio:.2f}×",
            "n/a" if train_ratio is None else f"{train_ratio / mac_ratio:.2f}",
            f"{r['forward']['peak_rss_mib']:.0f}",
            f"{r['train']['peak_rss_mib']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")

    g = report["goals"]
    goal_lines = []
    if "a2_over_resnet50" in g:
        a = g["a2_over_resnet50"]
        goal_lines.append(
            f"- **Goal 1** (a2_resnet50 / resnet50 fwd+bwd time within {MAC_TOLERANCE:.0%} of the "
            f"multiply-add ratio): {a['train_time_ratio']:.2f}× against {a['mac_ratio']:.2f}×, "
            f"{a['excess_over_macs']:+.0%} — **{'met' if a['met'] else 'missed'}** "
            f"(forward: {a['forward_time_ratio']:.2f}×; the fwd+bwd passes' own ratios range "
            f"{min(a['pass_train_time_ratios']):.2f}–{max(a['pass_train_time_ratios']):.2f}×)."
        )
    if "a2_over_resnet152" in g:
        a = g["a2_over_resnet152"]
        goal_lines.append(
            f"- **Goal 2** (a2_resnet50 at most {a['goal']:.2f}× resnet152_v1b's fwd+bwd time): "
            f"{a['train_time_ratio']:.2f}× (multiply-adds {a['mac_ratio']:.2f}×) — "
            f"**{'met' if a['met'] else 'missed'}** (forward: {a['forward_time_ratio']:.2f}×)."
        )
    env = report["environment"]
    passes = f"{settings['rounds']} × ({settings['warmup']} warm-up + {settings['repeat']} timed)"
    lines += [
        "",
        *goal_lines,
        "",
        f"CPU, float32, batch {batch} at 3×224×224, 1000 classes, random initialisation, models "
        "hybridized with static_alloc and static_shape. **forward**: inference mode; "
        "**fwd+bwd**: `autograd.record()` forward and `backward()` of the summed outputs, no "
        "optimizer step.",
        "",
        f"- **ms/image**: median pass over the batch, passes per model: {passes}, each model in "
        "a fresh process (every other round in reverse order). **ratio**: median over the "
        "passes of the pass's time over that of the adjacent pass of a `resnet50` built in the "
        "same process and timed alternately with it, so that both see the same machine load; "
        "a2_resnet50 / resnet152_v1b is the ratio of the two ratios. **MAC ratio**: multiply-adds "
        "(`a2gluon.profile.profile_model`, batch 1) over `resnet50`'s.",
        "- **peak RSS**: the worker's peak resident set size after the model's forward warm-up "
        "passes and after its fwd+bwd ones, before the paired resnet50 is built (parameters, "
        "gradients, activations and MXNet's memory pool).",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, "
        f"OMP_NUM_THREADS={env['omp_num_threads']}, OMP_WAIT_POLICY={env['omp_wait_policy']}, "
        f"OMP_PROC_BIND={env['omp_proc_bind']}, oneDNN: {'yes' if env['onednn'] else 'no'}, "
        f"BLAS: {env['blas']}; 1-minute load average {env['load_average_before'][0]:.2f} before "
        f"and {env['load_average_after'][0]:.2f} after the run (above 1, other processes "
        "shared the cores and the times are inflated and noisy; models.json has every pass); "
        f"MXNet {env['mxnet']}, Python {env['python']}; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Forward and forward+backward time per image and peak memory of the models."
    )
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per phase (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per phase (default 1)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="fresh processes per model, every other round in reverse order (default 2)",
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1),
        help="OMP_NUM_THREADS for the workers (default: $OMP_NUM_THREADS, else all cores)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2, 1 warm-up and 1 timed pass")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument(
        "--render", action="store_true", help="only recompute the ratios and table from models.json"
    )
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeat, args.warmup = 2, 1, 1
    for option in ("batch", "repeat", "rounds", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")

    if args.worker:
        worker(args.worker, args.batch, args.repeat, args.warmup)
        return
    if args.render:
        report = json.loads((args.out / "models.json").read_text(encoding="utf-8"))
        for res in report["results"].values():
            for phase in PHASES:
                if phase in res:
                    res[phase]["paired_ratio"] = paired_ratio(
                        res[phase]["timings_s"], res[phase]["baseline_timings_s"]
                    )
        report["goals"] = goals(report)
        write(report, args.out)
        return

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if BASELINE not in names:
        names.insert(0, BASELINE)  # every ratio is to resnet50 in the same run

    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.models import list_models
    from a2gluon.profile import profile_model

    unknown = [n for n in names if n not in list_models()]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}")
    macs = {name: profile_model(name, IMAGE).macs for name in names}

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "true")
    load_before = os.getloadavg()
    started = time.perf_counter()
    rounds = {name: [] for name in names}
    for index in range(args.rounds):
        # odd rounds in reverse order, so that a drift in the machine's load falls on all models
        for name in names if index % 2 == 0 else names[::-1]:
            print(f"measuring {name}, round {index + 1} of {args.rounds}", file=sys.stderr, flush=True)
            rounds[name].append(run_worker(name, args, env))
    features = mx.runtime.Features()
    report = {
        "benchmark": "model forward and forward+backward time per image, CPU, float32",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": names,
        "settings": {
            "batch": args.batch,
            "input_shape": list(IMAGE),
            "repeat": args.repeat,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "quick": args.quick,
            "hybridize": {"static_alloc": True, "static_shape": True},
            "dtype": "float32",
        },
        "environment": {
            "mxnet": mx.__version__,
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "omp_num_threads": args.threads,
            "omp_wait_policy": env["OMP_WAIT_POLICY"],
            "omp_proc_bind": env["OMP_PROC_BIND"],
            "onednn": features.is_enabled("MKLDNN"),
            "blas": ", ".join(
                f[5:] for f in ("BLAS_OPEN", "BLAS_MKL", "BLAS_ATLAS", "BLAS_APPLE") if features.is_enabled(f)
            )
            or "none",
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "macs": macs,
        "results": {name: combine(rounds[name], args.batch) for name in names},
        "total_wall_s": time.perf_counter() - started,
    }
    report["goals"] = goals(report)
    write(report, args.out)


def write(report, out):
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (out / "models.md").write_text(table, encoding="utf-8")
    print(table, end="")


if __name__ == "__main__":
    main()
