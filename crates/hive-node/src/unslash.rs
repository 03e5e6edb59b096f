//! Protocol names without a leading slash, on the wire.
//!
//! go-libp2p negotiates any protocol name, and hivemind names its handlers
//! `DHTProtocol.rpc_ping`. rust-libp2p's multistream-select refuses names
//! that do not start with `/`, in both directions. So Hive speaks such a name
//! under an alias, [`ALIAS_PREFIX`] + name, inside the process, and this
//! muxer wrapper translates at the edge: on every substream it watches the
//! multistream-select messages that open it (a few short, length-prefixed
//! lines), writes an alias as the bare name, and reads a bare name as its
//! alias. Once a protocol has been proposed or agreed in a direction, the
//! rest of that direction passes through untouched, so application bytes are
//! never inspected.
//!
//! The negotiation it sees is multistream-select 1.0: an optional header
//! line `/multistream/1.0.0\n`, then `na\n` refusals and one protocol line.
//! A dialer that proposes several bare names in a row gets only the first
//! translated (go-libp2p proposes one per stream).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite, TryFutureExt};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// In-process spelling of a bare protocol name.
pub const ALIAS_PREFIX: &str = "/hive-bare/";

/// Longest negotiation message translated; anything longer is not one.
const MAX_MESSAGE: usize = 1024;

/// The in-process name for `name`: itself when it starts with `/`, else its
/// alias.
pub fn alias(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("{ALIAS_PREFIX}{name}")
    }
}

/// The wire name for an in-process name.
pub fn bare(name: &str) -> &str {
    name.strip_prefix(ALIAS_PREFIX).unwrap_or(name)
}

/// Wraps a muxer upgrade (yamux's) so that the muxer it yields translates
/// bare names; for transports built by `SwarmBuilder::with_tcp`.
#[derive(Debug, Clone)]
pub struct UnslashUpgrade<U>(pub U);

impl<U: UpgradeInfo> UpgradeInfo for UnslashUpgrade<U> {
    type Info = U::Info;
    type InfoIter = U::InfoIter;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.protocol_info()
    }
}

impl<C, U: InboundConnectionUpgrade<C>> InboundConnectionUpgrade<C> for UnslashUpgrade<U> {
    type Output = Unslash<U::Output>;
    type Error = U::Error;
    type Future = futures::future::MapOk<U::Future, fn(U::Output) -> Unslash<U::Output>>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.0
            .upgrade_inbound(socket, info)
            .map_ok(Unslash::new as fn(U::Output) -> Unslash<U::Output>)
    }
}

impl<C, U: OutboundConnectionUpgrade<C>> OutboundConnectionUpgrade<C> for UnslashUpgrade<U> {
    type Output = Unslash<U::Output>;
    type Error = U::Error;
    type Future = futures::future::MapOk<U::Future, fn(U::Output) -> Unslash<U::Output>>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.0
            .upgrade_outbound(socket, info)
            .map_ok(Unslash::new as fn(U::Output) -> Unslash<U::Output>)
    }
}

/// Wraps a stream muxer so that its substreams translate bare names.
pub struct Unslash<M> {
    inner: M,
}

impl<M> Unslash<M> {
    pub fn new(inner: M) -> Self {
        Unslash { inner }
    }
}

impl<M> StreamMuxer for Unslash<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = UnslashStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        Pin::new(&mut self.inner)
            .poll_inbound(cx)
            .map_ok(UnslashStream::new)
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        Pin::new(&mut self.inner)
            .poll_outbound(cx)
            .map_ok(UnslashStream::new)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// One direction's translator: buffers bytes until whole negotiation
/// messages are there, rewrites them, and stops after the protocol line.
#[derive(Default)]
struct Translator {
    /// Bytes not yet cut into messages.
    pending: Vec<u8>,
    done: bool,
}

enum Rewrite {
    /// Wire → process: a bare name becomes its alias.
    Inbound,
    /// Process → wire: an alias becomes its bare name.
    Outbound,
}

/// An unsigned varint at the start of `buf`: `(value, bytes used)`; `None`
/// when incomplete, `Some((usize::MAX, 0))` when malformed.
fn varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value: usize = 0;
    for (i, byte) in buf.iter().enumerate().take(5) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    if buf.len() >= 5 {
        Some((usize::MAX, 0))
    } else {
        None
    }
}

fn push_message(out: &mut Vec<u8>, payload: &[u8]) {
    let mut n = payload.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(payload);
}

impl Translator {
    /// Take `bytes`, append what may go on to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>, rewrite: &Rewrite) {
        if self.done {
            out.extend_from_slice(bytes);
            return;
        }
        self.pending.extend_from_slice(bytes);
        loop {
            let Some((len, used)) = varint(&self.pending) else {
                return; // wait for the rest of the length
            };
            if used == 0 || len > MAX_MESSAGE {
                // Not a negotiation message: stop translating.
                self.finish(out);
                return;
            }
            if self.pending.len() < used + len {
                return; // wait for the rest of the message
            }
            let payload: Vec<u8> = self.pending[used..used + len].to_vec();
            self.pending.drain(..used + len);
            let is_control =
                payload == b"/multistream/1.0.0\n" || payload == b"na\n" || payload == b"ls\n";
            match rewrite {
                Rewrite::Inbound if !is_control && is_bare_line(&payload) => {
                    let mut aliased = ALIAS_PREFIX.as_bytes().to_vec();
                    aliased.extend_from_slice(&payload);
                    push_message(out, &aliased);
                }
                Rewrite::Outbound if payload.starts_with(ALIAS_PREFIX.as_bytes()) => {
                    push_message(out, &payload[ALIAS_PREFIX.len()..]);
                }
                _ => push_message(out, &payload),
            }
            if !is_control {
                // The protocol line: whatever follows is the application's.
                self.finish(out);
                return;
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.done = true;
        out.append(&mut self.pending);
    }
}

/// One line naming a protocol without a leading slash.
fn is_bare_line(payload: &[u8]) -> bool {
    payload.len() > 1
        && payload.last() == Some(&b'\n')
        && payload[0] != b'/'
        && !payload[..payload.len() - 1].contains(&b'\n')
        && std::str::from_utf8(payload).is_ok()
}

/// A substream translating bare names during its negotiation.
pub struct UnslashStream<S> {
    inner: S,
    reading: Translator,
    /// Translated bytes for the reader.
    readable: VecDeque<u8>,
    writing: Translator,
    /// Translated bytes not yet written to `inner`.
    unwritten: Vec<u8>,
}

impl<S> UnslashStream<S> {
    fn new(inner: S) -> Self {
        UnslashStream {
            inner,
            reading: Translator::default(),
            readable: VecDeque::new(),
            writing: Translator::default(),
            unwritten: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> UnslashStream<S> {
    /// Write out what the translator produced; Ready once all is written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unwritten.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.unwritten) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.unwritten.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for UnslashStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            if !this.readable.is_empty() {
                let n = buf.len().min(this.readable.len());
                for (slot, byte) in buf.iter_mut().zip(this.readable.drain(..n)) {
                    *slot = byte;
                }
                return Poll::Ready(Ok(n));
            }
            if this.reading.done {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 512];
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(0)) => {
                    let mut rest = Vec::new();
                    this.reading.finish(&mut rest);
                    if rest.is_empty() {
                        return Poll::Ready(Ok(0));
                    }
                    this.readable.extend(rest);
                }
                Poll::Ready(Ok(n)) => {
                    let mut out = Vec::new();
                    this.reading.feed(&chunk[..n], &mut out, &Rewrite::Inbound);
                    this.readable.extend(out);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for UnslashStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.writing.done {
            // Earlier translated bytes go first, in order.
            match this.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map_ok(|()| 0),
            }
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let mut out = Vec::new();
        this.writing.feed(buf, &mut out, &Rewrite::Outbound);
        this.unwritten.extend(out);
        // Negotiation messages are small: accept them now, push them on as
        // far as the substream lets us.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Only whole negotiation messages are ever translated and queued;
        // multistream-select writes whole messages before it flushes.
        let this = &mut *self;
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.writing.done {
            let mut rest = Vec::new();
            this.writing.finish(&mut rest);
            this.unwritten.extend(rest);
        }
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_close(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        push_message(&mut out, s.as_bytes());
        out
    }

    fn messages(lines: &[&str]) -> Vec<u8> {
        lines.iter().flat_map(|l| message(l)).collect()
    }

    #[test]
    fn a_bare_proposal_is_read_as_its_alias_and_data_passes_untouched() {
        let mut t = Translator::default();
        let mut wire = messages(&["/multistream/1.0.0\n", "DHTProtocol.rpc_ping\n"]);
        // Application data that happens to look like a bare line follows.
        wire.extend(message("not.a.protocol\n"));
        let mut out = Vec::new();
        // Byte by byte, as a slow network would deliver it.
        for b in &wire {
            t.feed(std::slice::from_ref(b), &mut out, &Rewrite::Inbound);
        }
        let mut expected = messages(&["/multistream/1.0.0\n", "/hive-bare/DHTProtocol.rpc_ping\n"]);
        expected.extend(message("not.a.protocol\n"));
        assert_eq!(out, expected);
    }

    #[test]
    fn an_alias_is_written_bare_after_refusals() {
        let mut t = Translator::default();
        let mut out = Vec::new();
        let ours = messages(&["/multistream/1.0.0\n", "na\n", "/hive-bare/x.y\n", "tail"]);
        t.feed(&ours, &mut out, &Rewrite::Outbound);
        let mut expected = messages(&["/multistream/1.0.0\n", "na\n", "x.y\n"]);
        expected.extend(message("tail"));
        assert_eq!(out, expected);
        assert!(t.done);
    }

    #[test]
    fn slashed_names_and_long_messages_pass_as_they_are() {
        let mut t = Translator::default();
        let mut out = Vec::new();
        let wire = messages(&["/multistream/1.0.0\n", "/ipfs/id/1.0.0\n"]);
        t.feed(&wire, &mut out, &Rewrite::Inbound);
        assert_eq!(out, wire);

        let mut t = Translator::default();
        let mut out = Vec::new();
        let big = vec![b'a'; 5000];
        let mut wire = Vec::new();
        push_message(&mut wire, &big);
        t.feed(&wire, &mut out, &Rewrite::Inbound);
        assert_eq!(out, wire);
        assert!(t.done);
    }

    #[test]
    fn aliases_round_trip() {
        assert_eq!(alias("a.b"), "/hive-bare/a.b");
        assert_eq!(alias("/x/1"), "/x/1");
        assert_eq!(bare(&alias("a.b")), "a.b");
        assert_eq!(bare("/x/1"), "/x/1");
    }
}
