"""Fixtures for the package's tests: the integration suite's real-server
harness (integration/sessionlib.py and integration/conftest.py), imported,
not copied."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

INTEGRATION = Path(__file__).resolve().parents[2] / "integration"
sys.path.insert(0, str(INTEGRATION))

_spec = importlib.util.spec_from_file_location("integration_conftest", INTEGRATION / "conftest.py")
assert _spec is not None and _spec.loader is not None
_ic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ic)

# fixtures and hooks of the integration suite
server = _ic.server
server0 = _ic.server0
make_pair = _ic.make_pair
pytest_collection_modifyitems = _ic.pytest_collection_modifyitems
pytest_report_header = _ic.pytest_report_header
pytest_runtest_makereport = _ic.pytest_runtest_makereport


# --- both backends -------------------------------------------------------------
# Every test that starts servers runs twice: against servers with the module
# ("module") and against plain servers without it ("lua"), where the store's
# automatic choice picks the Lua fallback. A test that cannot hold on the
# fallback skips with `module_only(...)`, naming its row of the differences
# table in python/README.md ("Without the module").
import pytest  # noqa: E402

BACKENDS = ["module", "lua"]


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_server(make_server_any, backend_kind):  # type: ignore[no-untyped-def]
    def make(*a, **kw):  # type: ignore[no-untyped-def]
        kw.setdefault("load_module", backend_kind == "module")
        if not kw["load_module"]:
            kw.pop("module_args", None)
        return make_server_any(*a, **kw)

    return make


make_server_any = pytest.fixture(_ic.make_server.__wrapped__, name="make_server_any")


# helpers the tests import: a module of their own, since `conftest` is also
# the name of tests/frameworks/conftest.py
from store_helpers import module_only, raw_set  # noqa: E402, F401
