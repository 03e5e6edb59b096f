//! Circuit relay v2 messages (the `circuit.proto` of the libp2p relay v2
//! specification, proto2), written with `prost` derives so that no protoc is
//! needed at build time. Only the client side's messages are used here: the
//! relay service itself is rust-libp2p's.

#![allow(clippy::derive_partial_eq_without_eq)]

use prost::{Enumeration, Message};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum HopType {
    Reserve = 0,
    Connect = 1,
    Status = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum StopType {
    Connect = 0,
    Status = 1,
}

/// The outcome codes of the specification; their names are what errors
/// show, so that a caller sees the relay's own word (`NO_RESERVATION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum Status {
    Unused = 0,
    Ok = 100,
    ReservationRefused = 200,
    ResourceLimitExceeded = 201,
    PermissionDenied = 202,
    ConnectionFailed = 203,
    NoReservation = 204,
    MalformedMessage = 400,
    UnexpectedMessage = 401,
}

impl Status {
    /// The specification's name of the code.
    pub fn name(self) -> &'static str {
        match self {
            Status::Unused => "UNUSED",
            Status::Ok => "OK",
            Status::ReservationRefused => "RESERVATION_REFUSED",
            Status::ResourceLimitExceeded => "RESOURCE_LIMIT_EXCEEDED",
            Status::PermissionDenied => "PERMISSION_DENIED",
            Status::ConnectionFailed => "CONNECTION_FAILED",
            Status::NoReservation => "NO_RESERVATION",
            Status::MalformedMessage => "MALFORMED_MESSAGE",
            Status::UnexpectedMessage => "UNEXPECTED_MESSAGE",
        }
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct HopMessage {
    #[prost(enumeration = "HopType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub peer: Option<Peer>,
    #[prost(message, optional, tag = "3")]
    pub reservation: Option<Reservation>,
    #[prost(message, optional, tag = "4")]
    pub limit: Option<Limit>,
    #[prost(enumeration = "Status", optional, tag = "5")]
    pub status: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StopMessage {
    #[prost(enumeration = "StopType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub peer: Option<Peer>,
    #[prost(message, optional, tag = "3")]
    pub limit: Option<Limit>,
    #[prost(enumeration = "Status", optional, tag = "4")]
    pub status: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Peer {
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Reservation {
    /// Unix time (seconds) at which the reservation ends.
    #[prost(uint64, required, tag = "1")]
    pub expire: u64,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub voucher: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Limit {
    /// Seconds.
    #[prost(uint32, optional, tag = "1")]
    pub duration: Option<u32>,
    /// Bytes in each direction.
    #[prost(uint64, optional, tag = "2")]
    pub data: Option<u64>,
}
