//! The dialing side of a WebTransport session, on quinn directly.
//!
//! Why not wtransport's client: it writes the CONNECT request's header
//! fields in a `HashMap`'s order, so the draft-02 offer that go-libp2p's
//! server (webtransport-go) requires lands before the pseudo-header fields in
//! about five dials of six, and that server (rightly, RFC 9114 §4.3) resets
//! the request; measured here, 3 sessions in 20 dials. This client sends the
//! pseudo-header fields first. It still uses wtransport's pieces that have
//! no such problem: the TLS check of the certificate by its hash and the
//! QPACK encoder and decoder.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use wtransport::proto::qpack::{Decoder, Encoder};
use wtransport::tls::client::{build_default_tls_config, ServerHashVerification};
use wtransport::tls::Sha256Digest;

use super::{addr, other, KEEP_ALIVE};

/// HTTP/3 frame and stream types (RFC 9114; WebTransport over HTTP/3,
/// draft 02, which go-libp2p and browsers speak).
const CONTROL_STREAM: u64 = 0x00;
const FRAME_HEADERS: u64 = 0x01;
const FRAME_SETTINGS: u64 = 0x04;
pub(super) const FRAME_WEBTRANSPORT_STREAM: u64 = 0x41;
/// The settings a WebTransport client announces: no dynamic QPACK table,
/// extended CONNECT, HTTP/3 datagrams, WebTransport.
const SETTINGS: [(u64, u64); 5] = [(0x01, 0), (0x07, 0), (0x08, 1), (0x33, 1), (0x2b60_3742, 1)];
/// A CONNECT answer is a few dozen bytes; more is not an HTTP/3 server.
const MAX_ANSWER: u64 = 16 * 1024;

/// A session this node dialed.
pub struct Dialed {
    pub(super) connection: quinn::Connection,
    /// The session's id: the CONNECT stream's id, prefixed to every stream.
    pub(super) session_id: u64,
    /// The CONNECT stream; the session lasts as long as it is open.
    _connect: (quinn::SendStream, quinn::RecvStream),
    _control: quinn::SendStream,
    _endpoint: quinn::Endpoint,
}

/// Opens a WebTransport session to `socket`, accepting only a certificate
/// whose SHA-256 is one of `digests`.
pub(super) async fn connect(socket: SocketAddr, digests: Vec<Sha256Digest>) -> io::Result<Dialed> {
    let bind: SocketAddr = match socket {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let tls = build_default_tls_config(
        Arc::new(rustls::RootCertStore::empty()),
        Some(Arc::new(ServerHashVerification::new(digests))),
    );
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(other)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(config);
    let connection = endpoint
        .connect(socket, &socket.ip().to_string())
        .map_err(other)?
        .await
        .map_err(other)?;

    let mut control = connection.open_uni().await.map_err(other)?;
    control.write_all(&settings()).await.map_err(other)?;

    let (mut send, mut recv) = connection.open_bi().await.map_err(other)?;
    let session_id = quinn::VarInt::from(send.id()).into_inner();
    send.write_all(&request(socket)).await.map_err(other)?;
    let status = answer_status(&mut recv).await?;
    if status != "200" {
        return Err(other(format!(
            "the server refused the session: status {status}"
        )));
    }
    Ok(Dialed {
        connection,
        session_id,
        _connect: (send, recv),
        _control: control,
        _endpoint: endpoint,
    })
}

/// The control stream's opening: its type, then SETTINGS.
fn settings() -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in SETTINGS {
        put_varint(&mut payload, id);
        put_varint(&mut payload, value);
    }
    let mut out = Vec::new();
    put_varint(&mut out, CONTROL_STREAM);
    put_frame(&mut out, FRAME_SETTINGS, &payload);
    out
}

/// The extended CONNECT request's fields, pseudo-header fields first.
fn request_fields(authority: &str) -> [(&'static str, &str); 6] {
    [
        (":method", "CONNECT"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", addr::PATH),
        (":protocol", "webtransport"),
        // go-libp2p's server refuses a session without the draft-02 offer.
        ("sec-webtransport-http3-draft02", "1"),
    ]
}

/// The extended CONNECT request as a HEADERS frame.
fn request(socket: SocketAddr) -> Vec<u8> {
    let authority = socket.to_string();
    let mut out = Vec::new();
    put_frame(
        &mut out,
        FRAME_HEADERS,
        &Encoder::encode(request_fields(&authority)),
    );
    out
}

/// Reads frames on the CONNECT stream up to the answer's HEADERS and gives
/// its `:status`.
async fn answer_status(recv: &mut quinn::RecvStream) -> io::Result<String> {
    loop {
        let kind = read_varint(recv).await?;
        let len = read_varint(recv).await?;
        if len > MAX_ANSWER {
            return Err(other(format!("CONNECT answer frame of {len} bytes")));
        }
        let mut payload = vec![0; len as usize];
        AsyncReadExt::read_exact(recv, &mut payload).await?;
        if kind != FRAME_HEADERS {
            // Reserved ("grease") frames may come first; they carry nothing.
            continue;
        }
        let fields = Decoder::decode(&payload[..]).map_err(|e| other(format!("{e:?}")))?;
        return fields
            .get(":status")
            .cloned()
            .ok_or_else(|| other("CONNECT answer without :status"));
    }
}

/// A frame: type, length, payload.
pub(super) fn put_frame(out: &mut Vec<u8>, kind: u64, payload: &[u8]) {
    put_varint(out, kind);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// A QUIC variable-length integer (RFC 9000 §16); values are below 2^62.
pub(super) fn put_varint(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=0x3f => out.push(value as u8),
        0x40..=0x3fff => out.extend_from_slice(&(value as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(value as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

pub(super) async fn read_varint<R: tokio::io::AsyncRead + Unpin>(recv: &mut R) -> io::Result<u64> {
    let first = recv.read_u8().await?;
    let extra = (1usize << (first >> 6)) - 1;
    let mut value = u64::from(first & 0x3f);
    for _ in 0..extra {
        value = (value << 8) | u64::from(recv.read_u8().await?);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn varints_read_back_what_was_written() {
        for value in [
            0,
            0x3f,
            0x40,
            0x3fff,
            0x4000,
            0x2b60_3742,
            0x3fff_ffff,
            0x4000_0000,
            1 << 61,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(read_varint(&mut &out[..]).await.unwrap(), value);
        }
    }

    #[tokio::test]
    async fn the_request_starts_with_its_pseudo_header_fields() {
        let frame = request("127.0.0.1:9".parse().unwrap());
        let mut rest = &frame[..];
        assert_eq!(read_varint(&mut rest).await.unwrap(), FRAME_HEADERS);
        assert_eq!(read_varint(&mut rest).await.unwrap(), rest.len() as u64);
        let fields = Decoder::decode(rest).unwrap();
        assert_eq!(
            fields.get(":protocol").map(String::as_str),
            Some("webtransport")
        );
        assert_eq!(fields.get(":path").map(String::as_str), Some(addr::PATH));
        // Decoding gives a map; the order shows in the encoding, one field
        // line after the other: the pseudo-header fields alone encode to
        // the start of the request (after the 2-byte QPACK prefix).
        let pseudo = Encoder::encode(request_fields("127.0.0.1:9").into_iter().take(5));
        assert!(rest[2..].starts_with(&pseudo[2..]));
        assert!(rest.len() > pseudo.len());
    }
}
