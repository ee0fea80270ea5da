"""GPU support checks (Hopper is refused with a clear message), the install-time wheel choice,
and the bfloat16 CPU feature check — with a fake nvidia-smi, since CI has no GPU."""

import os
import pathlib
import stat
import subprocess

import mxnet as mx
import pytest

from a2gluon.engine.devices import (
    DeviceError,
    check_gpu_support,
    cpu_supports_bfloat16,
    get_contexts,
    gpu_compute_capabilities,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """Put an nvidia-smi on PATH that reports the given GPUs ("name, major.minor" lines)."""

    def install(*gpus):
        script = tmp_path / "nvidia-smi"
        body = "\n".join(f"echo '{gpu}'" for gpu in gpus)
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        return str(tmp_path)

    return install


def test_compute_capabilities_are_parsed(fake_nvidia_smi):
    fake_nvidia_smi("NVIDIA A100-SXM4-40GB, 8.0", "NVIDIA H100 80GB HBM3, 9.0")
    assert gpu_compute_capabilities() == [
        ("NVIDIA A100-SXM4-40GB", (8, 0)),
        ("NVIDIA H100 80GB HBM3", (9, 0)),
    ]


def test_hopper_is_refused_with_a_pointer_to_onnx(fake_nvidia_smi):
    fake_nvidia_smi("NVIDIA H200, 9.0")
    with pytest.raises(DeviceError, match=r"no kernels for compute capability 9\.0 \(NVIDIA H200\).*ONNX"):
        get_contexts(num_gpus=1)


def test_supported_gpus_pass_the_check():
    check_gpu_support([("Tesla V100", (7, 0)), ("A10", (8, 6))])
    with pytest.raises(DeviceError):
        check_gpu_support([("RTX 4090", (8, 9))])


def test_missing_gpus_are_a_clear_error(fake_nvidia_smi):
    fake_nvidia_smi("Tesla T4, 7.5")  # reported, but this CPU build of MXNet sees none
    with pytest.raises(DeviceError, match="asked for 1 GPU.* but MXNet sees 0"):
        get_contexts(num_gpus=1)


def test_cpu_context_without_gpus():
    assert get_contexts(0) == [mx.cpu()]


def test_bfloat16_feature_check(tmp_path, monkeypatch):
    monkeypatch.delenv("MXNET_BF16_SUPPORTED", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512dq avx512bw avx512vl\n")
    assert cpu_supports_bfloat16(str(cpuinfo))
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2 fma\n")
    assert not cpu_supports_bfloat16(str(cpuinfo))
    monkeypatch.setenv("MXNET_BF16_SUPPORTED", "1")
    assert cpu_supports_bfloat16(str(cpuinfo))


def _variant(env_path, **env):
    run = subprocess.run(
        ["bash", str(ROOT / "tools" / "mxnet_variant.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{env_path}{os.pathsep}/usr/bin:/bin", **env},
    )
    return run.returncode, run.stdout.strip(), run.stderr.strip()


def test_install_picks_the_wheel_by_gpu(fake_nvidia_smi, tmp_path, monkeypatch):
    monkeypatch.delenv("MXNET_VARIANT", raising=False)
    path = fake_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0")
    code, out, err = _variant(path)
    assert (code, out) == (0, "cpu") and "no kernels" in err
    path = fake_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0", "Tesla V100-SXM2-16GB, 7.0")
    assert _variant(path)[:2] == (0, "cu112")
    assert _variant(path, MXNET_VARIANT="cpu")[:2] == (0, "cpu")
    code, _, err = _variant(path, MXNET_VARIANT="cu118")
    assert code == 2 and "MXNET_VARIANT must be 'cpu' or 'cu112'" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _variant(str(empty))[:2] == (0, "cpu")  # no nvidia-smi at all
