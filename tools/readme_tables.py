"""Regenerate the READMEs' tables from code and measured results (never typed by hand).

README.md's `models` table comes from `a2gluon.profile`; benchmarks/README.md's
`<!-- BEGIN NAME-benchmark -->` sections from benchmarks/results/NAME.md (the Markdown that
benchmarks/NAME.py writes).

python tools/readme_tables.py           # rewrite both files between their markers
python tools/readme_tables.py --check   # exit 1 if either is out of date
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2gluon.models import default_input_shape  # noqa: E402
from a2gluon.profile import profile_model  # noqa: E402

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
        "Counted by `a2gluon profile MODEL` (trained parameters; multiply-adds of "
        "convolutions, fully connected layers and the attention blocks' batched products, batch 1). "
        "ResNet-50 is the paper's own ImageNet baseline row; the accuracies are the paper's, not ours."
    )
    return "\n".join(rows)


NOT_MEASURED = "_Not measured yet: run `make bench`._"


class ReadmeError(Exception):
    """A README cannot be regenerated as it is; the message says what to change."""


BENCHMARKS = ROOT / "benchmarks"
MARKER = re.compile(r"<!-- BEGIN ([\w-]+) -->")


def result(name):
    """The Markdown benchmarks/NAME.py wrote to benchmarks/results/NAME.md."""
    if not (BENCHMARKS / f"{name}.py").exists():
        raise ReadmeError(
            f"benchmarks/README.md names benchmark {name!r}, but benchmarks/{name}.py does not exist"
        )
    path = BENCHMARKS / "results" / f"{name}.md"
    return path.read_text().strip() if path.exists() else NOT_MEASURED


def sections(path, text):
    """{marker name: its contents} for the file `path`: README.md has the models table only;
    benchmarks/README.md one NAME-benchmark section per benchmark."""
    if path.parent == BENCHMARKS:
        names = MARKER.findall(text)
        wrong = [n for n in names if not n.endswith("-benchmark")]
        if wrong:
            raise ReadmeError(f"{path.relative_to(ROOT)}: section {wrong[0]!r} is not NAME-benchmark")
        return {n: lambda n=n: result(n[: -len("-benchmark")]) for n in names}
    for name in MARKER.findall(text):
        if name != "models":  # the benchmark tables have one home: benchmarks/README.md
            raise ReadmeError(
                f"{path.relative_to(ROOT)} has the section {name!r}: benchmark tables live in "
                "benchmarks/README.md now; remove it (and link benchmarks/README.md)"
            )
    return {"models": models_table}


def render(path, text):
    """`text` of the file `path` with every section regenerated between its markers."""
    for name, make in sections(path, text).items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise ReadmeError(
                f"{path.relative_to(ROOT)} has no <!-- BEGIN {name} --> ... <!-- END {name} --> markers"
            )
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a README is out of date")
    args = parser.parse_args(argv)
    stale, errors = [], []
    for path in (ROOT / "README.md", BENCHMARKS / "README.md"):
        old = path.read_text()
        try:
            new = render(path, old)
        except ReadmeError as err:
            errors.append(str(err))
            continue
        if new != old:
            stale.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.write_text(new)
    for error in errors:
        print(f"readme_tables.py: error: {error}", file=sys.stderr)
    if args.check and stale:
        print(f"{' and '.join(stale)}: tables are out of date: run `make readme-tables`", file=sys.stderr)
    elif not args.check and not errors:
        print(f"regenerated {', '.join(stale)}" if stale else "README tables already up to date")
    return 1 if errors or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
