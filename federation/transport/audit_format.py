"""The two JSON texts of a message entry of the audit log, built once per entry.

An entry's hash is the SHA-256 of its canonical JSON (``json.dumps(body, sort_keys=True,
separators=(",", ":"))`` without ``hash`` and ``sig``) and its line in the file is
``json.dumps(entry, sort_keys=True)``. Encoding both with ``json.dumps`` cost ~30-40 us per
message entry (two encodings of a 13-field dict with nested tensor descriptions), most of
the log's share of an iteration. :func:`message_texts` builds the same two texts, byte for
byte, from pre-encoded pieces: the fields are the fixed set of a message entry (sorted by
hand), strings go through ``json.dumps`` once per distinct value (cached), the tensors'
descriptions once per distinct list. Anything else (a session mark, an unexpected type)
returns None and the caller encodes with ``json.dumps`` as before; the format of the file
and what is hashed do not change (``tests/unit/test_audit_format.py`` checks equality with
``json.dumps`` on random entries).
Assumes: ``json.dumps`` encodes a finite float with ``float.__repr__`` and escapes
non-ASCII (``ensure_ascii``), as CPython's does.
"""

from __future__ import annotations

import json
import math
from typing import Any

# The fields of a message entry without "hash", in sorted order ("hash" sorts after
# "direction"); values are filled in by message_texts.
MESSAGE_FIELDS = frozenset({"bytes", "direction", "job", "node", "peer", "prev", "round",
                            "seq", "sha256", "step", "tensors", "time"})
_TENSOR_FIELDS = frozenset({"name", "dtype", "shape"})
_CACHE_LIMIT = 4096
_strings: dict[str, str] = {}


def _text(value: str) -> str:
    """``json.dumps(value)`` for a str: quoted as is when plain ASCII letters and digits
    (hex digests), else cached (the log repeats few distinct other strings)."""
    if value.isascii() and value.isalnum():
        return f'"{value}"'
    out = _strings.get(value)
    if out is None:
        out = json.dumps(value)
        if len(_strings) < _CACHE_LIMIT:
            _strings[value] = out
    return out


def _tensor_key(tensors: Any) -> tuple[tuple[str, str, tuple[int, ...]], ...] | None:
    """The descriptions as a hashable key, None unless each is exactly {name, dtype, shape}
    with str, str and a list of plain ints."""
    if type(tensors) is not list:
        return None
    key = []
    for t in tensors:
        if type(t) is not dict or t.keys() != _TENSOR_FIELDS:
            return None
        name, dtype, shape = t["name"], t["dtype"], t["shape"]
        if type(name) is not str or type(dtype) is not str or type(shape) is not list:
            return None
        for s in shape:
            if type(s) is not int:
                return None
        key.append((name, dtype, tuple(shape)))
    return tuple(key)


def _tensor_texts(key: tuple[tuple[str, str, tuple[int, ...]], ...]) -> tuple[str, str]:
    """(compact, spaced) JSON of the tensor descriptions of ``_tensor_key``."""
    compact = ",".join(f'{{"dtype":{_text(d)},"name":{_text(n)},"shape":'
                       f'[{",".join(map(str, s))}]}}' for n, d, s in key)
    spaced = ", ".join(f'{{"dtype": {_text(d)}, "name": {_text(n)}, "shape": '
                       f'[{", ".join(map(str, s))}]}}' for n, d, s in key)
    return f"[{compact}]", f"[{spaced}]"


_STATIC = ("direction", "job", "node", "peer", "step")
_Frags = tuple[str, str, str, str, str]
_frags: dict[tuple[object, ...], _Frags] = {}


def _fragments(statics: tuple[str, ...], tensors: Any) -> _Frags | None:
    """The constant pieces of both texts for one (direction, job, node, peer, step,
    tensors), or None if the tensors are not of the usual form."""
    tkey = _tensor_key(tensors)
    if tkey is None:
        return None
    key = (statics, tkey)
    out = _frags.get(key)
    if out is None:
        compact, spaced = _tensor_texts(tkey)
        direction, job, node, peer, step = (_text(v) for v in statics)
        out = (f'"direction":{direction},"job":{job},"node":{node},"peer":{peer},',
               f'"step":{step},"tensors":{compact},',
               f', "direction": {direction}, "hash": "',
               f'", "job": {job}, "node": {node}, "peer": {peer}, "prev": ',
               f', "step": {step}, "tensors": {spaced}, "time": ')
        if len(_frags) < _CACHE_LIMIT:
            _frags[key] = out
    return out


def message_texts(entry: dict[str, Any]) -> tuple[bytes, str, str] | None:
    """(canonical JSON bytes to hash, line head, line tail) of a message entry, or None.

    The line of the entry with hash ``h`` is ``head + h + tail``; it equals
    ``json.dumps({**entry, "hash": h}, sort_keys=True)``. None when ``entry`` is not a
    message entry of the usual types (the caller then uses ``json.dumps``).
    """
    if entry.keys() != MESSAGE_FIELDS:
        return None
    seq, rnd, size, when = entry["seq"], entry["round"], entry["bytes"], entry["time"]
    prev, sha = entry["prev"], entry["sha256"]
    if (type(seq) is not int or type(rnd) is not int or type(size) is not int
            or type(when) is not float or not math.isfinite(when)
            or type(prev) is not str or type(sha) is not str):
        return None
    statics = (entry["direction"], entry["job"], entry["node"], entry["peer"], entry["step"])
    for value in statics:
        if type(value) is not str:
            return None
    frags = _fragments(statics, entry["tensors"])
    if frags is None:
        return None
    prev, sha, t = _text(prev), _text(sha), repr(when)
    canon = (f'{{"bytes":{size},{frags[0]}"prev":{prev},"round":{rnd},"seq":{seq},'
             f'"sha256":{sha},{frags[1]}"time":{t}}}')
    head = f'{{"bytes": {size}{frags[2]}'
    tail = (f'{frags[3]}{prev}, "round": {rnd}, "seq": {seq}, "sha256": {sha}'
            f'{frags[4]}{t}}}')
    return canon.encode(), head, tail
