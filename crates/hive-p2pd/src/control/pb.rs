//! Messages of the go-libp2p-daemon control protocol (proto2), written out
//! by hand with `prost` derives so that no protoc is needed at build time.
//!
//! Field numbers follow the daemon's `p2pd.proto` and hivemind's fork of it.
//! Fields the fork made `required` are `optional` here on purpose: upstream
//! clients (p2pclient, @libp2p/daemon-client) do not send `balanced`, and a
//! daemon that insisted on it would close their connections.
//!
//! hivemind's persistent-connection messages (unary handlers) follow its
//! fork's `p2pd.proto`.

#![allow(clippy::derive_partial_eq_without_eq)]

use prost::{Enumeration, Message};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum RequestType {
    Identify = 0,
    Connect = 1,
    StreamOpen = 2,
    StreamHandler = 3,
    Dht = 4,
    ListPeers = 5,
    ConnManager = 6,
    Disconnect = 7,
    Pubsub = 8,
    /// hivemind's fork: persistent connection; js-libp2p-daemon: PEERSTORE.
    /// Told apart by which sub-message the request carries.
    PersistentConnUpgradeOrPeerstore = 9,
    RemoveStreamHandler = 10,
}

#[derive(Clone, PartialEq, Message)]
pub struct Request {
    #[prost(enumeration = "RequestType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub connect: Option<ConnectRequest>,
    #[prost(message, optional, tag = "3")]
    pub stream_open: Option<StreamOpenRequest>,
    #[prost(message, optional, tag = "4")]
    pub stream_handler: Option<StreamHandlerRequest>,
    #[prost(message, optional, tag = "5")]
    pub dht: Option<DhtRequest>,
    #[prost(message, optional, tag = "6")]
    pub conn_manager: Option<ConnManagerRequest>,
    #[prost(message, optional, tag = "7")]
    pub disconnect: Option<DisconnectRequest>,
    #[prost(message, optional, tag = "8")]
    pub pubsub: Option<PsRequest>,
    #[prost(message, optional, tag = "9")]
    pub remove_stream_handler: Option<RemoveStreamHandlerRequest>,
    /// js-libp2p-daemon's PEERSTORE request (type 9 there).
    #[prost(message, optional, tag = "10")]
    pub peer_store: Option<PeerstoreRequest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    Ok = 0,
    Error = 1,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(enumeration = "ResponseType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub error: Option<ErrorResponse>,
    #[prost(message, optional, tag = "3")]
    pub stream_info: Option<StreamInfo>,
    #[prost(message, optional, tag = "4")]
    pub identify: Option<IdentifyResponse>,
    #[prost(message, optional, tag = "5")]
    pub dht: Option<DhtResponse>,
    #[prost(message, repeated, tag = "6")]
    pub peers: Vec<PeerInfo>,
    #[prost(message, optional, tag = "7")]
    pub pubsub: Option<PsResponse>,
    #[prost(message, optional, tag = "8")]
    pub peer_store: Option<PeerstoreResponse>,
}

impl Response {
    pub fn ok() -> Self {
        Response {
            r#type: ResponseType::Ok as i32,
            ..Default::default()
        }
    }

    pub fn error(msg: impl std::fmt::Display) -> Self {
        Response {
            r#type: ResponseType::Error as i32,
            error: Some(ErrorResponse {
                msg: msg.to_string(),
            }),
            ..Default::default()
        }
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct IdentifyResponse {
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ConnectRequest {
    #[prost(bytes = "vec", required, tag = "1")]
    pub peer: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
    #[prost(int64, optional, tag = "3")]
    pub timeout: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamOpenRequest {
    #[prost(bytes = "vec", required, tag = "1")]
    pub peer: Vec<u8>,
    #[prost(string, repeated, tag = "2")]
    pub proto: Vec<String>,
    #[prost(int64, optional, tag = "3")]
    pub timeout: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamHandlerRequest {
    #[prost(bytes = "vec", required, tag = "1")]
    pub addr: Vec<u8>,
    #[prost(string, repeated, tag = "2")]
    pub proto: Vec<String>,
    #[prost(bool, optional, tag = "3")]
    pub balanced: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RemoveStreamHandlerRequest {
    #[prost(bytes = "vec", required, tag = "1")]
    pub addr: Vec<u8>,
    #[prost(string, repeated, tag = "2")]
    pub proto: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ErrorResponse {
    #[prost(string, required, tag = "1")]
    pub msg: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamInfo {
    #[prost(bytes = "vec", required, tag = "1")]
    pub peer: Vec<u8>,
    #[prost(bytes = "vec", required, tag = "2")]
    pub addr: Vec<u8>,
    #[prost(string, required, tag = "3")]
    pub proto: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum DhtRequestType {
    FindPeer = 0,
    FindPeersConnectedToPeer = 1,
    FindProviders = 2,
    GetClosestPeers = 3,
    GetPublicKey = 4,
    GetValue = 5,
    SearchValue = 6,
    PutValue = 7,
    Provide = 8,
}

#[derive(Clone, PartialEq, Message)]
pub struct DhtRequest {
    #[prost(enumeration = "DhtRequestType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub peer: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub cid: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub value: Option<Vec<u8>>,
    #[prost(int32, optional, tag = "6")]
    pub count: Option<i32>,
    #[prost(int64, optional, tag = "7")]
    pub timeout: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum DhtResponseType {
    Begin = 0,
    Value = 1,
    End = 2,
}

#[derive(Clone, PartialEq, Message)]
pub struct DhtResponse {
    #[prost(enumeration = "DhtResponseType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub peer: Option<PeerInfo>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub value: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PeerInfo {
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ConnManagerRequest {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub peer: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    pub tag: Option<String>,
    #[prost(int64, optional, tag = "4")]
    pub weight: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DisconnectRequest {
    #[prost(bytes = "vec", required, tag = "1")]
    pub peer: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum PsRequestType {
    GetTopics = 0,
    ListPeers = 1,
    Publish = 2,
    Subscribe = 3,
}

#[derive(Clone, PartialEq, Message)]
pub struct PsRequest {
    #[prost(enumeration = "PsRequestType", required, tag = "1")]
    pub r#type: i32,
    #[prost(string, optional, tag = "2")]
    pub topic: Option<String>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub data: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PsMessage {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub from: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub seqno: Option<Vec<u8>>,
    #[prost(string, repeated, tag = "4")]
    pub topic_ids: Vec<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub signature: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub key: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PsResponse {
    #[prost(string, repeated, tag = "1")]
    pub topics: Vec<String>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub peer_ids: Vec<Vec<u8>>,
}

/// js-libp2p-daemon's PEERSTORE request.
#[derive(Clone, PartialEq, Message)]
pub struct PeerstoreRequest {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub id: Option<Vec<u8>>,
    #[prost(string, repeated, tag = "3")]
    pub protos: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PeerstoreResponse {
    #[prost(message, optional, tag = "1")]
    pub peer: Option<PeerInfo>,
    #[prost(string, repeated, tag = "2")]
    pub protos: Vec<String>,
}

/// One message from a client on a persistent connection (hivemind's fork),
/// and, between daemons, the request and the answer of a unary call.
#[derive(Clone, PartialEq, Message)]
pub struct PersistentConnectionRequest {
    /// A UUID's 16 bytes, chosen by the client.
    #[prost(bytes = "vec", required, tag = "1")]
    pub call_id: Vec<u8>,
    #[prost(oneof = "persistent_request::Message", tags = "2, 6, 3, 4, 5")]
    pub message: Option<persistent_request::Message>,
}

pub mod persistent_request {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Message {
        #[prost(message, tag = "2")]
        AddUnaryHandler(super::AddUnaryHandlerRequest),
        #[prost(message, tag = "6")]
        RemoveUnaryHandler(super::RemoveUnaryHandlerRequest),
        #[prost(message, tag = "3")]
        CallUnary(super::CallUnaryRequest),
        #[prost(message, tag = "4")]
        UnaryResponse(super::CallUnaryResponse),
        #[prost(message, tag = "5")]
        Cancel(super::Cancel),
    }
}

/// One message from the daemon on a persistent connection.
#[derive(Clone, PartialEq, Message)]
pub struct PersistentConnectionResponse {
    #[prost(bytes = "vec", required, tag = "1")]
    pub call_id: Vec<u8>,
    #[prost(oneof = "persistent_response::Message", tags = "2, 3, 4, 5")]
    pub message: Option<persistent_response::Message>,
}

pub mod persistent_response {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Message {
        #[prost(message, tag = "2")]
        CallUnaryResponse(super::CallUnaryResponse),
        #[prost(message, tag = "3")]
        RequestHandling(super::CallUnaryRequest),
        #[prost(message, tag = "4")]
        DaemonError(super::DaemonError),
        #[prost(message, tag = "5")]
        Cancel(super::Cancel),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct CallUnaryRequest {
    /// The callee when a client calls; the caller when the daemon hands a
    /// call to a handler.
    #[prost(bytes = "vec", required, tag = "1")]
    pub peer: Vec<u8>,
    #[prost(string, required, tag = "2")]
    pub proto: String,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CallUnaryResponse {
    #[prost(oneof = "call_unary_response::Result", tags = "1, 2")]
    pub result: Option<call_unary_response::Result>,
}

pub mod call_unary_response {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(bytes = "vec", tag = "1")]
        Response(Vec<u8>),
        #[prost(bytes = "vec", tag = "2")]
        Error(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct AddUnaryHandlerRequest {
    #[prost(string, required, tag = "1")]
    pub proto: String,
    #[prost(bool, optional, tag = "2")]
    pub balanced: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RemoveUnaryHandlerRequest {
    #[prost(string, required, tag = "1")]
    pub proto: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct DaemonError {
    #[prost(string, optional, tag = "1")]
    pub message: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Cancel {}
