"""Value codecs: how a store turns ``data`` into the module's field -> bytes map.

Each data field is encoded on its own, so ``set`` can change one field
without reading the others (the module merges per field).

- `MsgpackCodec` (default): any msgpack-able value per field (msgspec).
- `JsonCodec`: JSON per field (readable with ``redis-cli``).
- `RawCodec`: values are bytes, passed through.
- `SchemaCodec(Model)`: ``data`` is an instance of a `msgspec.Struct`, a
  dataclass or a pydantic model; every write is validated against the
  field's type and every read builds (validates) the model, so a bad payload
  fails at the edge with `CodecError`.

No codec uses pickle. Errors never carry the values themselves.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from .errors import CodecError

D = TypeVar("D")
D_co = TypeVar("D_co", covariant=True)
M = TypeVar("M")

__all__ = ["Codec", "JsonCodec", "MsgpackCodec", "RawCodec", "SchemaCodec"]


class Codec(Protocol[D_co]):
    """What a store needs from a codec. ``D`` is the type of ``Session.data``."""

    def encode_data(self, data: Any) -> dict[bytes, bytes]:
        """The whole data (create, cas): a ``D`` or a mapping of field name to value."""
        ...

    def encode_fields(self, fields: Mapping[str, Any]) -> dict[bytes, bytes]:
        """Some fields (set): each validated on its own."""
        ...

    def decode_data(self, raw: Mapping[bytes, bytes]) -> D_co:
        """The stored map (all fields, or those a ``fields=`` read asked for)."""
        ...


def field_name(name: Any) -> bytes:
    if not isinstance(name, str):
        raise CodecError(f"data field names are str, not {type(name).__name__}")
    return name.encode()


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class _PerValue:
    """A codec that encodes each value on its own; ``data`` is a read-only mapping."""

    _enc: Callable[[Any], bytes]
    _dec: Callable[[bytes], Any]

    def encode_data(self, data: Any) -> dict[bytes, bytes]:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise CodecError(f"data must be a mapping of field name to value, not {type(data).__name__}")
        return self.encode_fields(data)

    def encode_fields(self, fields: Mapping[str, Any]) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for k, v in fields.items():
            name = field_name(k)
            try:
                out[name] = self._enc(v)
            except (TypeError, ValueError, msgspec.EncodeError) as e:
                raise CodecError(f"data field {k!r} cannot be encoded: {type(e).__name__}") from None
        return out

    def decode_data(self, raw: Mapping[bytes, bytes]) -> Mapping[str, Any]:
        dec = self._dec
        try:
            return MappingProxyType({k.decode(): dec(v) for k, v in raw.items()})
        except (msgspec.DecodeError, ValueError):
            pass
        for k, v in raw.items():  # say which field
            try:
                dec(v)
            except (msgspec.DecodeError, ValueError) as e:
                raise CodecError(f"stored data field {_name(k)!r} does not decode: {e}") from None
        return MappingProxyType({_name(k): dec(v) for k, v in raw.items()})


class MsgpackCodec(_PerValue):
    """MessagePack per field (msgspec). The default."""

    def __init__(self) -> None:
        self._enc = msgspec.msgpack.Encoder().encode
        self._dec = msgspec.msgpack.Decoder().decode


class JsonCodec(_PerValue):
    """JSON per field (msgspec)."""

    def __init__(self) -> None:
        self._enc = msgspec.json.Encoder().encode
        self._dec = msgspec.json.Decoder().decode


def _raw_enc(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    raise TypeError("raw values are bytes or str")


class RawCodec(_PerValue):
    """Values are bytes (str is stored as UTF-8); reads give bytes."""

    def __init__(self) -> None:
        self._enc = _raw_enc
        self._dec = bytes


class SchemaCodec(Generic[M]):
    """``data`` is an instance of ``model``: a `msgspec.Struct`, a dataclass or a
    pydantic (v2) model. Each attribute is one data field, MessagePack-encoded.

    Writes validate each field against its type (``set`` checks only the
    fields it names; unknown names are refused); reads build the model from
    the stored fields, so a missing required field or a wrong type raises
    `CodecError`. With ``fields=`` reads, fields not asked for must have
    defaults in the model.
    """

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._kind: str
        self._enc = msgspec.msgpack.Encoder()
        self._field_dec: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        self._adapters: dict[str, Any] = {}
        if isinstance(model, type) and issubclass(model, msgspec.Struct):
            self._kind = "msgspec"
            hints = typing.get_type_hints(model)
            self._names = list(model.__struct_fields__)
            self._types = {n: hints[n] for n in self._names}
        elif dataclasses.is_dataclass(model):
            self._kind = "dataclass"
            hints = typing.get_type_hints(model)
            self._names = [f.name for f in dataclasses.fields(model)]
            self._types = {n: hints[n] for n in self._names}
        elif hasattr(model, "model_fields") and hasattr(model, "model_validate"):
            from pydantic import TypeAdapter

            self._kind = "pydantic"
            fields: dict[str, Any] = model.model_fields  # type: ignore[attr-defined]
            self._names = list(fields)
            self._types = {n: fields[n].annotation for n in self._names}
            self._adapters = {n: TypeAdapter(t) for n, t in self._types.items()}
        else:
            raise TypeError("SchemaCodec takes a msgspec.Struct, a dataclass or a pydantic model class")
        if self._kind != "pydantic":
            self._field_dec = {n: msgspec.msgpack.Decoder(t) for n, t in self._types.items()}
        self._bnames = {n: n.encode() for n in self._names}

    # -- write -------------------------------------------------------------------
    def _validate_field(self, name: str, value: Any) -> bytes:
        if name not in self._types:
            raise CodecError(f"{self.model.__name__} has no field {name!r}")
        try:
            if self._kind == "pydantic":
                ad = self._adapters[name]
                return self._enc.encode(ad.dump_python(ad.validate_python(value), mode="json"))
            v = msgspec.convert(value, self._types[name], from_attributes=True)
            return self._enc.encode(v)
        except (msgspec.ValidationError, msgspec.EncodeError, TypeError, ValueError) as e:
            raise CodecError(f"{self.model.__name__}.{name}: {_describe(e)}") from None

    def encode_data(self, data: Any) -> dict[bytes, bytes]:
        if data is None:
            data = {}
        if isinstance(data, self.model):
            obj: Any = data
        elif isinstance(data, Mapping):
            obj = self._build(dict(data))
        else:
            raise CodecError(f"data must be a {self.model.__name__} or a mapping, not {type(data).__name__}")
        return {self._bnames[n]: self._validate_field(n, getattr(obj, n)) for n in self._names}

    def encode_fields(self, fields: Mapping[str, Any]) -> dict[bytes, bytes]:
        return {field_name(k): self._validate_field(k, v) for k, v in fields.items()}

    # -- read ---------------------------------------------------------------------
    def _build(self, values: dict[str, Any]) -> M:
        try:
            if self._kind == "pydantic":
                return typing.cast(M, self.model.model_validate(values))  # type: ignore[attr-defined]
            return msgspec.convert(values, self.model, from_attributes=True)
        except (msgspec.ValidationError, TypeError, ValueError) as e:
            raise CodecError(f"{self.model.__name__}: {_describe(e)}") from None

    def decode_data(self, raw: Mapping[bytes, bytes]) -> M:
        values: dict[str, Any] = {}
        for k, v in raw.items():
            name = _name(k)
            if name not in self._types:
                continue  # a field the schema does not know (an older or newer writer)
            try:
                if self._kind == "pydantic":
                    values[name] = msgspec.msgpack.decode(v)
                else:
                    values[name] = self._field_dec[name].decode(v)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise CodecError(f"stored {self.model.__name__}.{name}: {e}") from None
        if self._kind == "pydantic":
            return self._build(values)
        try:
            return self.model(**values)
        except TypeError as e:
            raise CodecError(f"stored {self.model.__name__}: {e}") from None


def _describe(e: BaseException) -> str:
    errs = getattr(e, "errors", None)
    if callable(errs):
        try:
            # pydantic: location and message, never the input value
            items = errs(include_input=False, include_url=False)
            return "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in items)
        except TypeError:
            pass
    return str(e) if isinstance(e, (msgspec.ValidationError, msgspec.DecodeError)) else type(e).__name__
