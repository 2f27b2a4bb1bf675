//! Answers read with a size bound: a server that answers with an endless or
//! huge body cannot grow our memory. Every outbound call of fusionhook
//! (FusionAuth's API and JWKS, the receiver's routes) reads through here.

use bytes::{Bytes, BytesMut};

/// The body of an answer, or as much of it as the bound allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedBody {
    /// At most the bound's number of bytes.
    pub bytes: Bytes,
    /// The answer had more than the bound; the rest was not read.
    pub truncated: bool,
}

/// Reads at most `limit` bytes of `response`'s body. A body that announces
/// or turns out to be longer stops the read at the bound (`truncated`);
/// the connection is then dropped rather than drained.
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<LimitedBody, reqwest::Error> {
    let announced = response.content_length().and_then(|n| usize::try_from(n).ok());
    let mut bytes = BytesMut::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(LimitedBody { bytes: bytes.freeze(), truncated: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(LimitedBody { bytes: bytes.freeze(), truncated: false })
}
