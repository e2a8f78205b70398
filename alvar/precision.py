"""The CPU arithmetic a transformer scores or embeds in: float32 as trained, bfloat16 or int8.

bfloat16: the linear layers' weights converted to bfloat16 once and the forward pass under CPU autocast (layer
norms, softmax and embeddings stay float32). int8: dynamic quantization of the linear layers (int8 weights,
activations quantized per batch). Both work on a copy, so the float32 model that training saves is never changed.
torch is imported where it is used: the embedder's module imports this one and loads torch only when it embeds.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

AUTO, FLOAT32, BFLOAT16, INT8 = "auto", "float32", "bfloat16", "int8"
PRECISIONS = (AUTO, FLOAT32, BFLOAT16, INT8)


def check_precision(precision: str) -> str:
    """``precision`` itself, or a ValueError that names the valid ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str) -> str:
    """The arithmetic ``precision`` means on this CPU: ``auto`` is bfloat16 where the CPU has bfloat16
    instructions (AVX512-BF16 or AMX), else float32.

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) also says yes on a plain AVX-512 CPU,
    where it emulates bfloat16: the embedder ran 3.8x slower there than in float32 (150 vs 570 texts/s).
    """
    if check_precision(precision) != AUTO:
        return precision
    return BFLOAT16 if has_bfloat16_instructions() else FLOAT32


def has_bfloat16_instructions() -> bool:
    """Whether this x86 CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16). ARM's bfloat16 extensions
    count as no: their speed with these models is unmeasured, and float32 is the safe side."""
    import torch

    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def embedding_precision(precision: str) -> str:
    """The arithmetic an embedder uses for ``precision``: int8 moves sentence embeddings too far from float32
    (cosine down to 0.75 in bench/scoring.py) for clustering on them, so it embeds in float32."""
    resolved = resolve_precision(precision)
    return FLOAT32 if resolved == INT8 else resolved


def converted_copy(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """A copy of ``model`` for inference in ``precision`` (``model`` itself for float32; it is never changed)."""
    import torch

    precision = resolve_precision(precision)
    if precision == FLOAT32:
        return model
    if precision == INT8:
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8,
                                                      inplace=False).eval()
    converted = copy.deepcopy(model)
    for module in converted.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    return converted.eval()


def arithmetic(precision: str) -> AbstractContextManager[Any]:
    """The context a forward pass of :func:`converted_copy`'s model runs in."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if resolve_precision(precision) == BFLOAT16 else nullcontext()
