#!/usr/bin/env bash
# Prints which MXNet 1.9.1 wheel this machine should get: "cpu" or "cu112".
# MXNET_VARIANT=cpu|cu112 overrides the detection.  A GPU is used only if
# nvidia-smi reports one that MXNet 1.9.1 can drive: its CUDA wheels carry
# kernels for sm_50..sm_86 and no PTX, so Hopper (compute capability 9.0) and
# newer cannot run them.
set -u
if [ -n "${MXNET_VARIANT:-}" ]; then
  case "$MXNET_VARIANT" in
    cpu|cu112) echo "$MXNET_VARIANT"; exit 0 ;;
    *) echo "MXNET_VARIANT must be 'cpu' or 'cu112', not '$MXNET_VARIANT'" >&2; exit 2 ;;
  esac
fi
caps=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true)
for cap in $caps; do
  major=${cap%%.*}
  if [ -n "$major" ] && [ "$major" -ge 5 ] 2>/dev/null && [ "$major" -lt 9 ]; then
    echo cu112; exit 0
  fi
done
if [ -n "$caps" ]; then
  echo "note: GPU(s) with compute capability $caps found; MXNet 1.9.1 has no kernels for them, installing the CPU wheel" >&2
fi
echo cpu
