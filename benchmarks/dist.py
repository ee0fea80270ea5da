"""Parameter-server cost: one worker against two on loopback with dist_sync.

Trains ``a2_resnet26`` with ``--synthetic`` at a small input (default 64 x 64, batch 16 per
worker, ``--steps`` steps) in three settings, each a fresh job:

* ``local``: one process, no parameter server (``--kvstore device``: no store on one device);
* ``1 worker``: ``python -m a2gluon.launch -n 1 -s 1 --timeout T -- ... --kvstore dist_sync``;
* ``2 workers``: ``-n 2 -s 1``, every worker with its own batch (global batch doubled).

The cores are split between the workers: OMP_NUM_THREADS = cores / workers for each worker, one
thread for the server (it only sums gradients: the optimizer runs on the workers, see
``a2gluon.engine.distributed``).  OMP_WAIT_POLICY=PASSIVE and OMP_PROC_BIND=true unless set.

Time per step: every worker runs the training command line through benchmarks/train.py's worker,
which notes when each ``Batch[i/N]`` line is logged (``--log-interval 1``); the first ``--skip``
steps are dropped and the median of the others is taken, per worker; the table gives the slowest
worker's median (a synchronous step waits for the slowest).  Images/s = global batch / step time.

Bytes per step, analytically: with ``update_on_kvstore=False`` every worker pushes the gradient of
every trained parameter and pulls the sum back each step: 2 x 4 bytes x P per worker, P = trained
parameters (from ``a2gluon.profile``), and the server receives and sends as much per worker.
Measured: the worker samples ``ss -tinp`` (``bytes_sent`` / ``bytes_received`` of its own TCP
sockets: to the server and the scheduler) at the start and the end of the timed window; the
difference over the window's steps is the worker's payload bytes per step (TCP payload, no
headers).

Writes <out>/dist.json and <out>/dist.md and prints the Markdown.

Usage: python benchmarks/dist.py [--quick] [--steps N] [--skip N] [--input-size N] [--batch N]
       [--timeout S] [--out benchmarks/results]
"""

import argparse
import glob
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = "a2_resnet26"
CLASSES = 1000
SETTINGS = {  # name: (label, workers; 0 = no parameter server)
    "local": ("1 process, no parameter server", 0),
    "dist-1": ("1 worker + 1 server, dist_sync", 1),
    "dist-2": ("2 workers + 1 server, dist_sync", 2),
}

sys.path.insert(0, str(HERE))
import train as train_bench  # noqa: E402  (benchmarks/train.py: the training worker)
from _common import cpu_model  # noqa: E402


def run_setting(name, args, tmp):
    label, workers = SETTINGS[name]
    cores = os.cpu_count() or 1
    save_dir = Path(tmp) / f"run-{name}"
    save_dir.mkdir(parents=True, exist_ok=True)
    json_path = save_dir / "bench-worker.json"
    train_args = [
        "--model", MODEL, "--synthetic", "--synthetic-batches", str(args.steps),
        "--num-classes", str(CLASSES), "--input-size", str(args.input_size),
        "--batch-size", str(args.batch), "--num-epochs", "1", "--lr", "0.01",
        "--log-interval", "1", "--num-cpus", "1", "--save-dir", str(save_dir),
        "--kvstore", "dist_sync" if workers else "device",
    ]  # fmt: skip
    worker_cmd = [sys.executable, str(HERE / "train.py"), "--worker", "--json", str(json_path)]
    worker_cmd += ["--skip", str(args.skip)] + (["--sockets"] if workers else []) + ["--", *train_args]
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "true")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    threads = max(1, cores // max(workers, 1))
    if workers:
        cmd = [sys.executable, "-m", "a2gluon.launch", "-n", str(workers), "-s", "1"]
        cmd += ["--timeout", str(args.timeout), "--env-server", "OMP_NUM_THREADS:1"]
        cmd += ["--env-worker", f"OMP_NUM_THREADS:{threads}", "--"] + worker_cmd
    else:
        cmd = worker_cmd
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=args.timeout + 30
        )
    except subprocess.TimeoutExpired:
        return {"name": name, "label": label, "workers": workers, "error": "timed out"}
    wall = time.perf_counter() - start
    paths = [Path(p) for p in glob.glob(str(json_path) + "*")]
    result = {"name": name, "label": label, "workers": workers, "threads_per_worker": threads}
    result["job_wall_s"] = wall
    if proc.returncode != 0 or len(paths) != max(workers, 1):
        result["error"] = f"exited with code {proc.returncode}, {len(paths)} worker result(s)"
        result["stderr_tail"] = proc.stderr.splitlines()[-6:]
        return result
    per_worker = []
    for path in sorted(paths):
        out = json.loads(path.read_text(encoding="utf-8"))
        stats = train_bench.step_stats(out["notes"], args.batch, args.skip)
        if "error" in stats:
            result["error"] = stats["error"]
            return result
        window = stats.pop("window")
        first, last = window[0].get("socket_bytes"), window[-1].get("socket_bytes")
        steps = window[-1]["batch"] - window[0]["batch"]
        if first and last and steps:
            stats["socket_bytes_per_step"] = {k: (last[k] - first[k]) / steps for k in ("sent", "received")}
        stats["pid"] = out["pid"]
        per_worker.append(stats)
    result["workers_results"] = per_worker
    result["step_s"] = max(w["median_step_s"] for w in per_worker)
    result["images_per_s"] = args.batch * max(workers, 1) / result["step_s"]
    measured = [w["socket_bytes_per_step"] for w in per_worker if "socket_bytes_per_step" in w]
    if measured:
        result["measured_bytes_per_step_per_worker"] = statistics.fmean(
            m["sent"] + m["received"] for m in measured
        )
        result["measured_sent_per_step_per_worker"] = statistics.fmean(m["sent"] for m in measured)
        result["measured_received_per_step_per_worker"] = statistics.fmean(m["received"] for m in measured)
    return result


def mib(value):
    return f"{value / 2**20:.1f}"


def markdown(report):
    s, env = report["settings"], report["environment"]
    lines = [
        "| setting | global batch | s per step | images/s | step time / no PS "
        "| analytic MiB per step per worker (push + pull) "
        "| measured MiB per step per worker (sent + received) | measured / analytic |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = next((r for r in report["results"] if r["name"] == "local" and "step_s" in r), None)
    analytic = report["analytic_bytes_per_step_per_worker"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['label']} | | failed ({r['error']}) | | | | | |")
            continue
        workers = max(r["workers"], 1)
        rel = f"{r['step_s'] / base['step_s']:.2f}×" if base else "—"
        ana = mib(analytic) if r["workers"] else "0"
        meas = r.get("measured_bytes_per_step_per_worker")
        lines.append(
            f"| {r['label']} | {s['batch'] * workers} | {r['step_s']:.3f} | {r['images_per_s']:.1f} | {rel} "
            f"| {ana} | {mib(meas) if meas is not None else '—'} "
            f"| {f'{meas / analytic:.3f}' if meas is not None else '—'} |"
        )
    lines += [
        "",
        f"`{MODEL}` ({report['trained_params']:,} trained parameters, {CLASSES} classes), `--synthetic`, "
        f"{s['input_size']}×{s['input_size']}, batch {s['batch']} per worker, {s['steps']} steps per job, "
        "one CPU context per worker, jobs started with `python -m a2gluon.launch` on loopback.",
        "",
        f"- **s per step**: median step time after the first {s['skip']} steps, from the training loop's "
        "per-batch log lines (`--log-interval 1`); for two workers the slower worker's median. "
        f"Workers share the {env['cpu_count']} cores (OMP_NUM_THREADS = cores / workers; the server 1).",
        "- **analytic**: each step every worker pushes every trained gradient and pulls the summed "
        "gradients back (the optimizer runs on the workers): 2 × 4 bytes × trained parameters.",
        "- **measured**: TCP payload bytes sent + received by the worker's sockets (`ss -tinp`) between "
        "the start and the end of the timed window, per step; the server moves as much per worker.",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, shared; OMP_WAIT_POLICY="
        f"{env['omp_wait_policy']}, OMP_PROC_BIND={env['omp_proc_bind']}; 1-minute load average "
        f"{env['load_average_before'][0]:.2f} before and {env['load_average_after'][0]:.2f} after the run; "
        f"MXNet {env['mxnet']}, Python {env['python']}; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="Parameter-server cost: 1 vs 2 workers, dist_sync, loopback.")
    p.add_argument("--quick", action="store_true", help="32x32 input, 5 steps")
    p.add_argument("--steps", type=int, default=12, help="steps per job (default 12)")
    p.add_argument("--skip", type=int, default=2, help="warm-up steps left out (default 2)")
    p.add_argument("--input-size", type=int, default=64, help="input size (default 64)")
    p.add_argument("--batch", type=int, default=16, help="batch per worker (default 16)")
    p.add_argument("--timeout", type=float, default=240, help="launcher timeout per job, s (default 240)")
    p.add_argument("--settings", default=",".join(SETTINGS), help="subset of " + ",".join(SETTINGS))
    p.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    args = p.parse_args(argv)
    if args.quick:
        args.input_size, args.steps = 32, 5
    if args.steps < args.skip + 2 or args.skip < 1:
        p.error("--steps must be at least --skip + 2, --skip at least 1")
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    if not names or any(n not in SETTINGS for n in names):
        p.error(f"--settings: choose from {','.join(SETTINGS)}")

    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.profile import profile_model

    params = profile_model(MODEL, (3, args.input_size, args.input_size), classes=CLASSES).params
    analytic = 2 * 4 * params
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="a2gluon-dist-bench-") as tmp:
        for name in names:
            print(f"{SETTINGS[name][0]}", file=sys.stderr, flush=True)
            results.append(run_setting(name, args, tmp))
    report = {
        "benchmark": "parameter server cost on loopback: a2_resnet26, dist_sync, 1 vs 2 workers",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "model": MODEL,
            "classes": CLASSES,
            "input_size": args.input_size,
            "batch": args.batch,
            "steps": args.steps,
            "skip": args.skip,
            "timeout": args.timeout,
            "quick": args.quick,
        },
        "trained_params": params,
        "analytic_bytes_per_step_per_worker": analytic,
        "environment": {
            "mxnet": mx.__version__,
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            "omp_proc_bind": os.environ.get("OMP_PROC_BIND", "true"),
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "results": results,
        "total_wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dist.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "dist.md").write_text(table, encoding="utf-8")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
