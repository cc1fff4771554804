"""Serving under load: concurrent clients against `t2t serve` on the loopback interface, against
offline batched decoding (`Pipeline.search`, what `t2t generate` does) of the same inputs.

    python benchmarks/serve_load.py [--run RUN] [--clients 32] [--seconds 20] [--threads 2]

The server is a separate process (`t2t serve`, its own CPU threads); the clients are asyncio tasks
(aiohttp: pip install aiohttp) in this process, each sending one sentence a request and the next as soon as the answer comes
(closed loop), for a bounded time. Reported: requests/s and sentences/s, their ratio to offline
throughput (same inputs, same decoding settings, same thread count, measured just before), p50/p99
latency, and failures. A second phase sends more clients than the queue admits and counts the 503s
it sheds (they are expected there; below the queue limit none may fail).

Without --run it trains a small Transformer on the dates task (about a minute) to have a model.
Writes benchmarks/results/serve_load.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def train_default(work: Path) -> Path:
    from t2t.recipe import load_recipe
    from t2t.testing import tiny_recipe
    from t2t.trainer import train
    run = work / "dates_transformer"
    if (run / "checkpoints" / "index.json").exists():
        return run
    recipe = tiny_recipe("dates", "transformer", data={"train_size": 20000, "valid_size": 200, "test_size": 2000},
                         model={"dim": 256, "ff_dim": 1024, "layers": 3, "heads": 4, "dropout": 0.1},
                         train={"max_steps": 600, "max_epochs": 100, "validate_every": 600, "valid_max_sentences": 0,
                                "max_tokens": 4096, "lr": 1e-3, "schedule": "inverse_sqrt", "warmup": 100},
                         decode={"max_len_a": 0, "max_len_b": 14}, metrics=["exact_match"], output_dir=str(run))
    train(load_recipe(recipe), overwrite=True)
    return run


def offline(pipe, inputs: list[str], threads: int, clients: int) -> dict:
    """Offline throughput as `t2t generate` gets it (all inputs given at once: sorted by length,
    batches of decode.max_sentences), and, as a diagnostic, of batches as a server with `clients`
    one-sentence clients can form them at best: `clients` inputs in arrival order."""
    import torch

    torch.set_num_threads(threads)
    opts = pipe.decode_options()
    pipe.search(inputs[:64], opts)                                  # warm-up
    t = time.perf_counter()
    pipe.search(inputs, opts)
    elapsed = time.perf_counter() - t
    t = time.perf_counter()
    for start in range(0, len(inputs), clients):
        pipe.search(inputs[start: start + clients], opts)
    arrival = time.perf_counter() - t
    return {"sentences": len(inputs), "seconds": elapsed, "sentences_per_s": len(inputs) / elapsed,
            "batch": opts.max_sentences, "beam": opts.beam,
            "arrival_batches_of": clients, "arrival_sentences_per_s": len(inputs) / arrival}


def wait_until_up(url: str, seconds: float = 120) -> None:
    import urllib.request
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server at {url} did not come up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load_phase(url: str, inputs: list[str], clients: int, seconds: float) -> dict:
    import aiohttp
    latencies, failures, statuses, batch_sizes = [], 0, {}, []
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as http:
        async def client(k: int):
            nonlocal failures
            i = k
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    async with http.post("/v1/generate", json={"inputs": [inputs[i % len(inputs)]]}) as r:
                        body = await r.json()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        if r.status == 200:
                            latencies.append(time.perf_counter() - t)
                            batch_sizes.append(body["batch"]["sentences"])
                        elif r.status == 503:           # shed: back off as Retry-After asks
                            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                        else:
                            failures += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    failures += 1
                i += clients
        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None  # noqa: E731
    return {"clients": clients, "seconds": elapsed, "answered": len(latencies), "statuses": statuses,
            "failures": failures, "requests_per_s": len(latencies) / elapsed, "sentences_per_s": len(latencies) / elapsed,
            "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "mean_batch": sum(batch_sizes) / len(batch_sizes) if batch_sizes else None}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", help="run directory to serve (default: train a small dates Transformer)")
    p.add_argument("--work", default="/tmp/t2t-serve-load")
    p.add_argument("--data-dir", help="base folder of the run's data (its test split gives the inputs)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--threads", type=int, default=1, help="decoding threads, of the server and of offline decoding "
                   "alike (on 2 cores, 1 leaves the other to the clients and the server's event loop)")
    p.add_argument("--sentences", type=int, default=2000, help="distinct inputs (from the run's test split)")
    p.add_argument("--overload-clients", type=int, default=256)
    p.add_argument("--overload-queue", type=int, default=64)
    p.add_argument("--machine", default="", help="a label for the results table")
    p.add_argument("--out", default=str(HERE / "results" / "serve_load"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = Path(args.run) if args.run else train_default(work)
    from t2t.pipeline import load
    pipe = load(run, device="cpu", data_dir=args.data_dir)
    task = pipe.task
    inputs = [ex.source for ex in task.examples("test")][: args.sentences]
    base = offline(pipe, inputs, args.threads, args.clients)
    print("offline", json.dumps(base), flush=True)
    phases = []
    for clients, queue in ((args.clients, 256), (args.overload_clients, args.overload_queue)):
        port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        server = subprocess.Popen([sys.executable, "-m", "t2t.cli", "--quiet", "serve", str(run), "--port", str(port),
                                   "--threads", str(args.threads), "--max-queue", str(queue)], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url)
            result = asyncio.run(load_phase(url, inputs, clients, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=30)
        result.update(queue_limit=queue, ratio_to_offline=result["sentences_per_s"] / base["sentences_per_s"],
                      ratio_to_arrival_batches=result["sentences_per_s"] / base["arrival_sentences_per_s"])
        phases.append(result)
        print(json.dumps(result), flush=True)
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": args.machine or f"{platform.machine()}, {os.cpu_count()} cores",
           "threads": args.threads, "run": str(run), "offline": base, "phases": phases}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(out, indent=1))
    lines = [f"# Serving under load ({out['date']}, {out['machine']}, {args.threads} decoding threads)", "",
             f"Model: {run}; offline batched decoding (batches of {base['batch']}, beam {base['beam']}): "
             f"{base['sentences_per_s']:.1f} sentences/s on {base['sentences']} inputs; the same inputs in arrival "
             f"order, batches of {base['arrival_batches_of']} (the best a server with that many one-sentence clients "
             f"can form): {base['arrival_sentences_per_s']:.1f} sentences/s.", "",
             "| clients | queue limit | seconds | answered | requests/s = sentences/s | vs offline | vs arrival batches | "
             "p50 ms | p99 ms | mean batch | 503 shed | failed |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in phases:
        lines.append(f"| {r['clients']} | {r['queue_limit']} | {r['seconds']:.1f} | {r['answered']} | "
                     f"{r['requests_per_s']:.1f} | {r['ratio_to_offline']:.2f}x | {r['ratio_to_arrival_batches']:.2f}x | "
                     f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_batch']:.1f} | {r['statuses'].get(503, 0)} | "
                     f"{r['failures']} |")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
