//! go-libp2p-daemon's control protocol: varint-framed proto2, encoded by
//! hand (it is go's protocol, not Hive's, so `hive-proto` has no types for
//! it): only PUBSUB PUBLISH / SUBSCRIBE and LIST_PEERS requests, and the
//! few response fields read back.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::args::AnyResult;

/// A decoded message: (field, varint value or 0, bytes or empty) triples.
pub type Fields = Vec<(u64, u64, Vec<u8>)>;

/// PSRequest.Type values.
pub const LIST_PEERS: u64 = 1;
pub const PUBLISH: u64 = 2;
pub const SUBSCRIBE: u64 = 3;

fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field_bytes(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn field_varint(field: u64, v: u64, out: &mut Vec<u8>) {
    varint(field << 3, out);
    varint(v, out);
}

/// A framed Request{type: PUBSUB, pubsub: PSRequest{type, topic, data}}.
pub fn pubsub_request(kind: u64, topic: &str, data: Option<&[u8]>) -> Vec<u8> {
    let mut ps = Vec::new();
    field_varint(1, kind, &mut ps);
    field_bytes(2, topic.as_bytes(), &mut ps);
    if let Some(d) = data {
        field_bytes(3, d, &mut ps);
    }
    let mut req = Vec::new();
    field_varint(1, 8, &mut req);
    field_bytes(8, &ps, &mut req);
    let mut framed = Vec::new();
    varint(req.len() as u64, &mut framed);
    framed.extend_from_slice(&req);
    framed
}

pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len = 0u64;
    let mut shift = 0;
    loop {
        let b = r.read_u8().await?;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// (field, varint value or bytes) pairs of one message.
pub fn fields(mut buf: &[u8]) -> Fields {
    fn rv(buf: &mut &[u8]) -> Option<u64> {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let Some(key) = rv(&mut buf) else { break };
        match key & 7 {
            0 => {
                let Some(v) = rv(&mut buf) else { break };
                out.push((key >> 3, v, Vec::new()));
            }
            2 => {
                let Some(n) = rv(&mut buf) else { break };
                let n = n as usize;
                if n > buf.len() {
                    break;
                }
                out.push((key >> 3, 0, buf[..n].to_vec()));
                buf = &buf[n..];
            }
            1 => buf = &buf[8.min(buf.len())..],
            5 => buf = &buf[4.min(buf.len())..],
            _ => break,
        }
    }
    out
}

/// An OK response, or the daemon's error text.
pub fn check(resp: &[u8]) -> Result<Fields, String> {
    let f = fields(resp);
    if f.iter().any(|(k, v, _)| *k == 1 && *v == 1) {
        let msg = f
            .iter()
            .find(|(k, _, _)| *k == 2)
            .map(|(_, _, b)| fields(b))
            .and_then(|e| e.into_iter().find(|(k, _, _)| *k == 1))
            .map(|(_, _, b)| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        return Err(msg);
    }
    Ok(f)
}

/// One request on a new connection (as p2pclient does) and its OK answer.
pub async fn call(sock: &str, framed: &[u8]) -> AnyResult<Fields> {
    let mut conn = tokio::net::UnixStream::connect(sock).await?;
    conn.write_all(framed).await?;
    let resp = read_frame(&mut conn).await?;
    Ok(check(&resp)?)
}
