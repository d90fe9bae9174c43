"""Input checks shared by every PSI protocol: the error type, keys, domains, duplicates.

Assumes nothing; pure functions. Error messages name indices, never ID values.
"""

from __future__ import annotations

from collections.abc import Sequence

KEY_BYTES = 32


class PsiError(ValueError):
    """A PSI input is malformed: bad key, bad domain, duplicate ID, invalid point or tag.

    Parameters
    ----------
    reason : str
        What is wrong; never contains an ID value.
    index : int or None
        Row index of the first offending element, if there is one; the message ends
        with "at index N".
    """

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason if index is None else f"{reason} at index {index}")
        self.reason = reason
        self.index = index

    def shifted(self, offset: int) -> PsiError:
        """The same error with its index moved by ``offset`` (for an error in a chunk)."""
        return PsiError(self.reason, None if self.index is None else self.index + offset)

    def __reduce__(self) -> tuple[type[PsiError], tuple[str, int | None]]:
        # Keep ``index`` when the error crosses a process boundary.
        return (type(self), (self.reason, self.index))


def check_key(key: bytes) -> None:
    """Raise ``PsiError`` unless ``key`` is 32 bytes."""
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise PsiError(f"expected a {KEY_BYTES}-byte key, got {type(key).__name__}")


def check_domain(domain: bytes) -> None:
    """Raise ``PsiError`` unless ``domain`` is 1 to 65535 bytes."""
    if not isinstance(domain, bytes) or not 0 < len(domain) < 2**16:
        raise PsiError("expected a non-empty domain of < 65536 bytes naming the job")


def domain_prefix(tag: bytes, domain: bytes) -> bytes:
    """``tag || len(domain) as 2 bytes || domain``: no ID can trade bytes with the domain."""
    check_domain(domain)
    return tag + len(domain).to_bytes(2, "big") + domain


def first_duplicate(ids: Sequence[str]) -> int | None:
    """Index of the first ID that repeats an earlier one, or None if all are unique.

    Parameters
    ----------
    ids : sequence of str
        The IDs, in list order.

    Returns
    -------
    int or None
        The smallest ``i`` with ``ids[i] == ids[j]`` for some ``j < i``.
    """
    if len(set(ids)) == len(ids):
        return None
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if x in seen:
            return i
        seen.add(x)
    return None  # unreachable: the set was smaller than the list


def encode_ids(ids: Sequence[str]) -> list[bytes]:
    """UTF-8 of each ID.

    Raises
    ------
    PsiError
        A non-string ID, naming its index.
    """
    try:
        return [x.encode("utf-8") for x in ids]
    except (AttributeError, UnicodeEncodeError):
        pass
    for i, x in enumerate(ids):
        if not isinstance(x, str):
            raise PsiError(f"expected str IDs, got {type(x).__name__}", i)
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:
            raise PsiError("ID is not valid Unicode (lone surrogate)", i) from None
    raise PsiError("IDs could not be encoded")  # unreachable
