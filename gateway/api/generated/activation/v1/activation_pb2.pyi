import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_CREATE: _ClassVar[Action]
    ACTION_MODIFY: _ClassVar[Action]
    ACTION_DELETE: _ClassVar[Action]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_ACKNOWLEDGED: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_IN_PROGRESS: _ClassVar[TaskState]
    TASK_STATE_COMPLETED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]
    TASK_STATE_ROLLED_BACK: _ClassVar[TaskState]
    TASK_STATE_FALLOUT: _ClassVar[TaskState]

class ActivationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_STATE_UNSPECIFIED: _ClassVar[ActivationState]
    ACTIVATION_STATE_ACKNOWLEDGED: _ClassVar[ActivationState]
    ACTIVATION_STATE_IN_PROGRESS: _ClassVar[ActivationState]
    ACTIVATION_STATE_COMPLETED: _ClassVar[ActivationState]
    ACTIVATION_STATE_PARTIAL: _ClassVar[ActivationState]
    ACTIVATION_STATE_FAILED: _ClassVar[ActivationState]
    ACTIVATION_STATE_CANCELLED: _ClassVar[ActivationState]
    ACTIVATION_STATE_ROLLED_BACK: _ClassVar[ActivationState]
    ACTIVATION_STATE_FALLOUT: _ClassVar[ActivationState]
ACTION_UNSPECIFIED: Action
ACTION_CREATE: Action
ACTION_MODIFY: Action
ACTION_DELETE: Action
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_ACKNOWLEDGED: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_IN_PROGRESS: TaskState
TASK_STATE_COMPLETED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_STATE_ROLLED_BACK: TaskState
TASK_STATE_FALLOUT: TaskState
ACTIVATION_STATE_UNSPECIFIED: ActivationState
ACTIVATION_STATE_ACKNOWLEDGED: ActivationState
ACTIVATION_STATE_IN_PROGRESS: ActivationState
ACTIVATION_STATE_COMPLETED: ActivationState
ACTIVATION_STATE_PARTIAL: ActivationState
ACTIVATION_STATE_FAILED: ActivationState
ACTIVATION_STATE_CANCELLED: ActivationState
ACTIVATION_STATE_ROLLED_BACK: ActivationState
ACTIVATION_STATE_FALLOUT: ActivationState

class Task(_message.Message):
    __slots__ = ("id", "device", "service", "action", "parameters", "depends_on")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    id: str
    device: str
    service: str
    action: Action
    parameters: _struct_pb2.Struct
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., device: _Optional[str] = ..., service: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("request_id", "order_ref", "atomic", "tasks", "retry")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_REF_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    order_ref: str
    atomic: bool
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    retry: RetryPolicy
    def __init__(self, request_id: _Optional[str] = ..., order_ref: _Optional[str] = ..., atomic: _Optional[bool] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("attempts", "initial_delay_s", "max_delay_s", "deadline_s")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    initial_delay_s: float
    max_delay_s: float
    deadline_s: float
    def __init__(self, attempts: _Optional[int] = ..., initial_delay_s: _Optional[float] = ..., max_delay_s: _Optional[float] = ..., deadline_s: _Optional[float] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("activation_id", "created")
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    created: bool
    def __init__(self, activation_id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("activation_id",)
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    def __init__(self, activation_id: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("activation_id", "wait_ms")
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    wait_ms: int
    def __init__(self, activation_id: _Optional[str] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("activation_id",)
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    def __init__(self, activation_id: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("activation_id",)
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    def __init__(self, activation_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("activation_id", "seq", "task_id", "phase", "state", "time", "message", "actor")
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    seq: int
    task_id: str
    phase: str
    state: str
    time: _timestamp_pb2.Timestamp
    message: str
    actor: str
    def __init__(self, activation_id: _Optional[str] = ..., seq: _Optional[int] = ..., task_id: _Optional[str] = ..., phase: _Optional[str] = ..., state: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("time", "actor", "action", "task_id", "note")
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    actor: str
    action: str
    task_id: str
    note: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., task_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class PhaseTiming(_message.Message):
    __slots__ = ("phase", "started_at", "duration_ms")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    phase: str
    started_at: _timestamp_pb2.Timestamp
    duration_ms: float
    def __init__(self, phase: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class Verification(_message.Message):
    __slots__ = ("ok", "checked", "mismatches", "detail")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    checked: int
    mismatches: _containers.RepeatedScalarFieldContainer[str]
    detail: str
    def __init__(self, ok: _Optional[bool] = ..., checked: _Optional[int] = ..., mismatches: _Optional[_Iterable[str]] = ..., detail: _Optional[str] = ...) -> None: ...

class RollbackResult(_message.Message):
    __slots__ = ("method", "ok", "reason", "diff", "retryable")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    method: str
    ok: bool
    reason: str
    diff: str
    retryable: bool
    def __init__(self, method: _Optional[str] = ..., ok: _Optional[bool] = ..., reason: _Optional[str] = ..., diff: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class DeviceError(_message.Message):
    __slots__ = ("message", "tag", "path", "severity", "line", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    message: str
    tag: str
    path: str
    severity: str
    line: str
    extra: _containers.ScalarMap[str, str]
    def __init__(self, message: _Optional[str] = ..., tag: _Optional[str] = ..., path: _Optional[str] = ..., severity: _Optional[str] = ..., line: _Optional[str] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("kind", "message", "phase", "retryable", "device_error")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    phase: str
    retryable: bool
    device_error: DeviceError
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., phase: _Optional[str] = ..., retryable: _Optional[bool] = ..., device_error: _Optional[_Union[DeviceError, _Mapping]] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("id", "device", "service", "action", "state", "depends_on", "platform", "driver", "rendered", "diff", "verification", "rollback", "error", "timings", "note", "emulated", "parameters")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    EMULATED_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    device: str
    service: str
    action: Action
    state: TaskState
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    platform: str
    driver: str
    rendered: str
    diff: str
    verification: Verification
    rollback: RollbackResult
    error: TaskError
    timings: _containers.RepeatedCompositeFieldContainer[PhaseTiming]
    note: str
    emulated: _containers.RepeatedScalarFieldContainer[str]
    parameters: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., device: _Optional[str] = ..., service: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., state: _Optional[_Union[TaskState, str]] = ..., depends_on: _Optional[_Iterable[str]] = ..., platform: _Optional[str] = ..., driver: _Optional[str] = ..., rendered: _Optional[str] = ..., diff: _Optional[str] = ..., verification: _Optional[_Union[Verification, _Mapping]] = ..., rollback: _Optional[_Union[RollbackResult, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., timings: _Optional[_Iterable[_Union[PhaseTiming, _Mapping]]] = ..., note: _Optional[str] = ..., emulated: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Activation(_message.Message):
    __slots__ = ("id", "request_id", "order_ref", "atomic", "state", "created_at", "updated_at", "dry_run", "tasks", "submitted_by", "audit", "retry")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_REF_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    order_ref: str
    atomic: bool
    state: ActivationState
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    dry_run: bool
    tasks: _containers.RepeatedCompositeFieldContainer[TaskResult]
    submitted_by: str
    audit: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    retry: RetryPolicy
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ..., order_ref: _Optional[str] = ..., atomic: _Optional[bool] = ..., state: _Optional[_Union[ActivationState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dry_run: _Optional[bool] = ..., tasks: _Optional[_Iterable[_Union[TaskResult, _Mapping]]] = ..., submitted_by: _Optional[str] = ..., audit: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("states", "device", "since", "until", "limit", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[ActivationState]
    device: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    limit: int
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[ActivationState, str]]] = ..., device: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("activations", "next_page_token")
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    activations: _containers.RepeatedCompositeFieldContainer[Activation]
    next_page_token: str
    def __init__(self, activations: _Optional[_Iterable[_Union[Activation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFalloutRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FalloutItem(_message.Message):
    __slots__ = ("activation_id", "task")
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    task: TaskResult
    def __init__(self, activation_id: _Optional[str] = ..., task: _Optional[_Union[TaskResult, _Mapping]] = ...) -> None: ...

class ListFalloutResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FalloutItem]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[FalloutItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FalloutActionRequest(_message.Message):
    __slots__ = ("activation_id", "task_id", "note")
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    activation_id: str
    task_id: str
    note: str
    def __init__(self, activation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("after", "from_start", "outcomes", "services")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FROM_START_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    after: str
    from_start: bool
    outcomes: _containers.RepeatedScalarFieldContainer[ActivationState]
    services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after: _Optional[str] = ..., from_start: _Optional[bool] = ..., outcomes: _Optional[_Iterable[_Union[ActivationState, str]]] = ..., services: _Optional[_Iterable[str]] = ...) -> None: ...

class ResultEvent(_message.Message):
    __slots__ = ("id", "type", "subject", "time", "outcome", "data", "cursor")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    subject: str
    time: _timestamp_pb2.Timestamp
    outcome: ActivationState
    data: str
    cursor: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., subject: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[ActivationState, str]] = ..., data: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...
