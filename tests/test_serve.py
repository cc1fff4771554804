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
