//! `recvmsg` that owns every descriptor it receives.
//!
//! This calls libc directly instead of nix's `recvmsg` because nix refuses
//! to walk a truncated control buffer (its `cmsgs()` answers ENOBUFS when
//! MSG_CTRUNC is set), which would strand the descriptors that did arrive.
//! Here each one becomes an `OwnedFd` at once, bounded by `msg_controllen`
//! rather than by `cmsg_len` (macOS reports the untruncated length there).

use crate::address::SocketAddress;
use crate::error::{Error, Result};
use crate::platform;
use nix::errno::Errno;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// An aligned buffer for ancillary data, sized for the most descriptors a
/// message can carry on this platform. The engine keeps one per thread
/// (engine/reader.rs) and reuses it for every read.
pub struct ControlBuffer {
  // u64 storage keeps the cmsghdr alignment that CMSG_FIRSTHDR expects.
  storage: Vec<u64>,
  len: usize,
}

impl ControlBuffer {
  pub fn new() -> Self {
    Self::with_fd_capacity(platform::RECV_FD_CAPACITY)
  }

  /// A buffer with room for `fds` descriptors only; tests use it to force MSG_CTRUNC.
  pub fn with_fd_capacity(fds: usize) -> Self {
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
    let len =
      unsafe { libc::CMSG_SPACE((fds * size_of::<libc::c_int>()) as libc::c_uint) } as usize;
    ControlBuffer {
      storage: vec![0u64; len.div_ceil(8)],
      len,
    }
  }
}

impl Default for ControlBuffer {
  fn default() -> Self {
    Self::new()
  }
}

/// What one `recvmsg` produced. The descriptors themselves were appended to
/// the caller's vector.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
  /// Bytes of data written to the buffer.
  pub bytes: usize,
  /// Descriptors appended to the caller's vector.
  pub fds: usize,
  /// MSG_CTRUNC: descriptors were lost (buffer too small or RLIMIT_NOFILE).
  pub fds_truncated: bool,
  /// MSG_TRUNC: a datagram did not fit the buffer; its tail was discarded.
  pub data_truncated: bool,
  /// The sender's address, when asked for (datagram sockets).
  pub address: Option<SocketAddress>,
}

impl Received {
  /// End of stream: nothing at all arrived (only meaningful on connected sockets).
  pub fn is_eof(&self) -> bool {
    self.bytes == 0 && self.fds == 0 && !self.fds_truncated && !self.data_truncated
  }
}

/// Receive one message (or, on a stream, one run of bytes) into `buf`, and
/// append the descriptors that came with it to `fds`. Unless `wait`, it
/// never waits (MSG_DONTWAIT, whatever the file's O_NONBLOCK) and EAGAIN
/// comes back as an error whose `is_would_block()` is true; with `wait`, it
/// waits as the file's O_NONBLOCK says.
pub fn recv_message(
  socket: BorrowedFd<'_>,
  buf: &mut [MaybeUninit<u8>],
  control: &mut ControlBuffer,
  fds: &mut Vec<OwnedFd>,
  want_address: bool,
  wait: bool,
) -> Result<Received> {
  let mut iov = libc::iovec {
    iov_base: buf.as_mut_ptr().cast(),
    iov_len: buf.len(),
  };
  // SAFETY: sockaddr_un and msghdr are plain C structs for which all-zero is valid.
  let mut name: libc::sockaddr_un = unsafe { std::mem::zeroed() };
  // SAFETY: msghdr is a plain C struct (pointers, lengths, flags) for which
  // all-zero is valid; musl's has padding fields, so it is zeroed rather than built.
  let mut mhdr: libc::msghdr = unsafe { std::mem::zeroed() };
  if want_address {
    mhdr.msg_name = (&mut name as *mut libc::sockaddr_un).cast();
    mhdr.msg_namelen = size_of::<libc::sockaddr_un>() as libc::socklen_t;
  }
  mhdr.msg_iov = &mut iov;
  mhdr.msg_iovlen = 1;
  mhdr.msg_control = control.storage.as_mut_ptr().cast();
  mhdr.msg_controllen = control.len as _;

  let flags = if wait {
    platform::RECV_FLAGS
  } else {
    platform::RECV_FLAGS | libc::MSG_DONTWAIT
  };
  let n = loop {
    // SAFETY: every pointer in mhdr refers to a live buffer of the stated length.
    let r = unsafe { platform::recvmsg(socket.as_raw_fd(), &mut mhdr, flags) };
    if r >= 0 {
      break r as usize;
    }
    match Errno::last() {
      Errno::EINTR => continue,
      e => return Err(Error::sys(e, "recvmsg")),
    }
  };

  let before = fds.len();
  take_rights(&mhdr, control, fds);
  if let Err(e) = platform::after_receive(&fds[before..]) {
    fds.truncate(before); // closes them: they cannot be made safe
    return Err(e);
  }

  let address = if want_address {
    Some(decode_address(&name, mhdr.msg_namelen as usize))
  } else {
    None
  };
  Ok(Received {
    bytes: n,
    fds: fds.len() - before,
    fds_truncated: mhdr.msg_flags & libc::MSG_CTRUNC != 0,
    data_truncated: mhdr.msg_flags & libc::MSG_TRUNC != 0,
    address,
  })
}

/// Wrap every SCM_RIGHTS descriptor in an `OwnedFd`, reading only what lies
/// within `msg_controllen`.
#[allow(clippy::unnecessary_cast)] // msg_controllen is u32 on macOS
fn take_rights(mhdr: &libc::msghdr, control: &ControlBuffer, fds: &mut Vec<OwnedFd>) {
  let start = control.storage.as_ptr() as usize;
  let end = start + (mhdr.msg_controllen as usize).min(control.len);
  // SAFETY: mhdr points at our control buffer, and msg_controllen was set by the kernel.
  let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(mhdr) };
  while !cmsg.is_null() {
    // SAFETY: CMSG_FIRSTHDR/NXTHDR return headers inside the buffer; read unaligned to be safe.
    let hdr: libc::cmsghdr = unsafe { std::ptr::read_unaligned(cmsg) };
    if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
      // SAFETY: CMSG_DATA is pointer arithmetic within the same header.
      let data = unsafe { libc::CMSG_DATA(cmsg) } as usize;
      let data_end = (cmsg as usize)
        .saturating_add(hdr.cmsg_len as usize)
        .min(end);
      let count = data_end.saturating_sub(data) / size_of::<libc::c_int>();
      for i in 0..count {
        let p = (data + i * size_of::<libc::c_int>()) as *const libc::c_int;
        // SAFETY: p lies within [data, data_end), inside the control buffer.
        let raw = unsafe { std::ptr::read_unaligned(p) };
        if raw >= 0 {
          // SAFETY: the kernel just installed this descriptor for us; nobody else owns it.
          fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
        }
      }
    }
    // SAFETY: mhdr and cmsg are valid; NXTHDR bounds-checks against msg_controllen.
    cmsg = unsafe { libc::CMSG_NXTHDR(mhdr, cmsg) };
  }
}

fn decode_address(name: &libc::sockaddr_un, namelen: usize) -> SocketAddress {
  let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
  let len = namelen.saturating_sub(offset).min(name.sun_path.len());
  if len == 0 {
    return SocketAddress::Unnamed;
  }
  // SAFETY: c_char and u8 have the same size and alignment.
  let bytes: &[u8] = unsafe { std::slice::from_raw_parts(name.sun_path.as_ptr().cast(), len) };
  if bytes[0] == 0 {
    return if platform::SUPPORTS_ABSTRACT {
      SocketAddress::Abstract(bytes[1..].to_vec())
    } else {
      SocketAddress::Unnamed
    };
  }
  let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
  SocketAddress::Path(std::ffi::OsStr::from_bytes(&bytes[..end]).into())
}

/// Receive into the spare capacity of `out`, growing it by the bytes read.
pub fn recv_into_vec(
  socket: BorrowedFd<'_>,
  out: &mut Vec<u8>,
  room: usize,
  control: &mut ControlBuffer,
  fds: &mut Vec<OwnedFd>,
  want_address: bool,
  wait: bool,
) -> Result<Received> {
  out.reserve(room);
  let spare = &mut out.spare_capacity_mut()[..room];
  let r = recv_message(socket, spare, control, fds, want_address, wait)?;
  let len = out.len() + r.bytes;
  // SAFETY: recvmsg initialised the first r.bytes bytes of the spare capacity.
  unsafe { out.set_len(len) };
  Ok(r)
}
