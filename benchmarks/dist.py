"""Parameter-server cost: one worker against two on loopback with dist_sync.

a2_resnet26 (1000 classes), `--synthetic`, one CPU context per worker, as three fresh jobs: one
process without a parameter server (`--kvstore device`), and `python -m a2gluon launch -n 1` and
`-n 2` with one server (`--kvstore dist_sync`, every worker with its own batch). Every worker is
benchmarks/train.py's.

- **s per step**: median step time after the warm-up steps, from the training loop's per-batch
  log lines (`--log-interval 1`); for two workers the slower worker's median (a synchronous step
  waits for the slowest). Workers share the cores (OMP_NUM_THREADS = cores / workers; the
  server 1: it only sums gradients).
- **analytic**: each step every worker pushes every trained gradient and pulls the summed
  gradients back (`update_on_kvstore=False`: the optimizer runs on the workers): 2 × 4 bytes ×
  trained parameters.
- **measured**: TCP payload bytes sent + received by the worker's sockets (`ss -tinp`) between
  the start and the end of the timed window, per step; the server moves as much per worker.
"""

import glob
import json
import statistics
import sys
import tempfile
from pathlib import Path

import _harness as h
import train

MODEL, CLASSES = "a2_resnet26", 1000
SETTINGS = {  # name: (label, workers; 0 = no parameter server)
    "local": ("1 process, no parameter server", 0),
    "dist-1": ("1 worker + 1 server, dist_sync", 1),
    "dist-2": ("2 workers + 1 server, dist_sync", 2),
}


def run_job(name, args, run, tmp):
    """One job of setting `name`: its step time, images/s and measured bytes per step."""
    label, workers = SETTINGS[name]
    threads = max(1, int(run.env["OMP_NUM_THREADS"]) // max(workers, 1))
    save_dir = Path(tempfile.mkdtemp(dir=tmp))
    extra = f"--synthetic --synthetic-batches {args.steps} --kvstore {'dist_sync' if workers else 'device'}"
    argv = train.train_argv(MODEL, args.input_size, args.batch, CLASSES, save_dir, extra)
    case = {"argv": argv, "skip": args.skip, "sockets": bool(workers), "json": str(save_dir / "worker")}
    cmd = [sys.executable, str(Path(train.__file__).resolve()), "--worker", json.dumps(case)]
    if workers:
        launch = f"-m a2gluon launch -n {workers} -s 1 --timeout {args.timeout}".split()
        env = ["--env-server", "OMP_NUM_THREADS:1", "--env-worker", f"OMP_NUM_THREADS:{threads}"]
        cmd = [sys.executable, *launch, *env, "--", *cmd]
    h.say(label)
    job = h.process(cmd, h.worker_env(threads), timeout=args.timeout + 30)
    per_worker = [json.loads(Path(p).read_text()) for p in sorted(glob.glob(f"{save_dir}/worker.*"))]
    result = {"name": name, "label": label, "workers": workers, "threads_per_worker": threads}
    result.update(wall_s=job["wall_s"], workers_results=per_worker)
    errors = [w["error"] for w in per_worker if "error" in w]
    if not errors and len(per_worker) != max(workers, 1):  # the job failed before its workers wrote
        errors.append(f"{len(per_worker)} worker result(s) of {max(workers, 1)}: {job.get('error')}")
    if errors:
        result.update(error=errors[0], stderr_tail=job.get("stderr_tail"))
        return result
    result["step_s"] = max(w["median_step_s"] for w in per_worker)
    result["images_per_s"] = args.batch * max(workers, 1) / result["step_s"]
    measured = [w["socket_bytes_per_step"] for w in per_worker if "socket_bytes_per_step" in w]
    if measured:  # sent + received
        result["measured_bytes_per_step_per_worker"] = statistics.fmean(sum(m.values()) for m in measured)
    return result


def render(report):
    """The table and its notes."""
    s = report["settings"]
    analytic = report["analytic_bytes_per_step_per_worker"]
    base = next((r["step_s"] for r in report["results"] if r["name"] == "local" and "step_s" in r), None)
    rows = []
    for r in report["results"]:
        if "error" in r:
            rows.append([r["label"], "", h.fmt(r, "step_s"), "", "", "", "", ""])
            continue
        meas, workers = r.get("measured_bytes_per_step_per_worker"), r["workers"]
        cells = [r["label"], s["batch"] * max(workers, 1), f"{r['step_s']:.3f}", f"{r['images_per_s']:.1f}"]
        ps_mib = f"{analytic / 2**20:.1f}" if workers else "0"
        cells += [h.times(h.ratio(r["step_s"], base), missing="—"), ps_mib]
        cells += ["—", "—"] if meas is None else [f"{meas / 2**20:.1f}", f"{meas / analytic:.3f}"]
        rows.append(cells)
    header = "setting|global batch|s per step|images/s|step time / no PS|analytic MiB per step per worker "
    header += "(push + pull)|measured MiB per step per worker (sent + received)|measured / analytic"
    size = f"{s['input_size']}×{s['input_size']}"
    settings = f"`{MODEL}`, {report['trained_params']:,} trained parameters, {size}, "
    settings += f"batch {s['batch']} per worker, {s['steps']} steps per job, the first {s['skip']} left out."
    return "\n".join(h.table(header, rows, "lrrrrrrr") + h.notes(__doc__, report, settings))


def options(p):
    h.number(p, "--steps", 12, "steps per job", least=3)
    h.number(p, "--skip", 2, "warm-up steps left out")
    h.number(p, "--input-size", 64, "input size", least=32)
    h.number(p, "--batch", 16, "batch per worker")
    h.number(p, "--timeout", 240, "launcher timeout per job, s", least=10)
    p.add_argument("--settings", type=h.names(SETTINGS), default=list(SETTINGS), help=",".join(SETTINGS))
    return {"input_size": 32, "steps": 4, "skip": 1, "batch": 4}


def bench(run, args):
    if args.steps < args.skip + 2:
        raise h.UsageError("--steps must be at least --skip + 2")
    from a2gluon.profile import profile_model

    params = profile_model(MODEL, (3, args.input_size, args.input_size), classes=CLASSES).params
    with tempfile.TemporaryDirectory(prefix="a2gluon-dist-bench-") as tmp:
        results = [run_job(name, args, run, tmp) for name in args.settings]
    analytic = 2 * 4 * params  # push + pull of every trained gradient, float32
    return {"trained_params": params, "analytic_bytes_per_step_per_worker": analytic, "results": results}


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, train.measure, render, threads=False)
