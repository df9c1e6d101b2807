"""The two forms of one session: the fallback's hash and the module's
persisted record (what ``SESSION.IMPORT key <record>`` stores, with every
time absolute). ``migrate`` converts the first into the second.

The record is the module's encoding version 1 (``src/core/encoding.rs``):
a MessagePack array ``[1, subject, created, version, last_access, idle,
absolute_deadline, grace, flags, revoked_until, reason, meta, data]`` whose
``meta`` and ``data`` are the module's packed maps: entries sorted by name,
each ``varint(len name) varint(len value) name value``.

A tiny MessagePack writer and reader for exactly these shapes lives here,
so the conversion needs nothing but the standard library.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

REVOKED = 1  # the module's Flags::REVOKED
ENCODING_VERSION = 1


class NotASession(ValueError):
    """A hash under a session key that the fallback did not write."""


# --- MessagePack: ints, bin, str, arrays -------------------------------------


def _int(v: int) -> bytes:
    if 0 <= v < 0x80:
        return bytes([v])
    if -32 <= v < 0:
        return struct.pack(">b", v)
    if v >= 0:
        for fmt, tag, lim in ((">B", 0xCC, 1 << 8), (">H", 0xCD, 1 << 16), (">I", 0xCE, 1 << 32)):
            if v < lim:
                return bytes([tag]) + struct.pack(fmt, v)
        return b"\xcf" + struct.pack(">Q", v)
    return b"\xd3" + struct.pack(">q", v)


def _bin(v: bytes) -> bytes:
    n = len(v)
    if n < 1 << 8:
        return b"\xc4" + bytes([n]) + v
    if n < 1 << 16:
        return b"\xc5" + struct.pack(">H", n) + v
    return b"\xc6" + struct.pack(">I", n) + v


def unpack_strings(buf: bytes) -> list[bytes]:
    """An array of str/bin (what ``cmsgpack.pack`` writes for the meta field)."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(buf):
            raise NotASession("truncated meta")
        out = buf[pos : pos + n]
        pos += n
        return out

    t = take(1)[0]
    if 0x90 <= t <= 0x9F:
        count = t & 0x0F
    elif t == 0xDC:
        count = struct.unpack(">H", take(2))[0]
    elif t == 0xDD:
        count = struct.unpack(">I", take(4))[0]
    else:
        raise NotASession("meta is not an array")
    out = []
    for _ in range(count):
        t = take(1)[0]
        if 0xA0 <= t <= 0xBF:
            n = t & 0x1F
        elif t in (0xD9, 0xC4):
            n = take(1)[0]
        elif t in (0xDA, 0xC5):
            n = struct.unpack(">H", take(2))[0]
        elif t in (0xDB, 0xC6):
            n = struct.unpack(">I", take(4))[0]
        else:
            raise NotASession("meta entry is not a string")
        out.append(take(n))
    if pos != len(buf):
        raise NotASession("trailing bytes after meta")
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def flatmap(m: Mapping[bytes, bytes]) -> bytes:
    """The module's packed map of ``m``."""
    return b"".join(_varint(len(k)) + _varint(len(v)) + k + v for k, v in sorted(m.items()))


# --- hash -> record ----------------------------------------------------------


def split_hash(h: Mapping[bytes, bytes]) -> tuple[dict[bytes, bytes], dict[bytes, bytes], dict[bytes, bytes]]:
    """(header fields, meta, data) of a fallback hash."""
    head: dict[bytes, bytes] = {}
    data: dict[bytes, bytes] = {}
    for f, v in h.items():
        if f.startswith(b"d:"):
            data[f[2:]] = v
        else:
            head[f] = v
    if b"v" not in head:
        raise NotASession("no version field")
    meta_flat = unpack_strings(head[b"m"]) if head.get(b"m") else []
    meta = {meta_flat[i]: meta_flat[i + 1] for i in range(0, len(meta_flat) - 1, 2)}
    return head, meta, data


def record_of_hash(h: Mapping[bytes, bytes]) -> bytes:
    """The module record holding exactly the session the hash holds:
    identity, created, version, last access, timeouts and deadlines, meta,
    data; a tombstone stays a tombstone with its reason and its end."""
    head, meta, data = split_hash(h)
    try:
        num = {k: int(head[k.encode()]) for k in ("v", "c", "la", "i", "ad", "g")}
        revoked_until = int(head[b"ru"]) if b"ru" in head else 0
    except (KeyError, ValueError) as e:
        raise NotASession(f"bad header field: {e}") from None
    revoked = b"ru" in head
    fields = [
        _int(ENCODING_VERSION),
        _bin(head.get(b"s", b"")),
        _int(num["c"]),
        _int(num["v"]),
        _int(num["la"]),
        _int(num["i"]),
        _int(num["ad"]),
        _int(num["g"]),
        _int(REVOKED if revoked else 0),
        _int(revoked_until),
        _bin(head.get(b"rr", b"") if revoked else b""),
        _bin(b"" if revoked else flatmap(meta)),
        _bin(b"" if revoked else flatmap(data)),
    ]
    return bytes([0x90 | len(fields)]) + b"".join(fields)
