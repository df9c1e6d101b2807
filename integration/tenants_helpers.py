"""Helpers shared by the multi-tenant tests (test_tenants.py, test_index.py,
test_acl_events.py, test_model.py): SESSION.STATS / TENANT GET decoding,
ACL users, keyspace-event watchers, waits on the server clock.

Uses the fixtures of conftest.py and the classes of sessionlib.py; adds no
fixtures of its own.
"""

import time

import redis

from sessionlib import err_of, error_code, new_key, norm_session, pairs_to_dict, to_str, wait_for

# SPEC §4 SESSION.STATS, in reply order.
STATS_FIELDS = [
    "sessions",
    "created",
    "hits",
    "misses",
    "touches",
    "touches_propagated",
    "renewals",
    "grace_renewals",
    "cas_conflicts",
    "revocations",
    "expired",
    "evicted",
    "data_bytes",
]
TENANT_FIELDS = ["idle", "absolute", "grace", "maxdata", "maxpersubject", "onlimit"]

# module defaults (SPEC §3, §6)
DEF_IDLE = 1800000
DEF_ABSOLUTE = 604800000
DEF_GRACE = 60000
DEF_MAXDATA = 65536


def cmd(r, *a):
    return r.execute_command(*a)


def map_reply(reply):
    """A RESP2 flat array or RESP3 map -> (names in order, dict with str names)."""
    d = pairs_to_dict(reply)
    names = [to_str(k) for k in d.keys()]
    return names, {to_str(k): (to_str(v) if isinstance(v, (bytes, bytearray)) else v) for k, v in d.items()}


def stats_full(r, tenant=None):
    reply = cmd(r, "SESSION.STATS", tenant) if tenant is not None else cmd(r, "SESSION.STATS")
    return map_reply(reply)


def stats(r, tenant=None):
    return stats_full(r, tenant)[1]


def tenant_get(r, tenant):
    reply = cmd(r, "SESSION.TENANT", "GET", tenant)
    if reply is None:
        return None
    return map_reply(reply)[1]


def tenant_list(r):
    return sorted(to_str(t) for t in cmd(r, "SESSION.TENANT", "LIST"))


def session_list(r, tenant, subject):
    return [to_str(k) for k in cmd(r, "SESSION.LIST", tenant, subject)]


def count(r, tenant, subject=None):
    if subject is None:
        return cmd(r, "SESSION.COUNT", tenant)
    return cmd(r, "SESSION.COUNT", tenant, subject)


def get(r, key, *opts):
    return norm_session(cmd(r, "SESSION.GET", key, *opts))[1]


def create(r, key, *opts):
    assert cmd(r, "SESSION.CREATE", key, *opts) == 1
    return key


def info_session(server_or_client):
    c = server_or_client.admin() if hasattr(server_or_client, "admin") else server_or_client
    return c.info("session")


def advance(server, ms):
    """Wait until the server clock has moved on by at least ms."""
    target = server.time_ms() + ms
    time.sleep(ms / 1000.0)
    wait_for(lambda: server.time_ms() >= target, 5, interval=0.002, what="server clock")


def physically_present(r, key):
    """True while `key` is in the keyspace dict, expired or not.

    DEBUG OBJECT looks the key up in the dict directly, so (unlike EXISTS,
    SCAN or any read) it never deletes an expired key on access: only Redis's
    active expiry or eviction can make this turn false.
    """
    try:
        cmd(r, "DEBUG", "OBJECT", key)
        return True
    except redis.ResponseError as e:
        if "no such key" in str(e).lower():
            return False
        raise


def wait_key_gone(r, key, timeout=10):
    """Wait until Redis's active expiry (or eviction) removed `key`."""
    wait_for(lambda: not physically_present(r, key), timeout, interval=0.01,
             what=f"{key} removed from the keyspace")


def acl_client(server, user, rules, password="pw", protocol=2):
    """Create ACL user `user` with `rules` and return a client logged in as it."""
    admin = server.admin()
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    return server.client(protocol=protocol, username=user, password=password)


class Events:
    """Collects keyspace notifications on a dedicated connection.

    channels: exact channel names (SUBSCRIBE); patterns: PSUBSCRIBE patterns.
    Each message is (channel, data) as str.
    """

    def __init__(self, server, channels=(), patterns=()):
        self.client = server.client()
        self.ps = self.client.pubsub(ignore_subscribe_messages=False)
        want = 0
        if channels:
            self.ps.subscribe(*channels)
            want += len(channels)
        if patterns:
            self.ps.psubscribe(*patterns)
            want += len(patterns)
        got = 0
        deadline = time.monotonic() + 10
        while got < want:
            m = self.ps.get_message(timeout=1.0)
            if m and m["type"] in ("subscribe", "psubscribe"):
                got += 1
            if time.monotonic() > deadline:
                raise AssertionError("subscription not confirmed")
        self.seen = []

    def _pump(self, timeout):
        m = self.ps.get_message(timeout=timeout)
        if m and m["type"] in ("message", "pmessage"):
            self.seen.append((to_str(m["channel"]), to_str(m["data"])))
            return True
        return False

    def wait_for(self, pred, timeout=10, what="events"):
        """Pump messages until pred(self.seen) is true."""
        deadline = time.monotonic() + timeout
        while not pred(self.seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; seen={self.seen!r}")
            self._pump(0.05)
        return self.seen

    def until(self, channel, data, timeout=10):
        """Pump until (channel, data) was seen; return every message up to and including it."""
        self.wait_for(lambda s: (channel, data) in s, timeout, what=f"{data} on {channel}")
        i = self.seen.index((channel, data))
        out, self.seen = self.seen[: i + 1], self.seen[i + 1 :]
        return out

    def drain(self, quiet=0.2):
        """Collect until nothing arrives for `quiet` seconds; return and clear everything seen."""
        while self._pump(quiet):
            pass
        out, self.seen = self.seen, []
        return out

    def close(self):
        try:
            self.ps.close()
        except Exception:
            pass


def expect_error(code, fn, *a, **kw):
    """The error fn raises, after checking its code (first word) is `code`."""
    e = err_of(fn, *a, **kw)
    assert error_code(e) == code, f"expected a {code} error, got {e!r}"
    return e


__all__ = [
    "STATS_FIELDS",
    "TENANT_FIELDS",
    "DEF_IDLE",
    "DEF_ABSOLUTE",
    "DEF_GRACE",
    "DEF_MAXDATA",
    "Events",
    "acl_client",
    "advance",
    "cmd",
    "count",
    "create",
    "expect_error",
    "get",
    "info_session",
    "map_reply",
    "new_key",
    "session_list",
    "stats",
    "stats_full",
    "tenant_get",
    "tenant_list",
    "physically_present",
    "wait_key_gone",
]
