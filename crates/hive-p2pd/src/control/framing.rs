//! Unsigned-varint length-prefixed frames, as the daemon protocol uses them.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest control frame accepted (the go daemon's limit too).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Read one frame of at most [`MAX_FRAME`] bytes; `None` on a clean end of
/// stream before any byte.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    read_frame_max(r, MAX_FRAME).await
}

/// Read one frame of at most `max` bytes (a persistent connection's
/// messages are bounded by `-persistentConnMaxMsgSize` instead).
pub async fn read_frame_max<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let Some(len) = read_len(r).await? else {
        return Ok(None);
    };
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// One frame of a stream that can answer a too-big message instead of
/// dropping the connection.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Whole(Vec<u8>),
    /// Over the limit: its first [`HEAD`] bytes were kept (enough to find
    /// what it answers to), the rest read and thrown away.
    TooBig {
        len: usize,
        head: Vec<u8>,
    },
}

/// Bytes of a too-big frame kept by [`read_frame_or_skip`].
pub const HEAD: usize = 64;
/// A too-big frame past this is not read through: the stream is given up.
const SKIP_MAX: usize = 1 << 30;

/// Like [`read_frame_max`], but a frame over `max` (and under 1 GiB) is
/// read through and reported, so that the stream stays usable.
pub async fn read_frame_or_skip<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<Frame>> {
    let Some(len) = read_len(r).await? else {
        return Ok(None);
    };
    if len <= max {
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).await?;
        return Ok(Some(Frame::Whole(buf)));
    }
    if len > SKIP_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    let mut head = vec![0u8; len.min(HEAD)];
    r.read_exact(&mut head).await?;
    let rest = (len - head.len()) as u64;
    let skipped = tokio::io::copy(&mut (&mut *r).take(rest), &mut tokio::io::sink()).await?;
    if skipped < rest {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended inside a frame",
        ));
    }
    Ok(Some(Frame::TooBig { len, head }))
}

/// The unsigned-varint length prefix; `None` on a clean end of stream.
async fn read_len<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<usize>> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let mut byte = [0u8; 1];
        let n = r.read(&mut byte).await?;
        if n == 0 {
            if shift == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a length prefix",
            ));
        }
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "length prefix too long",
            ));
        }
    }
    Ok(Some(usize::try_from(len).unwrap_or(usize::MAX)))
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let mut prefix = Vec::with_capacity(10 + payload.len());
    let mut n = payload.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            prefix.push(byte);
            break;
        }
        prefix.push(byte | 0x80);
    }
    prefix.extend_from_slice(payload);
    w.write_all(&prefix).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let payload = vec![7u8; len];
            let mut buf = Vec::new();
            write_frame(&mut buf, &payload).await.unwrap();
            let mut r = buf.as_slice();
            assert_eq!(read_frame(&mut r).await.unwrap(), Some(payload));
            assert_eq!(read_frame(&mut r).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[]).await.unwrap();
        // A prefix claiming 5 MiB.
        let big: &[u8] = &[0x80, 0x80, 0xc0, 0x02];
        assert!(read_frame(&mut &big[..]).await.is_err());
        let truncated: &[u8] = &[5, 1, 2];
        assert!(read_frame(&mut &truncated[..]).await.is_err());
    }

    #[tokio::test]
    async fn a_too_big_frame_is_skipped_and_the_next_one_read() {
        let mut buf = Vec::new();
        let big: Vec<u8> = (0..200u8).collect();
        write_frame(&mut buf, &big).await.unwrap();
        write_frame(&mut buf, b"next").await.unwrap();
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame_or_skip(&mut r, 100).await.unwrap(),
            Some(Frame::TooBig {
                len: 200,
                head: big[..HEAD].to_vec()
            })
        );
        assert_eq!(
            read_frame_or_skip(&mut r, 100).await.unwrap(),
            Some(Frame::Whole(b"next".to_vec()))
        );
        assert_eq!(read_frame_or_skip(&mut r, 100).await.unwrap(), None);
        // Cut inside the skipped part: an error, not a frame.
        let cut = &buf[..150];
        assert!(read_frame_or_skip(&mut &cut[..], 100).await.is_err());
    }
}
