"""The deployment files: the image's rules (non-root, health check on /readyz, CPU torch only on
request), the compose file's services, and the entrypoint every role runs, exercised outside a
container exactly as compose runs it (Chroma server, one-shot ingest, web app with two workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT
from .hardening_helpers import free_port

ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"


def test_the_image_runs_as_a_user_checks_readiness_and_installs_cpu_torch_only_on_request() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    health = " ".join(ln for ln in lines if ln.startswith(("HEALTHCHECK", "CMD python")))
    assert "/readyz" in health
    text = "\n".join(lines)
    assert "-c constraints.txt" in text  # the pinned versions, as the tests install them
    torch = [ln for ln in lines if "torch" in ln and "pip install" in ln]
    assert torch and all("whl/cpu" in ln and "sentence-transformers" in ln for ln in torch)
    assert 'ENTRYPOINT ["rulebook-entrypoint"]' in text and "deploy/entrypoint.sh" in text


def test_compose_runs_the_app_a_chroma_server_and_a_one_shot_ingest_on_shared_volumes() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"app", "chroma", "ingest"}
    assert services["chroma"]["command"] == ["chroma"] and "healthcheck" in services["chroma"]
    assert services["ingest"]["command"] == ["ingest"] and services["ingest"]["restart"] == "no"
    for name in ("app", "ingest"):
        s = services[name]
        assert s["environment"]["RULEBOOK_CHROMA_URL"] == "http://chroma:8000"
        assert "rulebook-data:/data" in s["volumes"]
        assert s["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert any(v.endswith(":/rules:ro") for v in services["ingest"]["volumes"])
    assert services["app"]["ports"] == ["127.0.0.1:8000:8000"]
    assert set(compose["volumes"]) == {"rulebook-data", "chroma-data"}


def _env(**extra: str) -> dict[str, str]:
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path, "PYTHON": sys.executable, "RULEBOOK_RATE_LIMIT_PER_MINUTE": "0", **extra}


def _get(url: str, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def _wait(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer 200 in {seconds} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_the_entrypoint_refuses_an_unknown_role() -> None:
    r = subprocess.run(["sh", str(ENTRYPOINT), "shell"], env=_env(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown role" in r.stderr


@pytest.mark.slow
def test_the_compose_roles_serve_the_sample_rulebook_outside_a_container(rulebook_copy: Path,
                                                                           warm_data_dir: Path,
                                                                           tmp_path: Path) -> None:
    chroma_port, web_port = free_port(), free_port()
    chroma_url = f"http://127.0.0.1:{chroma_port}"
    chroma = subprocess.Popen(["sh", str(ENTRYPOINT), "chroma"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=_env(CHROMA_PATH=str(tmp_path / "chroma"), CHROMA_HOST="127.0.0.1",
                                       CHROMA_PORT=str(chroma_port)))
    app = None
    try:
        env = _env(RULEBOOK_CHROMA_URL=chroma_url, RULEBOOK_DATA_DIR=str(warm_data_dir),
                   RULEBOOK_RULES_DIR=str(rulebook_copy))
        # The ingest waits for the Chroma server itself (as it does in compose), then exits.
        r = subprocess.run(["sh", str(ENTRYPOINT), "ingest"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        app = subprocess.Popen(["sh", str(ENTRYPOINT), "serve"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE,
                               env={**env, "RULEBOOK_HOST": "127.0.0.1", "RULEBOOK_PORT": str(web_port),
                                    "RULEBOOK_WORKERS": "2"})
        root = f"http://127.0.0.1:{web_port}"
        _wait(root + "/readyz", app)
        status, body = _get(root + "/v1/ask", json.dumps({"question": "年假可以留到明年用吗？"}).encode())
        assert status == 200 and body["grounded"] and body["citations"]
    finally:
        if app is not None:
            _stop(app)
        _stop(chroma)
