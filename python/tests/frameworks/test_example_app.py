"""The example app over HTTP (no browser): the cap on devices per user, and
logging another device out from "your devices"."""

from __future__ import annotations

import re

import httpx

MAX_DEVICES = 3  # the example_app fixture's MAX_DEVICES


def test_device_limit_signs_out_the_oldest(example_app: str) -> None:
    devices = [httpx.Client(base_url=example_app, headers={"user-agent": f"curl/8 device-{i}"}) for i in range(4)]
    try:
        for d in devices:
            r = d.post("/login", data={"user": "dora", "password": "demo"})
            assert r.status_code == 303, r.text
        # the first device was the oldest: signed out, and told why
        r = devices[0].get("/")
        assert r.status_code == 401 and f"more than {MAX_DEVICES} devices" in r.text, r.text
        r = devices[3].get("/devices")
        assert r.status_code == 200 and r.text.count('class="device') == MAX_DEVICES
        for i in (1, 2, 3):
            assert f"device-{i}" in r.text
        assert "device-0" not in r.text
        # "Log out" on another device's row: that device is signed out and told why
        row = re.search(r'device-1\)</td>.*?name="device" value="([0-9a-f]{12})"', r.text, re.S)
        assert row, r.text
        assert devices[3].post("/devices/revoke", data={"device": row.group(1)}).status_code == 303
        r = devices[1].get("/")
        assert r.status_code == 401 and "removed from another of your devices" in r.text
        assert devices[2].get("/").status_code == 200
        # a wrong password is refused and creates nothing
        r = devices[0].post("/login", data={"user": "dora", "password": "nope"})
        assert r.status_code == 401 and "Wrong user name or password" in r.text
    finally:
        for d in devices:
            d.close()
