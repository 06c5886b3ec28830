//! WebSocket frames as a client sees them, done by hand rather than with a
//! `tungstenite::WebSocket`: tungstenite turns a close code missing from its
//! table (1014, which gateways send when their upstream fails) into its own
//! 1002 "Protocol violation", both toward the application and in the reply
//! to the server. A troubleshooting client must report, and echo, what the
//! server really sent.

use std::io::Cursor;

use bytes::{Buf, BytesMut};
use tungstenite::protocol::frame::FrameHeader;

use crate::ws::CloseInfo;
use crate::ws::close;
use crate::ws::frame::{Fragments, FrameError, FrameKind, classify};

/// Messages larger than this end the session with 1009: the probe keeps a
/// whole message in memory, and no heartbeat or tick is anywhere near it.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A complete message or control frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Text, decoded lossily: the probe shows it, it does not validate it.
    Text(String),
    Binary(usize),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// `None`: a close frame without a status code (reported as 1005).
    Close(Option<CloseInfo>),
}

/// A frame the probe cannot accept; it closes with [`WireError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Protocol(#[from] FrameError),
    #[error("a message larger than {} MiB", MAX_MESSAGE_BYTES >> 20)]
    TooBig,
}

impl WireError {
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => close::PROTOCOL_ERROR,
            Self::TooBig => close::MESSAGE_TOO_BIG,
        }
    }
}

/// Reassembles the server's frames into messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    fragments: Fragments,
    /// A fragmented data message in progress: (is text, payload so far).
    message: Option<(bool, Vec<u8>)>,
}

impl FrameReader {
    /// Takes the next complete message or control frame off the front of
    /// `buf`; `Ok(None)` when more bytes are needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
        loop {
            let mut cursor = Cursor::new(&buf[..]);
            let parsed = FrameHeader::parse(&mut cursor)
                .map_err(|e| FrameError::Malformed(e.to_string()))?;
            let Some((header, len)) = parsed else {
                return Ok(None);
            };
            let head = cursor.position() as usize;
            // From the server, and no extension is ever offered.
            let kind = classify(&header, len, false, false)?;
            let fin = header.is_final;
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| n <= MAX_MESSAGE_BYTES)
                .ok_or(WireError::TooBig)?;
            if buf.len() < head + len {
                buf.reserve(head + len - buf.len());
                return Ok(None);
            }
            // Only once the frame is whole: its header is parsed again until then.
            if !kind.is_control() {
                let total = self.fragments.data_frame(kind, fin, len as u64)?;
                if total > MAX_MESSAGE_BYTES as u64 {
                    return Err(WireError::TooBig);
                }
            }
            buf.advance(head);
            let payload = buf.split_to(len);
            match kind {
                FrameKind::Close => {
                    return Ok(Some(Incoming::Close(CloseInfo::from_payload(&payload))));
                }
                FrameKind::Ping => return Ok(Some(Incoming::Ping(payload.to_vec()))),
                FrameKind::Pong => return Ok(Some(Incoming::Pong(payload.to_vec()))),
                FrameKind::Text | FrameKind::Binary => {
                    let message = (kind == FrameKind::Text, payload.to_vec());
                    if fin {
                        return Ok(Some(finish(message)));
                    }
                    self.message = Some(message);
                }
                FrameKind::Continuation => {
                    if let Some((_, so_far)) = self.message.as_mut() {
                        so_far.extend_from_slice(&payload);
                    }
                    if fin && let Some(message) = self.message.take() {
                        return Ok(Some(finish(message)));
                    }
                }
            }
        }
    }
}

fn finish((text, payload): (bool, Vec<u8>)) -> Incoming {
    if text {
        Incoming::Text(String::from_utf8_lossy(&payload).into_owned())
    } else {
        Incoming::Binary(payload.len())
    }
}

/// One final, masked frame (a client must mask every frame).
pub fn encode(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    crate::ws::frame::encode(kind, payload, true)
}

/// A close frame's payload: the code and the reason (cut to fit 125 bytes).
/// `None`: an empty close frame.
pub fn close_payload(close: Option<&CloseInfo>) -> Vec<u8> {
    close.map(CloseInfo::payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn read_all(wire: &[u8]) -> Vec<Result<Incoming, WireError>> {
        let mut reader = FrameReader::default();
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        // Byte by byte: every split point must work.
        for b in wire {
            buf.extend_from_slice(&[*b]);
            loop {
                match reader.next(&mut buf) {
                    Ok(Some(m)) => seen.push(Ok(m)),
                    Ok(None) => break,
                    Err(e) => {
                        seen.push(Err(e));
                        return seen;
                    }
                }
            }
        }
        seen
    }

    #[test]
    fn messages_fragments_and_control_frames_are_read_in_order() {
        let mut wire = server_frame(0x81, b"tick 1");
        wire.extend(server_frame(0x01, b"hel"));
        wire.extend(server_frame(0x89, b"p"));
        wire.extend(server_frame(0x80, b"lo"));
        wire.extend(server_frame(0x82, &[0; 300]));
        wire.extend(server_frame(0x8A, b"7"));
        let mut close = 1014u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"origin went away");
        wire.extend(server_frame(0x88, &close));
        let seen: Vec<_> = read_all(&wire).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            seen,
            [
                Incoming::Text("tick 1".into()),
                Incoming::Ping(b"p".to_vec()),
                Incoming::Text("hello".into()),
                Incoming::Binary(300),
                Incoming::Pong(b"7".to_vec()),
                Incoming::Close(Some(CloseInfo::new(1014, "origin went away"))),
            ]
        );
    }

    #[test]
    fn an_empty_close_frame_has_no_status() {
        assert_eq!(
            read_all(&server_frame(0x88, b"")),
            [Ok(Incoming::Close(None))]
        );
    }

    #[test]
    fn protocol_violations_are_refused() {
        let masked = [0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1];
        for wire in [
            masked.to_vec(),
            server_frame(0x80, b"x"),      // stray continuation
            server_frame(0x83, b"x"),      // reserved opcode
            server_frame(0xC1, b"x"),      // RSV1
            server_frame(0x09, b"x"),      // fragmented ping
            server_frame(0x88, b"x"),      // 1-byte close
            server_frame(0x89, &[0; 126]), // long control frame
        ] {
            let seen = read_all(&wire);
            assert!(
                matches!(seen.last(), Some(Err(WireError::Protocol(_)))),
                "{wire:?}: {seen:?}"
            );
        }
    }

    #[test]
    fn encoded_frames_are_masked_and_decode_back() {
        for len in [0, 5, 125, 126, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = encode(FrameKind::Text, &payload);
            let mut cursor = Cursor::new(&frame[..]);
            let (header, n) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert_eq!(n, len as u64);
            let mask = header.mask.unwrap();
            let body = &frame[cursor.position() as usize..];
            let unmasked: Vec<u8> = body
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn close_payloads_fit_a_control_frame() {
        let long = CloseInfo::new(4000, "é".repeat(100));
        let payload = close_payload(Some(&long));
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert!(close_payload(None).is_empty());
    }
}
