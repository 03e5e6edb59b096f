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
    let len = usize::try_from(len).unwrap_or(usize::MAX);
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
}
