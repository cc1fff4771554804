"""Where a run computes and in what precision: the device (`auto`, `cpu`, `cuda:N`), whether it has
fast bf16, the dtype a `train.precision` or `decode.precision` resolves to, and the int8 copy.
"""

from __future__ import annotations

import copy
import functools
import logging
import warnings

import torch

from t2t.errors import T2TError

log = logging.getLogger("t2t")


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; a clear error for a device that is not there."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise T2TError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise T2TError(f"device '{name}' asked for, but this machine has no CUDA GPU; use --device cpu")
    return device


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 runs at speed on a device: a CUDA GPU that has it, or a CPU whose oneDNN has
    native bf16 kernels (AVX-512 or AMX). Elsewhere bf16 is emulated: a matmul ran about 100x
    slower than in fp32 on an AVX2-only CPU, and oneDNN's LSTM has no such kernel at all."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def reduced_dtype(precision: str, device: torch.device, key: str) -> torch.dtype | None:
    """The low-precision dtype that a `train.precision` or `decode.precision` (named by `key`)
    resolves to on a device; None means fp32. bf16 asked for on a CPU without native bf16 falls
    back to fp32 with a warning: emulated, it would only be slower."""
    if precision == "fp16":
        if device.type != "cuda":
            raise T2TError(f"{key} fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
        return torch.float16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and fast_bf16(device) else None
    if precision == "bf16":
        if device.type == "cuda" or fast_bf16(device):
            return torch.bfloat16
        _warn_emulated_bf16(key)
    return None


@functools.cache
def _warn_emulated_bf16(key: str) -> None:
    log.warning(f"{key} bf16: this CPU has no native bf16 (AVX-512 or AMX), where bf16 is emulated and "
                f"far slower; using fp32")


def decode_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of weights and activations for a `decode.precision` on a device."""
    return reduced_dtype(precision, device, "decode.precision") or torch.float32


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a model for int8 CPU decoding: every linear layer dynamically quantized (int8
    weights, activations quantized per batch) with torch's own quantization; embeddings, norms and
    convolutions stay fp32. The model itself is left as it is.

    torch deprecates `torch.ao.quantization` in favour of torchao; torchao's dynamic int8 linear
    decodes at 0.47-0.75x its speed on CPU (eager, measured side by side:
    benchmarks/results/int8_backends.md), slower than fp32 on small models, so t2t stays on torch's
    own while torch has it, says so once, and names the way out when a torch no longer has it."""
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        raise T2TError(f"decode.precision int8: torch {torch.__version__} has no dynamic quantization "
                       "(torch.ao.quantization); decode in fp32 or bf16, or install a torch that has it") from None
    _note_deprecated_int8()
    with warnings.catch_warnings():          # said once above, in t2t's words, instead of at every layer
        warnings.filterwarnings("ignore", message=r".*(quantiz|deprecat).*")
        return quantize_dynamic(copy.deepcopy(model).float().eval(), {torch.nn.Linear}, dtype=torch.qint8)


@functools.cache
def _note_deprecated_int8() -> None:
    log.warning("decode.precision int8 uses torch's dynamic quantization (torch.ao.quantization), which torch "
                "deprecates in favour of torchao and may remove; torchao's decodes slower on CPU today, so t2t "
                "keeps torch's while it is there")
