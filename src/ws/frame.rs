//! Frame headers, not messages: the relay forwards the bytes it reads
//! unchanged and only looks at each frame's header (and a close frame's
//! payload) to count, enforce limits and learn close codes; the probe reads
//! whole messages with the same header rules.
//!
//! A client's frames arrive masked and an origin's unmasked, which is
//! exactly what the other hop expects, so nothing is decoded or re-encoded.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::close::CloseInfo;

/// Longest possible frame header (2 + 8 length + 4 mask).
pub const MAX_HEADER: usize = 14;
/// The longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A WebSocket frame's opcode.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::EnumIter, strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum FrameKind {
    /// Shown as `cont`; `continuation` in JSON.
    #[strum(serialize = "cont")]
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl FrameKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }

    /// The opcode on the wire.
    pub fn opcode(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    fn of(opcode: OpCode) -> Option<Self> {
        Some(match opcode {
            OpCode::Data(Data::Continue) => Self::Continuation,
            OpCode::Data(Data::Text) => Self::Text,
            OpCode::Data(Data::Binary) => Self::Binary,
            OpCode::Control(Control::Close) => Self::Close,
            OpCode::Control(Control::Ping) => Self::Ping,
            OpCode::Control(Control::Pong) => Self::Pong,
            _ => return None,
        })
    }
}

/// A frame header that breaks RFC 6455: the receiver closes with 1002.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// What the header parser said.
    #[error("malformed frame header: {0}")]
    Malformed(String),
    #[error("frame length with the most significant bit set")]
    LengthHighBit,
    #[error("an unmasked frame (clients must mask)")]
    Unmasked,
    #[error("a masked frame (servers must not mask)")]
    Masked,
    #[error("a reserved opcode")]
    ReservedOpcode,
    #[error("reserved bits set on a control frame")]
    ControlReservedBits,
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("a fragmented control frame")]
    FragmentedControl,
    #[error("a control frame longer than 125 bytes")]
    LongControl,
    #[error("a close frame with a 1-byte payload")]
    OneByteClose,
    #[error("a continuation frame outside a fragmented message")]
    StrayContinuation,
    #[error("a new message inside a fragmented message")]
    NestedMessage,
}

/// The rules a receiver can check from a header alone: which side may mask,
/// opcodes, reserved bits, control frames. `extensions`: an extension (e.g.
/// permessage-deflate) was negotiated, so RSV bits on data frames are the
/// endpoints' business.
pub fn classify(
    header: &FrameHeader,
    len: u64,
    from_client: bool,
    extensions: bool,
) -> Result<FrameKind, FrameError> {
    if len > i64::MAX as u64 {
        // RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
        return Err(FrameError::LengthHighBit);
    }
    if header.mask.is_some() != from_client {
        return Err(if from_client {
            FrameError::Unmasked
        } else {
            FrameError::Masked
        });
    }
    let kind = FrameKind::of(header.opcode).ok_or(FrameError::ReservedOpcode)?;
    let rsv = header.rsv1 || header.rsv2 || header.rsv3;
    if kind.is_control() {
        if rsv {
            return Err(FrameError::ControlReservedBits);
        }
        if !header.is_final {
            return Err(FrameError::FragmentedControl);
        }
        if len > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::LongControl);
        }
        if kind == FrameKind::Close && len == 1 {
            return Err(FrameError::OneByteClose);
        }
    } else if rsv && !extensions {
        return Err(FrameError::ReservedBits);
    }
    Ok(kind)
}

/// Follows the fragmentation of data messages in one direction: payload
/// bytes of the message in progress (`None`: between messages).
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Fragments(Option<u64>);

impl Fragments {
    /// Takes a data frame's header; the size of its message so far, this
    /// frame included.
    pub fn data_frame(&mut self, kind: FrameKind, fin: bool, len: u64) -> Result<u64, FrameError> {
        let so_far = match (kind, self.0) {
            (FrameKind::Continuation, None) => return Err(FrameError::StrayContinuation),
            (FrameKind::Continuation, Some(n)) => n,
            (_, Some(_)) => return Err(FrameError::NestedMessage),
            (_, None) => 0,
        };
        let total = so_far.saturating_add(len);
        self.0 = (!fin).then_some(total);
        Ok(total)
    }
}

/// A frame whose header the scanner has just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenFrame {
    pub kind: FrameKind,
    pub fin: bool,
    pub payload_len: u64,
}

/// Why a direction must be closed by the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A message longer than `max-message-bytes` (close 1009).
    TooBig { limit: u64 },
    /// A malformed or out-of-order frame (close 1002).
    Protocol(String),
}

/// What one [`FrameScanner::scan`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Bytes `[0, forward)` of the input may be passed on. The rest is an
    /// incomplete header (kept in the scanner) or follows a violation.
    pub forward: usize,
    pub violation: Option<Violation>,
    /// A close frame that completed in this input.
    pub close: Option<CloseInfo>,
    /// Where that close frame's header starts in the input (0 when the
    /// frame began in an earlier input).
    pub close_at: usize,
    /// Payload bytes of a data frame passed in this input: a large frame
    /// still arriving is activity even though no new header was seen.
    pub data_payload: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Position {
    /// The next byte starts a frame header.
    Header,
    /// Inside a frame's payload.
    Payload {
        remaining: u64,
        /// Text, binary or continuation (not a control frame).
        data: bool,
        /// Collects a close frame's payload (at most 125 bytes).
        close: Option<CloseCollector>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CloseCollector {
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
}

/// Follows the frame structure of one direction of a session. Its state
/// moves with the session in a hand-over (serde), so a frame half-read by
/// one relay process is finished by the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameScanner {
    /// Frames from the client must be masked; frames from the origin must not.
    from_client: bool,
    max_message_bytes: u64,
    /// An extension (e.g. permessage-deflate) was negotiated end to end, so
    /// RSV bits on data frames are the endpoints' business.
    extensions: bool,
    position: Position,
    /// Bytes of an incomplete header, held back until the rest arrives.
    carry: [u8; MAX_HEADER],
    carry_len: usize,
    fragments: Fragments,
}

impl FrameScanner {
    pub fn new(from_client: bool, max_message_bytes: u64, extensions: bool) -> Self {
        Self {
            from_client,
            max_message_bytes,
            extensions,
            position: Position::Header,
            carry: [0; MAX_HEADER],
            carry_len: 0,
            fragments: Fragments::default(),
        }
    }

    /// Whether everything forwarded so far ends on a frame boundary, so the
    /// relay may inject a frame of its own into this direction.
    pub fn at_boundary(&self) -> bool {
        matches!(self.position, Position::Header)
    }

    /// Copies the held-back bytes of an incomplete header to the start of
    /// `buf`; the caller reads new bytes after them and scans the whole.
    pub fn copy_carry(&self, buf: &mut [u8]) -> usize {
        let n = self.carry_len;
        buf[..n].copy_from_slice(&self.carry[..n]);
        n
    }

    /// Scans `data` (which starts with what `copy_carry` put there),
    /// calling `on_frame` for each header found.
    pub fn scan(&mut self, data: &[u8], mut on_frame: impl FnMut(SeenFrame)) -> Scan {
        let mut scan = Scan::default();
        // The held-back header bytes are at the start of `data` again.
        self.carry_len = 0;
        let mut pos = 0;
        while pos < data.len() {
            match &mut self.position {
                Position::Payload {
                    remaining,
                    data: is_data,
                    close,
                } => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(data.len() - pos);
                    scan.data_payload |= *is_data && take > 0;
                    if let Some(c) = close {
                        c.payload.extend_from_slice(&data[pos..pos + take]);
                    }
                    *remaining -= take as u64;
                    pos += take;
                    if *remaining == 0 {
                        let close = close.take();
                        self.position = Position::Header;
                        if let Some(c) = close {
                            // Nothing may follow a close frame; drop the rest.
                            scan.close = Some(c.finish());
                            scan.forward = pos;
                            return scan;
                        }
                    }
                }
                Position::Header => {
                    let mut cursor = Cursor::new(&data[pos..]);
                    match FrameHeader::parse(&mut cursor) {
                        Ok(None) => {
                            let rest = &data[pos..];
                            self.carry[..rest.len()].copy_from_slice(rest);
                            self.carry_len = rest.len();
                            scan.forward = pos;
                            return scan;
                        }
                        Err(e) => {
                            scan.forward = pos;
                            let e = FrameError::Malformed(e.to_string());
                            scan.violation = Some(Violation::Protocol(e.to_string()));
                            return scan;
                        }
                        Ok(Some((header, len))) => {
                            let frame = match self.check(&header, len) {
                                Ok(f) => f,
                                Err(v) => {
                                    scan.forward = pos;
                                    scan.violation = Some(v);
                                    return scan;
                                }
                            };
                            on_frame(frame);
                            if frame.kind == FrameKind::Close {
                                scan.close_at = pos;
                            }
                            pos += cursor.position() as usize;
                            let close = (frame.kind == FrameKind::Close).then(|| CloseCollector {
                                mask: header.mask,
                                payload: Vec::new(),
                            });
                            if len == 0 {
                                if let Some(c) = close {
                                    scan.close = Some(c.finish());
                                    scan.forward = pos;
                                    return scan;
                                }
                            } else {
                                self.position = Position::Payload {
                                    remaining: len,
                                    data: !frame.kind.is_control(),
                                    close,
                                };
                            }
                        }
                    }
                }
            }
        }
        scan.forward = pos;
        scan
    }

    /// The rules a relay can enforce from a header alone.
    fn check(&mut self, header: &FrameHeader, len: u64) -> Result<SeenFrame, Violation> {
        let protocol = |e: FrameError| Violation::Protocol(e.to_string());
        let kind = classify(header, len, self.from_client, self.extensions).map_err(protocol)?;
        if !kind.is_control() {
            let before = self.fragments;
            let total = self
                .fragments
                .data_frame(kind, header.is_final, len)
                .map_err(protocol)?;
            if total > self.max_message_bytes {
                // Nothing of this frame is forwarded, so its message never began.
                self.fragments = before;
                return Err(Violation::TooBig {
                    limit: self.max_message_bytes,
                });
            }
        }
        Ok(SeenFrame {
            kind,
            fin: header.is_final,
            payload_len: len,
        })
    }
}

impl CloseCollector {
    fn finish(mut self) -> CloseInfo {
        if let Some(mask) = self.mask {
            for (i, b) in self.payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        // No status code: reported to applications as 1005.
        CloseInfo::from_payload(&self.payload)
            .unwrap_or_else(|| CloseInfo::new(super::close::NO_STATUS, ""))
    }
}

/// One final frame: masked with a fresh key when `masked` (a client must
/// mask every frame; a server must not).
pub fn encode(kind: FrameKind, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = Vec::with_capacity(MAX_HEADER + payload.len());
    frame.push(0x80 | kind.opcode());
    match payload.len() {
        n @ 0..=125 => frame.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// A close frame of the relay's own: unmasked toward the client, masked with
/// a fresh key toward the origin (a server must not mask; a client must).
pub fn close_frame(code: u16, reason: &str, masked: bool) -> Vec<u8> {
    encode(
        FrameKind::Close,
        &CloseInfo::new(code, reason).payload(),
        masked,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![first];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        if payload.len() < 126 {
            out.push(payload.len() as u8 | mask_bit);
        } else {
            out.push(126 | mask_bit);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        let mut body = payload.to_vec();
        if let Some(m) = mask {
            out.extend_from_slice(&m);
            for (i, b) in body.iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        out.extend_from_slice(&body);
        out
    }

    fn scan_all(scanner: &mut FrameScanner, data: &[u8]) -> (Scan, Vec<SeenFrame>) {
        let mut seen = Vec::new();
        let scan = scanner.scan(data, |f| seen.push(f));
        (scan, seen)
    }

    #[test]
    fn frames_split_anywhere_are_seen_once_and_forwarded_whole() {
        let mut wire = frame(0x81, b"hello", None);
        wire.extend(frame(0x82, &[7; 300], None));
        wire.extend(frame(0x89, b"", None));
        for split in 0..wire.len() {
            let mut s = FrameScanner::new(false, 1 << 20, false);
            let (first, mut seen) = scan_all(&mut s, &wire[..split]);
            let mut buf = vec![0; MAX_HEADER + wire.len()];
            let carried = s.copy_carry(&mut buf);
            assert_eq!(first.forward + carried, split);
            buf[carried..carried + wire.len() - split].copy_from_slice(&wire[split..]);
            let (second, more) = scan_all(&mut s, &buf[..carried + wire.len() - split]);
            seen.extend(more);
            assert_eq!(
                first.forward + second.forward,
                wire.len(),
                "split at {split}"
            );
            let kinds: Vec<_> = seen.iter().map(|f| f.kind).collect();
            assert_eq!(kinds, [FrameKind::Text, FrameKind::Binary, FrameKind::Ping]);
            assert!(s.at_boundary());
        }
    }

    #[test]
    fn masked_close_frames_are_read_and_unmasked() {
        let mut s = FrameScanner::new(true, 1 << 20, false);
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye now");
        let wire = frame(0x88, &payload, Some([1, 2, 3, 4]));
        let (scan, _) = scan_all(&mut s, &wire);
        assert_eq!(scan.close, Some(CloseInfo::new(4000, "bye now")));
        assert_eq!(scan.forward, wire.len());
    }

    #[test]
    fn our_close_frames_parse_back() {
        for masked in [false, true] {
            let wire = close_frame(1001, "idle timeout (60 s)", masked);
            let mut s = FrameScanner::new(masked, 1 << 20, false);
            let (scan, _) = scan_all(&mut s, &wire);
            assert_eq!(
                scan.close,
                Some(CloseInfo::new(1001, "idle timeout (60 s)"))
            );
        }
        assert!(close_frame(1000, &"é".repeat(100), false).len() <= 2 + 125);
    }

    #[test]
    fn oversized_fragmented_message_is_refused_before_forwarding() {
        let mut s = FrameScanner::new(false, 10, false);
        let mut wire = frame(0x01, b"123456", None);
        let second = wire.len();
        wire.extend(frame(0x80, b"789012", None));
        let (scan, _) = scan_all(&mut s, &wire);
        assert_eq!(scan.forward, second);
        assert_eq!(scan.violation, Some(Violation::TooBig { limit: 10 }));
    }

    #[test]
    fn protocol_violations() {
        let cases: [(bool, Vec<u8>); 5] = [
            (true, frame(0x81, b"x", None)), // unmasked from client
            (false, frame(0x81, b"x", Some([1, 1, 1, 1]))), // masked from origin
            (false, frame(0x83, b"x", None)), // reserved opcode
            (false, frame(0xC1, b"x", None)), // RSV1 without extension
            (false, frame(0x80, b"x", None)), // stray continuation
        ];
        for (from_client, wire) in cases {
            let mut s = FrameScanner::new(from_client, 100, false);
            let (scan, seen) = scan_all(&mut s, &wire);
            assert!(
                matches!(scan.violation, Some(Violation::Protocol(_))),
                "{wire:?}"
            );
            assert_eq!(scan.forward, 0);
            assert!(seen.is_empty());
        }
    }
}
