# t2t on CPU in a container: the quickstart recipe by default, the tests on request.
#   docker build -t t2t .
#   docker run --rm -v "$PWD/runs:/t2t/runs" t2t                 # t2t run recipes/quickstart.yaml
#   docker run --rm t2t python -m pytest -q                         # the fast test suite
#   docker run --rm -v /path/to/data:/data -e T2T_DATA=/data t2t t2t run recipes/multi30k_de_en_transformer.yaml
FROM python:3.11-slim

# Chromium and its driver for the page test (it is skipped without them)
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium chromium-driver \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /t2t

# torch first, pinned as in the README, from the CPU-only index (no CUDA packages)
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY . .
RUN pip install -e ".[test,dialogue,serve,export]" -e examples/t2t-textnorm

CMD ["t2t", "run", "recipes/quickstart.yaml"]
