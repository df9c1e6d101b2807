"""Fixtures of the framework tests: one primary + replica with the module for
a whole test module, the proof recorder, and the test-output folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "integration"))

from fwlib import OUTPUT, Pair  # noqa: E402
from sessionlib import Server, free_port, replicate  # noqa: E402


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    cfg = {"repl-diskless-sync-delay": 0, "repl-ping-replica-period": 3600}
    primary = Server(tmp_path_factory.mktemp("fw-primary"), config=cfg, name="primary").start()
    replica = Server(tmp_path_factory.mktemp("fw-replica"), config=cfg, name="replica")
    try:
        replica.start()
        replicate(replica, primary)
        yield Pair(primary, replica)
    finally:
        replica.stop()
        primary.stop()


# -- the example app (examples/devices) on a real server -------------------------------------
@pytest.fixture
def example_app(server: Any, tmp_path: Path) -> Iterator[str]:
    """The example app in a uvicorn process on the test's server; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
        "MAX_DEVICES": "3",
        "PYTHONPATH": str(ROOT / "python" / "src"),
    }
    log = open(tmp_path / "app.log", "wb")  # noqa: SIM115 (held open by the app's process)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(ROOT / "examples" / "devices"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the example app did not start:\n{(tmp_path / 'app.log').read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


# -- the proof table ---------------------------------------------------------------------
_RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def record() -> Any:
    """record(framework, scenario, kind, library, ok, text, config="")"""

    def rec(framework: str, scenario: str, kind: str, library: str, ok: bool, text: str, config: str = "") -> None:
        _RESULTS[f"{framework}|{scenario}|{kind}"] = {
            "framework": framework,
            "scenario": scenario,
            "kind": kind,
            "library": library,
            "ok": ok,
            "text": text,
            "config": config,
            "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }

    return rec


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _RESULTS:
        return
    from proof_table import render

    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / "proof.json"
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
    old.update(_RESULTS)
    path.write_text(json.dumps(old, indent=1, sort_keys=True))
    (OUTPUT / "proof.md").write_text(render(old))
