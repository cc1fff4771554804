"""The limits and batching settings of `t2t serve`: its flags are generated from these fields."""

import dataclasses
from typing import Literal, Optional

from t2t.options import Options, option


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServeSettings(Options):
    max_inputs: int = option(64, min=1, max=100_000, help="inputs per request")
    max_input_tokens: int = option(512, min=1, help="source tokens per input (never more than the model takes)")
    max_beam: int = option(16, min=1, max=256, help="largest beam or n-best a request may ask")
    max_queue: int = option(256, min=1, help="sentences accepted and not yet answered, per model, before 503")
    max_wait_ms: float = option(5.0, min=0.0, max=60_000.0, help="how long a batch waits for more requests")
    max_batch_tokens: int = option(4096, min=1, help="source tokens per decoded batch")
    max_batch_sentences: int = option(64, min=1, help="sentences per decoded batch")
    timeout_s: float = option(30.0, min=0.01, max=86_400.0, help="per request, from acceptance to answer (504 after)")
    max_body_bytes: int = option(1_000_000, min=1_000, help="largest request body (413 over it)")
    body_timeout_s: float = option(10.0, min=0.01, max=3_600.0, help="a request body must arrive within this "
                                   "(408 after)")
    max_decode_s: float = option(10.0, min=0.01, max=86_400.0, help="the longest a batch may hold a model's "
                                 "decoding thread; past it the batch stops and its requests get 504")
    max_output_tokens: int = option(50_000, min=1, help="the most output tokens one request may decode (the sum "
                                    "over its inputs of each one's maximum length times the beam); over it, 422")
    shutdown_s: float = option(10.0, min=0.0, max=600.0, help="on SIGTERM: how long requests in flight may finish "
                               "before they are failed and the server exits")
    precision: Optional[Literal["auto", "fp32", "bf16", "fp16", "int8"]] = option(
        None, help="decode.precision for every model (default: each recipe's)")
