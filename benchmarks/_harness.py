"""The benchmarks' one harness: fresh worker processes, alternating rounds, medians and spreads,
peak memory, the machine line, and the results/NAME.json + results/NAME.md every benchmark writes.

A benchmark script says only what it measures: `measure(case)`, run in a fresh worker process
(`python benchmarks/NAME.py --worker JSON`) that prints its JSON-able result; `options(p)`, its
options and their --quick values; `bench(run, args)`, the cases measured and the report; and
`render(report)`, its table, under which `notes()` puts the module docstring's description:

    def options(p):                       # parser() has --quick, --rounds, --out, ...
        pass_options(p, repeat=20, warmup=2)  # + number(): the options; returns their --quick values
    def bench(run, args):                 # run.rounds(keys, case_of): A B B A; returns the report
    harness.main(__file__, __doc__, options, bench, measure, render, rounds=3)  # NAME.json + NAME.md

`net_runs()` builds a model or block and gives its forward and forward+backward passes, `passes()`
times them in a worker, `interleave()` times several alternately in one process.

Workers get OMP_NUM_THREADS (--threads: $OMP_NUM_THREADS, else all cores) and, unless set,
OMP_WAIT_POLICY=PASSIVE and OMP_PROC_BIND=true: OpenMP threads spin-waiting on the core of
MXNet's engine thread made a 5 ms block take 165 ms in some processes on 2 cores.
"""

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT, RESULTS = HERE.parent, HERE / "results"
sys.path.insert(0, str(ROOT))


class BenchError(Exception):
    """A benchmark cannot run as asked; the message is the one line the user sees."""


class UsageError(BenchError):
    """Options that do not go together: the message goes under argparse's usage line."""


# In the worker process ------------------------------------------------------------------------


def peak_rss_mib():
    """Peak resident set size of this process so far, MiB (MXNet has no CPU memory query)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_ms(run):
    """Milliseconds one call of `run` takes."""
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def passes(run, warmup, repeat, slow_repeat=None):
    """`warmup` untimed calls of `run`, then `repeat` timed ones (`slow_repeat` when the last
    warm-up call took over a second), and the extra memory they needed at their peak."""
    before = peak_rss_mib()
    warm = [timed_ms(run) for _ in range(warmup)]
    times = [timed_ms(run) for _ in range(slow_repeat if slow_repeat and warm and warm[-1] > 1e3 else repeat)]
    peak = peak_rss_mib()
    return {"timings_ms": times, "warmup_ms": warm, "peak_rss_mib": peak, "peak_mib": peak - before}


def cpu_seconds(pids):
    """User + system CPU seconds of the processes `pids` so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def hybridized(net, init=None):
    """`net` initialised on the CPU (seed 0; `init`, else Gluon's default Uniform) and hybridized
    with static_alloc and static_shape."""
    import mxnet as mx

    mx.random.seed(0)
    net.initialize(init or mx.init.Uniform(), ctx=mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def sgd_step(model, classes, shape):
    """One training step (forward, backward, SGD with momentum; waits for it) of registry model
    `model` on a fixed random batch of `shape` (N x ...), as a function of no arguments."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from a2gluon.models import get_model

    net = hybridized(get_model(model, classes=classes), mx.init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    data = mx.nd.random.normal(shape=shape)
    label = mx.nd.array([i % classes for i in range(shape[0])])

    def step():
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(shape[0])
        mx.nd.waitall()

    return step


def net_runs(net, shape, init=None, input_grad=False):
    """The two passes of hybridized(net, init) on a random uniform input of `shape`: {'forward':
    inference mode, 'train': forward + backward of the summed outputs (and the input's gradient
    with `input_grad`)}, each waiting for its results."""
    import mxnet as mx
    from mxnet import autograd

    net, x = hybridized(net, init), mx.nd.random.uniform(shape=shape)
    if input_grad:
        x.attach_grad()
    mx.nd.waitall()

    def train():
        with autograd.record():
            y = net(x)
        y.backward()
        mx.nd.waitall()

    return {"forward": lambda: net(x).wait_to_read(), "train": train}


def interleave(runs, repeat, warmup=0):
    """The calls of `runs` ({name: run}) timed alternately, pass after pass, so that all of them
    see the same machine load: {name: [ms, ...]}."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(timed_ms(run))
    return times


# Command line ---------------------------------------------------------------------------------


def say(text):
    """A progress line on stderr (stdout carries the table, or a worker's JSON result)."""
    print(text, file=sys.stderr, flush=True)


def at_least(low):
    """argparse type: an integer of at least `low`."""

    def integer(text):
        if int(text) < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        return int(text)

    return integer


def names(allowed=None):
    """argparse type: comma-separated names (from `allowed` when given), as a list."""

    def subset(text):
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        if not chosen or (allowed is not None and set(chosen) - set(allowed)):
            choose = f"choose from {','.join(allowed)}" if allowed is not None else "give names"
            raise argparse.ArgumentTypeError(f"{choose}, got {text!r}")
        return chosen

    return subset


def integers(text):
    """argparse type: comma-separated positive integers, as a list."""
    values = [int(v) for v in text.split(",") if v.strip().isdigit()]
    if not values or min(values) < 1 or len(values) != len([v for v in text.split(",") if v.strip()]):
        raise argparse.ArgumentTypeError(f"give positive integers such as 1,32, got {text!r}")
    return values


def parser(doc, rounds=None, threads=True):
    """The benchmark's argument parser with the options all benchmarks have."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny check of the script; writes only to --out")
    if rounds:
        number(p, "--rounds", rounds, "processes per case")
    if threads:
        default = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        p.add_argument("--threads", type=at_least(1), default=default, help="OMP_NUM_THREADS of the workers")
    p.add_argument("--out", type=Path, help="output directory (default benchmarks/results)")
    p.add_argument("--render", action="store_true", help="only rewrite NAME.md from NAME.json in --out")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def number(p, flag, default, help, least=1):
    """An integer option of at least `least`; its help ends with '(default DEFAULT)'."""
    p.add_argument(flag, type=at_least(least), default=default, help=f"{help} (default {default})")


def pass_options(p, repeat, warmup, slow_repeat=None, what="passes"):
    """--repeat, --warmup and (with a default) --slow-repeat: the timed and untimed `what` of a
    process; pass_case(args) gives them to the workers."""
    number(p, "--repeat", repeat, f"timed {what}")
    number(p, "--warmup", warmup, f"untimed {what}", least=0)
    if slow_repeat:
        number(p, "--slow-repeat", slow_repeat, f"timed {what} when a warm-up one takes over 1 s")


def pass_case(args, **case):
    """`case` with the passes' settings of pass_options()."""
    keys = ("warmup", "repeat", "slow_repeat")
    return dict({key: getattr(args, key) for key in keys if hasattr(args, key)}, **case)


def main(script, doc, options, bench, measure, render, rounds=None, threads=True, worker_threads=None):
    """Run benchmarks/NAME.py (`script`): parser(doc, rounds, threads) + `options(p)` (which returns
    the --quick values); a worker prints measure(case); --render rewrites NAME.md from NAME.json;
    else run.write() writes the report of bench(Run(script, args, worker_threads), args). A
    BenchError is one line on stderr and exit code 1, a UsageError a usage error (exit code 2)."""
    name, p = Path(script).stem, parser(doc, rounds, threads)
    quick = options(p)
    try:
        args = p.parse_args()
        if args.worker is not None:
            print(json.dumps(measure(json.loads(args.worker))), flush=True)
            return
        if args.quick:  # the quick values, except where an option was given
            vars(args).update({k: v for k, v in quick.items() if getattr(args, k) == p.get_default(k)})
        args.out = args.out or (None if args.quick and not args.render else RESULTS)
        if args.render:
            path = args.out / f"{name}.json"
            if not path.exists():
                raise BenchError(f"{path} does not exist: run benchmarks/{name}.py first")
            write(name, json.loads(path.read_text(encoding="utf-8")), render, args.out)
            return
        run = Run(script, args, worker_threads)
        run.write(name, bench(run, args), render)
    except UsageError as err:
        p.error(str(err))
    except BenchError as err:
        sys.exit(f"{Path(script).name}: error: {err}")
    except KeyboardInterrupt:
        sys.exit(f"{Path(script).name}: interrupted, nothing written")


# In the parent process ------------------------------------------------------------------------


def worker_env(threads, **extra):
    """The workers' environment: OMP_NUM_THREADS=`threads`, OMP_WAIT_POLICY=PASSIVE and
    OMP_PROC_BIND=true unless set, the project on PYTHONPATH, then `extra`."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "true")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(env, **{key: str(value) for key, value in extra.items()})


def process(cmd, env, timeout=None):
    """Run `cmd` to its end: its last JSON line on stdout as a dict, or {'error': ...} with the
    end of its stderr; either way with the process's wall time."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s", "wall_s": time.perf_counter() - start}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {"error": "its result line is not JSON"}
    code = proc.returncode
    if (code or not lines) and "error" not in result:
        result["error"] = "killed (out of memory?)" if code in (-9, 137) else f"exited with code {code}"
    if "error" in result:
        result["stderr_tail"] = proc.stderr.strip().splitlines()[-5:]
    return dict(result, wall_s=time.perf_counter() - start)


class Run:
    """One run of a benchmark: its workers' environment, the load average before it, its time."""

    def __init__(self, script, args, threads=None):
        self.script, self.args = Path(script).resolve(), args
        threads = threads or getattr(args, "threads", None) or os.environ.get("OMP_NUM_THREADS")
        self.env = worker_env(threads or os.cpu_count() or 1)
        self.load_before, self.started = os.getloadavg(), time.perf_counter()

    def worker(self, case, label, timeout=None, **env):
        """`case` measured in a fresh `python SCRIPT --worker JSON` process (see process())."""
        say(label)
        cmd = [sys.executable, str(self.script), "--worker", json.dumps(case)]
        return process(cmd, dict(self.env, **{key: str(value) for key, value in env.items()}), timeout)

    def rounds(self, keys, case_of, count=None, skip=None, timeout=None, threads=None):
        """Every key's case `count` (default --rounds) times, each in a fresh process, every other
        round in reverse order (A B B A) so that a drift in the machine's load weighs on all keys
        alike: {key: [result, ...]}.  `skip(key, results so far)` true leaves a process out;
        `threads`, the processes' OMP_NUM_THREADS (default the run's): a number or threads(key)."""
        count, env = count or self.args.rounds, {}
        out = {key: [] for key in keys}
        for index in range(count):
            for key in keys if index % 2 == 0 else keys[::-1]:
                if not (skip and skip(key, out[key])):
                    if threads:
                        env["OMP_NUM_THREADS"] = threads(key) if callable(threads) else threads
                    name = " / ".join(map(str, key)) if isinstance(key, tuple) else key
                    out[key].append(self.worker(case_of(key), f"{name}, round {index + 1}", timeout, **env))
        return out

    def write(self, name, report, render):
        """Complete `report` (date, settings, machine, load average after, wall time), write
        NAME.json and NAME.md to --out and print the Markdown."""
        settings = {k: v for k, v in vars(self.args).items() if k not in ("worker", "render", "out")}
        env = dict(machine(self.env), **report.pop("environment", {}))
        env.update(load_average_before=self.load_before, load_average_after=os.getloadavg())
        date = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report = {"benchmark": name, "date": date, "settings": settings, "environment": env, **report}
        write(name, dict(report, total_wall_s=time.perf_counter() - self.started), render, self.args.out)


def write(name, report, render, out):
    """Write NAME.json and NAME.md (`render(report)`) to `out` (nowhere when None); print the
    Markdown."""
    text, markdown = json.dumps(report, indent=2) + "\n", render(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(text, encoding="utf-8")
        (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    print(markdown, end="")


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(env):
    """What the numbers depend on besides the code: CPU, threads, MXNet's build, versions."""
    import mxnet as mx

    omp = {key.lower(): env.get(key) for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_PROC_BIND")}
    features = [name for name, feature in mx.runtime.Features().items() if feature.enabled]
    return dict(cpu_model=cpu_model(), cpu_count=os.cpu_count(), **omp, mxnet=mx.__version__,
                mxnet_features=features, python=platform.python_version())  # fmt: skip


def combine(rounds, per_process=()):
    """One case's result from its processes' results: their timed passes pooled (median_ms over
    all of them, round_median_ms and repeat: each process's median and count), the largest
    peak_mib and peak_rss_mib, for each key of `per_process` the median over the processes (and
    round_KEY: each process's value), and every process's result; {'error': ...} when none
    succeeded."""
    done = [r for r in rounds if "error" not in r]
    if not done:
        return {"error": rounds[0]["error"] if rounds else "not run", "processes": rounds}
    out = {"processes": rounds}
    if "timings_ms" in done[0]:
        out["median_ms"] = statistics.median(t for r in done for t in r["timings_ms"])
        out["round_median_ms"] = [statistics.median(r["timings_ms"]) for r in done]
        out["repeat"] = [len(r["timings_ms"]) for r in done]
    out.update({key: max(r[key] for r in done) for key in ("peak_mib", "peak_rss_mib") if key in done[0]})
    for key in per_process:
        values = [r[key] for r in done if r.get(key) is not None]
        if values:
            out.update({"round_" + key: values, key: statistics.median(values)})
    return out


# Markdown -------------------------------------------------------------------------------------


def table(header, rows, align=None):
    """A Markdown table's lines; `header` a list or "a|b|c", `align` one letter per column, l or r
    (default all l)."""
    header = re.split(r"(?<!\\)\|", header) if isinstance(header, str) else header  # not at "\|"
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align or "l" * len(header))
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def description(doc):
    """A module docstring's description: its paragraphs between the first line and 'Usage:'."""
    return doc.split("\n\n", 1)[1].split("\nUsage:")[0].strip()


def notes(doc, report, *bullets):
    """The lines under a table: the module docstring's description, then `bullets` and the
    machine line as a list."""
    text = description(doc)
    gap = [] if text.rsplit("\n\n", 1)[-1].startswith("- ") else [""]  # one list, not two
    return ["", text, *gap, *[f"- {bullet}" for bullet in bullets], machine_line(report), ""]


def fmt(result, key, spec="{:.1f}"):
    """result[key] formatted, else why it is missing (a note, or the error)."""
    if result.get(key) is not None:
        return spec.format(result[key])
    return result.get("note") or f"failed ({result.get('error', 'not run')})"


def ratio(a, b):
    """a / b, None when either is missing or b is not positive."""
    return a / b if a is not None and b else None


def times(value, digits=2, missing="n/a"):
    """A ratio as '1.23×', `missing` when there is none."""
    return missing if value is None else f"{value:.{digits}f}×"


def spread(result, key="images_per_s"):
    """'7.1 (4.9–11.8)': result[key], the median over the processes, and their lowest and highest."""
    values = result.get("round_" + key) or []
    if result.get(key) is None or len(values) < 2:
        return fmt(result, key)
    return f"{result[key]:.1f} ({min(values):.1f}–{max(values):.1f})"


def counts(numbers):
    """How many timed passes each process ran: '3 × 20', or '20 + 20 + 5'."""
    return f"{len(numbers)} × {numbers[0]}" if len(set(numbers)) == 1 else " + ".join(map(str, numbers))


def machine_line(report):
    """The notes' last line: machine, threads, MXNet's build, load average, versions, date."""
    env = report["environment"]
    parts = [f"{env['cpu_model']}, {env['cpu_count']} cores"]
    keys = ("omp_num_threads", "omp_wait_policy", "omp_proc_bind")
    parts.append(", ".join(f"{k.upper()}={env[k]}" for k in keys if env.get(k) is not None))
    if "mxnet_features" in env:
        blas = ", ".join(f[5:] for f in env["mxnet_features"] if f.startswith("BLAS_")) or "none"
        parts.append(f"oneDNN: {'yes' if 'MKLDNN' in env['mxnet_features'] else 'no'}, BLAS: {blas}")
    parts.append(
        f"1-minute load average {env['load_average_before'][0]:.2f} before and "
        f"{env['load_average_after'][0]:.2f} after the run (other processes on the machine inflate the "
        "times; the JSON keeps every pass)"
    )
    labels = {"mxnet": "MXNet", "onnx": "onnx", "onnxruntime": "onnxruntime", "python": "Python"}
    parts.append(", ".join(f"{label} {env[key]}" for key, label in labels.items() if key in env))
    return "- Machine: " + "; ".join(p for p in parts if p) + f"; {report['date']}."
