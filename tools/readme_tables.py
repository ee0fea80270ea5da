"""Regenerate the README's tables from code and measured results (never typed by hand).

python tools/readme_tables.py           # rewrite README.md between the markers
python tools/readme_tables.py --check   # exit 1 if README.md is out of date
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2gluon.profile import default_input_shape, profile_model  # noqa: E402

# (model, what it is, paper's #params in M, paper's G multiply-adds, paper's ImageNet top-1/top-5)
MODELS = [
    ("resnet50", "the paper's image ResNet-50 (5x5, 32-channel stem)", None, None, "75.3 / 92.2"),
    ("a2_resnet50", "ResNet-50 + 5 A² blocks (conv3, conv4)", 33.0, 6.5, "77.0 / 93.5"),
    ("resnet26", "2-D ResNet-26 (CPU experiments, demo)", None, None, None),
    ("a2_resnet26", "resnet26 + 2 A² blocks", None, None, None),
    ("resnet50_v1b", "Gluon-CV ResNet-50 v1b", None, None, None),
    ("resnet152_v1b", "Gluon-CV ResNet-152 v1b", None, None, "77.0 / 93.3"),
    ("se_resnet50_v1", "Gluon-CV SE-ResNet-50", None, None, "76.7 / 93.4"),
    ("resnet26_3d", "video ResNet-26 (Table 1)", None, None, None),
    ("a2_resnet26_3d", "resnet26_3d + 2 A² blocks", None, None, None),
    ("resnet29_3d", "video ResNet-29 (Table 1)", None, None, None),
    ("resnet50_3d", "video ResNet-50 (Table 1)", None, None, None),
    ("a2_resnet50_3d", "video ResNet-50 + 5 A² blocks (Kinetics model)", None, 40.8, None),
]


def fmt(value, digits):
    return "—" if value is None else f"{value:.{digits}f}"


def models_table():
    rows = [
        "| model | what | input | params (M) | paper params (M) | multiply-adds (G) | paper (G) "
        "| paper ImageNet top-1 / top-5 (%) |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for name, what, paper_params, paper_macs, accuracy in MODELS:
        prof = profile_model(name)
        shape = "×".join(map(str, default_input_shape(name)))
        rows.append(
            f"| `{name}` | {what} | {shape} | {prof.params / 1e6:.2f} | {fmt(paper_params, 1)} "
            f"| {prof.macs / 1e9:.2f} | {fmt(paper_macs, 1)} | {accuracy or '—'} |"
        )
    rows.append("")
    rows.append(
        "Counted by `python -m a2gluon.profile MODEL` (trained parameters; multiply-adds of "
        "convolutions, fully connected layers and the attention blocks' batched products, batch 1). "
        "ResNet-50 is the paper's own ImageNet baseline row; the accuracies are the paper's, not ours."
    )
    return "\n".join(rows)


NOT_MEASURED = "_Not measured yet: run `make bench`._"


def result(name):
    """The Markdown a benchmark wrote to benchmarks/results/NAME.md."""
    path = ROOT / "benchmarks" / "results" / f"{name}.md"
    return path.read_text().strip() if path.exists() else NOT_MEASURED


def results(*named):
    """Several benchmarks' tables, each after its one-line title."""
    return "\n\n".join(f"{title}\n\n{result(name)}" for name, title in named)


def perf_benchmarks_table():
    """benchmarks/blocks.py, train.py and dist.py results (blocks.md links blocks_sweep.png)."""
    return results(
        (
            "blocks",
            "A² against Non-local against no block at the stages of `resnet26_3d` (`benchmarks/blocks.py`):",
        ),
        ("train", "Training throughput, real input pipeline against `--synthetic` (`benchmarks/train.py`):"),
        (
            "dist",
            "Parameter-server cost on loopback, `dist_sync`, one worker against two (`benchmarks/dist.py`):",
        ),
    )


SECTIONS = {
    "models": models_table,
    "block-benchmark": lambda: result("block"),
    "data-benchmark": lambda: result("data"),
    "inference-benchmark": lambda: result("inference"),
    "models-benchmark": lambda: result("models"),
    "perf-benchmarks": perf_benchmarks_table,
}


def render(text):
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- BEGIN {name} --> ... <!-- END {name} --> markers")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print("README.md tables are out of date: run `make readme-tables`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    print("README.md tables regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
