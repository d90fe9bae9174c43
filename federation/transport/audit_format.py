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
_tensors: dict[tuple[tuple[str, str, tuple[int, ...]], ...], tuple[str, str]] = {}


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


def _tensor_texts(tensors: Any) -> tuple[str, str] | None:
    """(compact, spaced) JSON of the tensor descriptions, or None (not the usual form)."""
    key = _tensor_key(tensors)
    if key is None:
        return None
    out = _tensors.get(key)
    if out is None:
        compact = ",".join(f'{{"dtype":{_text(d)},"name":{_text(n)},"shape":'
                           f'[{",".join(map(str, s))}]}}' for n, d, s in key)
        spaced = ", ".join(f'{{"dtype": {_text(d)}, "name": {_text(n)}, "shape": '
                           f'[{", ".join(map(str, s))}]}}' for n, d, s in key)
        out = (f"[{compact}]", f"[{spaced}]")
        if len(_tensors) < _CACHE_LIMIT:
            _tensors[key] = out
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
    if (type(seq) is not int or type(rnd) is not int or type(size) is not int
            or type(when) is not float or not math.isfinite(when)):
        return None
    strs = [entry[k] for k in ("direction", "job", "node", "peer", "prev", "sha256", "step")]
    if any(type(s) is not str for s in strs):
        return None
    tensors = _tensor_texts(entry["tensors"])
    if tensors is None:
        return None
    direction, job, node, peer, prev, sha, step = (_text(s) for s in strs)
    t = repr(when)
    canon = (f'{{"bytes":{size},"direction":{direction},"job":{job},"node":{node},'
             f'"peer":{peer},"prev":{prev},"round":{rnd},"seq":{seq},"sha256":{sha},'
             f'"step":{step},"tensors":{tensors[0]},"time":{t}}}')
    head = f'{{"bytes": {size}, "direction": {direction}, "hash": "'
    tail = (f'", "job": {job}, "node": {node}, "peer": {peer}, "prev": {prev}, '
            f'"round": {rnd}, "seq": {seq}, "sha256": {sha}, "step": {step}, '
            f'"tensors": {tensors[1]}, "time": {t}}}')
    return canon.encode(), head, tail
