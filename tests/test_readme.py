"""The README's tables are generated from code and results, and kept current."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_tables_are_current():
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "readme_tables.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_readme_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]
