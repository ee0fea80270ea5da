"""Training throughput (images/s) on CPU with the real input pipeline and with --synthetic.

`train_imagenet.py` (its command line, `a2gluon.cli.train.main`) for one epoch in a fresh process
per cell, one CPU context, float32, 2 classes (the classifier is a negligible share of the step).
Real pipeline: JPEGs of 500×375 (benchmarks/data.py's `make_records`) packed with
`a2gluon.data.pack --resize 0`, `ImageRecordIter` with one decoding thread (`-j 1`), colour
jitter 0.4, PCA lighting 0.1; a2_resnet50 gets half the images (same number of steps).
Synthetic: `--synthetic`, as many steps. The worker also serves benchmarks/dist.py, and then
counts the bytes its TCP sockets sent and received (`ss -tinp`) over the timed window.

- **images/s**: batch / median step time over the steps after the warm-up ones, each step timed
  from the training loop's per-batch log lines (`--log-interval 1`: logged after the update and
  after reading the loss, a synchronisation); median over the fresh processes of a cell (in
  brackets the lowest and highest). The epochs' whole-run figures (`metrics.jsonl`, warm-up
  included) are in train.json.
- **pipeline's share**: 1 − real / synthetic: the fraction of the training throughput lost to
  reading, decoding and augmenting on the same cores. **(noisy)**: the processes of one of the
  two variants differ by more than 1.3× in images/s (other load on the shared machine): the
  share is not meaningful there.
"""

import json
import logging
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import _harness as h

CASES = {  # name: (model, input size, batch, share of the images)
    "a2_resnet26@112": ("a2_resnet26", 112, 16, 1.0),
    "a2_resnet26@224": ("a2_resnet26", 224, 16, 1.0),
    "a2_resnet50@224": ("a2_resnet50", 224, 8, 0.5),
}
VARIANTS = ("synthetic", "real")
NOISY_SPREAD = 1.3  # a cell whose processes differ by more than this is flagged
BATCH_LINE = re.compile(r"Batch\[(\d+)/(\d+)\]")


def socket_bytes(pid):
    """Bytes sent and received so far by the TCP sockets of process `pid` (from `ss -tinp`), or
    None without `ss`."""
    try:
        out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=False).stdout
    except OSError:  # no `ss` here: no byte counts
        return None
    total, owner = {"sent": 0, "received": 0}, set()
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):  # a socket line; its details follow on the next line
            owner = {int(p) for p in re.findall(r"pid=(\d+),", line)}
        elif pid in owner:
            for field, value in re.findall(r"\bbytes_(sent|received):(\d+)", line):
                total[field] += int(value)
    return total


def train_argv(model, size, batch, classes, save_dir, extra):
    """train_imagenet.py's command line: one epoch on one CPU context, a log line per step, `extra`."""
    argv = f"--model {model} --input-size {size} --batch-size {batch} --num-classes {classes} --lr 0.01"
    argv += f" --num-epochs 1 --log-interval 1 --num-cpus 1 --save-dir {save_dir} {extra}"
    return argv.split()


def step_stats(notes, batch, skip):
    """Step times after `skip` steps from the batch notes, images/s, socket bytes per step."""
    window = sorted((n for n in notes if n["batch"] >= skip), key=lambda n: n["batch"])
    timed = [b["t"] - a["t"] for a, b in zip(window, window[1:])]
    if not timed:
        return {"error": f"fewer than {skip + 2} steps logged"}
    median = statistics.median(timed)
    out = {"steps": len(notes), "step_s": timed, "median_step_s": median, "images_per_s": batch / median}
    out["mean_images_per_s"] = batch * len(timed) / (window[-1]["t"] - window[0]["t"])
    first, last = window[0].get("socket_bytes"), window[-1].get("socket_bytes")
    if first and last:
        out["socket_bytes_per_step"] = {k: (last[k] - first[k]) / len(timed) for k in first}
    return out


def measure(case):
    """One training run of case['argv'], timed from its log lines; with case['json'] the result
    goes to the file JSON.PID instead (one per worker of a parameter-server job)."""
    argv, skip, notes = case["argv"], case["skip"], []

    class Recorder(logging.Filter):
        def filter(self, record):
            match = BATCH_LINE.search(record.getMessage())
            if match:
                note = {"batch": int(match[1]), "t": time.perf_counter()}
                if case.get("sockets") and note["batch"] in (skip, int(match[2])):
                    note["socket_bytes"] = socket_bytes(os.getpid())
                notes.append(note)
            return True

    logging.getLogger("a2gluon.train").addFilter(Recorder())
    from a2gluon.cli.train import main as train_main  # a parameter server's server exits here

    code = train_main(argv)
    batch = int(argv[argv.index("--batch-size") + 1])
    result = step_stats(notes, batch, skip) if code == 0 else {"error": f"training exited with code {code}"}
    metrics = Path(argv[argv.index("--save-dir") + 1]) / "metrics.jsonl"
    lines = metrics.read_text(encoding="utf-8").strip().splitlines() if metrics.exists() else []
    if lines:  # the epoch's whole-run figure, warm-up included
        result["epoch_images_per_sec"] = json.loads(lines[-1]).get("images_per_sec")
    if not case.get("json"):
        return result
    Path(f"{case['json']}.{os.getpid()}").write_text(json.dumps(result), encoding="utf-8")
    return None  # nothing on stdout, which a launcher shares between its workers


def data_goal():
    """The goal line from benchmarks/results/data.json: pipeline on one core vs training step."""
    import data

    path = h.RESULTS / "data.json"
    if not path.exists():
        return {"text": "benchmarks/results/data.json missing: run benchmarks/data.py"}
    report = json.loads(path.read_text(encoding="utf-8"))
    one_core = [c["result"].get("images_per_cpu_s") for c in report["cases"] if c["kind"] == "recorditer"]
    best, consumed = max(filter(None, one_core), default=None), report["train_step"].get("images_per_s")
    if not best or not consumed:
        return {"text": "not measured in benchmarks/results/data.json"}
    batch = report["settings"]["train_batch"]
    text = f"ImageRecordIter decodes {best:.0f} images per CPU-second, the {data.TRAIN_MODEL} training step "
    text += f"(batch {batch} at {data.INPUT_SIZE}) consumes {consumed:.1f} images/s: "
    text += f"{best / consumed:.0f}× — {'met' if best >= consumed else 'NOT met'} "
    text += f"(benchmarks/data.py, {report['date']})"
    return {"ratio": best / consumed, "met": best >= consumed, "text": text}


def render(report):
    """The table, the goal and the notes."""
    s, rows = report["settings"], []
    for case in report["cases"]:
        syn, real = case["synthetic"], case["real"]
        ratio = h.ratio(real.get("images_per_s"), syn.get("images_per_s"))
        noisy = any(max(r, default=0) > NOISY_SPREAD * min(r, default=0) for r in
                    (syn.get("round_images_per_s", []), real.get("round_images_per_s", [])))  # fmt: skip
        steps = [f"{r['median_step_s']:.2f}" if "median_step_s" in r else "—" for r in (syn, real)]
        share = "—" if ratio is None else f"{(1 - ratio) * 100:.0f} %" + " (noisy)" * noisy
        rows.append([f"`{case['model']}`", case["input_size"], case["batch"], h.spread(syn), h.spread(real)]
                    + ["—" if ratio is None else f"{ratio:.2f}", share, " / ".join(steps)])  # fmt: skip
    header = "model|input|batch|synthetic images/s|real pipeline images/s|real / synthetic|pipeline's share"
    settings = f"{s['images']} JPEGs, {s['rounds']} process(es) per cell, {s['skip']} warm-up steps left out."
    goal = "Goal: the data pipeline on one core feeds at least the CPU training step of a2_resnet26: "
    goal += f"{report['goal']['text']}."
    lines = h.table(header + "|step s (synthetic / real)", rows, "lrrrrrrl") + ["", goal]
    return "\n".join(lines + h.notes(__doc__, report, settings))


def options(p):
    h.number(p, "--images", 96, "JPEGs in the training set")
    h.number(p, "--skip", 2, "warm-up steps left out")
    p.add_argument("--cases", type=h.names(CASES), default=list(CASES), help="subset of " + ",".join(CASES))
    return {"cases": ["a2_resnet26@112"], "images": 48, "rounds": 1, "skip": 1}


def bench(run, args):
    from data import make_records

    with tempfile.TemporaryDirectory(prefix="a2gluon-train-bench-") as tmp:
        sets = {}
        for share in sorted({CASES[name][3] for name in args.cases}):
            count = max(1, int(args.images * share))
            h.say(f"writing and packing {count} JPEGs")
            sets[share] = (make_records(Path(tmp) / f"set{count}", count), count)

        def case_of(key):
            model, size, batch, share = CASES[key[0]]
            prefix, count = sets[share]
            extra = f"--rec-train {prefix}.rec --rec-train-idx {prefix}.idx -j 1 --color-jitter 0.4"
            extra += " --pca-noise 0.1"
            if key[1] == "synthetic":
                extra = f"--synthetic --synthetic-batches {count // batch}"
            argv = train_argv(model, size, batch, 2, tempfile.mkdtemp(dir=tmp), extra)
            return {"argv": argv, "skip": args.skip}

        rounds = run.rounds([(name, v) for name in args.cases for v in VARIANTS], case_of, timeout=900)
    cases = []
    for name in args.cases:
        model, size, batch, share = CASES[name]
        case = {"name": name, "model": model, "input_size": size, "batch": batch, "images": sets[share][1]}
        for v in VARIANTS:
            case[v] = h.combine(rounds[(name, v)], ("images_per_s", "median_step_s", "mean_images_per_s"))
        cases.append(case)
    return {"cases": cases, "goal": data_goal()}


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, measure, render, rounds=2, threads=False)
