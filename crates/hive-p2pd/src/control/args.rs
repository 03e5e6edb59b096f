//! Arguments of a client's request that do not parse. Every handler group
//! answers them the same way: an ERROR response whose message says what was
//! wrong, and the connection keeps working.

use libp2p::{Multiaddr, PeerId, StreamProtocol};

#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("invalid peer id: {0}")]
    PeerId(#[from] libp2p::identity::ParseError),
    #[error("invalid handler address: {0}")]
    HandlerAddr(#[from] libp2p::multiaddr::Error),
    #[error("unsupported handler address {0}")]
    UnsupportedHandlerAddr(Multiaddr),
    #[error("an empty protocol name")]
    EmptyProtocol,
    #[error("protocol {name:?}: {reason}")]
    Protocol {
        name: String,
        reason: libp2p::swarm::InvalidProtocol,
    },
    /// A field the request type needs was left out.
    #[error("{0}")]
    Missing(&'static str),
}

/// A peer id in its binary form.
pub fn peer_from(bytes: &[u8]) -> Result<PeerId, ArgError> {
    Ok(PeerId::from_bytes(bytes)?)
}

/// The in-process protocol for a client's name: names without a leading
/// slash (hivemind's) travel under an alias that `hive_node::unslash`
/// translates on the wire.
pub fn protocol(name: &str) -> Result<StreamProtocol, ArgError> {
    if name.is_empty() {
        return Err(ArgError::EmptyProtocol);
    }
    StreamProtocol::try_from_owned(hive_node::unslash::alias(name)).map_err(|reason| {
        ArgError::Protocol {
            name: name.to_owned(),
            reason,
        }
    })
}
