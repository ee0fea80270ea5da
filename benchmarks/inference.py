"""Inference throughput of a2_resnet50 against resnet50 on CPU: Gluon, exported symbol, onnxruntime.

What is timed is eval_imagenet.py's model step on one batch already in memory (no data loading
or decoding): for MXNet, ``a2gluon.engine.evaluate.forward`` (split_and_load onto the CPU, the
network, ``astype('float32')``) followed by the ``concat`` that ``evaluate`` does, ended by
``asnumpy()``; for onnxruntime, ``InferenceSession.run`` on a numpy batch, which returns numpy.
Three runtimes:

* gluon: the registry model (``a2gluon.deploy.build_model``) with the exported parameters loaded
  by ``load_gluon_model``, hybridized with static_alloc and static_shape (eval_imagenet.py
  ``--model M --params P``);
* symbol: the exported PREFIX-symbol.json + PREFIX-0000.params loaded by ``load_symbol_model``
  (``mx.gluon.SymbolBlock.imports``) and hybridized with static_alloc and static_shape, exactly
  as eval_imagenet.py ``--symbol PREFIX`` runs it;
* onnxruntime: ``onnxruntime.InferenceSession`` on PREFIX.onnx (written by
  ``a2gluon.deploy.onnx_export.export_onnx``, dynamic batch axis), CPUExecutionProvider,
  intra-op threads = --threads, inter-op threads 1, default graph optimisations (all).  That
  worker does not import MXNet.

Both models are built at 224 x 224 with 1000 classes, randomly initialised (MSRAPrelu, as the
trainer does; seed 0; nothing is downloaded) and exported once, at the start, into a temporary
directory with ``a2gluon.deploy.export.export_model(..., onnx=True)``; every runtime then uses
the same weights.

Every (batch, runtime, model) case runs in a fresh worker process (this script with
``--worker``): it loads the model, makes a seeded random batch, runs ``--warmup`` untimed steps
and then times ``--repeat`` steps at batch 1 and ``--repeat-batched`` steps at larger batches.
a2_resnet50 and resnet50 alternate, so slow drifts in the machine's load hit both.  With
``--rounds`` (default 2) the whole sequence is repeated, each time in new processes; the median of
all timed steps of all rounds is reported as images/s = batch / median step time.  The ratio
a2_resnet50 / resnet50 of the time per image is reported for each runtime and batch, next to
the ratio of their multiply-adds from ``a2gluon.profile.profile_model``.

Once per model a separate worker (``--check``) runs the same seeded batch of 2 through the
three runtimes in one process and records the largest absolute difference of the outputs
(logits) of the symbol and onnxruntime runs from the Gluon run, the largest absolute output,
and whether the top-1 classes agree.

Threads: as in benchmarks/block.py, the workers get OMP_NUM_THREADS = --threads (default: the
OMP_NUM_THREADS already set, else all cores) and, unless set, OMP_WAIT_POLICY=PASSIVE and
OMP_PROC_BIND=true.  The load average before and after the run and at the start of every
worker is recorded, since other processes on the machine distort the timings.

Writes <out>/inference.json and <out>/inference.md and prints the Markdown table.  --quick is a
smoke run (batches 1 and 4, few steps) that writes nothing unless --out is given.

Usage: python benchmarks/inference.py [--batches 1,32] [--repeat N] [--repeat-batched N]
       [--warmup N] [--rounds N] [--threads N] [--models a2_resnet50,resnet50]
       [--runtimes gluon,symbol,onnxruntime] [--quick] [--out benchmarks/results]
"""

import argparse
import json
import os
import platform
import resource
import shutil
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
MODELS = ("a2_resnet50", "resnet50")  # the A² model first, then its baseline
RUNTIMES = ("gluon", "symbol", "onnxruntime")
RUNTIME_LABELS = {
    "gluon": "Gluon, hybridized",
    "symbol": "exported symbol (SymbolBlock)",
    "onnxruntime": "onnxruntime (CPU)",
}
INPUT_SHAPE = (3, 224, 224)
CLASSES = 1000
CHECK_BATCH = 2
SEED = 0


def prefix_of(workdir, model):
    return os.path.join(workdir, model)


def make_batch(batch, seed=SEED):
    """A seeded standard-normal batch (what normalised images look like), float32 numpy."""
    import numpy as np

    return np.random.RandomState(seed).standard_normal((batch,) + INPUT_SHAPE).astype(np.float32)


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# Runtimes: each returns step(x_numpy) -> numpy logits, with the input already in the runtime's
# own memory where that is what eval_imagenet.py does (an NDArray batch from the data iterator).


def mxnet_step(runtime, model, workdir, x):
    """eval_imagenet.py's model step for the Gluon or SymbolBlock model, on batch `x`."""
    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.deploy import load_gluon_model, load_symbol_model
    from a2gluon.engine.evaluate import forward

    ctx = [mx.cpu()]
    prefix = prefix_of(workdir, model)
    if runtime == "gluon":
        loaded = load_gluon_model(model, f"{prefix}-0000.params", num_classes=CLASSES, ctx=ctx[0])
    else:
        loaded = load_symbol_model(prefix, 0, ctx=ctx[0])
    net = loaded.net
    net.hybridize(static_alloc=True, static_shape=True)  # a2gluon.cli.evaluate.prepare, float32
    data = mx.nd.array(x, ctx=ctx[0])
    mx.nd.waitall()

    def step():
        return mx.nd.concat(*forward(net, data, ctx), dim=0).asnumpy()

    return step


def onnxruntime_step(model, workdir, x, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        prefix_of(workdir, model) + ".onnx", options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def step():
        return session.run(None, {name: x})[0]

    return step


def make_step(runtime, model, workdir, x, threads):
    if runtime == "onnxruntime":
        return onnxruntime_step(model, workdir, x, threads)
    return mxnet_step(runtime, model, workdir, x)


# ---------------------------------------------------------------------------------------------
# Workers


def worker(runtime, model, batch, workdir, repeat, warmup, threads):
    """Time one (runtime, model, batch) case in this process; print a JSON line."""
    load_at_start = os.getloadavg()
    x = make_batch(batch)
    start = time.perf_counter()
    step = make_step(runtime, model, workdir, x, threads)
    load_s = time.perf_counter() - start
    baseline_mib = max_rss_mib()
    warmup_s = []
    for _ in range(warmup):
        start = time.perf_counter()
        out = step()
        warmup_s.append(time.perf_counter() - start)
    timings_s = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = step()
        timings_s.append(time.perf_counter() - start)
    assert out.shape == (batch, CLASSES), out.shape
    median_s = statistics.median(timings_s)
    print(
        json.dumps(
            {
                "runtime": runtime,
                "model": model,
                "batch": batch,
                "median_ms": median_s * 1e3,
                "images_per_s": batch / median_s,
                "timings_ms": [t * 1e3 for t in timings_s],
                "warmup_ms": [t * 1e3 for t in warmup_s],
                "repeat": repeat,
                "model_load_s": load_s,
                "rss_before_mib": baseline_mib,
                "peak_rss_mib": max_rss_mib(),
                "load_average_at_start": list(load_at_start),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            }
        )
    )


def check_worker(model, workdir, threads):
    """Run the same batch through the three runtimes; print the output differences as JSON."""
    import numpy as np

    x = make_batch(CHECK_BATCH, seed=SEED + 1)
    outputs = {r: make_step(r, model, workdir, x, threads)() for r in RUNTIMES}
    ref = outputs["gluon"].astype(np.float64)
    top1 = ref.argmax(axis=1)
    result = {
        "model": model,
        "batch": CHECK_BATCH,
        "max_abs_output": float(np.abs(ref).max()),
        "max_abs_diff": {},
        "top1_agrees": {},
    }
    for runtime in RUNTIMES[1:]:
        out = outputs[runtime].astype(np.float64)
        result["max_abs_diff"][runtime] = float(np.abs(out - ref).max())
        result["top1_agrees"][runtime] = bool((out.argmax(axis=1) == top1).all())
    print(json.dumps(result))


def run_process(cmd, env):
    """Run a worker; its JSON result (the last stdout line) or an error description."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall_s = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {
            "error": f"worker exited with code {proc.returncode}",
            "stderr_tail": proc.stderr.strip().splitlines()[-5:],
            "worker_wall_s": wall_s,
        }
    result = json.loads(lines[-1])
    result["worker_wall_s"] = wall_s
    return result


# ---------------------------------------------------------------------------------------------
# Export (in the parent, once)


def export_models(models, workdir):
    """Build, initialise and export every model (symbol, params, ONNX); {model: info}."""
    import mxnet as mx

    sys.path.insert(0, str(ROOT))
    from a2gluon.deploy import LoadedModel, build_model, export_model

    info = {}
    for model in models:
        start = time.perf_counter()
        mx.random.seed(SEED)
        net = build_model(model, classes=CLASSES)
        net.initialize(mx.init.MSRAPrelu(), ctx=mx.cpu())
        loaded = LoadedModel(net=net, model=model, num_classes=CLASSES, input_shape=INPUT_SHAPE)
        files = export_model(loaded, prefix_of(workdir, model), INPUT_SHAPE, onnx=True)
        info[model] = {
            "export_s": time.perf_counter() - start,
            "bytes": {kind: os.path.getsize(files[kind]) for kind in ("symbol", "params", "onnx")},
        }
        del net, loaded
    return info


def multiply_adds(models):
    sys.path.insert(0, str(ROOT))
    from a2gluon.profile import profile_model

    out = {}
    for model in models:
        prof = profile_model(model, INPUT_SHAPE, classes=CLASSES)
        out[model] = {"macs": prof.macs, "params": prof.params}
    return out


# ---------------------------------------------------------------------------------------------
# Report


def combine(rounds):
    """One case's result from its rounds (one worker process each)."""
    done = [r for r in rounds if "error" not in r]
    out = {"rounds": len(rounds), "failed_rounds": [r for r in rounds if "error" in r]}
    if not done:
        out["error"] = rounds[0]["error"]
        return out
    timings = [t for r in done for t in r["timings_ms"]]
    median_ms = statistics.median(timings)
    out.update(
        median_ms=median_ms,
        images_per_s=done[0]["batch"] / (median_ms / 1e3),
        timings_ms=timings,
        round_images_per_s=[r["images_per_s"] for r in done],
        repeat=[r["repeat"] for r in done],
        warmup_ms=[r["warmup_ms"] for r in done],
        model_load_s=[r["model_load_s"] for r in done],
        peak_rss_mib=[r["peak_rss_mib"] for r in done],
        load_average_at_start=[r["load_average_at_start"] for r in done],
        worker_wall_s=[r["worker_wall_s"] for r in done],
    )
    return out


def markdown(report):
    """The results as Markdown tables followed by notes on how they were measured."""
    first, second = report["models"]
    macs = report["multiply_adds"]
    mac_ratio = macs[first]["macs"] / macs[second]["macs"]

    def ips(res):
        if "images_per_s" not in res:
            return f"failed ({res['error']})"
        per_process = res["round_images_per_s"]
        if len(per_process) == 1:
            return f"{res['images_per_s']:.1f}"
        return f"{res['images_per_s']:.1f} ({min(per_process):.1f}–{max(per_process):.1f})"

    lines = [
        f"| runtime | batch | {first} images/s | {second} images/s | {first} / {second} "
        f"time per image | {first} / {second} multiply-adds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        res = row["results"]
        time_ratio = row["time_ratio"]
        lines.append(
            f"| {RUNTIME_LABELS[row['runtime']]} | {row['batch']} | {ips(res[first])} "
            f"| {ips(res[second])} | {'n/a' if time_ratio is None else f'{time_ratio:.2f}×'} "
            f"| {mac_ratio:.2f}× |"
        )
    if report["agreement"]:
        lines += [
            "",
            "| model | largest \\|logit\\| (Gluon) | symbol − Gluon, max abs | onnxruntime − Gluon, "
            "max abs | top-1 agrees |",
            "|---|---:|---:|---:|---|",
        ]
    for model in report["models"] if report["agreement"] else ():
        chk = report["agreement"][model]
        if "error" in chk:
            lines.append(f"| `{model}` | failed ({chk['error']}) | | | |")
            continue
        diff, agree = chk["max_abs_diff"], chk["top1_agrees"]
        lines.append(
            f"| `{model}` | {chk['max_abs_output']:.3g} | {diff['symbol']:.2g} "
            f"| {diff['onnxruntime']:.2g} "
            f"| {'yes' if all(agree.values()) else 'no: ' + str(agree)} |"
        )

    def passes(counts):
        if len(set(counts)) == 1:
            return f"{len(counts)} × {counts[0]}" if len(counts) > 1 else str(counts[0])
        return " + ".join(str(n) for n in counts)

    settings, env = report["settings"], report["environment"]
    repeats = sorted(
        {
            (row["batch"], passes(r["repeat"]))
            for row in report["results"]
            for r in row["results"].values()
            if "repeat" in r
        }
    )
    repeat_text = "; ".join(f"batch {b}: {p}" for b, p in repeats)
    rounds = settings["rounds"]
    process_text = "one fresh process per cell" if rounds == 1 else f"{rounds} fresh processes per cell"
    warmup_text = f"{settings['warmup']} warm-up step" + ("" if settings["warmup"] == 1 else "s")
    agreement_text = (
        f"- **agreement**: one batch of {CHECK_BATCH} seeded standard-normal images through the "
        "three runtimes in one process; largest absolute difference of the logits from the "
        "Gluon model's, and whether the top-1 classes are the same."
    )
    load = env["load_average_before"][0], env["load_average_after"][0]
    lines += [
        "",
        f"eval_imagenet.py's model step on one in-memory batch (no data loading), "
        f"{'×'.join(map(str, INPUT_SHAPE))} input, {CLASSES} classes, float32, CPU, randomly "
        "initialised weights exported once and shared by the three runtimes. "
        "'Gluon, hybridized': the registry model with static_alloc and static_shape; "
        "'exported symbol': PREFIX-symbol.json + PREFIX-0000.params through "
        "`mx.gluon.SymbolBlock.imports`, hybridized the same way (what `eval_imagenet.py --symbol` "
        "runs); 'onnxruntime': `InferenceSession` on the exported PREFIX.onnx.",
        "",
        f"- **images/s**: batch / median step time over the timed steps of {process_text} "
        f"(a2_resnet50 and resnet50 alternating), each after {warmup_text} "
        f"(processes × timed steps: {repeat_text}). A step ends with the logits in a numpy array. "
        + ("In brackets: the lowest and highest of the processes' own medians." if rounds > 1 else ""),
        f"- **time per image** ratio: {first}'s time per image over {second}'s (= {second} "
        f"images/s over {first} images/s); **multiply-adds**: `a2gluon.profile.profile_model` at "
        f"batch 1, {macs[first]['macs'] / 1e9:.2f} G / {macs[second]['macs'] / 1e9:.2f} G.",
        agreement_text,
        f"- MXNet runs with OMP_NUM_THREADS={env['omp_num_threads']}, "
        f"OMP_WAIT_POLICY={env['omp_wait_policy']}, OMP_PROC_BIND={env['omp_proc_bind']} "
        f"(oneDNN: {'yes' if 'MKLDNN' in env['mxnet_features'] else 'no'}); onnxruntime "
        f"{env['onnxruntime']} with CPUExecutionProvider, {settings['ort_intra_op_threads']} "
        "intra-op threads, 1 inter-op thread, all graph optimisations.",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, shared: 1-minute load average "
        f"{load[0]:.2f} before and {load[1]:.2f} after the run (the latter includes the benchmark's "
        "own threads; other processes were running, so the numbers are noisy; inference.json has "
        "every step's time and the load average at the start of every worker); MXNet "
        f"{env['mxnet']}, onnx {env['onnx']}, Python {env['python']}; {report['date']}.",
        "",
    ]
    if not report["agreement"]:
        lines.remove(agreement_text)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def parse_list(parser, text, allowed, option):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in allowed for n in names):
        parser.error(f"--{option}: choose from {','.join(allowed)}, got {text!r}")
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Images/s of a2_resnet50 vs resnet50 on CPU: Gluon, exported symbol, onnxruntime."
    )
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,32)")
    parser.add_argument("--repeat", type=int, default=None, help="timed steps at batch 1 (default 20)")
    parser.add_argument(
        "--repeat-batched", type=int, default=None, help="timed steps at larger batches (default 5)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="fresh worker processes per case (default 2)")
    parser.add_argument("--models", default=",".join(MODELS), help="the A² model, then its baseline")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"subset of {','.join(RUNTIMES)}")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1),
        help="OMP_NUM_THREADS and onnxruntime intra-op threads (default: $OMP_NUM_THREADS, else all cores)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: batches 1,4, 3 / 2 timed steps, 1 warm-up; writes nothing unless --out",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default benchmarks/results)"
    )
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, metavar=("RUNTIME", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--check", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    quick = {"batches": "1,4", "repeat": 3, "repeat_batched": 2, "warmup": 1}
    full = {"batches": "1,32", "repeat": 20, "repeat_batched": 5, "warmup": 2}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None and not args.quick:
        args.out = HERE / "results"
    for option in ("repeat", "repeat_batched", "rounds", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")

    if args.worker:
        runtime, model, batch = args.worker
        repeat = args.repeat if int(batch) == 1 else args.repeat_batched
        worker(runtime, model, int(batch), args.workdir, repeat, args.warmup, args.threads)
        return
    if args.check:
        check_worker(args.check, args.workdir, args.threads)
        return

    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        parser.error(f"--batches: give positive integers such as 1,32, got {args.batches!r}")
    models = parse_list(parser, args.models, MODELS, "models")
    runtimes = parse_list(parser, args.runtimes, RUNTIMES, "runtimes")
    if len(models) != 2:
        parser.error("--models: give the A² model and its baseline")

    import mxnet as mx
    import onnx
    import onnxruntime

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "true")
    load_before = os.getloadavg()
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="a2gluon-inference-")
    script = str(Path(__file__).resolve())
    common = ["--workdir", workdir, "--threads", str(args.threads)]
    try:
        print(f"exporting {', '.join(models)} to {workdir}", file=sys.stderr, flush=True)
        exported = export_models(models, workdir)
        macs = multiply_adds(models)

        agreement = {}
        if runtimes == list(RUNTIMES):
            for model in models:
                print(f"checking {model}: outputs of the three runtimes", file=sys.stderr, flush=True)
                agreement[model] = run_process([sys.executable, script, "--check", model] + common, env)

        cases = [(b, r, m) for b in batches for r in runtimes for m in models]
        rounds = {case: [] for case in cases}
        for index in range(args.rounds):
            for batch, runtime, model in cases:
                print(
                    f"measuring {runtime} / {model} / batch {batch}, round {index + 1} of {args.rounds}",
                    file=sys.stderr,
                    flush=True,
                )
                cmd = [sys.executable, script, "--worker", runtime, model, str(batch)] + common
                cmd += ["--repeat", str(args.repeat), "--repeat-batched", str(args.repeat_batched)]
                cmd += ["--warmup", str(args.warmup)]
                rounds[(batch, runtime, model)].append(run_process(cmd, env))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results = []
    for batch in batches:
        for runtime in runtimes:
            res = {model: combine(rounds[(batch, runtime, model)]) for model in models}
            first, second = (res[m].get("images_per_s") for m in models)
            results.append(
                {
                    "runtime": runtime,
                    "batch": batch,
                    "results": res,
                    "time_ratio": second / first if first and second else None,
                }
            )

    features = mx.runtime.Features()
    report = {
        "benchmark": "eval_imagenet.py model step, images/s, a2_resnet50 vs resnet50, float32, CPU",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": models,
        "settings": {
            "batches": batches,
            "runtimes": runtimes,
            "repeat": args.repeat,
            "repeat_batched": args.repeat_batched,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "quick": args.quick,
            "input_shape": list(INPUT_SHAPE),
            "classes": CLASSES,
            "init": "MSRAPrelu, mx.random.seed(0)",
            "hybridize": {"static_alloc": True, "static_shape": True},
            "ort_intra_op_threads": args.threads,
            "ort_inter_op_threads": 1,
            "check_batch": CHECK_BATCH,
        },
        "environment": {
            "mxnet": mx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "omp_num_threads": args.threads,
            "omp_wait_policy": env["OMP_WAIT_POLICY"],
            "omp_proc_bind": env["OMP_PROC_BIND"],
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "mxnet_features": [f.name for f in features.values() if f.enabled],
        },
        "multiply_adds": macs,
        "export": exported,
        "agreement": agreement,
        "results": results,
        "total_wall_s": time.perf_counter() - started,
    }

    table = markdown(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "inference.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (args.out / "inference.md").write_text(table, encoding="utf-8")
    print(table, end="")


if __name__ == "__main__":
    main()
