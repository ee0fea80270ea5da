"""Device and precision checks: which GPUs MXNet 1.9.1 can drive, and bfloat16 on CPUs."""

import os
import subprocess

import mxnet as mx

# The mxnet-cu112 1.9.1 wheel ships kernels for sm_50 .. sm_86 and no PTX.
MAX_COMPUTE_CAPABILITY = (8, 6)
ONNX_HINT = (
    "MXNet 1.9.1 has no kernels for compute capability {cap} ({name}); train on an older GPU "
    "(sm_50-sm_86) or on CPU, and for inference export to ONNX (a2gluon export "
    "--onnx) and run it with onnxruntime-gpu"
)


class DeviceError(RuntimeError):
    """A device the user asked for cannot be used; the message says why and what to do."""


def gpu_compute_capabilities():
    """[(name, (major, minor)), ...] for the GPUs nvidia-smi reports, [] when there is none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, cap = line.rpartition(",")
        try:
            major, minor = (int(p) for p in cap.strip().split("."))
        except ValueError:
            continue
        gpus.append((name.strip(), (major, minor)))
    return gpus


def check_gpu_support(gpus):
    """Raise DeviceError if any of `gpus` (from gpu_compute_capabilities) cannot run MXNet 1.9.1."""
    for name, cap in gpus:
        if cap > MAX_COMPUTE_CAPABILITY:
            raise DeviceError(ONNX_HINT.format(cap=f"{cap[0]}.{cap[1]}", name=name))


def get_contexts(num_gpus=0):
    """The MXNet contexts for `num_gpus` GPUs (CPU when 0), refusing ones MXNet cannot drive."""
    if num_gpus <= 0:
        return [mx.cpu()]
    gpus = gpu_compute_capabilities()
    check_gpu_support(gpus[:num_gpus])
    available = mx.context.num_gpus()
    if available < num_gpus:
        raise DeviceError(
            f"asked for {num_gpus} GPU(s) but MXNet sees {available}; install mxnet-cu112 "
            "(make setup MXNET_VARIANT=cu112) with the CUDA 11.2 runtime and cuDNN 8, or use fewer GPUs"
        )
    return [mx.gpu(i) for i in range(num_gpus)]


def cpu_supports_bfloat16(cpuinfo="/proc/cpuinfo"):
    """True if oneDNN (as bundled with MXNet 1.9.1) can run bfloat16 on this CPU: it needs
    AVX-512 (avx512f, avx512bw, avx512vl, avx512dq).  MXNET_BF16_SUPPORTED=0|1 overrides."""
    forced = os.environ.get("MXNET_BF16_SUPPORTED")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open(cpuinfo) as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        return False
    return {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags


def to_bfloat16(block, ctx=None):
    """Convert a hybridized HybridBlock with MXNet AMP to bfloat16 (Convolution and
    FullyConnected in bf16, the rest in float32) for CPU inference."""
    if not cpu_supports_bfloat16():
        raise DeviceError(
            "bfloat16 on CPU needs AVX-512 (oneDNN in MXNet 1.9.1 has no bf16 kernels for this "
            "CPU); use --dtype float32 here"
        )
    from mxnet.contrib import amp

    return amp.convert_hybrid_block(block, target_dtype="bfloat16", ctx=ctx or mx.cpu())
