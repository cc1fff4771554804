"""Helpers shared by test modules (import them from here, not from conftest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def environment() -> dict:
    """The test interpreter's bin folder first on PATH; pip builds with the installed setuptools
    where there is one (no download), and installs no dependencies (t2t is there already)."""
    import importlib.util
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PIP_NO_DEPS": "true", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": ""}
    if importlib.util.find_spec("setuptools") is not None:
        env["PIP_NO_BUILD_ISOLATION"] = "false"
    return env


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, info, body) of every fenced code block of a Markdown text."""
    return [(lang, info.strip(), body) for lang, info, body in FENCE.findall(text)]


def run_doc_blocks(doc: Path, folder: Path, env: dict, timeout: int = 300) -> int:
    """Run a page's blocks in order in `folder`: `file=PATH` blocks are written there, `run`
    blocks are executed (bash, or Python); returns how many blocks there were."""
    found = blocks(doc.read_text(encoding="utf-8"))
    for i, (lang, info, body) in enumerate(found):
        if info.startswith("file="):
            path = folder / info[len("file="):]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
            continue
        assert info == "run", f"{doc.name} block {i} ({lang}) is neither `file=PATH` nor `run`"
        cmd = ["bash", "-euo", "pipefail", "-c", body] if lang == "bash" else [sys.executable, "-c", body]
        done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, (f"{doc.name} block {i} failed:\n{body}\n--- stdout\n{done.stdout[-2000:]}\n"
                                      f"--- stderr\n{done.stderr[-3000:]}")
    return len(found)
