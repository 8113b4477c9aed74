"""The Docker image starts and serves: built and run for real where a container engine is
there, else replayed (the Dockerfile's COPY set from a fresh clone's files, minus
.dockerignore, into an empty folder; its ``pip install`` of the package; its ENTRYPOINT
with its ENV and a mounted test model) and asked for vectors on port 10002."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.reference import cosine
from tests.serve_process import ROOT

pytestmark = pytest.mark.e2e

PORT = 10002  # EXPOSE'd, and what the image's serve_config.yaml listens on


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            out.append((name.upper(), rest.strip()))
    return out


def context_files() -> list[str]:
    """What ``docker build .`` sends from a fresh clone: tracked files not in .dockerignore."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
                   or fnmatch.fnmatch(prefix, pattern)
                   for pattern in patterns for prefix in prefixes)

    return [path for path in tracked if not ignored(path)]


def test_dockerfile_copies_what_the_build_needs_and_nothing_test_only():
    files = context_files()
    assert "deployment.py" in files and "serve_config.yaml" in files
    assert any(f.startswith("encoder/") for f in files)
    assert any(f.startswith("jina_serve/") for f in files)
    assert not any(f.startswith(("tests/", "benchmarks/", "models/")) for f in files)
    entrypoint = next(args for name, args in instructions() if name == "ENTRYPOINT")
    assert "jina-serve" in entrypoint


def _engine() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True,
                                           check=False).returncode == 0


def _replay(app: Path, site: Path) -> tuple[list[str], dict[str, str]]:
    """Replay the build into ``app`` (WORKDIR) and ``site`` (the image's site-packages);
    return the ENTRYPOINT's command and the image's ENV."""
    files, env, build_args, entrypoint = context_files(), {}, {}, None
    for name, args in instructions():
        if name == "ARG":
            key, _, value = args.partition("=")
            build_args[key] = value
        if name == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                wanted = [f for f in files if source == "." or f == source
                          or f.startswith(source.rstrip("/") + "/")]
                for path in wanted:
                    (app / path).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / path, app / path)
        elif name == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], value)
        elif name == "RUN" and "pip install --no-deps ." in args:
            # The image's own install of the package; its dependencies come from this venv.
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                            "--target", str(site), "."], cwd=app, check=True)
        elif name == "ENTRYPOINT":
            entrypoint = [str(site / "bin" / part) if (site / "bin" / part).is_file() else part
                          for part in eval(args)]  # a JSON array, as Docker's exec form
    assert entrypoint, "the Dockerfile has no ENTRYPOINT"
    return entrypoint, env


def test_the_image_serves_vectors_on_10002(jina_dir, jina_reference, tmp_path):
    if _engine():
        pytest.skip("a container engine is here: the build-and-run test covers it")
    app, site = tmp_path / "app", tmp_path / "site"
    app.mkdir()
    command, image_env = _replay(app, site)
    assert image_env["EMBEDDINGS_CONFIG"] == "/app/serve_config.yaml"
    image_env["EMBEDDINGS_CONFIG"] = str(app / "serve_config.yaml")  # /app is tmp_path here
    # The model mounted and named as deploy/docker.md says.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RAY_"))},
           **image_env, "EMBEDDINGS_MODEL": str(jina_dir), "PYTHONPATH": str(site),
           "HF_HOME": str(tmp_path / "hf"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "image.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=app, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        vectors = _wait_for_vectors(process, log)
        assert cosine(vectors[0], jina_reference.embed("你好，世界", "text-matching")) >= 0.99999
        process.send_signal(signal.SIGTERM)  # docker stop
        assert process.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_the_real_image_builds_and_serves(jina_dir, jina_reference, tmp_path):
    if not _engine():
        pytest.skip("no container engine on this machine (the replay test covers the image)")
    tag = "jina-embeddings-serve:test"
    subprocess.run(["docker", "build", "--build-arg", "DOWNLOAD_MODEL=0", "-t", tag, "."],
                   cwd=ROOT, check=True)
    name = f"jina-test-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--shm-size=2g",
                    "-p", f"{PORT}:{PORT}", "-v", f"{jina_dir}:/models/jina:ro",
                    "-e", "EMBEDDINGS_MODEL=/models/jina", tag], check=True)
    try:
        vectors = _wait_for_vectors(None, None)
        assert cosine(vectors[0], jina_reference.embed("你好，世界", "text-matching")) >= 0.99999
    finally:
        subprocess.run(["docker", "stop", name], check=False)


def _wait_for_vectors(process, log: Path | None, timeout_s: float = 240) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the entrypoint exited:\n{log.read_text()[-3000:]}")
        try:
            response = httpx.post(f"http://127.0.0.1:{PORT}/v1/embeddings",
                                  json={"input": ["你好，世界"]}, timeout=10)
            if response.status_code == 200:
                return [d["embedding"] for d in response.json()["data"]]
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"no vectors on {PORT}:\n{log.read_text()[-3000:] if log else ''}")
