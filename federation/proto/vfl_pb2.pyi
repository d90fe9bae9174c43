from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("job_id", "round", "step", "sender", "tensors")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    round: int
    step: str
    sender: str
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, job_id: _Optional[str] = ..., round: _Optional[int] = ..., step: _Optional[str] = ..., sender: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class DeliverReply(_message.Message):
    __slots__ = ("bytes_received",)
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    bytes_received: int
    def __init__(self, bytes_received: _Optional[int] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("size", "chunk")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    size: int
    chunk: bytes
    def __init__(self, size: _Optional[int] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class StreamReply(_message.Message):
    __slots__ = ("messages", "bytes")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    messages: int
    bytes: int
    def __init__(self, messages: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class DataPlaneRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DataPlaneReply(_message.Message):
    __slots__ = ("port",)
    PORT_FIELD_NUMBER: _ClassVar[int]
    port: int
    def __init__(self, port: _Optional[int] = ...) -> None: ...

class TrainSettings(_message.Message):
    __slots__ = ("mode", "epochs", "batch_size", "learning_rate", "optimizer", "l2", "l1", "momentum", "tolerance", "seed", "validation_fraction", "frac_bits", "task", "deadline_seconds", "feature_frac_bits", "feature_clip", "reveal_weights", "checkpoint_every", "psi", "model", "trees", "depth", "bins", "min_child_weight", "subsample", "early_stopping_rounds")
    MODE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    L1_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_CLIP_FIELD_NUMBER: _ClassVar[int]
    REVEAL_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TREES_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    MIN_CHILD_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SUBSAMPLE_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    l2: float
    l1: float
    momentum: float
    tolerance: float
    seed: int
    validation_fraction: float
    frac_bits: int
    task: str
    deadline_seconds: float
    feature_frac_bits: int
    feature_clip: float
    reveal_weights: str
    checkpoint_every: int
    psi: str
    model: str
    trees: int
    depth: int
    bins: int
    min_child_weight: float
    subsample: float
    early_stopping_rounds: int
    def __init__(self, mode: _Optional[str] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., optimizer: _Optional[str] = ..., l2: _Optional[float] = ..., l1: _Optional[float] = ..., momentum: _Optional[float] = ..., tolerance: _Optional[float] = ..., seed: _Optional[int] = ..., validation_fraction: _Optional[float] = ..., frac_bits: _Optional[int] = ..., task: _Optional[str] = ..., deadline_seconds: _Optional[float] = ..., feature_frac_bits: _Optional[int] = ..., feature_clip: _Optional[float] = ..., reveal_weights: _Optional[str] = ..., checkpoint_every: _Optional[int] = ..., psi: _Optional[str] = ..., model: _Optional[str] = ..., trees: _Optional[int] = ..., depth: _Optional[int] = ..., bins: _Optional[int] = ..., min_child_weight: _Optional[float] = ..., subsample: _Optional[float] = ..., early_stopping_rounds: _Optional[int] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("job_id", "role", "address", "n_rows", "n_columns")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    N_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    role: str
    address: str
    n_rows: int
    n_columns: int
    def __init__(self, job_id: _Optional[str] = ..., role: _Optional[str] = ..., address: _Optional[str] = ..., n_rows: _Optional[int] = ..., n_columns: _Optional[int] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("job_id", "peer_address", "dealer_seed", "settings", "max_message_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEALER_SEED_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    peer_address: str
    dealer_seed: bytes
    settings: TrainSettings
    max_message_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., peer_address: _Optional[str] = ..., dealer_seed: _Optional[bytes] = ..., settings: _Optional[_Union[TrainSettings, _Mapping]] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("job_id", "role", "round", "step", "values", "ring_values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class RingValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RING_VALUES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    role: str
    round: int
    step: str
    values: _containers.ScalarMap[str, float]
    ring_values: _containers.ScalarMap[str, int]
    def __init__(self, job_id: _Optional[str] = ..., role: _Optional[str] = ..., round: _Optional[int] = ..., step: _Optional[str] = ..., values: _Optional[_Mapping[str, float]] = ..., ring_values: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SyncReply(_message.Message):
    __slots__ = ("decision", "values", "reason")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DECISION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    decision: int
    values: _containers.ScalarMap[str, float]
    reason: str
    def __init__(self, decision: _Optional[int] = ..., values: _Optional[_Mapping[str, float]] = ..., reason: _Optional[str] = ...) -> None: ...

class DealRequest(_message.Message):
    __slots__ = ("job_id", "role", "epoch")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    role: str
    epoch: int
    def __init__(self, job_id: _Optional[str] = ..., role: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class DealReply(_message.Message):
    __slots__ = ("corrections",)
    CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    corrections: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, corrections: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("job_id", "role", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    role: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., role: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FailReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("job_id", "role", "tags")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    role: str
    tags: bytes
    def __init__(self, job_id: _Optional[str] = ..., role: _Optional[str] = ..., tags: _Optional[bytes] = ...) -> None: ...

class MatchReply(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: bytes
    def __init__(self, positions: _Optional[bytes] = ...) -> None: ...

class MatchPiece(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreResult(_message.Message):
    __slots__ = ("id", "status", "probability", "points", "band", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    probability: float
    points: float
    band: str
    error: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., probability: _Optional[float] = ..., points: _Optional[float] = ..., band: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ScoreReply(_message.Message):
    __slots__ = ("results", "session", "request")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ScoreResult]
    session: str
    request: int
    def __init__(self, results: _Optional[_Iterable[_Union[ScoreResult, _Mapping]]] = ..., session: _Optional[str] = ..., request: _Optional[int] = ...) -> None: ...

class ServeOpenRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    def __init__(self, envelope: _Optional[bytes] = ...) -> None: ...

class ServeOpenReply(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class ServeStepRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    def __init__(self, envelope: _Optional[bytes] = ...) -> None: ...

class ServeStepReply(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    def __init__(self, envelope: _Optional[bytes] = ...) -> None: ...
