"""Low-rank adapters (LoRA, Hu et al. 2021) and frozen parts for fine-tuning (`train.lora`,
`train.freeze`).

An adapter rides on an existing linear layer as a submodule (`<layer>.lora`) whose forward hook adds
scale * B A x to chosen output rows, so the layer's own weight keeps its name (pretrained weights
load as they are) and a fused projection can be adapted in parts: the q and v thirds of a fused
q/k/v projection each get their own A and B. B starts at zero, so a model with fresh adapters
computes what it did before. `merge` folds the adapters into the weights (decoding, export).

Shapes: D in features, O out features, r rank.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from t2t.errors import T2TError

PARTS = ("q", "k", "v", "o", "fc1", "fc2")


def _row_parts(name: str, layer: nn.Linear) -> dict[str, tuple[int, int]]:
    """Which output rows of a t2t Transformer linear layer belong to which part (q, k, v, o, fc1, fc2)."""
    last = name.rsplit(".", 1)[-1]
    n = layer.out_features
    if last == "qkv":
        return {"q": (0, n // 3), "k": (n // 3, 2 * n // 3), "v": (2 * n // 3, n)}
    if last == "kv":
        return {"k": (0, n // 2), "v": (n // 2, n)}
    if last == "q" and "attn" in name:
        return {"q": (0, n)}
    if last == "out" and "attn" in name:
        return {"o": (0, n)}
    if last in ("fc1", "fc2") and ".ff." in f".{name}":
        return {last: (0, n)}
    return {}


class Adapter(nn.Module):
    """Low-rank updates of some output rows of one linear layer: for each part (rows s:e),
    delta[..., s:e] = scale * (dropout(x) A^T) B^T with A (r, D), B (e - s, r)."""

    def __init__(self, layer: nn.Linear, parts: dict[str, tuple[int, int]], rank: int, alpha: float,
                 dropout: float):
        super().__init__()
        self.rows = dict(parts)
        self.scale = alpha / rank
        self.a = nn.ParameterDict()
        self.b = nn.ParameterDict()
        for part, (s, e) in parts.items():
            a = torch.empty(rank, layer.in_features, device=layer.weight.device, dtype=layer.weight.dtype)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.a[part] = nn.Parameter(a)
            self.b[part] = nn.Parameter(torch.zeros(e - s, rank, device=a.device, dtype=a.dtype))
        self.drop = nn.Dropout(dropout)
        self.merged = False

    def delta(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        x = self.drop(x)
        parts = []
        for part, (s, e) in sorted(self.rows.items(), key=lambda kv: kv[1]):
            parts.append(((s, e), (x @ self.a[part].t()) @ self.b[part].t() * self.scale))
        return _scatter(parts, x.shape[:-1], out_features, x.dtype, x.device)

    def weight_delta(self) -> torch.Tensor:
        """The adapters as one update of the layer's weight: (O, D)."""
        o = max(e for _, e in self.rows.values())
        d = next(iter(self.a.values())).shape[1]
        w = torch.zeros(o, d, dtype=next(iter(self.a.values())).dtype, device=next(iter(self.a.values())).device)
        for part, (s, e) in self.rows.items():
            w[s:e] += self.scale * (self.b[part] @ self.a[part])
        return w


def _scatter(parts, lead, width, dtype, device) -> torch.Tensor:
    """Row blocks [((s, e), tensor (..., e - s))] placed into zeros (..., width)."""
    if len(parts) == 1 and parts[0][0] == (0, width):
        return parts[0][1]
    out = torch.zeros(*lead, width, dtype=dtype, device=device)
    for (s, e), t in parts:
        out[..., s:e] = t
    return out


def _hook(layer: nn.Linear, inputs, output):
    adapter = layer.lora
    if adapter.merged:
        return output
    return output + adapter.delta(inputs[0], layer.out_features).to(output.dtype)


def add(model: nn.Module, rank: int, alpha: float, dropout: float, targets: Sequence[str]) -> int:
    """Attach adapters for `targets` (parts among PARTS) and freeze everything else; returns the
    number of adapter values."""
    bad = [t for t in targets if t not in PARTS]
    if bad:
        raise T2TError(f"train.lora.targets: unknown part {bad[0]!r}; the parts: {', '.join(PARTS)}")
    count = 0
    for p in model.parameters():
        p.requires_grad_(False)
    for name, layer in list(model.named_modules()):
        if not isinstance(layer, nn.Linear):
            continue
        parts = {k: v for k, v in _row_parts(name, layer).items() if k in targets}
        if not parts:
            continue
        layer.lora = Adapter(layer, parts, rank, alpha, dropout)
        layer.register_forward_hook(_hook)
        count += sum(p.numel() for p in layer.lora.parameters())
    if not count:
        raise T2TError(f"train.lora.targets {list(targets)}: the model has no such layers (a Transformer's "
                       f"attention q, k, v, o and feed-forward fc1, fc2)")
    return count


def is_adapter(name: str) -> bool:
    return ".lora." in f".{name}"


def has_adapters(model: nn.Module) -> bool:
    return any(isinstance(m, Adapter) for m in model.modules())


@torch.no_grad()
def merge(model: nn.Module) -> None:
    """Fold every adapter into its layer's weight (W += scale B A) and stop applying it."""
    for layer in model.modules():
        adapter = getattr(layer, "lora", None)
        if isinstance(layer, nn.Linear) and isinstance(adapter, Adapter) and not adapter.merged:
            layer.weight += adapter.weight_delta().to(layer.weight.dtype)
            adapter.merged = True


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with the adapters folded in and left out (what export writes)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if not is_adapter(k)}
    for name, layer in model.named_modules():
        adapter = getattr(layer, "lora", None)
        if isinstance(layer, nn.Linear) and isinstance(adapter, Adapter) and not adapter.merged:
            key = f"{name}.weight"
            state[key] = state[key] + adapter.weight_delta().detach().to(state[key].dtype)
    return state


def freeze(model: nn.Module, prefixes: Sequence[str]) -> int:
    """Stop training the parameters under these name prefixes; returns how many values froze."""
    names = [n for n, _ in model.named_parameters()]
    count = 0
    for prefix in prefixes:
        hit = [p for n, p in model.named_parameters() if n == prefix or n.startswith(prefix + ".")]
        if not hit:
            tops = sorted({n.split(".")[0] for n in names})
            raise T2TError(f"train.freeze: {prefix!r} names no parameters; the model's parts: {', '.join(tops)} "
                           f"(deeper names with dots, e.g. encoder.0)")
        for p in hit:
            if p.requires_grad:
                count += p.numel()
            p.requires_grad_(False)
    return count
