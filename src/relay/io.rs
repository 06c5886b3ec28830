//! The readiness-based socket API the session pump is written against.
//!
//! The pump waits for readiness and then reads into a buffer owned by the
//! worker thread, so an idle session holds no read buffer at all. Tokio's
//! `TcpStream` and `UnixStream` both offer this API; a TLS origin is bridged
//! to a `UnixStream` pair: `wss://` origins take a simpler, buffered path.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UnixStream};

pub trait RawIo: Send + Sync + 'static {
    /// Whether the socket is ready for `interest` (read or write, or
    /// either); if not, the task is woken when it is. Through the socket's
    /// own reader and writer waker slots: a session's task is the only one
    /// that waits on its sockets.
    fn poll_ready(&self, interest: Interest, cx: &mut Context<'_>) -> Poll<io::Result<Ready>>;
    /// Reads what is there now. `drained` says the read was shorter than
    /// `buf`, so the socket's queue is empty: readiness is cleared without
    /// the extra read that would only return `WouldBlock` (nginx treats a
    /// short read the same way). Data that arrives later raises a new event.
    fn read_now(&self, buf: &mut [u8]) -> io::Result<ReadNow>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Sends FIN: the peer reads end-of-stream, as it would if the other
    /// peer had closed a direct connection.
    fn shutdown_write(&self) -> io::Result<()>;
    /// Whether the connection is a plain TCP socket that another process
    /// can carry on (a hand-over): a TLS connection's state lives in this
    /// process's memory and cannot move.
    fn movable(&self) -> bool {
        false
    }
    /// The socket, out of this runtime's reactor, for a hand-over.
    fn into_movable(self) -> Option<std::net::TcpStream>
    where
        Self: Sized,
    {
        None
    }
}

macro_rules! raw_io {
    ($t:ty $(, $movable:item)*) => {
        impl RawIo for $t {
            fn poll_ready(&self, interest: Interest, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
                let mut ready = Ready::EMPTY;
                if interest.is_readable() {
                    match <$t>::poll_read_ready(self, cx) {
                        Poll::Ready(Ok(())) => ready |= Ready::READABLE,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                if interest.is_writable() {
                    match <$t>::poll_write_ready(self, cx) {
                        Poll::Ready(Ok(())) => ready |= Ready::WRITABLE,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                if ready.is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(ready))
                }
            }
            fn read_now(&self, buf: &mut [u8]) -> io::Result<ReadNow> {
                let len = buf.len();
                let mut short = None;
                let result = self.try_io(Interest::READABLE, || {
                    let n = <$t>::try_read(self, buf)?;
                    if n > 0 && n < len {
                        // Tell `try_io` to clear readiness; the count is kept aside.
                        short = Some(n);
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                });
                match (result, short) {
                    (_, Some(n)) => Ok(ReadNow { n, drained: true }),
                    (Ok(n), None) => Ok(ReadNow { n, drained: false }),
                    (Err(e), None) => Err(e),
                }
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
            fn shutdown_write(&self) -> io::Result<()> {
                socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write)
            }
            $($movable)*
        }
    };
}

raw_io!(
    TcpStream,
    fn movable(&self) -> bool {
        true
    },
    fn into_movable(self) -> Option<std::net::TcpStream> {
        self.into_std().ok()
    }
);
raw_io!(UnixStream);

/// Waits until `io` is ready for `interest` (see [`RawIo::poll_ready`]).
///
/// Made anew on every turn of the session's loop. Tokio's `ready()` future
/// would add a waiter to the socket's list when polled and remove it when
/// dropped, a lock each, for both sockets on every turn; and it is several
/// times the size of this one, which sits in every idle session's future.
pub fn ready_for<T: RawIo>(io: &T, interest: Interest) -> ReadyFor<'_, T> {
    ReadyFor { io, interest }
}

/// See [`ready_for`].
pub struct ReadyFor<'a, T> {
    io: &'a T,
    interest: Interest,
}

impl<T: RawIo> Future for ReadyFor<'_, T> {
    type Output = io::Result<Ready>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.io.poll_ready(self.interest, cx)
    }
}

/// The outcome of [`RawIo::read_now`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadNow {
    pub n: usize,
    pub drained: bool,
}

/// Size of the per-thread read buffer: large enough that a 64 KiB message
/// moves in one read, small enough to stay in cache.
pub const READ_BUF_SIZE: usize = 64 * 1024;

thread_local! {
    // One buffer per worker thread, shared by all its sessions: it is only
    // borrowed inside synchronous code (read, scan, write), never across an
    // `.await`, so sessions cannot interleave on it.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUF_SIZE].into_boxed_slice());
}

/// Runs `f` with this thread's read buffer.
pub fn with_read_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        // Re-entrancy cannot happen (no await inside), but never panic: fall
        // back to a temporary buffer.
        Err(_) => f(&mut vec![0; READ_BUF_SIZE]),
    })
}

/// Writes as much of `data` as the socket takes now; returns the count.
/// `Ok(n < len)` means the rest must wait for writability.
pub fn write_now(dst: &impl RawIo, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match dst.try_write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
