"""`t2t serve`: trained models behind an HTTP API with dynamic batching, and a page to try them.

    t2t serve runs/multi30k_de_en [NAME=RUN ...] [--host 127.0.0.1] [--port 8000]

Needs the `serve` extra (FastAPI and uvicorn): pip install 't2t[serve]'.
"""

from t2t.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "load_models", "serve"]


def __getattr__(name):
    # the app imports torch and the pipeline: only when asked for, so `t2t --help` stays quick
    if name in ("create_app", "load_models", "serve"):
        from t2t.serve import app
        return getattr(app, name)
    raise AttributeError(name)
