//! End-to-end descriptor passing through the core, one gotcha per test.

mod common;
use common::*;
use fdpass_core::recv::ControlBuffer;
use fdpass_core::socket::socketpair;
use fdpass_core::{fd, SocketType, MAX_FDS_PER_MESSAGE};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};

#[test]
fn a_pipe_read_end_passes_and_reads_what_the_sender_wrote() {
  for ty in [SocketType::Stream, MESSAGE, SocketType::Datagram] {
    let (a, b) = socketpair(ty).unwrap();
    let (r, w) = pipe();
    assert_eq!(send(&a, ty, b"x", &[r.as_raw_fd()]).unwrap(), 1);
    drop(r);
    let mut control = ControlBuffer::new();
    let (data, mut fds, info) = recv(&b, &mut control);
    assert_eq!(data, b"x");
    assert!(!info.fds_truncated, "{ty:?}: no MSG_CTRUNC");
    assert_eq!(fds.len(), 1);
    std::fs::File::from(w)
      .write_all(b"through the pipe")
      .unwrap();
    let mut got = [0u8; 16];
    std::fs::File::from(fds.remove(0))
      .read_exact(&mut got)
      .unwrap();
    assert_eq!(&got, b"through the pipe");
  }
}

#[test]
fn received_descriptors_are_close_on_exec() {
  let (a, b) = socketpair(SocketType::Stream).unwrap();
  let (r, _w) = pipe();
  fd::set_cloexec(r.as_fd()).unwrap();
  // Clear CLOEXEC on the sender's copy: the flag is per descriptor, so the
  // received one must get it from MSG_CMSG_CLOEXEC, not from the sender.
  nix::fcntl::fcntl(
    r.as_fd(),
    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
  )
  .unwrap();
  send(&a, SocketType::Stream, b"x", &[r.as_raw_fd()]).unwrap();
  let (_, fds, _) = recv(&b, &mut ControlBuffer::new());
  assert!(fd::is_cloexec(fds[0].as_fd()).unwrap());
  assert!(
    fd::is_cloexec(a.as_fd()).unwrap(),
    "sockets fdpass creates are CLOEXEC too"
  );
}

#[test]
fn the_maximum_of_253_passes_and_254_is_refused_before_any_syscall() {
  let (a, b) = socketpair(MESSAGE).unwrap();
  let files: Vec<_> = (0..MAX_FDS_PER_MESSAGE)
    .map(|_| std::fs::File::open("/dev/null").unwrap())
    .collect();
  let raws: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
  send(&a, MESSAGE, b"many", &raws).unwrap();
  let (_, fds, info) = recv(&b, &mut ControlBuffer::new());
  assert_eq!(fds.len(), 253);
  assert!(!info.fds_truncated);

  let mut more = raws.clone();
  more.push(raws[0]);
  let err = send(&a, MESSAGE, b"too many", &more).unwrap_err();
  assert_eq!(err.code(), "ERR_FDPASS_TOO_MANY_FDS");
  assert!(err.to_string().contains("253"));
}

#[test]
fn a_small_control_buffer_truncates_and_the_arrived_fds_are_owned() {
  let (a, b) = socketpair(MESSAGE).unwrap();
  let files: Vec<_> = (0..8)
    .map(|_| std::fs::File::open("/dev/null").unwrap())
    .collect();
  let raws: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
  send(&a, MESSAGE, b"eight", &raws).unwrap();
  let before = open_fd_count();
  let (data, fds, info) = recv(&b, &mut ControlBuffer::with_fd_capacity(2));
  assert_eq!(data, b"eight");
  assert!(info.fds_truncated, "MSG_CTRUNC reported");
  assert_eq!(fds.len(), 2, "the two that fit arrived");
  assert_eq!(open_fd_count(), before + 2);
  drop(fds);
  assert_eq!(open_fd_count(), before);
}

#[test]
fn a_stream_needs_a_byte_of_data_to_carry_descriptors() {
  let (a, _b) = socketpair(SocketType::Stream).unwrap();
  let (r, _w) = pipe();
  let err = send(&a, SocketType::Stream, b"", &[r.as_raw_fd()]).unwrap_err();
  assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE");
}

#[test]
fn a_closed_descriptor_is_named_in_the_error() {
  let (a, _b) = socketpair(SocketType::Stream).unwrap();
  // A number far above any open descriptor: a just-closed one could be
  // reused at once by another test thread.
  let n = 999_999;
  let err = send(&a, SocketType::Stream, b"x", &[n]).unwrap_err();
  assert_eq!(err.code(), "ERR_FDPASS_INVALID_FD");
  assert!(err.to_string().contains(&n.to_string()));
}

#[test]
fn a_vanished_peer_is_epipe() {
  let (a, b) = socketpair(SocketType::Stream).unwrap();
  drop(b);
  let err = send(&a, SocketType::Stream, b"x", &[]).unwrap_err();
  assert_eq!(err.code(), "EPIPE");
  assert!(err.to_string().starts_with("sendmsg EPIPE"));
}

#[test]
fn a_receiver_shares_offset_and_status_flags_with_the_sender() {
  // Descriptors are new numbers for the same open file description.
  let path = std::env::temp_dir().join(format!("fdpass-desc-{}", std::process::id()));
  std::fs::write(&path, b"0123456789").unwrap();
  let mut file = std::fs::File::open(&path).unwrap();
  let (a, b) = socketpair(SocketType::Stream).unwrap();
  send(&a, SocketType::Stream, b"x", &[file.as_raw_fd()]).unwrap();
  let (_, mut fds, _) = recv(&b, &mut ControlBuffer::new());
  let mut received = std::fs::File::from(fds.remove(0));
  let mut two = [0u8; 2];
  received.read_exact(&mut two).unwrap();
  let mut next = [0u8; 2];
  file.read_exact(&mut next).unwrap();
  assert_eq!(&next, b"23", "the offset moved for both");
  assert!(same_file(&file, &received));
  std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_partial_stream_write_does_not_send_descriptors_twice() {
  let (a, b) = socketpair(SocketType::Stream).unwrap();
  nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
  let (r, _w) = pipe();
  let big = vec![7u8; 1 << 20];
  let first = send(&a, SocketType::Stream, &big, &[r.as_raw_fd()]).unwrap();
  assert!(first < big.len(), "the kernel took a part: {first}");
  // Drain on the other side while sending the rest without descriptors.
  let mut control = ControlBuffer::new();
  let mut total_fds = 0;
  let mut received = 0;
  let mut sent = first;
  while received < big.len() {
    if sent < big.len() {
      match send(&a, SocketType::Stream, &big[sent..], &[]) {
        Ok(n) => sent += n,
        Err(e) if e.is_would_block() => {}
        Err(e) => panic!("{e}"),
      }
    }
    let mut buf = vec![std::mem::MaybeUninit::uninit(); 65536];
    let mut fds = Vec::new();
    match fdpass_core::recv::recv_message(b.as_fd(), &mut buf, &mut control, &mut fds, false, false)
    {
      Ok(info) => {
        received += info.bytes;
        total_fds += fds.len();
      }
      Err(e) if e.is_would_block() => {}
      Err(e) => panic!("{e}"),
    }
  }
  assert_eq!(total_fds, 1);
}

#[test]
fn datagrams_carry_the_senders_address() {
  use fdpass_core::socket::{bind, BindOptions};
  use fdpass_core::SocketAddress;
  let dir = std::env::temp_dir();
  let pa = dir.join(format!("fdpass-dg-a-{}", std::process::id()));
  let pb = dir.join(format!("fdpass-dg-b-{}", std::process::id()));
  let a = bind(
    SocketType::Datagram,
    &SocketAddress::Path(pa.clone()),
    &BindOptions::default(),
  )
  .unwrap();
  let b = bind(
    SocketType::Datagram,
    &SocketAddress::Path(pb.clone()),
    &BindOptions::default(),
  )
  .unwrap();
  let to = SocketAddress::Path(pb.clone()).to_unix_addr().unwrap();
  let (r, _w) = pipe();
  fdpass_core::send::send_message(
    a.as_fd(),
    SocketType::Datagram,
    &[std::io::IoSlice::new(b"hi")],
    &[r.as_raw_fd()],
    Some(&to),
  )
  .unwrap();
  let mut buf = vec![std::mem::MaybeUninit::uninit(); 1024];
  let mut fds = Vec::new();
  let info = fdpass_core::recv::recv_message(
    b.as_fd(),
    &mut buf,
    &mut ControlBuffer::new(),
    &mut fds,
    true,
    false,
  )
  .unwrap();
  assert_eq!(info.address, Some(SocketAddress::Path(pa.clone())));
  assert_eq!(fds.len(), 1);
  std::fs::remove_file(pa).unwrap();
  std::fs::remove_file(pb).unwrap();
}

#[test]
fn wait_ready_times_out_then_sees_a_message() {
  let (a, b) = socketpair(SocketType::SeqPacket).unwrap();
  let started = std::time::Instant::now();
  assert!(
    !fdpass_core::socket::wait_ready(b.as_fd(), false, 30).unwrap(),
    "nothing to read yet"
  );
  assert!(started.elapsed() >= std::time::Duration::from_millis(29));
  assert!(
    fdpass_core::socket::wait_ready(a.as_fd(), true, 0).unwrap(),
    "room to write"
  );
  send(&a, SocketType::SeqPacket, b"x", &[]).unwrap();
  assert!(fdpass_core::socket::wait_ready(b.as_fd(), false, -1).unwrap());
}

#[test]
fn close_raw_and_fstat_raw_work_on_numbers_and_name_one_that_is_not_open() {
  let (a, b) = socketpair(SocketType::Stream).unwrap();
  let st = fd::fstat_raw(a.as_raw_fd()).unwrap();
  assert_eq!(fd::FdKind::from_stat(&st), fd::FdKind::Socket);
  let n = std::os::fd::IntoRawFd::into_raw_fd(a);
  // SAFETY: into_raw_fd gave up the OwnedFd: this test owns the number.
  unsafe { fd::close_raw(n) }.unwrap();
  // The peer sees the close: the number really was closed.
  let mut byte = [0u8; 1];
  assert_eq!(nix::unistd::read(b.as_fd(), &mut byte).unwrap(), 0);
  for err in [
    // SAFETY: 999999 is above RLIMIT_NOFILE here: no one owns that number.
    unsafe { fd::close_raw(999_999) }.unwrap_err(),
    fd::fstat_raw(999_999).unwrap_err(),
  ] {
    assert_eq!(err.code(), "ERR_FDPASS_INVALID_FD");
  }
}

#[test]
fn a_socket_made_blocking_still_never_waits_unless_asked() {
  // receiveSync() clears O_NONBLOCK to wait in recvmsg itself; every other
  // send and receive must still return EAGAIN rather than block.
  let (a, b) = socketpair(MESSAGE).unwrap();
  fd::set_nonblocking_to(a.as_fd(), false).unwrap();
  fd::set_nonblocking_to(b.as_fd(), false).unwrap();
  let mut buf = vec![std::mem::MaybeUninit::uninit(); 1024];
  let mut fds = Vec::new();
  let mut control = ControlBuffer::new();
  let r =
    fdpass_core::recv::recv_message(b.as_fd(), &mut buf, &mut control, &mut fds, false, false);
  assert!(r.unwrap_err().is_would_block());
  let big = vec![7u8; 4096];
  let mut sent = 0;
  let full = loop {
    match send(&a, MESSAGE, &big, &[]) {
      Ok(_) => sent += 1,
      Err(e) => break e,
    }
    assert!(sent < 100_000, "the peer's buffer never filled");
  };
  assert!(full.is_would_block(), "{full}");
  // With wait, a receive on the blocking socket waits for a message sent later.
  let (c, d) = socketpair(MESSAGE).unwrap();
  fd::set_nonblocking_to(d.as_fd(), false).unwrap();
  let sender = std::thread::spawn(move || {
    std::thread::sleep(std::time::Duration::from_millis(50));
    send(&c, MESSAGE, b"late", &[]).unwrap();
    c
  });
  let started = std::time::Instant::now();
  let info =
    fdpass_core::recv::recv_message(d.as_fd(), &mut buf, &mut control, &mut fds, false, true)
      .unwrap();
  assert_eq!(info.bytes, 4);
  assert!(started.elapsed() >= std::time::Duration::from_millis(40));
  drop(sender.join().unwrap());
}
