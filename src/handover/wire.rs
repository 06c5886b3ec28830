//! The hand-over's framing: each message is an 8-byte header (JSON length,
//! descriptor count, both big-endian u32) sent with its descriptors
//! attached (`SCM_RIGHTS`), then the JSON. Reading exactly the header
//! receives exactly that message's descriptors: Linux never merges a
//! stream socket's segments across one that carries descriptors.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Descriptors per message: below the kernel's `SCM_MAX_FD` (253).
pub const MAX_FDS: usize = 200;
/// Longest JSON part accepted (a batch of sessions with full unsent buffers).
const MAX_JSON: usize = 256 * 1024 * 1024;
const HEADER: usize = 8;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Sends `message` with `fds` attached.
pub fn send(stream: &UnixStream, message: &impl Serialize, fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(invalid(format!("{} descriptors in one message", fds.len())));
    }
    let json = serde_json::to_vec(message)?;
    let len = u32::try_from(json.len()).map_err(|_| invalid("message too long"))?;
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&len.to_be_bytes());
    header[4..].copy_from_slice(&(fds.len() as u32).to_be_bytes());
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&header)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(io::Error::from)?,
        }
    };
    let mut out = stream;
    out.write_all(&header[sent..])?;
    out.write_all(&json)
}

/// Receives one message and its descriptors.
pub fn recv<T: DeserializeOwned>(stream: &UnixStream) -> io::Result<(T, Vec<OwnedFd>)> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    let mut fds = Vec::new();
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    while got < HEADER {
        let mut iov = [IoSliceMut::new(&mut header[got..])];
        let msg = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other.map_err(io::Error::from)?,
        };
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel has just installed these descriptors in
                // this process's table for us; nothing else owns them.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(invalid(
                "descriptors were lost in transit (this process's open-files limit is too low; raise LimitNOFILE / ulimit -n)",
            ));
        }
        if msg.bytes == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += msg.bytes;
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let count = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if count != fds.len() {
        return Err(invalid(format!(
            "expected {count} descriptors with a message, got {}",
            fds.len()
        )));
    }
    if len > MAX_JSON {
        return Err(invalid(format!("a message of {len} bytes")));
    }
    let mut json = vec![0; len];
    let mut input = stream;
    input.read_exact(&mut json)?;
    let message = serde_json::from_slice(&json).map_err(|e| invalid(e.to_string()))?;
    Ok((message, fds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn messages_carry_exactly_their_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<_> = (0..3).map(|_| tempfile::tempfile().unwrap()).collect();
        let raw: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
        send(&a, &serde_json::json!({"n": 1}), &raw).unwrap();
        send(&a, &serde_json::json!({"n": 2}), &[]).unwrap();
        send(&a, &serde_json::json!({"n": 3}), &raw[..1]).unwrap();
        let (m1, f1): (serde_json::Value, _) = recv(&b).unwrap();
        let (m2, f2): (serde_json::Value, _) = recv(&b).unwrap();
        let (m3, f3): (serde_json::Value, _) = recv(&b).unwrap();
        assert_eq!((m1["n"].as_u64(), f1.len()), (Some(1), 3));
        assert_eq!((m2["n"].as_u64(), f2.len()), (Some(2), 0));
        assert_eq!((m3["n"].as_u64(), f3.len()), (Some(3), 1));
        drop(a);
        let eof = recv::<serde_json::Value>(&b).unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
    }
}
