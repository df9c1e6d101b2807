"""Writes packed.json: test vectors of the PACKED reply (layout v1).

Each case is a stored session, the time of the read and the read's options;
`expected` is the decoded reply and `packed_hex` its bytes, encoded here by
msgpack-python (an encoder independent of the module's). The module's
encoder must produce exactly these bytes (tests/packed_vectors.rs), and
any client can check its decoder against them (integration/test_packed.py).

    .venv/bin/python tests/vectors/make_packed.py > tests/vectors/packed.json

Byte strings are hex in the JSON (subject, meta and data names and values).
"""

import json

import msgpack

H = bytes.hex


def case(name, session, now, fields=None, nodata=False, note=""):
    s = session
    idle_deadline = s["last_access"] + s["idle"]
    absolute = s["absolute_deadline"]
    grace_until = idle_deadline + s["grace"]
    if absolute > 0:
        grace_until = min(grace_until, absolute)
    if now < idle_deadline and (absolute == 0 or now < absolute):
        state = "active"
    elif now < grace_until:
        state = "grace"
    else:
        raise ValueError(f"{name}: a vector's session must be live at its read")
    out = {
        "v": 1,
        "subject": s["subject"],
        "created": s["created"],
        "version": s["version"],
        "state": state,
        "last_access": s["last_access"],
        "idle_deadline": idle_deadline,
        "absolute_deadline": absolute if absolute > 0 else -1,
        "grace_until": grace_until,
        "meta": dict(sorted(s["meta"])),
    }
    data = dict(sorted(s["data"]))
    if not nodata:
        if fields is None:
            out["data"] = data
        else:
            picked = {}
            for f in fields:
                if f in data and f not in picked:
                    picked[f] = data[f]
            out["data"] = picked
    packed = msgpack.packb(out, use_bin_type=True)

    def hx(v):
        if isinstance(v, bytes):
            return H(v)
        if isinstance(v, dict):
            return [[H(k), H(x)] for k, x in v.items()]
        return v

    return {
        "name": name,
        "note": note,
        "session": {
            "subject": H(s["subject"]),
            "created": s["created"],
            "version": s["version"],
            "last_access": s["last_access"],
            "idle": s["idle"],
            "absolute_deadline": s["absolute_deadline"],
            "grace": s["grace"],
            "meta": [[H(k), H(v)] for k, v in s["meta"]],
            "data": [[H(k), H(v)] for k, v in s["data"]],
        },
        "now": now,
        "read": {"fields": None if fields is None else [H(f) for f in fields], "nodata": nodata},
        "expected": {k: hx(v) for k, v in out.items()},
        "packed_hex": packed.hex(),
    }


T0 = 1796452928844
BASE = {
    "subject": b"user42",
    "created": T0,
    "version": 3,
    "last_access": T0 + 5000,
    "idle": 1800000,
    "absolute_deadline": T0 + 604800000,
    "grace": 60000,
    "meta": [(b"ip", b"10.0.0.7"), (b"ua", b"curl/8")],
    "data": [(b"theme", b"dark"), (b"cart", b"3")],
}

cases = [
    case("full", BASE, T0 + 6000, note="every entry; data and meta in ascending name order"),
    case("nodata", BASE, T0 + 6000, nodata=True, note="NODATA: 10 entries, no data"),
    case("fields", BASE, T0 + 6000, fields=[b"theme", b"nope", b"theme", b"cart"],
         note="FIELDS 4 theme nope theme cart: present fields once each, in the order asked"),
    case("fields-none-present", BASE, T0 + 6000, fields=[b"nope"], note="an empty data map"),
    case(
        "grace-no-absolute",
        {**BASE, "subject": b"", "absolute_deadline": 0, "meta": [], "data": [], "grace": 1000,
         "last_access": T0, "idle": 1000},
        T0 + 1500,
        note="state grace; absolute_deadline -1 (negative fixint); empty subject, meta and data",
    ),
    case(
        "small-integers",
        {**BASE, "created": 0, "version": 1, "last_access": 200, "idle": 1000, "absolute_deadline": 0,
         "grace": 65536 - 1200},
        300,
        note="positive fixint, uint8, uint16 and uint32 forms",
    ),
    case(
        "binary-and-sizes",
        {**BASE, "subject": b"\x00\xff\xfe", "version": 70000,
         "meta": [(b"m%02d" % i, b"x" * i) for i in range(16)],
         "data": [(b"\x00", b""), (b"big", bytes(range(256)) + b"z" * 44), (b"\xff\x80", b"\r\n")]},
        T0 + 6000,
        note="non-UTF-8 bytes, a 300-byte value (bin16), 16 meta entries (map16)",
    ),
]

print(json.dumps({"layout": 1, "generator": "tests/vectors/make_packed.py (msgpack-python)", "cases": cases},
                 indent=1))
