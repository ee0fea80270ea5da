"""Training throughput (images/s) on CPU with the real input pipeline and with --synthetic.

Writes ``--images`` (default 96) JPEGs of 500 x 375 / 375 x 500 with benchmarks/data.py's
``make_images`` (crops of scikit-learn's sample photographs), packs them with
``a2gluon.data.pack`` (``--resize 0``, quality 95) into a temporary directory, and runs
``train_imagenet.py``'s command line (``a2gluon.cli.train.main``) in fresh processes, one epoch
each, for every case:

* ``a2_resnet26`` at 112 and at 224, batch 16;
* ``a2_resnet50`` at 224, batch 8 (slow on a few cores: it gets a dataset of half the images, so
  that it runs the same number of steps).

Each case runs twice per round: on the packed records (``ImageRecordIter``, one decoding thread,
colour jitter 0.4 and PCA lighting 0.1 as in Gluon-CV's ImageNet recipe) and with ``--synthetic``
(random batches already in memory, as many steps); with ``--rounds`` (default 2) fresh processes
per cell in the order synthetic, real, real, synthetic (so that a change in the machine's load
during the run weighs on both alike), then the next case.
Both use 2 classes (the packed set's), ``--log-interval 1``, lr 0.01, the default float32 and one CPU context.

Per-step times: the worker (this script with ``--worker``) runs the training command line in
its own process with a logging filter on the ``a2gluon.train`` logger that notes
``time.perf_counter()`` when each ``Batch[i/N]`` line is logged.  The loop logs after the step's
update and after reading the loss (a synchronisation), so consecutive notes delimit one step each.
The first ``--skip`` steps (default 2: hybridization, static memory, oneDNN primitive creation and
the pipeline's start-up) are dropped; images/s = batch / median of the remaining step times, and
the median over ``--rounds`` fresh processes is reported.  The epoch's whole-run figure (the
``images_per_sec`` of ``metrics.jsonl``, which includes the warm-up steps) and the mean over the
timed window are kept in the JSON.

The data pipeline's share of a training step is 1 - real / synthetic, both from the same run of
this script.  The goal line comes from benchmarks/results/data.json (the pipeline's images/s on
one core against what an ``a2_resnet26`` training step consumes).

Workers get OMP_NUM_THREADS = all cores (the decoding thread shares them, as in a real run),
OMP_WAIT_POLICY=PASSIVE and OMP_PROC_BIND=true unless set.  The load average before and after is
recorded: other processes on the machine distort the timings.

``--worker`` is also used by benchmarks/dist.py, with ``--sockets``: it then records the bytes
its TCP sockets sent and received (``ss -tinp``) at the start and the end of the timed window.

Writes <out>/train.json and <out>/train.md and prints the Markdown.

Usage: python benchmarks/train.py [--quick] [--rounds N] [--images N] [--skip N]
       [--cases a2_resnet26@112,a2_resnet26@224,a2_resnet50@224] [--out benchmarks/results]
"""

import argparse
import importlib.util
import json
import logging
import os
import platform
import re
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
CASES = {  # name: (model, input size, batch, share of the images)
    "a2_resnet26@112": ("a2_resnet26", 112, 16, 1.0),
    "a2_resnet26@224": ("a2_resnet26", 224, 16, 1.0),
    "a2_resnet50@224": ("a2_resnet50", 224, 8, 0.5),
}
JITTER = 0.4
LIGHTING = 0.1
BATCH_LINE = re.compile(r"Batch\[(\d+)/(\d+)\]")
SS_PID = re.compile(r"pid=(\d+),")
SS_FIELD = re.compile(r"\b(bytes_sent|bytes_received):(\d+)")


def socket_bytes(pid):
    """Bytes sent and received so far by the TCP sockets of process `pid` (from `ss -tinp`)."""
    try:
        out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    sent = received = 0
    owner = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):  # a socket line; its details follow on the next line
            owner = {int(p) for p in SS_PID.findall(line)}
            continue
        if pid in (owner or ()):
            for field, value in SS_FIELD.findall(line):
                if field == "bytes_sent":
                    sent += int(value)
                else:
                    received += int(value)
    return {"sent": sent, "received": received}


def worker(json_path, skip, sockets, train_argv):
    """Run the training command line in this process, noting when each batch is logged."""
    sys.path.insert(0, str(ROOT))
    notes = []

    class Recorder(logging.Filter):
        def filter(self, record):
            match = BATCH_LINE.search(record.getMessage())
            if match:
                batch, total = int(match[1]), int(match[2])
                note = {"batch": batch, "of": total, "t": time.perf_counter()}
                if sockets and batch in (skip, total):
                    note["socket_bytes"] = socket_bytes(os.getpid())
                notes.append(note)
            return True

    logging.getLogger("a2gluon.train").addFilter(Recorder())
    from a2gluon.cli.train import main as train_main  # a parameter server's server exits here

    code = train_main(train_argv)
    result = {"exit_code": code, "notes": notes, "pid": os.getpid()}
    result["dmlc_role"] = os.environ.get("DMLC_ROLE")
    if result["dmlc_role"]:  # one file per worker of a parameter-server job
        json_path = f"{json_path}.{os.getpid()}"
    Path(json_path).write_text(json.dumps(result), encoding="utf-8")
    return code


def step_stats(notes, batch, skip):
    """Step times after `skip` steps from the batch notes: dict with images/s etc., or error."""
    notes = sorted(notes, key=lambda n: n["batch"])
    times = [b["t"] - a["t"] for a, b in zip(notes, notes[1:]) if b["batch"] == a["batch"] + 1]
    timed = [b["t"] - a["t"] for a, b in zip(notes, notes[1:]) if a["batch"] >= skip]
    if not timed:
        return {"error": f"fewer than {skip + 2} steps logged"}
    window = [n for n in notes if n["batch"] >= skip]
    mean_step = (window[-1]["t"] - window[0]["t"]) / (window[-1]["batch"] - window[0]["batch"])
    median_step = statistics.median(timed)
    return {
        "steps": len(notes),
        "timed_steps": len(timed),
        "step_s": timed,
        "all_step_s": times,
        "median_step_s": median_step,
        "images_per_s": batch / median_step,
        "mean_images_per_s": batch / mean_step,
        "window": window,
    }


def run_training(train_args, env, skip, save_dir, timeout=900):
    """One fresh training process; its step statistics (batch from the arguments)."""
    json_path = Path(save_dir) / "bench-worker.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--json", str(json_path)]
    cmd += ["--skip", str(skip), "--", *train_args, "--save-dir", str(save_dir)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not json_path.exists():
        return {"error": f"exited with code {proc.returncode}", "stderr_tail": proc.stderr.splitlines()[-5:]}
    out = json.loads(json_path.read_text(encoding="utf-8"))
    batch = int(train_args[train_args.index("--batch-size") + 1])
    stats = step_stats(out["notes"], batch, skip)
    stats["process_wall_s"] = wall
    metrics = Path(save_dir) / "metrics.jsonl"
    if metrics.exists():
        lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if lines:
            stats["epoch_images_per_sec"] = lines[-1].get("images_per_sec")
    return stats


def load_data_bench():
    spec = importlib.util.spec_from_file_location("a2gluon_bench_data", HERE / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_goal():
    """The goal line from benchmarks/results/data.json: pipeline on one core vs training step."""
    path = HERE / "results" / "data.json"
    if not path.exists():
        return {"text": "benchmarks/results/data.json missing: run benchmarks/data.py"}
    report = json.loads(path.read_text(encoding="utf-8"))
    one_core = [
        c["result"]["images_per_cpu_s"]
        for c in report["cases"]
        if c["kind"] == "recorditer" and "images_per_cpu_s" in c.get("result", {})
    ]
    consumed = report.get("train_step", {}).get("images_per_s")
    if not one_core or not consumed:
        return {"text": "not measured in benchmarks/results/data.json"}
    best = max(one_core)
    met = best >= consumed
    settings = report["settings"]
    return {
        "pipeline_images_per_cpu_s": best,
        "train_images_per_s": consumed,
        "ratio": best / consumed,
        "met": met,
        "date": report.get("date"),
        "text": (
            f"ImageRecordIter decodes {best:.0f} images per CPU-second, the {settings['train_model']} "
            f"training step (batch {settings['train_batch']} at {settings['input_size']}) "
            f"consumes {consumed:.1f} images/s: {best / consumed:.0f}× — {'met' if met else 'NOT met'} "
            f"(benchmarks/data.py, {report.get('date')})"
        ),
    }


NOISY_SPREAD = 1.3  # a cell whose processes differ by more than this is flagged


def noisy(case):
    """Whether the processes of either variant of `case` differ by more than NOISY_SPREAD×."""
    for variant in ("synthetic", "real"):
        rounds = case[variant].get("round_images_per_s") or []
        if len(rounds) > 1 and max(rounds) > NOISY_SPREAD * min(rounds):
            return True
    return False


def fmt(res, key="images_per_s"):
    if key not in res:
        return f"failed ({res.get('error', 'not run')})"
    rounds = res.get("round_images_per_s") or []
    spread = f" ({min(rounds):.1f}–{max(rounds):.1f})" if len(rounds) > 1 else ""
    return f"{res[key]:.1f}{spread}"


def markdown(report):
    s, env = report["settings"], report["environment"]
    lines = [
        "| model | input | batch | synthetic images/s | real pipeline images/s | real / synthetic "
        "| pipeline's share | step s (synthetic / real) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in report["cases"]:
        syn, real = case["synthetic"], case["real"]
        share = case.get("pipeline_share")
        ratio = case.get("real_over_synthetic")
        steps = (
            f"{syn['median_step_s']:.2f} / {real['median_step_s']:.2f}"
            if "median_step_s" in syn and "median_step_s" in real
            else "—"
        )
        lines.append(
            f"| `{case['model']}` | {case['input_size']} | {case['batch']} | {fmt(syn)} | {fmt(real)} "
            f"| {'—' if ratio is None else f'{ratio:.2f}'} "
            f"| {'—' if share is None else f'{share * 100:.0f} %'}{' (noisy)' if noisy(case) else ''} "
            f"| {steps} |"
        )
    lines += [
        "",
        f"Goal: the data pipeline on one core feeds at least the CPU training step of a2_resnet26: "
        f"{report['goal']['text']}.",
        "",
        "`train_imagenet.py` (its command line, `a2gluon.cli.train.main`) for one epoch in a fresh "
        "process per cell, one CPU context, float32, 2 classes (the packed set's; the classifier "
        f"is a negligible share of the step). Real pipeline: {s['images']} JPEGs "
        "of 500×375 (benchmarks/data.py's `make_images`) packed with `a2gluon.data.pack --resize 0`, "
        f"`ImageRecordIter` with one decoding thread (`-j 1`), colour jitter {JITTER}, PCA lighting "
        f"{LIGHTING}; a2_resnet50 gets half the images (same number of steps). Synthetic: "
        "`--synthetic`, as many steps.",
        "",
        f"- **images/s**: batch / median step time over the steps after the first {s['skip']} "
        "(warm-up), steps timed from the training loop's per-batch log lines (`--log-interval 1`); "
        f"median over {s['rounds']} fresh process(es) per cell (synthetic, real, real, synthetic; in "
        "brackets the lowest and highest process). The epochs' whole-run figures "
        "(`metrics.jsonl`, warm-up included) are in train.json.",
        "- **pipeline's share**: 1 − real / synthetic: the fraction of the training throughput lost "
        "to reading, decoding and augmenting on the same cores. **(noisy)**: the fresh processes of "
        f"one of the two variants differ by more than {NOISY_SPREAD:g}× in images/s (other load on "
        "the shared machine; train.json has every step's time): the share is not meaningful there.",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, shared; OMP_NUM_THREADS="
        f"{env['omp_num_threads']}, OMP_WAIT_POLICY={env['omp_wait_policy']}, OMP_PROC_BIND="
        f"{env['omp_proc_bind']}; 1-minute load average {env['load_average_before'][0]:.2f} before and "
        f"{env['load_average_after'][0]:.2f} after the run; MXNet {env['mxnet']}, Python "
        f"{env['python']}; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_argv = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description="Training images/s, real pipeline vs --synthetic.")
    p.add_argument("--quick", action="store_true", help="a2_resnet26 at 112 only, 64 images")
    p.add_argument("--images", type=int, default=96, help="JPEGs in the training set (default 96)")
    p.add_argument("--rounds", type=int, default=2, help="fresh processes per cell (default 2)")
    p.add_argument("--skip", type=int, default=2, help="warm-up steps left out (default 2)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    p.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    p.add_argument("--sockets", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.json, args.skip, args.sockets, train_argv)
    if args.rounds < 1 or args.skip < 1 or args.images < 1:
        p.error("--rounds, --skip and --images must be at least 1")
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    if args.quick:
        names, args.images = ["a2_resnet26@112"], 64
    if not names or any(n not in CASES for n in names):
        p.error(f"--cases: choose from {','.join(CASES)}")

    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.data import pack

    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "true")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    load_before = os.getloadavg()
    started = time.perf_counter()
    cases = []
    with tempfile.TemporaryDirectory(prefix="a2gluon-train-bench-") as tmp:
        tmp = Path(tmp)
        make_images = load_data_bench().make_images
        prefixes = {}
        for share in sorted({CASES[n][3] for n in names}):
            count = max(1, int(args.images * share))
            print(f"writing and packing {count} JPEGs", file=sys.stderr, flush=True)
            make_images(tmp / f"images{count}", count)
            pack(
                tmp / f"images{count}",
                tmp / f"train{count}",
                resize=0,
                quality=95,
                progress=False,
                num_workers=1,
            )
            prefixes[share] = (str(tmp / f"train{count}"), count)
        for name in names:
            model, size, batch, share = CASES[name]
            prefix, count = prefixes[share]
            steps = count // batch
            common = [
                "--model", model, "--input-size", str(size), "--batch-size", str(batch),
                "--num-epochs", "1", "--num-classes", "2", "--lr", "0.01",
                "--log-interval", "1", "--num-cpus", "1",
            ]  # fmt: skip
            variants = {
                "synthetic": common + ["--synthetic", "--synthetic-batches", str(steps)],
                "real": common
                + ["--rec-train", prefix + ".rec", "--rec-train-idx", prefix + ".idx", "-j", "1"]
                + ["--color-jitter", str(JITTER), "--pca-noise", str(LIGHTING)],
            }
            rounds = {v: [] for v in variants}
            for index in range(args.rounds):
                order = list(variants.items())
                for variant, train_args in order if index % 2 == 0 else order[::-1]:  # ABBA
                    print(f"{name} {variant}, round {index + 1}", file=sys.stderr, flush=True)
                    save_dir = tmp / f"run-{name}-{variant}-{index}"
                    rounds[variant].append(run_training(train_args, env, args.skip, save_dir))
            result = {"name": name, "model": model, "input_size": size, "batch": batch, "images": count}
            for variant, runs in rounds.items():
                done = [r for r in runs if "error" not in r]
                if not done:
                    result[variant] = {"error": runs[0]["error"], "runs": runs}
                    continue
                result[variant] = {
                    "images_per_s": statistics.median(r["images_per_s"] for r in done),
                    "round_images_per_s": [r["images_per_s"] for r in done],
                    "median_step_s": statistics.median(r["median_step_s"] for r in done),
                    "mean_images_per_s": statistics.median(r["mean_images_per_s"] for r in done),
                    "epoch_images_per_sec": [r.get("epoch_images_per_sec") for r in done],
                    "runs": runs,
                }
            syn, real = result["synthetic"], result["real"]
            if "images_per_s" in syn and "images_per_s" in real:
                result["real_over_synthetic"] = real["images_per_s"] / syn["images_per_s"]
                result["pipeline_share"] = 1 - result["real_over_synthetic"]
            cases.append(result)

    report = {
        "benchmark": "training images/s on CPU, real input pipeline vs --synthetic",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "images": args.images,
            "image_size": "500x375 (25 % portrait)",
            "rounds": args.rounds,
            "skip": args.skip,
            "jitter": JITTER,
            "lighting": LIGHTING,
            "decoding_threads": 1,
            "quick": args.quick,
        },
        "environment": {
            "mxnet": mx.__version__,
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "omp_num_threads": env["OMP_NUM_THREADS"],
            "omp_wait_policy": env["OMP_WAIT_POLICY"],
            "omp_proc_bind": env["OMP_PROC_BIND"],
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "cases": cases,
        "goal": data_goal(),
        "total_wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "train.md").write_text(table, encoding="utf-8")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
