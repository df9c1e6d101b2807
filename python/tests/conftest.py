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
make_server = _ic.make_server
server = _ic.server
server0 = _ic.server0
make_pair = _ic.make_pair
pytest_collection_modifyitems = _ic.pytest_collection_modifyitems
pytest_report_header = _ic.pytest_report_header
pytest_runtest_makereport = _ic.pytest_runtest_makereport
