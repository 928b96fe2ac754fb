from . import eraftpb_pb2 as _eraftpb_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Voter: _ClassVar[PeerRole]
    Learner: _ClassVar[PeerRole]
    IncomingVoter: _ClassVar[PeerRole]
    DemotingVoter: _ClassVar[PeerRole]

class ExtraMessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MsgNone: _ClassVar[ExtraMessageType]
    MsgRegionWakeUp: _ClassVar[ExtraMessageType]
    MsgHibernateRequest: _ClassVar[ExtraMessageType]
    MsgHibernateResponse: _ClassVar[ExtraMessageType]
    MsgWantRollbackMerge: _ClassVar[ExtraMessageType]
    MsgCheckStalePeer: _ClassVar[ExtraMessageType]

class SnapshotStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SnapshotStatusNone: _ClassVar[SnapshotStatus]
    SnapshotAccepted: _ClassVar[SnapshotStatus]
    SnapshotRefused: _ClassVar[SnapshotStatus]
    SnapshotReceived: _ClassVar[SnapshotStatus]
    SnapshotFailed: _ClassVar[SnapshotStatus]

class PeerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Normal: _ClassVar[PeerState]
    Applying: _ClassVar[PeerState]
    Tombstone: _ClassVar[PeerState]
    Merging: _ClassVar[PeerState]
Voter: PeerRole
Learner: PeerRole
IncomingVoter: PeerRole
DemotingVoter: PeerRole
MsgNone: ExtraMessageType
MsgRegionWakeUp: ExtraMessageType
MsgHibernateRequest: ExtraMessageType
MsgHibernateResponse: ExtraMessageType
MsgWantRollbackMerge: ExtraMessageType
MsgCheckStalePeer: ExtraMessageType
SnapshotStatusNone: SnapshotStatus
SnapshotAccepted: SnapshotStatus
SnapshotRefused: SnapshotStatus
SnapshotReceived: SnapshotStatus
SnapshotFailed: SnapshotStatus
Normal: PeerState
Applying: PeerState
Tombstone: PeerState
Merging: PeerState

class RegionEpoch(_message.Message):
    __slots__ = ("conf_ver", "version")
    CONF_VER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    conf_ver: int
    version: int
    def __init__(self, conf_ver: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("id", "store_id", "role")
    ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    id: int
    store_id: int
    role: PeerRole
    def __init__(self, id: _Optional[int] = ..., store_id: _Optional[int] = ..., role: _Optional[_Union[PeerRole, str]] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("id", "start_key", "end_key", "region_epoch", "peers")
    ID_FIELD_NUMBER: _ClassVar[int]
    START_KEY_FIELD_NUMBER: _ClassVar[int]
    END_KEY_FIELD_NUMBER: _ClassVar[int]
    REGION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    id: int
    start_key: bytes
    end_key: bytes
    region_epoch: RegionEpoch
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, id: _Optional[int] = ..., start_key: _Optional[bytes] = ..., end_key: _Optional[bytes] = ..., region_epoch: _Optional[_Union[RegionEpoch, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...

class ExtraMessage(_message.Message):
    __slots__ = ("type", "agree", "index", "term")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AGREE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    type: ExtraMessageType
    agree: bool
    index: int
    term: int
    def __init__(self, type: _Optional[_Union[ExtraMessageType, str]] = ..., agree: _Optional[bool] = ..., index: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class RaftMessage(_message.Message):
    __slots__ = ("region_id", "from_peer", "to_peer", "message", "region_epoch", "is_tombstone", "start_key", "end_key", "merge_target", "extra_msg")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_PEER_FIELD_NUMBER: _ClassVar[int]
    TO_PEER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REGION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    IS_TOMBSTONE_FIELD_NUMBER: _ClassVar[int]
    START_KEY_FIELD_NUMBER: _ClassVar[int]
    END_KEY_FIELD_NUMBER: _ClassVar[int]
    MERGE_TARGET_FIELD_NUMBER: _ClassVar[int]
    EXTRA_MSG_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    from_peer: Peer
    to_peer: Peer
    message: _eraftpb_pb2.Message
    region_epoch: RegionEpoch
    is_tombstone: bool
    start_key: bytes
    end_key: bytes
    merge_target: Region
    extra_msg: ExtraMessage
    def __init__(self, region_id: _Optional[int] = ..., from_peer: _Optional[_Union[Peer, _Mapping]] = ..., to_peer: _Optional[_Union[Peer, _Mapping]] = ..., message: _Optional[_Union[_eraftpb_pb2.Message, _Mapping]] = ..., region_epoch: _Optional[_Union[RegionEpoch, _Mapping]] = ..., is_tombstone: _Optional[bool] = ..., start_key: _Optional[bytes] = ..., end_key: _Optional[bytes] = ..., merge_target: _Optional[_Union[Region, _Mapping]] = ..., extra_msg: _Optional[_Union[ExtraMessage, _Mapping]] = ...) -> None: ...

class BatchRaftMessage(_message.Message):
    __slots__ = ("msgs", "last_observed_time", "from_store_id", "gossip", "leaders", "features")
    MSGS_FIELD_NUMBER: _ClassVar[int]
    LAST_OBSERVED_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    GOSSIP_FIELD_NUMBER: _ClassVar[int]
    LEADERS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    msgs: _containers.RepeatedCompositeFieldContainer[RaftMessage]
    last_observed_time: int
    from_store_id: int
    gossip: StoreGossip
    leaders: int
    features: int
    def __init__(self, msgs: _Optional[_Iterable[_Union[RaftMessage, _Mapping]]] = ..., last_observed_time: _Optional[int] = ..., from_store_id: _Optional[int] = ..., gossip: _Optional[_Union[StoreGossip, _Mapping]] = ..., leaders: _Optional[int] = ..., features: _Optional[int] = ...) -> None: ...

class StoreAddress(_message.Message):
    __slots__ = ("store_id", "peer_addr", "client_addr", "admin_addr")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    ADMIN_ADDR_FIELD_NUMBER: _ClassVar[int]
    store_id: int
    peer_addr: str
    client_addr: str
    admin_addr: str
    def __init__(self, store_id: _Optional[int] = ..., peer_addr: _Optional[str] = ..., client_addr: _Optional[str] = ..., admin_addr: _Optional[str] = ...) -> None: ...

class StoreGossip(_message.Message):
    __slots__ = ("stores", "heard", "suspected", "removed")
    STORES_FIELD_NUMBER: _ClassVar[int]
    HEARD_FIELD_NUMBER: _ClassVar[int]
    SUSPECTED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    stores: _containers.RepeatedCompositeFieldContainer[StoreAddress]
    heard: _containers.RepeatedScalarFieldContainer[int]
    suspected: _containers.RepeatedScalarFieldContainer[int]
    removed: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stores: _Optional[_Iterable[_Union[StoreAddress, _Mapping]]] = ..., heard: _Optional[_Iterable[int]] = ..., suspected: _Optional[_Iterable[int]] = ..., removed: _Optional[_Iterable[int]] = ...) -> None: ...

class Handshake(_message.Message):
    __slots__ = ("cluster_id", "store_id", "peer_addr", "client_addr", "admin_addr")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    ADMIN_ADDR_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    store_id: int
    peer_addr: str
    client_addr: str
    admin_addr: str
    def __init__(self, cluster_id: _Optional[int] = ..., store_id: _Optional[int] = ..., peer_addr: _Optional[str] = ..., client_addr: _Optional[str] = ..., admin_addr: _Optional[str] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("header", "total_size", "data", "last")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    total_size: int
    data: bytes
    last: bool
    def __init__(self, header: _Optional[bytes] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class SnapshotAck(_message.Message):
    __slots__ = ("status", "reason")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    status: SnapshotStatus
    reason: str
    def __init__(self, status: _Optional[_Union[SnapshotStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class MergeState(_message.Message):
    __slots__ = ("min_index", "target", "commit")
    MIN_INDEX_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    min_index: int
    target: Region
    commit: int
    def __init__(self, min_index: _Optional[int] = ..., target: _Optional[_Union[Region, _Mapping]] = ..., commit: _Optional[int] = ...) -> None: ...

class RegionLocalState(_message.Message):
    __slots__ = ("state", "region", "merge_state")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    MERGE_STATE_FIELD_NUMBER: _ClassVar[int]
    state: PeerState
    region: Region
    merge_state: MergeState
    def __init__(self, state: _Optional[_Union[PeerState, str]] = ..., region: _Optional[_Union[Region, _Mapping]] = ..., merge_state: _Optional[_Union[MergeState, _Mapping]] = ...) -> None: ...

class RaftApplyState(_message.Message):
    __slots__ = ("applied_index", "applied_term", "truncated_index", "truncated_term")
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TERM_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_TERM_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    applied_term: int
    truncated_index: int
    truncated_term: int
    def __init__(self, applied_index: _Optional[int] = ..., applied_term: _Optional[int] = ..., truncated_index: _Optional[int] = ..., truncated_term: _Optional[int] = ...) -> None: ...
