"""`t2t serve` end to end: a real uvicorn server on loopback, a trained toy model, real HTTP."""

import threading

import pytest

httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install 't2t[test]')")
pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 't2t[serve]')")

from t2t.pipeline import load  # noqa: E402
from t2t.serve import ServeSettings, create_app  # noqa: E402
from t2t.serve.app import running_server  # noqa: E402


@pytest.fixture(scope="module")
def pipe(toy_transformer):
    run, examples = toy_transformer
    return load(run, device="cpu"), examples


def serving(pipe, **settings):
    return running_server(create_app({"dates": pipe}, ServeSettings(**settings)))


def post(url, body, **kw):
    return httpx.post(f"{url}/v1/generate", json=body, timeout=30, **kw)


def test_a_request_gets_what_generate_gives(pipe):
    p, examples = pipe
    sources = [e.source for e in examples[:5]]
    with serving(p) as url:
        r = post(url, {"inputs": sources, "beam": 4, "nbest": 2, "attention": True})
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["model"] == "dates" and data["decode"]["beam"] == 4
        assert [o["hypotheses"][0]["text"] for o in data["outputs"]] == p.generate(sources, beam=4)
        first = data["outputs"][0]
        assert len(first["hypotheses"]) == 2 and first["hypotheses"][0]["score"] >= first["hypotheses"][1]["score"]
        att = first["attention"]
        assert len(att["weights"]) == len(att["target_tokens"]) and att["target_tokens"][-1] == "</s>"
        assert "".join(att["source_tokens"]) == sources[0]
        assert all(abs(sum(row) - 1) < 1e-2 for row in att["weights"])
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["models"]["dates"]["queued_sentences"] == 0
        card = httpx.get(f"{url}/v1/models").json()["models"][0]
        assert card["task"] == "dates" and card["model"]["arch"] == "transformer" and "task: dates" in card["recipe"]
        test = card["scores"]["test"]
        assert test["sentences"] == 200 and test["metrics"]["exact_match"]["value"] > 80
        schema = httpx.get(f"{url}/openapi.json").json()
        assert "/v1/generate" in schema["paths"] and "GenerateRequest" in schema["components"]["schemas"]
        page = httpx.get(url)
        assert page.status_code == 200 and 'id="heatmap"' in page.text
        assert httpx.get(f"{url}/static/app.js").status_code == 200


def test_concurrent_requests_are_decoded_together(pipe):
    p, examples = pipe
    sources = [e.source for e in examples[:12]]
    results = [None] * len(sources)
    with serving(p, max_wait_ms=300) as url:
        def ask(i):
            results[i] = post(url, {"inputs": [sources[i]]})
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(sources))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        health = httpx.get(f"{url}/health").json()["models"]["dates"]
    assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
    assert [r.json()["outputs"][0]["hypotheses"][0]["text"] for r in results] == p.generate(sources)
    sizes = [r.json()["batch"]["requests"] for r in results]
    assert max(sizes) > 1 and health["batches"] < len(sources), (sizes, health)


@pytest.mark.parametrize("body,status,field,message", [
    ({"inputs": ["x"], "bem": 3}, 422, "bem", "unknown field; did you mean 'beam'?"),
    ({"inputs": []}, 422, "inputs", "at least 1 item"),
    ({"inputs": ["x"] * 9}, 422, "inputs", "at most 8 items"),
    ({"inputs": ["x" * 41]}, 422, "inputs.0", "41 tokens long; this server takes at most 40"),
    ({"inputs": ["x", 3]}, 422, "inputs.1", "valid string"),
    ({"inputs": ["x"], "beam": "wide"}, 422, "beam", "valid integer"),
    ({"inputs": ["x"], "beam": 99}, 422, "beam", "less than or equal to 16"),
    ({"inputs": ["x"], "beam": 2, "nbest": 3}, 422, "nbest", "larger than decode.beam 2"),
    ({"inputs": ["x"], "sampling": True, "beam": 2}, 422, "sampling", "exclude each other"),
    ({"inputs": ["x"], "model": "nope"}, 404, "model", "unknown model 'nope'; the models are: dates"),
    ({"model": "dates"}, 422, "inputs", "required"),
])
def test_bad_requests_are_answered_with_the_field(pipe, body, status, field, message):
    p, _ = pipe
    with serving(p, max_inputs=8, max_input_tokens=40) as url:
        r = post(url, body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and message in r.json()["error"], r.json()


def test_malformed_bodies(pipe):
    p, _ = pipe
    with serving(p, max_body_bytes=2000) as url:
        r = httpx.post(f"{url}/v1/generate", content=b'{"inputs": ["x"', headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = httpx.post(f"{url}/v1/generate", content=b'["x"]', headers={"content-type": "application/json"})
        assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]
        r = post(url, {"inputs": ["x" * 3000]})
        assert r.status_code == 413 and "at most 2000" in r.json()["error"]
        chunked = (part for part in (b'{"inputs": ', b'["x"]}'))            # no Content-Length
        r = httpx.post(f"{url}/v1/generate", content=chunked, headers={"content-type": "application/json"})
        assert r.status_code == 411 and "Content-Length" in r.json()["error"]


def test_a_full_queue_answers_503_and_a_slow_answer_504(pipe):
    p, examples = pipe
    sources = [e.source for e in examples[:4]]
    # the first request's batch waits 1.5 s for company, holding the queue's 4 places all along
    with serving(p, max_queue=4, max_wait_ms=1500) as url:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=post(url, {"inputs": sources})))
        t.start()
        while httpx.get(f"{url}/health").json()["models"]["dates"]["queued_sentences"] < 4:
            pass
        r = post(url, {"inputs": ["July 4, 1998"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "4 sentences queued (limit 4)" in r.json()["error"]
        t.join()
        assert first["r"].status_code == 200
        assert post(url, {"inputs": ["July 4, 1998"]}).status_code == 200       # room again
    with serving(p, max_wait_ms=1500, timeout_s=0.3) as url:
        r = post(url, {"inputs": ["July 4, 1998"]})
        assert r.status_code == 504 and "not decoded within 0.3 s" in r.json()["error"]
        assert httpx.get(f"{url}/health").json()["models"]["dates"]["queued_sentences"] == 0


def test_serve_refuses_what_it_cannot_serve(pipe):
    from t2t.errors import T2TError
    p, _ = pipe
    with pytest.raises(T2TError, match="no model"):
        create_app({})
    from t2t.serve.app import load_models
    with pytest.raises(T2TError, match="two models are named"):
        load_models([f"a={p.checkpoint_path}", f"a={p.checkpoint_path}"], device="cpu")


def test_an_rnn_is_served_with_its_attention(tmp_path, registry):
    from t2t.recipe import load_recipe
    from t2t.testing import tiny_recipe
    from t2t.trainer import train
    recipe = tiny_recipe("reverse", "rnn", output_dir=str(tmp_path / "rnn"),
                         train={"max_steps": 5, "validate_every": 5, "valid_max_sentences": 0})
    train(load_recipe(recipe), overwrite=True)
    p = load(tmp_path / "rnn", device="cpu")
    with serving(p) as url:
        r = post(url, {"inputs": ["a b c", "d e"], "attention": True, "beam": 2})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert [o["hypotheses"][0]["text"] for o in out] == p.generate(["a b c", "d e"], beam=2)
    assert out[0]["attention"]["source_tokens"] == list("a b c")


def test_the_serve_command_passes_its_flags(monkeypatch):
    import t2t.serve.app as app_module
    from t2t.cli import main
    seen = {}
    monkeypatch.setattr(app_module, "serve", lambda specs, **kw: seen.update(specs=specs, **kw))
    assert main(["serve", "dates=runs/x", "other", "--port", "9001", "--max-queue", "8", "--timeout-s", "2.5",
                 "--precision", "int8", "--threads", "1"]) == 0
    assert seen["specs"] == ["dates=runs/x", "other"] and seen["port"] == 9001 and seen["host"] == "127.0.0.1"
    s = seen["settings"]
    assert (s.max_queue, s.timeout_s, s.precision, s.max_inputs) == (8, 2.5, "int8", ServeSettings().max_inputs)
    assert seen["threads"] == 1


def test_a_seeded_sample_reproduces_and_is_decoded_alone(pipe):
    p, examples = pipe
    body = {"inputs": [e.source for e in examples[:3]], "sampling": True, "temperature": 1.5, "seed": 7}
    with serving(p) as url:
        first, again = post(url, body), post(url, body)
    assert first.status_code == again.status_code == 200, first.text
    texts = [o["hypotheses"][0]["text"] for o in first.json()["outputs"]]
    assert texts == [o["hypotheses"][0]["text"] for o in again.json()["outputs"]]
    assert texts == p.generate(body["inputs"], sampling=True, temperature=1.5, seed=7)
    assert first.json()["batch"]["requests"] == 1


@pytest.mark.parametrize("raw,field,message", [
    ('{"inputs": ["x"], "length_penalty": 1e308}', "length_penalty", "less than or equal to 10"),
    ('{"inputs": ["x"], "length_penalty": Infinity}', "length_penalty", "finite"),
    ('{"inputs": ["x"], "max_len_a": Infinity}', "max_len_a", "finite"),
    ('{"inputs": ["x"], "max_len_a": 1e300}', "max_len_a", "less than or equal to 100"),
    ('{"inputs": ["x"], "min_len": 100000, "beam": 16}', "min_len", "less than or equal to 4096"),
    ('{"inputs": ["x"], "temperature": NaN, "sampling": true}', "temperature", "finite"),
    ('{"inputs": ["x"], "top_p": 0}', "top_p", "greater than or equal to 0.000001"),
    ('{"inputs": ["x"], "seed": -1, "sampling": true}', "seed", "greater than or equal to 0"),
    ('{"inputs": ["x", " "]}', "inputs.1", "empty"),
])
def test_settings_out_of_bounds_get_422_naming_the_field(pipe, raw, field, message):
    p, _ = pipe
    with serving(p) as url:
        r = httpx.post(f"{url}/v1/generate", content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and message in r.json()["error"], r.json()


def test_min_len_never_outlasts_the_maximum_length_and_says_so(pipe):
    p, _ = pipe
    with serving(p) as url:
        r = post(url, {"inputs": ["3/5/2019", "Saturday, July 4, 1998"], "min_len": 50, "max_len_a": 0,
                       "max_len_b": 5, "beam": 2})
    assert r.status_code == 200, r.text
    for out in r.json()["outputs"]:
        assert out["min_len"] == 4                       # 5 tokens at most, </s> included
        assert len(p.tgt_tok.encode(out["hypotheses"][0]["text"])) <= 4


def test_a_body_that_is_not_utf8_gets_400_naming_the_encoding(pipe):
    p, _ = pipe
    with serving(p) as url:
        r = httpx.post(f"{url}/v1/generate", content=b'{"inputs": ["\xff\xfe"]}',
                       headers={"content-type": "application/json"})
    assert r.status_code == 400 and "UTF-8" in r.json()["error"], r.text


def test_serve_on_a_busy_port_says_so_before_serving(pipe, capsys):
    import socket

    from t2t.cli import main
    p, _ = pipe
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(p.checkpoint_path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is not free" in err and "serving" not in err


def test_an_expensive_request_cannot_hold_up_another_client(pipe):
    """One request whose batch would decode for long is stopped by the server's time budget (504)
    while another client's request, arriving just after, is answered within a bound."""
    import time
    p, examples = pipe
    slow = {"inputs": [e.source for e in examples[:32]], "beam": 16, "min_len": 400, "max_len_b": 400,
            "max_len_a": 0}
    with serving(p, max_decode_s=1.0, max_output_tokens=10_000_000) as url:
        got = {}
        t = threading.Thread(target=lambda: got.update(slow=post(url, slow)))
        t.start()
        time.sleep(0.2)
        health = httpx.get(f"{url}/health").json()
        started = time.perf_counter()
        quick = post(url, {"inputs": ["July 4, 1998"]})
        waited = time.perf_counter() - started
        t.join()
    assert health["models"]["dates"]["state"] == "decoding"
    assert quick.status_code == 200 and waited < 4.0, waited
    assert got["slow"].status_code == 504 and "longer than this server allows (1 s)" in got["slow"].json()["error"]


def test_a_request_over_the_output_budget_is_refused_before_decoding(pipe):
    p, _ = pipe
    with serving(p) as url:
        r = post(url, {"inputs": ["x", "y", "z", "w"], "min_len": 1000, "max_len_b": 4096, "max_len_a": 0, "beam": 16})
    assert r.status_code == 422 and r.json()["field"] == "beam"
    assert "up to 65,536 output tokens" in r.json()["error"] and "at most 50,000" in r.json()["error"]


def test_a_body_slower_than_its_bound_gets_408(pipe):
    import socket
    import time
    p, _ = pipe
    with serving(p, body_timeout_s=0.5) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"inputs\": ")
            started = time.perf_counter()
            answer = sock.recv(4096).decode()
            waited = time.perf_counter() - started
    assert answer.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in answer and waited < 3


def test_health_tells_a_stalled_model(pipe):
    import time
    p, examples = pipe
    slow = {"inputs": [e.source for e in examples[:32]], "beam": 16, "min_len": 300, "max_len_b": 300,
            "max_len_a": 0}
    app = create_app({"dates": p}, ServeSettings(max_decode_s=30.0, max_output_tokens=10_000_000))
    app.state.models["dates"].batcher.stall_s = 0.3           # as if a step had hung past the budget
    with running_server(app) as url:
        t = threading.Thread(target=lambda: post(url, slow))
        t.start()
        time.sleep(0.8)
        r = httpx.get(f"{url}/health")
        t.join()
        assert httpx.get(f"{url}/health").json()["models"]["dates"]["state"] == "idle"
    assert r.status_code == 503 and r.json()["status"] == "stalled"
    assert r.json()["models"]["dates"]["state"] == "stalled"


@pytest.mark.slow
def test_sigterm_stops_the_server_within_its_bound(toy_transformer, tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time
    run, examples = toy_transformer
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "t2t.cli", "serve", str(run), "--port", str(port),
                             "--shutdown-s", "3", "--max-decode-s", "60", "--max-output-tokens", "10000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        slow = {"inputs": [e.source for e in examples[:64]], "beam": 16, "min_len": 1000, "max_len_b": 1000,
                "max_len_a": 0}
        got = {}
        t = threading.Thread(target=lambda: got.update(r=httpx.post(f"{url}/v1/generate", json=slow, timeout=60)))
        t.start()
        time.sleep(1.0)
        started = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        stopped = time.time() - started
        t.join(timeout=20)
    finally:
        proc.kill()
    assert stopped < 10, stopped                                   # 3 s of grace, then the batch is stopped
    assert got.get("r") is not None and got["r"].status_code in (503, 504), got


def test_requests_generated_from_the_openapi_schema_never_get_5xx(pipe):
    """schemathesis generates requests from the server's own OpenAPI schema, valid and invalid
    (wrong types, out-of-range values, missing and unknown fields): no 5xx, every 422 names its
    field, every other 4xx says why."""
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install 't2t[test]')")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    p, _ = pipe
    # the work a request may ask for is bounded (max_output_tokens) well within the time budget, so
    # a 504 here would be a server that decodes far slower than it should
    with serving(p, max_inputs=4, timeout_s=20, max_decode_s=10.0, max_output_tokens=5000) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
        problems, seen = [], set()
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(max_examples=120 if "generate" in operation.label else 15, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def check(case):
                response = case.call(timeout=30)
                seen.add(response.status_code)
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                if (response.status_code >= 500 or (response.status_code == 422 and not body.get("field"))
                        or (400 <= response.status_code < 500 and not body.get("error"))):
                    problems.append((operation.label, response.status_code,  # noqa: B023 (called at once below)
                                     getattr(case, "body", None), response.text[:300]))
            check()
    assert not problems, problems[:5]
    assert {200, 422} <= seen, seen                           # both kinds were exercised


def test_the_request_model_is_the_decoding_schema():
    """Every served decode key is a request field with DecodeOptions' type, bounds and help (beam and
    n-best narrowed by the server's limit); a new DecodeOptions field appears without an edit here."""
    from t2t.options import DecodeOptions, field_infos
    from t2t.serve.app import NOT_SERVED, request_model
    settings = ServeSettings(max_beam=7)
    schema = request_model(settings, "m").model_json_schema()["properties"]
    served = [f for f in field_infos(DecodeOptions) if f.name not in NOT_SERVED]
    assert set(schema) == {f.name for f in served} | {"model", "inputs", "seed", "attention"}
    kinds = {int: "integer", float: "number", bool: "boolean", str: "string"}
    for f in served:
        prop = schema[f.name]
        types = {a.get("type") for a in prop.get("anyOf", [prop])} - {"null"}
        assert types == {kinds[f.type]}, f.name
        bounds = {k: v for a in prop.get("anyOf", [prop]) for k, v in a.items() if k in ("minimum", "maximum")}
        hi = min(f.max or 7, 7) if f.name in ("beam", "nbest") else f.max
        assert (bounds.get("minimum"), bounds.get("maximum")) == (f.min, hi), f.name
        assert prop["description"] == f.help, f.name
