"""The integrations' shared core (redis_session.web) without a server: the
steps are driven by hand, so each test states exactly which store calls a
request makes, in which order."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from redis_session import Revoked, SessionExists
from redis_session.web import Call, RequestSession, SaveResult, SessionNotLoaded, diff, new_sid, run


class FakeSession:
    def __init__(self, sid: str, subject: str = "", data: dict[str, Any] | None = None) -> None:
        self.sid = sid
        self.subject = subject
        self.data = dict(data or {})
        self.meta: dict[str, str] = {}
        self.version = 1


def drive(steps: Generator[Call, Any, Any], replies: list[Any]) -> tuple[list[Call], Any]:
    """Run steps, answering each call with the next reply; the calls made and the result."""
    calls: list[Call] = []
    reply: Any = None
    it = iter(replies)
    while True:
        try:
            call = steps.send(reply)
        except StopIteration as stop:
            return calls, stop.value
        calls.append(call)
        reply = next(it)


SID = "S" * 43


def loaded(data: dict[str, Any], subject: str = "") -> RequestSession:
    rs = RequestSession(SID)
    calls, _ = drive(rs.load_steps(), [FakeSession(SID, subject, data)])
    assert calls == [Call("get", (SID,), {"touch": True})]
    return rs


def test_sids_are_256_bits() -> None:
    sids = {new_sid() for _ in range(100)}
    assert len(sids) == 100 and all(len(s) == 43 for s in sids)


def test_diff_by_value() -> None:
    before = {"a": 1, "b": [1], "c": "x", "t": True}
    after = {"a": 1, "b": [1, 2], "d": None, "t": 1}
    assert diff(before, after) == ({"b": [1, 2], "d": None, "t": 1}, ["c"])
    assert diff(before, dict(before)) == ({}, [])


def test_untouched_or_malformed_costs_nothing() -> None:
    assert drive(RequestSession(SID).save_steps(), []) == ([], SaveResult(None))
    rs = RequestSession("bad sid")
    assert rs.cookie_sid is None and rs.loaded
    assert drive(rs.save_steps(), []) == ([], SaveResult(None))


def test_async_session_must_be_loaded() -> None:
    rs = RequestSession(SID)  # no loader: the asyncio integration's case
    with pytest.raises(SessionNotLoaded):
        rs.get("x")


def test_read_only_request_writes_nothing() -> None:
    rs = loaded({"cart": [1], "user": "u"})
    assert rs["cart"] == [1] and rs.get("user") == "u"
    assert drive(rs.save_steps(), []) == ([], SaveResult("set", SID))


def test_in_place_change_is_one_field_level_set() -> None:
    stored = {"cart": [1], "theme": "dark"}
    rs = loaded(stored)
    rs["cart"].append(2)
    assert stored["cart"] == [1], "the stored value is not the one the app mutates"
    del rs["theme"]
    calls, result = drive(rs.save_steps(), [7])
    assert calls == [Call("set", (SID,), {"data": {"cart": [1, 2]}, "unset": ["theme"]})]
    assert result == SaveResult("set", SID, version=7)


def test_revoked_meanwhile_is_not_written_back() -> None:
    rs = loaded({"a": 1})
    rs["b"] = 2
    calls, result = drive(rs.save_steps(), [Revoked("logout")])
    assert [c.method for c in calls] == ["set"]
    assert result.cookie is None and result.revoked_reason == "logout"
    assert rs.revoked_reason == "logout"


def test_gone_meanwhile_is_not_recreated() -> None:
    rs = loaded({"a": 1})
    rs["b"] = 2
    calls, result = drive(rs.save_steps(), [None])
    assert [c.method for c in calls] == ["set"] and result.cookie == "delete" and result.gone


def test_login_creates_then_revokes_rotated() -> None:
    rs = loaded({"cart": [1]})
    rs.login("alice")
    new = rs.sid
    assert new is not None and new != SID and rs.subject == "alice"
    calls, result = drive(rs.save_steps(), [FakeSession(new, "alice", {"cart": [1]}), True])
    assert calls[0].method == "create" and calls[0].kwargs["sid"] == new
    assert calls[0].kwargs["subject"] == "alice" and calls[0].kwargs["data"] == {"cart": [1]}
    assert calls[1] == Call("revoke", (SID,), {"reason": "rotated"})
    assert result.cookie == "set" and result.sid == new


def test_collision_on_create_is_raised() -> None:
    rs = RequestSession(None)
    rs["a"] = 1
    with pytest.raises(SessionExists):
        drive(rs.save_steps(), [SessionExists("taken")])


def test_revoked_on_load_gives_the_reason_and_a_fresh_session() -> None:
    rs = RequestSession(SID)
    drive(rs.load_steps(), [Revoked("logout-others")])
    assert rs.revoked_reason == "logout-others" and rs.subject == "" and dict(rs) == {}
    assert drive(rs.save_steps(), []) == ([], SaveResult("delete"))
    rs["flash"] = "signed out"
    calls, result = drive(rs.save_steps(), [FakeSession("N" * 43, "", {"flash": "signed out"})])
    assert calls[0].method == "create" and calls[0].kwargs["sid"] != SID and calls[0].kwargs["subject"] == ""
    assert result.cookie == "set" and result.sid == "N" * 43


def test_logout_and_clear() -> None:
    rs = RequestSession(SID)
    rs.logout("logout")  # no load needed
    assert drive(rs.save_steps(), [True]) == ([Call("revoke", (SID,), {"reason": "logout"})], SaveResult("delete"))
    rs = loaded({"a": 1})
    rs.clear()
    calls, result = drive(rs.save_steps(), [True])
    assert calls == [Call("revoke", (SID,), {"reason": "logout"})] and result.cookie == "delete"
    rs = loaded({}, subject="bob")  # a subject and no data
    rs.clear()
    assert drive(rs.save_steps(), [True])[0][0].method == "revoke"
    rs = loaded({})  # an anonymous empty session that is merely read is left alone
    assert rs.get("x") is None
    assert drive(rs.save_steps(), []) == ([], SaveResult("set", SID))


def test_run_hands_revoked_to_the_steps() -> None:
    class Store:
        def get(self, sid: str, touch: bool) -> Any:
            raise Revoked("gone")

    rs = RequestSession(SID, loader=lambda s: run(Store(), s.load_steps()))  # type: ignore[arg-type]
    assert rs.revoked_reason == "gone"
