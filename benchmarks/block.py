"""Left vs right association of the double attention block: forward time and peak memory.

``a2gluon.nn.DoubleAttention`` computes Z = A softmax(B)^T softmax(V) either as
(A softmax(B)^T) softmax(V) ('left', an m x n intermediate per sample, what the paper uses) or as
A (softmax(B)^T softmax(V)) ('right', an L x L intermediate, L = number of positions).  This
script measures both, at batch 1, for two configurations:

* image: the conv4 stage of a ResNet on ImageNet, 1024 channels at 14 x 14 (m = n = 256);
* video: the paper's example, 512 channels at 32 x 28 x 28 (T x H x W) with m = n = 128.

For every (configuration, association) pair a fresh worker process (this script with
``--worker``) builds and initialises the block, hybridizes it with static_alloc and static_shape,
allocates a random input, runs ``--warmup`` forward passes and then times ``--repeat`` of them
(inference mode, each ended by ``wait_to_read``); a case whose last warm-up pass took longer than
one second is timed ``--slow-repeat`` times instead.  This is done ``--rounds`` times, left and
right alternating, each time in a new process, because the speed of the small image block varies
more between processes (thread placement) than within one; the median of all timed passes of all
rounds is reported.

MXNet has no CPU memory query, so memory is the worker's peak resident set size
(``ru_maxrss``) after the forward passes minus its peak RSS just before the first one (block built
and initialised, input allocated): the extra memory the forward passes needed at their peak
(the largest over the rounds is reported).

The analytic size of the association's intermediate (float32, per sample: m*n*4 bytes for
'left', L*L*4 bytes for 'right') is reported next to the measurements.

Threads: MXNet's CPU build uses half the logical cores for OpenMP when OMP_NUM_THREADS is unset
(one thread on a 2-core machine), so the workers get OMP_NUM_THREADS = --threads (default: the
OMP_NUM_THREADS already set, else all cores).  Unless they are set, the workers also get
OMP_WAIT_POLICY=PASSIVE and OMP_PROC_BIND=true.  With every core in use, OpenMP threads that
spin-wait between operators can share a core with MXNet's engine thread, and each small operator
then waits for a scheduler tick: on a 2-core machine the 14 x 14 block took about 165 ms instead
of 4-5 ms in some processes and not in others.  Passive waiting alone avoids that but left the
block at 8-10 ms; with the threads also bound to cores it ran in 4-7 ms, process after process.
The load average before and after the run is recorded, since other processes on the machine
distort the timings.

Writes <out>/block.json and <out>/block.md and prints the Markdown table.

Usage: python benchmarks/block.py [--repeat N] [--slow-repeat N] [--rounds N] [--warmup N]
       [--threads N] [--configs image,video] [--out benchmarks/results]
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
ASSOCIATIONS = ("left", "right")
BYTES_PER_FLOAT32 = 4
SLOW_SECONDS = 1.0  # a case whose last warm-up pass takes longer is timed --slow-repeat times

CONFIGS = {
    "image": {
        "label": "image conv4",
        "dims": 2,
        "channels": 1024,
        "spatial": (14, 14),
        "reduction": 4,
    },
    "video": {
        "label": "video (paper's example)",
        "dims": 3,
        "channels": 512,
        "spatial": (32, 28, 28),
        "reduction": 4,
    },
}


def describe(name):
    """The configuration `name` with its derived sizes: m, n, L and the intermediates' bytes."""
    cfg = dict(CONFIGS[name], name=name)
    cfg["m"] = cfg["n"] = max(1, cfg["channels"] // cfg["reduction"])  # the block's defaults
    positions = 1
    for size in cfg["spatial"]:
        positions *= size
    cfg["L"] = positions
    cfg["intermediate_bytes"] = {
        "left": cfg["m"] * cfg["n"] * BYTES_PER_FLOAT32,
        "right": positions * positions * BYTES_PER_FLOAT32,
    }
    return cfg


def max_rss_kib():
    """Peak resident set size of this process so far (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(name, association, repeat, slow_repeat, warmup):
    """Measure one (configuration, association) pair in this process; print a JSON line."""
    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.nn import DoubleAttention

    cfg = describe(name)
    mx.random.seed(0)
    block = DoubleAttention(
        cfg["channels"],
        reduction=cfg["reduction"],
        dims=cfg["dims"],
        association=association,
    )
    block.initialize(ctx=mx.cpu())
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(1, cfg["channels"]) + tuple(cfg["spatial"]), ctx=mx.cpu())
    mx.nd.waitall()
    baseline_kib = max_rss_kib()

    warmup_s = []
    for _ in range(warmup):
        start = time.perf_counter()
        block(x).wait_to_read()
        warmup_s.append(time.perf_counter() - start)
    repeats = slow_repeat if warmup_s and warmup_s[-1] > SLOW_SECONDS else repeat
    timings_s = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(x).wait_to_read()
        timings_s.append(time.perf_counter() - start)
    mx.nd.waitall()
    peak_kib = max_rss_kib()

    result = {
        "config": name,
        "association": association,
        "median_ms": statistics.median(timings_s) * 1e3,
        "timings_ms": [t * 1e3 for t in timings_s],
        "warmup_ms": [t * 1e3 for t in warmup_s],
        "repeat": repeats,
        "baseline_rss_mib": baseline_kib / 1024,
        "peak_rss_mib": peak_kib / 1024,
        "peak_mib": (peak_kib - baseline_kib) / 1024,
        "intermediate_bytes": cfg["intermediate_bytes"][association],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    print(json.dumps(result))


def run_worker(name, association, args, env):
    """Run one measurement in a fresh process; its result dict, or an error description."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, association]
    cmd += ["--repeat", str(args.repeat), "--slow-repeat", str(args.slow_repeat)]
    cmd += ["--warmup", str(args.warmup)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall_s = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-5:]
        return {
            "association": association,
            "error": f"worker exited with code {proc.returncode}",
            "stderr_tail": tail,
            "worker_wall_s": wall_s,
        }
    result = json.loads(lines[-1])
    result["worker_wall_s"] = wall_s
    return result


def combine(rounds):
    """One association's result from its rounds (one worker process each)."""
    done = [r for r in rounds if "error" not in r]
    out = {"rounds": len(rounds), "failed_rounds": [r for r in rounds if "error" in r]}
    if not done:
        out["error"] = rounds[0]["error"]
        return out
    timings = [t for r in done for t in r["timings_ms"]]
    out.update(
        median_ms=statistics.median(timings),
        timings_ms=timings,
        round_median_ms=[r["median_ms"] for r in done],
        repeat=[r["repeat"] for r in done],
        warmup_ms=[r["warmup_ms"] for r in done],
        peak_mib=max(r["peak_mib"] for r in done),
        round_peak_mib=[r["peak_mib"] for r in done],
        baseline_rss_mib=[r["baseline_rss_mib"] for r in done],
        peak_rss_mib=[r["peak_rss_mib"] for r in done],
        intermediate_bytes=done[0]["intermediate_bytes"],
        worker_wall_s=[r["worker_wall_s"] for r in done],
    )
    return out


def human_bytes(count):
    """`count` bytes in binary units (B, KiB, MiB, GiB), three significant digits."""
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} GiB"


def ratio(results, key):
    left, right = results.get("left", {}), results.get("right", {})
    if key in left and key in right and left[key] > 0:
        return right[key] / left[key]
    return None


def markdown(report):
    """The results as a Markdown table followed by notes on how they were measured."""

    def cell(results, assoc, key, fmt):
        res = results.get(assoc, {})
        return fmt.format(res[key]) if key in res else f"failed ({res.get('error', 'not run')})"

    def times(value):
        return "n/a" if value is None else f"{value:.1f}×"

    header = (
        "| config | input (C × spatial) | L | m = n | left ms | right ms | right/left time "
        "| left peak MiB | right peak MiB | right/left peak | intermediate left | "
        "intermediate right |"
    )
    lines = [header, "|" + "---|" * 12]
    for cfg in report["configs"]:
        res = cfg["results"]
        spatial = "×".join(str(s) for s in cfg["spatial"])
        lines.append(
            "| "
            + " | ".join(
                [
                    cfg["label"],
                    f"{cfg['channels']} × {spatial}",
                    f"{cfg['L']:,}",
                    str(cfg["m"]),
                    cell(res, "left", "median_ms", "{:.1f}"),
                    cell(res, "right", "median_ms", "{:.1f}"),
                    times(cfg["ratios"]["time"]),
                    cell(res, "left", "peak_mib", "{:.0f}"),
                    cell(res, "right", "peak_mib", "{:.0f}"),
                    times(cfg["ratios"]["peak_mib"]),
                    human_bytes(cfg["intermediate_bytes"]["left"]),
                    human_bytes(cfg["intermediate_bytes"]["right"]),
                ]
            )
            + " |"
        )

    def passes(counts):
        if len(set(counts)) == 1:
            return f"{len(counts)} × {counts[0]}"
        return " + ".join(str(n) for n in counts)

    repeat_text = "; ".join(
        f"{c['label']} {a}: {passes(r['repeat'])}"
        for c in report["configs"]
        for a, r in c["results"].items()
        if "repeat" in r
    )
    env = report["environment"]
    lines += [
        "",
        "DoubleAttention forward pass, batch 1, float32, CPU, inference mode. "
        "'left' = (A·softmax(B)ᵀ)·softmax(V) with an m × n intermediate (the paper's order); "
        "'right' = A·(softmax(B)ᵀ·softmax(V)) with an L × L intermediate "
        "(L = positions, H·W or T·H·W).",
        "",
        f"- **ms**: median of the timed forward passes of {report['settings']['rounds']} fresh "
        f"processes per cell (left and right alternating), each after "
        f"{report['settings']['warmup']} warm-up passes, block hybridized with static_alloc and "
        f"static_shape (processes × timed passes: {repeat_text}).",
        "- **peak MiB**: peak RSS of a fresh process after the forward passes minus its peak RSS "
        "just before the first one (block built and initialised, input allocated), i.e. the "
        "extra memory the forward pass needed at its peak, including all activations and "
        "MXNet's memory pool; the largest over the processes.",
        "- **intermediate**: analytic size of the association's intermediate per sample in "
        "float32: m·n·4 bytes (left) and L·L·4 bytes (right). The paper's video example quotes "
        "about 1 MB for left and over 2 GB for right; 1 MiB is 512·512·4 bytes (m = n = 512), "
        "with m = n = 128 (reduction 4) it is 64 KiB.",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, "
        f"OMP_NUM_THREADS={env['omp_num_threads']}, OMP_WAIT_POLICY={env['omp_wait_policy']}, "
        f"OMP_PROC_BIND={env['omp_proc_bind']}; "
        f"1-minute load average {env['load_average_before'][0]:.2f} before the run; "
        f"MXNet {env['mxnet']}, Python {env['python']}; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Time and peak memory of DoubleAttention, left vs right association."
    )
    parser.add_argument("--repeat", type=int, default=20, help="timed passes (default 20)")
    parser.add_argument(
        "--slow-repeat",
        type=int,
        default=5,
        help=f"timed passes when a warm-up pass takes over {SLOW_SECONDS:g} s (default 5)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="fresh worker processes per case, left and right alternating (default 3)",
    )
    parser.add_argument(
        "--configs",
        default="image,video",
        help=f"comma-separated subset of {','.join(CONFIGS)} (default: all)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1),
        help="OMP_NUM_THREADS for the workers (default: $OMP_NUM_THREADS, else all cores)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "ASSOC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    for option in ("repeat", "slow_repeat", "rounds", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")

    if args.worker:
        name, association = args.worker
        if name not in CONFIGS or association not in ASSOCIATIONS:
            parser.error(f"--worker needs CONFIG in {list(CONFIGS)} and ASSOC in {ASSOCIATIONS}")
        worker(name, association, args.repeat, args.slow_repeat, args.warmup)
        return

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        parser.error(f"--configs: choose from {','.join(CONFIGS)}, got {args.configs!r}")

    import mxnet as mx

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "true")
    load_before = os.getloadavg()
    started = time.perf_counter()
    configs = []
    for name in names:
        cfg = describe(name)
        rounds = {association: [] for association in ASSOCIATIONS}
        for index in range(args.rounds):
            for association in ASSOCIATIONS:
                print(
                    f"measuring {name} / {association}, round {index + 1} of {args.rounds}",
                    file=sys.stderr,
                    flush=True,
                )
                rounds[association].append(run_worker(name, association, args, env))
        results = {association: combine(rounds[association]) for association in ASSOCIATIONS}
        cfg["spatial"] = list(cfg["spatial"])
        cfg["results"] = results
        sizes = cfg["intermediate_bytes"]
        cfg["ratios"] = {
            "time": ratio(results, "median_ms"),
            "peak_mib": ratio(results, "peak_mib"),
            "intermediate_bytes": sizes["right"] / sizes["left"],
        }
        configs.append(cfg)

    report = {
        "benchmark": "DoubleAttention forward, left vs right association, batch 1, float32, CPU",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "repeat": args.repeat,
            "slow_repeat": args.slow_repeat,
            "slow_seconds": SLOW_SECONDS,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "hybridize": {"static_alloc": True, "static_shape": True},
            "batch": 1,
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
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "blas": [
                f
                for f in ("BLAS_OPEN", "BLAS_MKL", "BLAS_ATLAS", "BLAS_APPLE", "MKLDNN")
                if mx.runtime.Features().is_enabled(f)
            ],
        },
        "configs": configs,
        "total_wall_s": time.perf_counter() - started,
    }

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "block.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "block.md").write_text(table, encoding="utf-8")
    print(table, end="")


if __name__ == "__main__":
    main()
