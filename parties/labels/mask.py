"""Desensitization of the identifiers that may appear in an output.

What it does: masks names (``张三丰`` -> ``张**``) and legal-person ID numbers
(``110101199003071234`` -> ``1101**********1234``), and replaces enterprise IDs by keyed hashes
(HMAC-SHA256 with a federation key) when the user asks for it.

What it assumes: masking is one-way display redaction, not anonymization; a keyed hash is
stable for one key, so two parties using the same key still join on the hashed IDs, and a
party without the key cannot test guesses against it.
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.schema import InputError


def mask_name(name: str) -> str:
    """Keep the first character and replace the rest by a fixed ``**`` (hides the length)."""
    return name[:1] + "**" if name else ""


def mask_id_number(number: str) -> str:
    """Keep the first 4 and last 4 characters, star the middle (18 chars -> 10 stars)."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_names(names: pd.Series) -> pd.Series:
    """Vectorized :func:`mask_name`."""
    return names.str[:1] + np.where(names.str.len() > 0, "**", "")


def read_key(spec: str) -> bytes:
    """Turn a ``--hash-ids-key`` value into key bytes: ``@PATH`` reads a file, else literal.

    Raises
    ------
    InputError
        If the file is missing or the key is shorter than 16 bytes.
    """
    if spec.startswith("@"):
        path = pathlib.Path(spec[1:])
        if not path.is_file():
            raise InputError(f"{path}: key file not found")
        key = path.read_bytes().strip()
    else:
        key = spec.encode("utf-8")
    if len(key) < 16:
        raise InputError("--hash-ids-key: key must be at least 16 bytes")
    return key


def hash_ids(ids: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 of each ID (UTF-8) under ``key``, as 64 lowercase hex characters."""
    return ids.map(lambda i: hmac.new(key, str(i).encode("utf-8"), hashlib.sha256).hexdigest())


def output_ids(ids: pd.Series, key: bytes | None) -> pd.Series:
    """The ID column as it may leave the party: hashed when a key is given, else as is."""
    return hash_ids(ids, key) if key is not None else ids.astype(str)
