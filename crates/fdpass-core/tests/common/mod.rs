//! Shared helpers for the core's integration tests.
#![allow(dead_code)]

use fdpass_core::recv::{recv_message, ControlBuffer, Received};
use fdpass_core::send::send_message;
use fdpass_core::SocketType;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// A message-oriented type for tests that only need boundaries: seqpacket
/// where Unix sockets have it (Linux), dgram elsewhere (macOS).
pub const MESSAGE: SocketType = if cfg!(target_os = "linux") {
  SocketType::SeqPacket
} else {
  SocketType::Datagram
};

pub fn pipe() -> (OwnedFd, OwnedFd) {
  nix::unistd::pipe().unwrap()
}

pub fn send(
  sock: &OwnedFd,
  ty: SocketType,
  data: &[u8],
  fds: &[RawFd],
) -> fdpass_core::Result<usize> {
  send_message(sock.as_fd(), ty, &[IoSlice::new(data)], fds, None)
}

pub fn recv(sock: &OwnedFd, control: &mut ControlBuffer) -> (Vec<u8>, Vec<OwnedFd>, Received) {
  let mut buf = vec![MaybeUninit::<u8>::uninit(); 65536];
  let mut fds = Vec::new();
  let r = recv_message(sock.as_fd(), &mut buf, control, &mut fds, false, false).unwrap();
  // SAFETY: recvmsg initialised the first r.bytes bytes.
  let data = buf[..r.bytes]
    .iter()
    .map(|b| unsafe { b.assume_init() })
    .collect();
  (data, fds, r)
}

/// `n` descriptors of /dev/null, to stand for received ones.
pub fn devnull(n: usize) -> Vec<OwnedFd> {
  (0..n)
    .map(|_| std::fs::File::open("/dev/null").unwrap().into())
    .collect()
}

/// Number of open descriptors in this process.
pub fn open_fd_count() -> usize {
  std::fs::read_dir(if cfg!(target_os = "macos") {
    "/dev/fd"
  } else {
    "/proc/self/fd"
  })
  .map(|d| d.count())
  .unwrap_or(0)
}

pub fn same_file(a: &impl AsFd, b: &impl AsFd) -> bool {
  let sa = nix::sys::stat::fstat(a.as_fd()).unwrap();
  let sb = nix::sys::stat::fstat(b.as_fd()).unwrap();
  sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
}

pub fn raw(fds: &[OwnedFd]) -> Vec<RawFd> {
  fds.iter().map(|f| f.as_raw_fd()).collect()
}
