"""Fuzzing the input edges (hypothesis): CSV loader, message decoder, TOML config loader.

Contract under test: any input gives either a valid result or the project's own error
type (``InputDataError``, ``ProtocolAbort``, ``ConfigError``) with a readable one-line
message; never another exception, a hang (each call runs under a 10 s alarm) or partial
output. The bugs fuzzing found are fixed and pinned by the regression tests at the end.

Examples per run (max_examples): CSV 250 byte strings + 250 texts + 400 near-valid + 100
valid tables; decoder 800 byte strings + 400 mutated envelopes + 500 tensor messages;
config 250 TOML-ish files + 300 [training] tables: 3250 in all, about 15 s of CPU.
"""

from __future__ import annotations

import math
import random
import signal
import string
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.config import load_toml, settings_from
from federation.proto import vfl_pb2
from federation.protocol.errors import ConfigError, InputDataError, ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag, TrainSettings
from federation.transport import wire
from parties.data import PartyData, load_party_csv

T = TypeVar("T")
pytestmark = pytest.mark.filterwarnings("ignore:Data type alias 'a':DeprecationWarning")
CALL_LIMIT = 10.0  # seconds: a call that takes longer counts as a hang
BASE = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def fuzz(examples: int) -> settings:
    return settings(BASE, max_examples=examples)


class Hang(Exception):
    pass


@contextmanager
def bounded(seconds: float = CALL_LIMIT) -> Iterator[None]:
    """Raise ``Hang`` in this (main) thread if the block runs longer than ``seconds``."""
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"call did not return within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(message: str) -> bool:
    return bool(message.strip()) and "\n" not in message and "\r" not in message


# -- the CSV loader ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-csv-") as name:
        yield Path(name)


def _load(workdir: Path, content: bytes, label: str | None) -> PartyData | None:
    """Load ``content`` as a party CSV; None if refused with a proper InputDataError."""
    path = workdir / "party.csv"
    path.write_bytes(content)
    try:
        with bounded():
            data = load_party_csv(path, "id", label)
    except InputDataError as exc:
        message = str(exc)
        assert one_line(message), repr(message)
        assert str(path) in message, message
        return None
    except Hang:
        raise
    except Exception as exc:  # any other type is the failure looked for
        raise AssertionError(f"{type(exc).__name__}: {exc} for {content[:200]!r}") from exc
    finally:
        assert sorted(p.name for p in workdir.iterdir()) == ["party.csv"], "loader wrote files"
    _check_party_data(data, path, label)
    return data


def _check_party_data(data: PartyData, path: Path, label: str | None) -> None:
    n = len(data.ids)
    assert isinstance(data, PartyData) and data.path == str(path)
    assert n >= 1 and all(isinstance(i, str) and i.strip() == i and i for i in data.ids)
    assert len(set(data.ids)) == n, "duplicate IDs accepted"
    assert data.features and all(isinstance(f, str) for f in data.features)
    assert "id" not in data.features and (label is None or label not in data.features)
    assert data.x.dtype == np.float64 and data.x.shape == (n, len(data.features))
    assert np.isfinite(data.x).all()
    if label is None:
        assert data.y is None
    else:
        assert data.y is not None and data.y.shape == (n,) and set(np.unique(data.y)) <= {0, 1}


CSV_CHARS = ',"\n\r \t;\ufeff\x00idyx0123456789.-+eEnaINF' + "'"


@fuzz(250)
@given(content=st.binary(max_size=600), label=st.sampled_from([None, "y"]))
def test_csv_loader_on_arbitrary_bytes(workdir: Path, content: bytes, label: str | None) -> None:
    _load(workdir, content, label)


@fuzz(250)
@given(text=st.text(alphabet=st.sampled_from(CSV_CHARS) | st.characters(), max_size=300),
       header=st.sampled_from(["", "id,x\n", "id,y,x\n", "\ufeffid,y,x1,x2\n"]),
       label=st.sampled_from([None, "y"]))
def test_csv_loader_on_arbitrary_text(workdir: Path, text: str, header: str,
                                      label: str | None) -> None:
    _load(workdir, (header + text).encode("utf-8", errors="surrogatepass"), label)


# Cells of the near-valid tables; hypothesis draws the structure and a seed, the cells come
# from random.Random(seed) (fewer draws per example: ~10x more examples in the time budget).
SPECIAL_NUMBERS = ["0", "1", "-0", "1e3", " 2.5 ", "+3", ".5", "5.", "1E-7", "0001", "-1.5e-300",
                   "1.7976931348623157e308", "4.9e-324"]
BAD_CELLS = ["", "abc", "nan", "NaN", "inf", "-inf", "1e400", "0x10", "1_000", "1,5", '"7"',
             '"8,9"', '"', "NULL", "None", "#", "1 2", "\ufeff1", "\u0663", "\uff11", "9" * 400,
             "1" + "0" * 5000, "\x00", "'3'", "\\N"]
IDS = ["a", "b", "c", "a ", " b", "007", "7", "7.0", "", '"a"', "a,b", "\u00e9", "x" * 20000]
LABELS = ["0", "1", " 1", "1.0", "0.0", "2", "-1", "", "yes", "0.5", "1e0", '"1"']
HEADER_NAMES = st.sampled_from(["x1", "x2", "x1", "id", "y", " x3", '"x 4"', "x,5", "", "Y",
                                "\ufeffid", "\u00e9", "x\ty", "id ", '"y"'])


def _number(rnd: random.Random) -> str:
    kind = rnd.randrange(4)
    if kind == 0:
        return repr(rnd.uniform(-1e6, 1e6))
    if kind == 1:
        return str(rnd.randint(-10**6, 10**6))
    if kind == 2:
        return repr(rnd.gauss(0, 1) * 10.0 ** rnd.randint(-300, 300))
    return rnd.choice(SPECIAL_NUMBERS)


@st.composite
def near_valid_csv(draw: st.DrawFn) -> tuple[bytes, str | None]:
    label = draw(st.sampled_from([None, "y"]))
    features = draw(st.lists(HEADER_NAMES, min_size=0, max_size=4))
    header = ["id"] + (["y"] if label else []) + features
    if draw(st.booleans()):
        header = draw(st.permutations(header))
    n_rows = draw(st.integers(1, 12))
    bad_rate = draw(st.sampled_from([0.0, 0.05, 0.3]))
    mutation_rate = draw(st.sampled_from([0.0, 0.1, 0.4]))
    duplicate_rate = draw(st.sampled_from([0.0, 0.2]))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    rows: list[str] = []
    for r in range(n_rows):
        row = []
        for name in header:
            if name in ("id", "\ufeffid"):
                cell = rnd.choice(IDS) if rnd.random() < bad_rate else f"e{r}"
                if rows and rnd.random() < duplicate_rate:
                    cell = f"e{rnd.randrange(r)}" if r else cell
            elif name == "y":
                cell = rnd.choice(LABELS) if rnd.random() < bad_rate else rnd.choice("01")
            else:
                cell = rnd.choice(BAD_CELLS) if rnd.random() < bad_rate else _number(rnd)
            row.append(cell)
        if rnd.random() < mutation_rate:
            mutation = rnd.choice(["drop", "extra", "blank", "quote", "split"])
            if mutation == "drop" and row:
                row.pop(rnd.randrange(len(row)))
            elif mutation == "extra":
                row.append(_number(rnd))
            elif mutation == "quote" and row:
                i = rnd.randrange(len(row))
                row[i] = '"' + row[i].replace('"', '""') + '"'
            elif mutation == "split" and row:
                row[rnd.randrange(len(row))] += "\n"
            elif mutation == "blank":
                row = []
        rows.append(",".join(row))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join([",".join(header), *rows]) + draw(st.sampled_from([newline, ""]))
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text.encode("utf-8"), label


@fuzz(400)
@given(case=near_valid_csv())
def test_csv_loader_on_near_valid_tables(workdir: Path, case: tuple[bytes, str | None]) -> None:
    _load(workdir, *case)


@st.composite
def valid_table(draw: st.DrawFn) -> tuple[str, list[str], list[str], np.ndarray, list[int] | None]:
    labelled = draw(st.booleans())
    k = draw(st.integers(1, 4))
    features = [f"f{j}" for j in range(k)]
    ids = draw(st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-_.:",
                                min_size=1, max_size=10), min_size=1, max_size=15,
                        unique=True))
    values = draw(st.lists(st.lists(st.floats(-1e12, 1e12, allow_nan=False, width=64),
                                    min_size=k, max_size=k),
                           min_size=len(ids), max_size=len(ids)))
    labels = draw(st.lists(st.integers(0, 1), min_size=len(ids), max_size=len(ids))) \
        if labelled else None
    header = ["id"] + (["y"] if labelled else []) + features
    lines = [",".join(header)]
    for i, ident in enumerate(ids):
        cells = [ident] + ([str(labels[i])] if labels is not None else [])
        lines.append(",".join(cells + [repr(v) for v in values[i]]))
    return "\n".join(lines) + "\n", ids, features, np.array(values, dtype=np.float64), labels


@fuzz(100)
@given(table=valid_table())
def test_csv_loader_reads_every_valid_table_exactly(
        workdir: Path, table: tuple[str, list[str], list[str], np.ndarray, list[int] | None]
) -> None:
    text, ids, features, x, labels = table
    data = _load(workdir, text.encode(), "y" if labels is not None else None)
    assert data is not None, "a valid table was refused"
    assert data.ids == ids and data.features == features
    np.testing.assert_array_equal(data.x, x)
    if labels is not None:
        assert data.y is not None and data.y.tolist() == labels


# -- the message decoder ----------------------------------------------------------------------
def _decode(data: bytes) -> Envelope | None:
    try:
        with bounded():
            env = wire.envelope_from_bytes(data)
    except ProtocolAbort as exc:
        assert one_line(str(exc)), repr(str(exc))
        return None
    except Hang:
        raise
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} for {data[:200]!r}") from exc
    assert isinstance(env, Envelope) and isinstance(env.sender, Role)
    for arr in env.tensors.values():
        assert isinstance(arr, np.ndarray) and arr.dtype.kind in "uifU" and arr.ndim <= 4
    return env


@fuzz(800)
@given(data=st.binary(max_size=400))
def test_decoder_on_arbitrary_bytes(data: bytes) -> None:
    _decode(data)


JOB_NAME = "job-fuzz"
DTYPES = ["<u8", "<i8", "<f8", "|u1", "<i4", "<f4", "<U5", ">f8"]


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    tensors = {}
    for name in draw(st.lists(st.sampled_from(["F", "z", "L", "E", "W", "u", "reason"]),
                              max_size=3, unique=True)):
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        size = int(np.prod(shape)) if shape else 1
        if dtype.kind == "U":
            words = ["", "a", "grid", "\u00e9t\u00e9", "\U0001f600", "x\x00y"]
            flat = np.array([words[i] for i in rng.integers(0, len(words), size)], dtype=dtype)
        else:
            flat = np.frombuffer(rng.bytes(size * dtype.itemsize), dtype=dtype).copy()
        tensors[name] = flat.reshape(shape)
    return Envelope(draw(st.sampled_from(["", JOB_NAME, "j\u00e9", "a" * 200])),
                    Tag(draw(st.sampled_from([0, 1, 7, -1, 2**62, -2**63, 2**63 - 1])),
                        draw(st.sampled_from(["fit", "", "abort", "masked-x", "\u00e9"]))),
                    draw(st.sampled_from(list(Role))), tensors)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Envelope, bytes, bool]:
    env = draw(envelopes())
    data = bytearray(wire.envelope_to_bytes(env))
    changed = False
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "dup"]))
        if not data and how != "insert":
            continue
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            data[i] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[i:]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            data[i:i] = data[i:i + draw(st.integers(1, 16))]
        changed = True
    return env, bytes(data), changed


@fuzz(400)
@given(case=mutated())
def test_decoder_on_mutated_valid_envelopes(case: tuple[Envelope, bytes, bool]) -> None:
    env, data, changed = case
    got = _decode(data)
    if not changed:  # the control: an intact message decodes to what was sent
        assert got is not None and got.job_id == env.job_id and got.tag == env.tag
        assert got.sender is env.sender and set(got.tensors) == set(env.tensors)
        for name, arr in env.tensors.items():
            np.testing.assert_array_equal(got.tensors[name], arr.reshape(-1)
                                          if arr.ndim == 0 else arr)
            # Sent little-endian; a 0-d array travels as shape (1,) (np.ascontiguousarray).
            assert got.tensors[name].dtype == arr.dtype.newbyteorder("<")


DTYPE_TEXT = st.one_of(st.sampled_from(
    ["<u8", "<i8", "<f8", "|u1", "<U5", "U0", "|O", "O", "V8", "<M8[s]", "<m8", "c16", "?",
     "S4", "a", "i4,i4", "(2,)i4", "float128", "<f16", "e", "uint65", "", " ", "f8 ", "<i4>",
     "U2000000000000", "U99999999999999999999"]), st.text(max_size=8))
SHAPES = st.lists(st.one_of(st.integers(-3, 6), st.sampled_from([0, 2**31, 2**40, 2**62,
                                                                  2**63 - 1, -2**63])),
                  max_size=6)


@fuzz(500)
@given(dtype=DTYPE_TEXT, shape=SHAPES, data=st.binary(max_size=64),
       name=st.text(max_size=6))
def test_tensor_decoder_on_arbitrary_tensor_messages(dtype: str, shape: list[int], data: bytes,
                                                     name: str) -> None:
    tensor = vfl_pb2.Tensor(name=name, dtype=dtype, shape=shape, data=data)
    try:
        with bounded():
            arr = wire.tensor_from_proto(tensor)
    except ProtocolAbort as exc:
        assert one_line(str(exc)) and repr(name) in str(exc), str(exc)
        return
    except Hang:
        raise
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} for {tensor!r}") from exc
    assert arr.dtype.kind in "uifU" and arr.nbytes == len(data)
    assert arr.shape == tuple(shape)


# -- the TOML config loader -------------------------------------------------------------------
TRAINING_KEYS = [f.name for f in TrainSettings.__dataclass_fields__.values()]
SECTIONS = ["node", "tls", "data", "training", "job", "bogus", "Training"]
TOML_VALUES = st.one_of(
    st.integers(-2**63, 2**63 - 1).map(str), st.sampled_from(["0", "1", "-1", "1_000", "0x1F"]),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda v: "nan" if math.isnan(v) else ("inf" if v == math.inf else
                                               ("-inf" if v == -math.inf else repr(v)))),
    st.sampled_from(["true", "false", '"local"', '"shared"', '"adam"', '"sgd"', '"train"',
                     '"score"', '"own"', '"none"', "1979-05-27", "07:32:00",
                     "1979-05-27T07:32:00Z", "[]", "[1, 2]", '["a", 1]', "{}", "{ a = 1 }",
                     '"""multi\nline"""', "'lit'", '"\\u00e9"', '"\\x"', "1e999", "9" * 40,
                     "[[[[]]]]", "+inf", "-0.0", "0.1e-3", '""']),
    st.text(alphabet=string.printable, max_size=12))


@st.composite
def toml_text(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["section", "pair", "pair", "pair", "junk", "array_table"]))
        if kind == "section":
            lines.append(f"[{draw(st.sampled_from(SECTIONS))}]")
        elif kind == "array_table":
            lines.append(f"[[{draw(st.sampled_from(SECTIONS))}]]")
        elif kind == "pair":
            key = draw(st.one_of(st.sampled_from(TRAINING_KEYS + [
                "role", "job_id", "listen", "out", "dir", "path", "deadline", "barrier_timeout",
                "training.epochs", '"quoted key"']), st.text(alphabet=string.ascii_lowercase,
                                                             min_size=1, max_size=6)))
            lines.append(f"{key} = {draw(TOML_VALUES)}")
        else:
            lines.append(draw(st.text(max_size=20)))
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""]))


@pytest.fixture(scope="module")
def config_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-toml-") as name:
        yield Path(name)


def _load_config(config_dir: Path, content: bytes) -> TrainSettings | None:
    path = config_dir / "node.toml"
    path.write_bytes(content)
    try:
        with bounded():
            raw = load_toml(path)
            result = settings_from(raw.get("training", {}))
    except ConfigError as exc:
        assert one_line(str(exc)), repr(str(exc))
        return None
    except Hang:
        raise
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} for {content[:300]!r}") from exc
    assert isinstance(result, TrainSettings)
    return result


@fuzz(250)
@given(text=toml_text(), raw_bytes=st.one_of(st.none(), st.binary(max_size=40)))
def test_config_loader_on_toml_ish_text(config_dir: Path, text: str,
                                        raw_bytes: bytes | None) -> None:
    content = text.encode("utf-8", errors="surrogatepass")
    _load_config(config_dir, content + raw_bytes if raw_bytes is not None else content)


PY_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                      st.text(max_size=8), st.lists(st.integers(), max_size=2),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@fuzz(300)
@given(table=st.dictionaries(st.one_of(st.sampled_from(TRAINING_KEYS), st.text(max_size=6)),
                             PY_VALUES, max_size=5))
def test_settings_from_on_arbitrary_training_tables(table: dict[str, Any]) -> None:
    try:
        with bounded():
            result = settings_from(table)
    except ConfigError as exc:
        assert one_line(str(exc)), repr(str(exc))
        return
    except Hang:
        raise
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} for {table!r}") from exc
    assert isinstance(result, TrainSettings)


# -- bugs found by fuzzing, pinned as regression tests -----------------------------------
def _expect(call: Callable[[], T], kind: type[BaseException], *fragments: str) -> str:
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert one_line(message), repr(message)
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("content", ["\n", "   \n \n", "\r\n\r\n"])
def test_blank_csv_is_an_input_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "blank.csv"
    path.write_text(content)
    _expect(lambda: load_party_csv(path, "id", None), InputDataError, str(path))


def test_missing_column_message_stays_one_line(tmp_path: Path) -> None:
    path = tmp_path / "newline_header.csv"
    path.write_text('"i\nd",x\na,1\n')
    _expect(lambda: load_party_csv(path, "id", None), InputDataError, str(path),
            "missing ID column 'id'")


def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path: Path) -> None:
    path = tmp_path / "shifted.csv"
    path.write_text("id,x\na,1,2\nb,3,4\n")
    _expect(lambda: load_party_csv(path, "id", None), InputDataError, str(path))


def test_empty_tensor_with_huge_dimensions_is_a_protocol_abort() -> None:
    tensor = vfl_pb2.Tensor(name="F", dtype="<u8", shape=[0, 2**62, 2**62], data=b"")
    _expect(lambda: wire.tensor_from_proto(tensor), ProtocolAbort, "tensor 'F'")


@pytest.mark.parametrize("dtype", ["01", "3&s", ".M9,)", "i4,(2"])
def test_unparsable_dtype_is_a_protocol_abort(dtype: str) -> None:
    tensor = vfl_pb2.Tensor(name="F", dtype=dtype, shape=[1], data=b"\0" * 8)
    _expect(lambda: wire.tensor_from_proto(tensor), ProtocolAbort, "tensor 'F'")


def test_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[training]\n# caf\xe9\nepochs = 3\n")
    _expect(lambda: load_toml(path), ConfigError, str(path))


def test_deeply_nested_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("[training]\nx = " + "[" * 3000 + "]" * 3000 + "\n")
    _expect(lambda: load_toml(path), ConfigError, str(path))


def test_huge_integer_for_a_float_setting_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("[training]\nlearning_rate = 1" + "0" * 400 + "\n")
    _expect(lambda: settings_from(load_toml(path)["training"]), ConfigError, "learning_rate")


def test_config_value_of_the_wrong_type_is_a_config_error(tmp_path: Path) -> None:
    from federation.config import tls_from

    path = tmp_path / "types.toml"
    path.write_text("[tls]\ndir = 5\n")
    _expect(lambda: tls_from(load_toml(path)["tls"], Role.GRID), ConfigError, "dir")
