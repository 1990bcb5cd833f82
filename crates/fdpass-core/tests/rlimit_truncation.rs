//! A receiver at RLIMIT_NOFILE: the kernel installs what it can, sets
//! MSG_CTRUNC and closes the rest. Alone in its own test binary because it
//! lowers the limit for the whole process. macOS installs every descriptor
//! before it truncates, so the assertions here describe Linux only.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use fdpass_core::recv::ControlBuffer;
use fdpass_core::socket::socketpair;
use fdpass_core::SocketType;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::os::fd::AsRawFd;

#[test]
fn a_receiver_at_its_fd_limit_sees_truncation_and_keeps_what_arrived() {
  let (a, b) = socketpair(SocketType::SeqPacket).unwrap();
  let files: Vec<_> = (0..10)
    .map(|_| std::fs::File::open("/dev/null").unwrap())
    .collect();
  let raws: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
  send(&a, SocketType::SeqPacket, b"ten", &raws).unwrap();
  send(&a, SocketType::SeqPacket, b"after", &[]).unwrap();

  let open = open_fd_count() as u64;
  let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
  // Room for three more descriptors (read_dir's own fd is counted in `open`).
  setrlimit(Resource::RLIMIT_NOFILE, open + 2, hard).unwrap();
  let mut control = ControlBuffer::new();
  let (data, fds, info) = recv(&b, &mut control);
  setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();

  assert_eq!(data, b"ten");
  assert!(info.fds_truncated, "MSG_CTRUNC at RLIMIT_NOFILE");
  assert!(fds.len() < 10, "only some arrived: {}", fds.len());
  drop(fds);
  let (data, fds, info) = recv(&b, &mut control);
  assert_eq!(data, b"after", "the socket stays usable");
  assert!(fds.is_empty() && !info.fds_truncated);
}
