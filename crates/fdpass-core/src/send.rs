//! `sendmsg` with descriptors attached.
//!
//! One `SCM_RIGHTS` control message per call: the kernel attaches it to the
//! first byte of the data, so a caller that gets a partial write must send the
//! remaining bytes *without* the descriptors, or the receiver gets them twice.

use crate::error::{Error, Result};
use crate::platform;
use crate::socket::SocketType;
use crate::MAX_FDS_PER_MESSAGE;
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, UnixAddr};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Refuse a descriptor count the kernel would reject, before any syscall.
pub fn check_fd_count(count: usize) -> Result<()> {
  if count > MAX_FDS_PER_MESSAGE {
    return Err(Error::TooManyFds {
      count,
      max: MAX_FDS_PER_MESSAGE,
    });
  }
  Ok(())
}

/// Send `iov` with `fds` attached. Returns the bytes the kernel took, which on
/// a stream socket may be fewer than offered; EAGAIN comes back as an error
/// whose `is_would_block()` is true, with nothing sent.
pub fn send_message(
  socket: BorrowedFd<'_>,
  ty: SocketType,
  iov: &[IoSlice<'_>],
  fds: &[RawFd],
  to: Option<&UnixAddr>,
) -> Result<usize> {
  check_fd_count(fds.len())?;
  if !fds.is_empty() && ty == SocketType::Stream && iov.iter().all(|s| s.is_empty()) {
    // Linux would accept the call and silently drop the descriptors.
    return Err(Error::InvalidArgument {
      reason: "a stream socket needs at least one byte of data to carry descriptors".into(),
    });
  }
  if fds.is_empty() && ty == SocketType::SeqPacket && iov.iter().all(|s| s.is_empty()) {
    // The receiver could not tell it from end-of-stream (recvmsg returns 0).
    return Err(Error::InvalidArgument {
      reason: "an empty seqpacket message reads as end-of-stream; send at least one byte or one descriptor".into(),
    });
  }
  let rights = [ControlMessage::ScmRights(fds)];
  let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
  loop {
    match sendmsg(socket.as_raw_fd(), iov, cmsgs, platform::SEND_FLAGS, to) {
      Ok(n) => return Ok(n),
      Err(Errno::EINTR) => continue,
      Err(Errno::EBADF) => return Err(name_bad_fd(socket, fds)),
      Err(e) => {
        let address = to.map(|a| crate::SocketAddress::from_unix_addr(a).to_string());
        return Err(Error::Sys {
          errno: e,
          syscall: "sendmsg",
          address,
        });
      }
    }
  }
}

/// EBADF from sendmsg means the socket or one of the fds is closed; say which.
fn name_bad_fd(socket: BorrowedFd<'_>, fds: &[RawFd]) -> Error {
  for &fd in fds {
    if crate::fd::check_open(fd).is_err() {
      return Error::InvalidFd {
        fd,
        reason: "not an open file descriptor, so it cannot be sent".into(),
      };
    }
  }
  let _ = socket;
  Error::sys(Errno::EBADF, "sendmsg")
}
