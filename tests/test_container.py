"""The Dockerfile installs and runs what the README says a newcomer runs: the same torch pin and
extras, the quickstart recipe as its command. (Building it needs a container engine, which the
test machines lack; where one runs, `docker build -t t2t . && docker run --rm t2t` is the check.)"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_dockerfile_installs_and_runs_what_the_readme_says():
    docker = (ROOT / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    setup = re.search(r"## Set up \(one command\)\s+```bash\n(.+?)\n```", readme, re.S).group(1)
    quickstart = re.search(r"## Quickstart \(one command\)\s+```bash\n(.+?)\n```", readme, re.S).group(1)
    torch_pin = re.search(r"torch==[\d.]+", setup).group(0)
    assert f"pip install {torch_pin} " in docker
    project_install = setup.split("&&", 1)[1].strip()
    assert f"RUN {project_install}" in docker
    cmd = re.search(r'^CMD \[(.+)\]$', docker, re.M).group(1)
    assert " ".join(part.strip().strip('"') for part in cmd.split(",")) == quickstart.strip()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "runs" in ignored and ".git" in ignored
