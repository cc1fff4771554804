"""The HTTP API (FastAPI on uvicorn) and the page at `/`.

    POST /v1/generate   {"model": NAME, "inputs": [...], "beam": 5, "nbest": 3, "attention": true}
    GET  /v1/models     each model's card: task, data, tokenizer, model, decoding defaults, scores
    GET  /health        liveness and queue depth
    GET  /docs, /openapi.json

Requests go through the model's `Batcher` (dynamic batching on a decoding thread) to
`Pipeline.search`, the path `t2t generate` takes: serving adds no second decoding path. Bad requests
get a 4xx whose `error` names the field; a full queue a 503 with Retry-After; a request that waits
past its timeout a 504.
"""


import asyncio
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch

from t2t.errors import DecodeBudgetError, DecodeOptionError, T2TError, did_you_mean
from t2t.options import DecodeOptions, field_infos
from t2t.pipeline import Pipeline, load
from t2t.search import Budget
from t2t.serve.batcher import Batcher, QueueFull
from t2t.serve.settings import ServeSettings

log = logging.getLogger("t2t")
STATIC = Path(__file__).resolve().parent / "static"


class JobKey(NamedTuple):
    """What a batch must share: the decoding settings, whether attention is returned, and the
    sampling seed; `alone` (a fresh object) keeps a seeded request out of every other batch, so
    that its seed reproduces."""
    opts: Any
    attention: bool
    seed: Optional[int] = None
    alone: Optional[object] = None


class RequestError(Exception):
    """A request the server answers with `status` (4xx), the `field` it names and why."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class ServedModel:
    """A loaded pipeline, its batcher and its card."""

    def __init__(self, name: str, pipe: Pipeline, settings: ServeSettings):
        if pipe.src_tok is None:
            raise T2TError(f"serve: model '{name}' reads feature frames (task {pipe.recipe.task}); "
                           f"the server takes text inputs only")
        self.name, self.pipe, self.settings = name, pipe, settings
        most = pipe.model.length_limits()[0]
        self.max_tokens = min(settings.max_input_tokens, most) if most else settings.max_input_tokens
        self.batcher = Batcher(self._decode, name, max_wait_ms=settings.max_wait_ms,
                               max_batch_tokens=settings.max_batch_tokens,
                               max_batch_sentences=settings.max_batch_sentences, max_queue=settings.max_queue,
                               stall_s=settings.max_decode_s + 5.0)
        self.card = model_card(name, pipe)

    def _decode(self, inputs: list[str], key: "JobKey") -> list[dict]:
        """On the decoding thread: hypotheses (and attention) as plain data."""
        opts, attention, seed = key.opts, key.attention, key.seed
        budget = Budget(deadline=time.monotonic() + self.settings.max_decode_s, stop=self.batcher.stopping)
        results = self.pipe.search(inputs, opts, seed=seed, need_attention=attention, budget=budget)
        vocab = self.pipe.tgt_tok.vocab.tokens
        out = []
        for source, hyps in zip(inputs, results):
            item: dict[str, Any] = {"hypotheses": [self.pipe.hypothesis_json(h) for h in hyps]}
            best = hyps[0]
            if attention and best.attention is not None:
                src_ids = self.pipe.src_tok.encode(source)[: self.max_tokens] or [self.pipe.specials.unk]
                weights = best.attention.float()[:, : len(src_ids)]
                item["attention"] = {"source_tokens": [self.pipe.src_tok.vocab.tokens[i] for i in src_ids],
                                     "target_tokens": [vocab[i] for i in best.tokens] + ["</s>"],
                                     "weights": [[round(float(x), 4) for x in row] for row in weights]}
            out.append(item)
        return out

    def options(self, beam=None, nbest=None, **overrides):
        """A request's decoding settings: the recipe's, the request's, and the server's precision."""
        if self.settings.precision:
            overrides["precision"] = self.settings.precision
        return self.pipe.request_options(beam, nbest, **overrides)

    def warm_up(self) -> None:
        self.pipe.search(["warm up"], self.options())

    def measure(self, inputs: list[str], opts: DecodeOptions, given: set[str]) -> tuple[int, list[int]]:
        """(input tokens, each input's length) of a request within this server's limits; a
        RequestError naming the field that is not (`given`: the fields the request set)."""
        if opts.mbr:
            raise RequestError(422, "mbr: minimum Bayes risk decoding is not served (its cost grows with the "
                               "square of the candidates)", "mbr")
        lengths = []
        for i, text in enumerate(inputs):
            if not text.strip():
                raise RequestError(422, f"inputs.{i}: empty; every input needs some text", f"inputs.{i}")
            n = len(self.pipe.src_tok.encode(text))
            if n > self.max_tokens:
                raise RequestError(422, f"inputs.{i}: {n} tokens long; this server takes at most {self.max_tokens}",
                                   f"inputs.{i}")
            lengths.append(max(n, 1))
        most, limit = self.pipe.output_tokens(lengths, opts), self.settings.max_output_tokens
        if most > limit:
            field = next((f for f in ("beam", "nbest", "max_len_b", "max_len_a", "min_len") if f in given), "inputs")
            raise RequestError(422, f"{field}: this request may decode up to {most:,} output tokens (each input's "
                               f"maximum length times the beam); this server takes at most {limit:,}: lower the "
                               f"beam, max_len_a or max_len_b, or send fewer inputs", field)
        return sum(lengths), lengths


def model_card(name: str, pipe: Pipeline) -> dict:
    """What `/v1/models` says of a model: recipe, task, tokenizer, model and, where the run has
    evaluation reports (RUN/eval/*.report.json), their scores."""
    r = pipe.recipe
    ckpt = pipe.checkpoint_path
    run_dir = ckpt.parent.parent if ckpt is not None and ckpt.parent.name == "checkpoints" else None
    scores = {}
    for report in sorted(run_dir.glob("eval/*.report.json")) if run_dir else []:
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        scores[data.get("split", report.name.split(".")[0])] = {
            "sentences": data.get("sentences"),
            "metrics": {k: {"value": v.get("value"), "signature": v.get("signature")}
                        for k, v in data.get("metrics", {}).items()},
            "baselines": {b: {k: v.get("value") for k, v in m.items() if isinstance(v, dict)}
                          for b, m in data.get("baselines", {}).items()}}
    return {"name": name, "task": r.task, "source": pipe.task.source_kind,
            "data": {k: v for k, v in dataclasses.asdict(r.data).items() if not k.startswith("_")},
            "tokenizer": {"name": r.tokenizer.name, "source_vocab": len(pipe.src_tok.vocab),
                          "target_vocab": len(pipe.tgt_tok.vocab)},
            "model": {"arch": r.model.arch, "parameters": pipe.model.num_parameters(),
                      "options": dataclasses.asdict(r.model)},
            "decode": dataclasses.asdict(r.decode), "metrics": [m.name for m in r.metrics],
            "checkpoint": str(ckpt) if ckpt else None, "scores": scores, "recipe": r.to_yaml()}


class BodyGuard:
    """ASGI middleware: a POST must say its length (411 otherwise), stay within the limit (413) and
    arrive whole within `timeout` seconds (408), checked before the app sees it; the body is then
    handed on as one message. (Plain ASGI: Starlette's BaseHTTPMiddleware cost a third of the
    event loop's time per request under load.)"""

    def __init__(self, app, limit: int, timeout: float, error):
        self.app, self.limit, self.timeout, self.error = app, limit, timeout, error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is None or not size.isdigit():
            return await self.error(411, "the request must say its length (Content-Length)")(scope, receive, send)
        if int(size) > self.limit:
            return await self.error(413, f"the request body is {int(size)} bytes; this server takes at most "
                                         f"{self.limit}")(scope, receive, send)
        chunks, deadline = [], time.monotonic() + self.timeout
        try:
            while True:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except asyncio.TimeoutError:
            return await self.error(408, f"the request body did not arrive within {self.timeout:g} s")(
                scope, receive, send)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return await self.app(scope, replay, send)


# decoding settings a request may not set: the server's own (batch size, precision), or not served
NOT_SERVED = ("mbr", "mbr_metric", "ctc_weight", "max_sentences", "precision")


def request_model(s: ServeSettings, default: str):
    """The request body of /v1/generate: `model`, `inputs`, `seed`, `attention`, and one field per
    served `decode:` key, generated from DecodeOptions (types, bounds, help); the server's own
    limits narrow the beam and n-best."""
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {
        "model": (Optional[str], Field(None, description=f"a name from /v1/models (default: {default})")),
        "inputs": (list[str], Field(..., min_length=1, max_length=s.max_inputs, description="source texts")),
    }
    for f in field_infos(DecodeOptions):
        if f.name in NOT_SERVED:
            continue
        hi = f.max
        if f.name in ("beam", "nbest"):
            hi = s.max_beam if hi is None else min(hi, s.max_beam)
        extra = {"allow_inf_nan": False} if f.type is float else {}
        fields[f.name] = (Optional[f.type], Field(None, ge=f.min, le=hi, description=f.help, **extra))
    fields["seed"] = (Optional[int], Field(None, ge=0, le=2**63 - 1, description="sampling seed: a request with "
                                           "one is decoded in a batch of its own"))
    fields["attention"] = (bool, Field(False, description="return the best hypothesis's attention over the "
                                                          "source tokens"))
    return create_model("GenerateRequest", __config__=ConfigDict(extra="forbid"),
                        __doc__="Inputs to decode with one model; settings left out take the model's recipe's.",
                        **fields)


def response_model():
    """The documented shape of a /v1/generate answer (OpenAPI)."""
    from pydantic import BaseModel, Field

    class Hyp(BaseModel):
        text: str
        score: float
        logprob: float

    class Attention(BaseModel):
        source_tokens: list[str]
        target_tokens: list[str]
        weights: list[list[float]]

    class Output(BaseModel):
        hypotheses: list[Hyp]
        attention: Optional[Attention] = None
        min_len: Optional[int] = Field(None, description="present where the request's min_len was above this "
                                       "input's maximum output length: the min_len it got instead")

    class Batch(BaseModel):
        requests: int
        sentences: int
        wait_ms: float
        decode_ms: float

    class GenerateResponse(BaseModel):
        model: str
        outputs: list[Output]
        decode: dict
        batch: Batch

    return GenerateResponse


def validation_error(first: dict, allowed: list[str]) -> tuple[int, str, str | None]:
    """(status, message, field) for the first problem pydantic found in a request."""
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    if first.get("type") == "json_invalid":
        return 400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    field = ".".join(loc) or None
    if field is None:
        return 400, "the request body must be a JSON object (sent with Content-Type: application/json)", None
    msg = first.get("msg", "invalid")
    if first.get("type") == "extra_forbidden":
        msg = f"unknown field{did_you_mean(loc[-1], allowed)}; the fields are: {', '.join(allowed)}"
    elif first.get("type") == "missing":
        msg = "required"
    return 422, f"{field}: {msg}", field


def create_app(models: dict[str, Pipeline], settings: ServeSettings = ServeSettings(),  # noqa: B008 (frozen)
               warm_up: bool = True):
    """The ASGI app serving `models` (name -> a loaded Pipeline)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if not models:
        raise T2TError("serve: no model given")
    served = {name: ServedModel(name, pipe, settings) for name, pipe in models.items()}
    default = next(iter(served))
    s = settings

    GenerateRequest = request_model(s, default)
    GenerateResponse = response_model()

    @asynccontextmanager
    async def lifespan(app):
        if warm_up:
            for m in served.values():
                await asyncio.to_thread(m.warm_up)
        yield
        for m in served.values():
            m.batcher.close(wait_s=s.shutdown_s)

    app = FastAPI(title="t2t", description="Decode with trained t2t models.", lifespan=lifespan)
    app.state.models = served

    def error(status: int, message: str, field: str | None = None, headers: dict | None = None):
        return JSONResponse({"error": message, **({"field": field} if field else {})}, status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error(*validation_error(exc.errors()[0], list(GenerateRequest.model_fields)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 400 and request.method == "POST":     # FastAPI could not parse the body
            body = await request.body()
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                message = f"the request body is not UTF-8 text (byte {e.start}); send JSON encoded as UTF-8"
        return error(exc.status_code, message, headers=getattr(exc, "headers", None))

    app.add_middleware(BodyGuard, limit=s.max_body_bytes, timeout=s.body_timeout_s, error=error)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", responses={503: {"description": "a model's decoding has stalled"}})
    async def health():
        """Each model's state (idle, decoding, or stalled: one batch past --max-decode-s and more)
        and queue; 503 while any model is stalled."""
        states = {n: m.batcher.state for n, m in served.items()}
        stalled = [n for n, state in states.items() if state == "stalled"]
        body = {"status": "stalled" if stalled else "ok",
                "models": {n: {"state": states[n], "queued_sentences": m.batcher.pending, "batches": m.batcher.batches,
                               "sentences": m.batcher.sentences, "queue_limit": s.max_queue}
                           for n, m in served.items()}}
        return JSONResponse(body, 503 if stalled else 200)

    @app.get("/v1/models")
    async def list_models():
        return {"models": [m.card for m in served.values()], "default": default,
                "limits": {"max_inputs": s.max_inputs, "max_input_tokens": s.max_input_tokens,
                           "max_beam": s.max_beam, "timeout_s": s.timeout_s}}

    # the response is documented by GenerateResponse but not validated again on the way out:
    # it is built here, and re-validating it cost the event loop time under load
    @app.post("/v1/generate", response_class=JSONResponse,
              responses={200: {"model": GenerateResponse, "description": "the outputs, in input order"},
                         400: {"description": "invalid JSON"}, 404: {"description": "unknown model"},
                         413: {"description": "request too large"},
                         422: {"description": "a field is invalid; `error` and `field` name it"},
                         503: {"description": "the model's queue is full; retry after Retry-After seconds"},
                         504: {"description": "not decoded within the request timeout"}})
    async def generate(req: GenerateRequest):
        name = req.model or default
        m = served.get(name)
        if m is None:
            return error(404, f"model: unknown model '{name}'; the models are: {', '.join(served)}", "model")
        overrides = req.model_dump(exclude={"model", "inputs", "attention", "seed"}, exclude_none=True)
        try:
            opts = m.options(**overrides)
            tokens, lengths = m.measure(req.inputs, opts, req.model_fields_set)
        except DecodeOptionError as e:
            return error(422, f"{e.key}: {e.message}", e.key)
        except RequestError as e:
            return error(e.status, e.message, e.field)
        seed = req.seed if opts.sampling else None
        key = JobKey(opts, req.attention, seed, object() if seed is not None else None)
        try:
            job = m.batcher.submit(req.inputs, key, tokens)
        except QueueFull as e:
            return error(503, f"{e}; retry later", headers={"Retry-After": "1"})
        try:
            outputs, info = await asyncio.wait_for(asyncio.shield(job.future), s.timeout_s)
        except asyncio.TimeoutError:
            m.batcher.cancel(job)
            return error(504, f"not decoded within {s.timeout_s:g} s")
        except QueueFull as e:                         # the server shut down before decoding it
            return error(503, str(e))
        except DecodeBudgetError as e:
            if e.reason == "stopped":
                return error(503, str(e))
            return error(504, f"decoding this request's batch took longer than this server allows "
                         f"({s.max_decode_s:g} s); ask for less: fewer or shorter inputs, a smaller beam")
        except T2TError as e:
            return error(422, str(e))
        if opts.min_len:                               # where an input's maximum length wins, say so
            for out, most in zip(outputs, m.pipe.min_lengths(lengths, opts)):
                if most < opts.min_len:
                    out["min_len"] = most
        return JSONResponse({"model": name, "outputs": outputs, "decode": dataclasses.asdict(opts),
                             "batch": dataclasses.asdict(info)})

    return app


def load_models(specs: list[str], device: str = "auto", data_dir: str | None = None) -> dict[str, Pipeline]:
    """`NAME=RUN` or `RUN` (named after its folder) -> loaded pipelines."""
    models: dict[str, Pipeline] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        p = Path(path)
        name = name or (p.parent.parent.name if p.suffix == ".pt" and p.parent.name == "checkpoints"
                        else p.stem if p.suffix == ".pt" else p.resolve().name)
        if name in models:
            raise T2TError(f"serve: two models are named '{name}'; name them: NAME=RUN")
        models[name] = load(path, device=device, data_dir=data_dir)
    return models


def serve(specs: list[str], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          data_dir: str | None = None, settings: ServeSettings = ServeSettings(),  # noqa: B008 (frozen)
          threads: int | None = None) -> None:
    """Load the models and serve them until interrupted."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise T2TError(f"t2t serve needs its extra ({e.name} is missing): pip install 't2t[serve]'") from None
    if threads:
        torch.set_num_threads(threads)
    _check_port(host, port)
    app = create_app(load_models(specs, device, data_dir), settings)
    _check_port(host, port)                    # loading takes a while: ask again just before saying so
    log.info(f"serving {', '.join(app.state.models)} on http://{host}:{port}/ (API: /v1/generate, docs: /docs)")
    config = uvicorn.Config(app, host=host, port=port, log_level=os.environ.get("T2T_SERVE_LOG", "warning"),
                            timeout_graceful_shutdown=settings.shutdown_s + 2.0)
    models = list(app.state.models.values())

    class DrainingServer(uvicorn.Server):
        """SIGTERM or Ctrl-C: new requests get 503 at once, the accepted ones have shutdown_s to be
        decoded, then the batch in progress stops and what is left gets 503; uvicorn then closes
        the connections and the process exits."""

        def handle_exit(self, sig, frame):
            if not self.should_exit:
                for m in models:
                    m.batcher.draining = True
                timer = threading.Timer(settings.shutdown_s, lambda: [m.batcher.close(wait_s=0.0) for m in models])
                timer.daemon = True
                timer.start()
            super().handle_exit(sig, frame)

    DrainingServer(config).run()


def _check_port(host: str, port: int) -> None:
    """Refuse a port that another process holds, before loading models or saying 'serving'."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise T2TError(f"serve: cannot bind to host {host!r} ({e.strerror}); use an address of this machine, "
                       f"e.g. 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise T2TError(f"serve: {host}:{port} is not free ({e.strerror}); another server holds it: stop it, "
                           f"or choose another with --port") from None


class running_server:
    """`with running_server(app) as url:` the app served by uvicorn on a free loopback port in a
    background thread (tests, benchmarks, notebooks); stopped on leaving."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise T2TError("serve: the server did not start (see the log above)")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
