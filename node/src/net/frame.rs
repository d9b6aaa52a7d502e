//! Length-prefixed frames over a libp2p stream (the byte format is `kith_protocol::wire`'s).
//!
//! A frame's buffer grows as its bytes arrive, never to what its length prefix claims: a peer
//! that announces a large frame and then trickles (or sends nothing) holds only what it sent.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kith_protocol::wire::{self, WireError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Reads one frame's body; `None` when the peer closed the stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    read_frame_within(r, wire::MAX_FRAME).await
}

/// [`read_frame`] for a message known to be at most `limit` bytes.
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
    }
    let len = wire::frame_len_within(prefix, limit)?;
    let mut body = Vec::new();
    (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(body))
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    let frame = wire::encode_frame(message)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that announces `claimed` bytes and then has only `sent` of them.
    fn trickle(claimed: u32, sent: usize) -> futures::io::Cursor<Vec<u8>> {
        let mut bytes = claimed.to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(7u8, sent));
        futures::io::Cursor::new(bytes)
    }

    #[tokio::test]
    async fn a_claimed_length_is_not_allocated_before_its_bytes_arrive() {
        let mut r = trickle(wire::MAX_FRAME as u32, 10);
        let e = read_frame(&mut r).await.unwrap_err();
        assert!(
            matches!(e, FrameError::Io(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
        );
        let mut r = trickle(5, 5);
        assert_eq!(read_frame(&mut r).await.unwrap(), Some(vec![7; 5]));
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
    }

    #[tokio::test]
    async fn small_messages_refuse_large_frames_before_reading_them() {
        let mut r = trickle(u32::MAX, 0);
        assert!(matches!(
            read_frame_within(&mut r, 100).await,
            Err(FrameError::Wire(WireError::TooLarge(_)))
        ));
        let mut r = trickle(101, 101);
        assert!(matches!(
            read_frame_within(&mut r, 100).await,
            Err(FrameError::Wire(WireError::OverLimit {
                len: 101,
                limit: 100
            }))
        ));
    }
}
