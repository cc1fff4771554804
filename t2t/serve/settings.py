"""The limits and batching settings of `t2t serve` (the flags of the same names)."""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    max_inputs: int = 64               # inputs per request
    max_input_tokens: int = 512        # source tokens per input (and never more than the model takes)
    max_beam: int = 16
    max_queue: int = 256               # sentences accepted and not yet answered, per model
    max_wait_ms: float = 5.0           # how long a batch waits for more requests after its first
    max_batch_tokens: int = 4096       # source tokens per decoded batch
    max_batch_sentences: int = 64
    timeout_s: float = 30.0            # per request, from acceptance to answer
    max_body_bytes: int = 1_000_000
    precision: Optional[str] = None    # decode.precision for every model (default: each recipe's)
