"""Fixtures: real redis-server processes with the session module loaded.

Environment:
  SESSION_MODULE  path of the module .so (default target/release/libredis_session.so)
  REDIS_SERVER    redis-server binary (default: the one on PATH)
"""

import subprocess
from pathlib import Path

import pytest

from sessionlib import MODULE_PATH, REDIS_SERVER, FakePrimary, Server, replicate


DEFAULT_TIMEOUT = 300  # seconds per test, when pytest-timeout is installed


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


def pytest_report_header(config):
    exists = "found" if Path(MODULE_PATH).exists() else "MISSING"
    try:
        version = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as e:
        version = f"cannot run: {e}"
    return [f"session module: {MODULE_PATH} ({exists})", f"server: {REDIS_SERVER} ({version})"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for s in getattr(item, "_redis_servers", []):
            rep.sections.append((f"redis log {s.name} (port {s.port})", s.log_tail(40)))


@pytest.fixture
def make_server(tmp_path_factory, request):
    """Factory: make_server(module_args={...}, config={...}, name=..., start=True)."""
    servers = []
    request.node._redis_servers = servers

    def make(module_args=None, config=None, name="redis", start=True, directory=None, **kw):
        d = Path(directory) if directory else tmp_path_factory.mktemp(name)
        s = Server(d, module_args=module_args, config=config, name=name, **kw)
        servers.append(s)
        if start:
            s.start()
        return s

    yield make

    crashed = [s for s in servers if s.crashed()]
    for s in servers:
        if s.crashed():
            s.proc = None
        else:
            s.stop()
    if crashed:
        msgs = "\n\n".join(
            f"--- {s.name} (port {s.port}) died unexpectedly ---\n{s.log_tail(60)}" for s in crashed
        )
        pytest.fail(f"redis-server crashed during the test:\n{msgs}", pytrace=False)


@pytest.fixture
def server(make_server):
    """A server with the module's default options."""
    return make_server(name="default")


@pytest.fixture
def server0(make_server):
    """A server with touch-resolution 0: every renewal is applied."""
    return make_server(module_args={"touch-resolution": 0}, name="tr0")


@pytest.fixture
def make_pair(make_server):
    """Factory: a primary + replica, linked and in sync."""

    def make(module_args=None, config=None, replica_config=None, link=True):
        config = {"repl-diskless-sync-delay": 0, **(config or {})}
        primary = make_server(module_args=module_args, config=config, name="primary")
        rc = dict(config)
        rc.update(replica_config or {})
        replica = make_server(module_args=module_args, config=rc, name="replica")
        if link:
            replicate(replica, primary)
        return primary, replica

    return make


@pytest.fixture
def make_fed(make_server):
    """Factory: a server fed by a `FakePrimary` (writable replica, so tests
    also write to it as clients): make_fed(module_args=..., config=...) ->
    (server, feeder). The feeder is how tests send internal effects."""
    feeders = []

    def make(module_args=None, config=None, name="fed"):
        srv = make_server(module_args=module_args, config=config, name=name)
        primary = FakePrimary.feed(srv)
        feeders.append(primary)
        return srv, primary

    yield make
    for f in feeders:
        f.close()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proto(request):
    return request.param
