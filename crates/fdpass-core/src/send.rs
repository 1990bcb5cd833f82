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
use nix::sys::socket::{SockaddrLike, UnixAddr};
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
  loop {
    match raw_sendmsg(socket, iov, fds, to) {
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

/// Room for one SCM_RIGHTS message of the most descriptors a send may carry,
/// in u64 words so that it keeps cmsghdr's alignment.
const CONTROL_WORDS: usize = (MAX_FDS_PER_MESSAGE * 4 + 64).div_ceil(8);

/// One sendmsg(2) with the control message built on the stack: nix's
/// `sendmsg` allocates its control buffer on the heap at every call, which
/// showed in profiles of a send per message.
#[allow(clippy::unnecessary_cast)] // msg_controllen and cmsg_len differ in type per platform
fn raw_sendmsg(
  socket: BorrowedFd<'_>,
  iov: &[IoSlice<'_>],
  fds: &[RawFd],
  to: Option<&UnixAddr>,
) -> std::result::Result<usize, Errno> {
  let mut control = [0u64; CONTROL_WORDS];
  // SAFETY: msghdr is a plain C struct for which all-zero is valid (musl has padding fields).
  let mut mhdr: libc::msghdr = unsafe { std::mem::zeroed() };
  mhdr.msg_iov = iov.as_ptr() as *mut libc::iovec; // IoSlice is ABI-compatible with iovec
  mhdr.msg_iovlen = iov.len() as _;
  if let Some(addr) = to {
    mhdr.msg_name = addr.as_ptr() as *mut libc::c_void;
    mhdr.msg_namelen = addr.len();
  }
  if !fds.is_empty() {
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic; the buffer holds CMSG_SPACE of the
    // largest payload (checked by check_fd_count), and CMSG_FIRSTHDR points into it.
    unsafe {
      let space = libc::CMSG_SPACE(payload as libc::c_uint) as usize;
      debug_assert!(space <= CONTROL_WORDS * 8);
      mhdr.msg_control = control.as_mut_ptr().cast();
      mhdr.msg_controllen = space as _;
      let cmsg = libc::CMSG_FIRSTHDR(&mhdr);
      (*cmsg).cmsg_level = libc::SOL_SOCKET;
      (*cmsg).cmsg_type = libc::SCM_RIGHTS;
      (*cmsg).cmsg_len = libc::CMSG_LEN(payload as libc::c_uint) as _;
      std::ptr::copy_nonoverlapping(
        fds.as_ptr(),
        libc::CMSG_DATA(cmsg).cast::<RawFd>(),
        fds.len(),
      );
    }
  }
  // SAFETY: every pointer in mhdr refers to live buffers for the duration of the call.
  let n = unsafe { platform::sendmsg(socket.as_raw_fd(), &mhdr, platform::SEND_FLAGS.bits()) };
  if n < 0 {
    Err(Errno::last())
  } else {
    Ok(n as usize)
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
