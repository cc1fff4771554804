"""Starting a run from another run's weights (`train.init_from`, `train.init_only`).

The parts taken are parameter-name prefixes (`encoder`, `src_embed`, `decoder.0` ...). A part that
names nothing, a tensor that does not fit the new model, or a vocabulary-indexed tensor (embedding
rows, output and CTC rows) taken across different vocabularies is refused with its name: rows of
another vocabulary mean other tokens even where the sizes agree.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from torch import nn

from t2t import checkpoint as ckpt
from t2t.errors import CheckpointError

log = logging.getLogger("t2t")


def vocabulary_parameters(model: nn.Module, sizes: set[int]) -> set[str]:
    """Names of the tensors indexed by a vocabulary: embedding tables and the rows of output layers
    (linear maps whose outputs number a vocabulary's size)."""
    names = set()
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, nn.Embedding) and module.num_embeddings in sizes:
            names.add(f"{dot}weight")
        elif isinstance(module, nn.Linear) and module.out_features in sizes:
            names.update(f"{dot}{n}" for n, _ in module.named_parameters(recurse=False))
    return names


def _chosen(name: str, parts: Sequence[str]) -> bool:
    return not parts or any(name == p or name.startswith(p + ".") for p in parts)


def initialise(model: nn.Module, path: Path, data: dict, parts: Sequence[str], tokenizers: dict) -> dict:
    """Copy the chosen parts of the weights of checkpoint `data` (read from `path`) into `model`;
    `tokenizers` are the new run's tokenizer states. Returns what was taken."""
    weights, spec = data["model"], data.get("spec", {})
    own = model.state_dict()
    where = f"train.init_from {path}"
    unknown = [p for p in parts if not any(_chosen(k, [p]) for k in weights)]
    if unknown:
        tops = sorted({k.split(".")[0] for k in weights})
        raise CheckpointError(f"{where}: train.init_only {unknown[0]!r} names no weights there; its parts: "
                              f"{', '.join(tops)}")
    taken = {k: v for k, v in weights.items() if _chosen(k, parts)}
    missing = [k for k in taken if k not in own]
    if missing:
        raise CheckpointError(f"{where}: {len(missing)} tensor(s) have no place in this model, e.g. {missing[0]!r}; "
                              f"the architectures differ: take fewer parts with train.init_only")
    misfit = [f"{k} {tuple(v.shape)} -> {tuple(own[k].shape)}" for k, v in taken.items() if v.shape != own[k].shape]
    if misfit:
        raise CheckpointError(f"{where}: {len(misfit)} tensor(s) do not fit this model: {'; '.join(misfit[:3])}; "
                              f"take fewer parts with train.init_only")
    changed = [side for side in ("source", "target")
               if side in tokenizers and not ckpt.same_data(tokenizers[side], data["tokenizers"].get(side))]
    if changed:
        sizes = {s for s in (spec.get("src_vocab"), spec.get("tgt_vocab")) if s}
        indexed = sorted(k for k in vocabulary_parameters(model, sizes) if k in taken)
        if indexed:
            safe = sorted({k.split(".")[0] for k in weights} - {k.split(".")[0] for k in indexed})
            raise CheckpointError(f"{where}: the {' and '.join(changed)} vocabulary differs from that run's, so its "
                                  f"vocabulary-indexed tensors ({', '.join(indexed[:4])}) would mean other tokens; "
                                  f"leave them out with train.init_only, e.g. [{', '.join(safe)}]")
    model.load_state_dict(taken, strict=False)
    count = sum(v.numel() for v in taken.values())
    log.info(f"initialised {len(taken)} tensors ({count:,} values) from {path}"
             f"{' (' + ', '.join(parts) + ')' if parts else ''}")
    return {"path": str(path), "tensors": len(taken), "values": count}
