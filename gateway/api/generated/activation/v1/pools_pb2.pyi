import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Pool(_message.Message):
    __slots__ = ("name", "kind", "prefix", "first", "last", "description", "allocated", "free", "allocations", "created_at", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    prefix: str
    first: int
    last: int
    description: str
    allocated: int
    free: str
    allocations: _containers.RepeatedCompositeFieldContainer[PoolAllocation]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., prefix: _Optional[str] = ..., first: _Optional[int] = ..., last: _Optional[int] = ..., description: _Optional[str] = ..., allocated: _Optional[int] = ..., free: _Optional[str] = ..., allocations: _Optional[_Iterable[_Union[PoolAllocation, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PoolAllocation(_message.Message):
    __slots__ = ("value", "activation_id", "task_id", "param", "allocated_at", "release_activation_id", "release_task_id")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_AT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    value: str
    activation_id: str
    task_id: str
    param: str
    allocated_at: _timestamp_pb2.Timestamp
    release_activation_id: str
    release_task_id: str
    def __init__(self, value: _Optional[str] = ..., activation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., param: _Optional[str] = ..., allocated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., release_activation_id: _Optional[str] = ..., release_task_id: _Optional[str] = ...) -> None: ...

class CreatePoolRequest(_message.Message):
    __slots__ = ("pool", "replace")
    POOL_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    pool: Pool
    replace: bool
    def __init__(self, pool: _Optional[_Union[Pool, _Mapping]] = ..., replace: _Optional[bool] = ...) -> None: ...

class CreatePoolResponse(_message.Message):
    __slots__ = ("pool", "outcome")
    POOL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    pool: Pool
    outcome: str
    def __init__(self, pool: _Optional[_Union[Pool, _Mapping]] = ..., outcome: _Optional[str] = ...) -> None: ...

class ListPoolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPoolsResponse(_message.Message):
    __slots__ = ("pools",)
    POOLS_FIELD_NUMBER: _ClassVar[int]
    pools: _containers.RepeatedCompositeFieldContainer[Pool]
    def __init__(self, pools: _Optional[_Iterable[_Union[Pool, _Mapping]]] = ...) -> None: ...

class GetPoolRequest(_message.Message):
    __slots__ = ("name", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    limit: int
    def __init__(self, name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...
