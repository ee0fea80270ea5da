"""`make demo` end to end: real images, packing, training, evaluation, export, prediction."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TEST_ENV


@pytest.mark.slow
def test_demo_runs_end_to_end_and_learns(tmp_path):
    """The demo with 3 epochs instead of 6 (about a minute here): every artefact it names exists
    and the model it trained is far above chance on the held-out digits."""
    out = subprocess.run(
        [sys.executable, "-m", "a2gluon", "demo", "--out", str(tmp_path / "demo"), "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=900,
        env=TEST_ENV,
        cwd=ROOT,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    print(f"demo after 3 epochs: top-1 {summary['top1']:.3f}, top-5 {summary['top5']:.3f}")
    assert summary["top1"] > 5 * summary["chance_top1"]
    run, prefix = summary["save_dir"], summary["export_prefix"]
    for path in (
        f"{run}/imagenet-a2_resnet26-best.params",
        f"{run}/curves.png",
        f"{run}/metrics.jsonl",
        f"{prefix}-symbol.json",
        f"{prefix}-0000.params",
        f"{prefix}.onnx",
        f"{prefix}.classes.json",
    ):
        assert os.path.exists(path), path
    assert "== summary" in out.stdout and "digit7" in out.stdout
