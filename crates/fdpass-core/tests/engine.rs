//! The connection engine over real socketpairs: partial writes, a full
//! buffer (EAGAIN), several frames per sendmsg at the descriptor limit, and
//! a framed stream split at every byte on the reading side.

mod common;
use common::*;
use fdpass_core::engine::{Batch, Connection, Outcome, Reader};
use fdpass_core::frame::FrameHeader;
use fdpass_core::recv::{recv_message, ControlBuffer};
use fdpass_core::socket::{socketpair, wait_ready};
use fdpass_core::{Error, SocketType, MAX_FDS_PER_MESSAGE};
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

const MAX_MESSAGE: usize = 8 << 20;

/// A stream pair whose sending side has a small buffer, so that a large
/// write is cut short.
fn small_buffer_pair() -> (OwnedFd, OwnedFd) {
  let (a, b) = socketpair(SocketType::Stream).unwrap();
  nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
  nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
  (a, b)
}

fn frame(payload: &[u8], fds: usize) -> Vec<u8> {
  let mut v = FrameHeader {
    fds: fds as u16,
    len: payload.len() as u32,
  }
  .encode()
  .to_vec();
  v.extend_from_slice(payload);
  v
}

/// One raw recvmsg's worth: where in the stream its bytes began, and what came.
struct Chunk {
  offset: usize,
  bytes: Vec<u8>,
  fds: Vec<OwnedFd>,
}

/// Everything readable now, one chunk per recvmsg.
fn drain_raw(sock: &OwnedFd, offset: &mut usize, into: &mut Vec<Chunk>) {
  let mut control = ControlBuffer::new();
  loop {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 65536];
    let mut fds = Vec::new();
    match recv_message(sock.as_fd(), &mut buf, &mut control, &mut fds, false, false) {
      Ok(r) if r.is_eof() => return,
      Ok(r) => {
        // SAFETY: recvmsg initialised the first r.bytes bytes.
        let bytes = buf[..r.bytes]
          .iter()
          .map(|b| unsafe { b.assume_init() })
          .collect();
        into.push(Chunk {
          offset: *offset,
          bytes,
          fds,
        });
        *offset += r.bytes;
      }
      Err(e) if e.is_would_block() => return,
      Err(e) => panic!("recvmsg: {e}"),
    }
  }
}

/// Flush `conn` and drain `peer` until `total` bytes arrived; the outcomes
/// the flushes reported.
fn pump(conn: &mut Connection, peer: &OwnedFd, total: usize) -> (Vec<Chunk>, Vec<Outcome>) {
  let (mut chunks, mut outcomes, mut offset) = (Vec::new(), Vec::new(), 0);
  while offset < total {
    conn.flush(&mut outcomes);
    let before = offset;
    drain_raw(peer, &mut offset, &mut chunks);
    if offset == before {
      assert!(
        conn.pending_sends() > 0,
        "nothing queued, yet {offset} of {total} bytes arrived"
      );
      wait_ready(peer.as_fd(), false, 1000).unwrap();
    }
  }
  conn.flush(&mut outcomes);
  (chunks, outcomes)
}

fn sent_count(outcomes: &[Outcome]) -> u32 {
  outcomes
    .iter()
    .map(|o| match o {
      Outcome::Sent(n) => *n,
      Outcome::SendFailed(e, n) => panic!("{n} sends failed: {e}"),
      _ => 0,
    })
    .sum()
}

/// Decode the chunks, in the order they were read, as a framed stream:
/// each frame's payload and descriptors.
fn decode(chunks: Vec<Chunk>) -> Vec<(Vec<u8>, Vec<OwnedFd>)> {
  let mut d = fdpass_core::FrameDecoder::new(MAX_MESSAGE);
  let mut frames = Vec::new();
  for c in chunks {
    d.push(&c.bytes, c.fds, false);
    loop {
      let (mut data, mut fds) = (Vec::new(), Vec::new());
      match d.next_frame(&mut data, &mut fds).unwrap() {
        Some(_) => frames.push((data, fds)),
        None => break,
      }
    }
  }
  d.finish().expect("nothing left over");
  frames
}

#[test]
fn a_partial_write_sends_the_descriptors_once_with_the_first_byte() {
  for framed in [false, true] {
    let (a, b) = small_buffer_pair();
    let mut conn = Connection::new(a, SocketType::Stream, framed, MAX_MESSAGE);
    let files = devnull(3);
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let queued = conn.send(&big, &raw(&files), None).unwrap();
    assert!(queued, "a 1 MiB write into a 4 KiB buffer is cut short");
    assert_eq!(conn.pending_sends(), 1);
    let total = big.len() + if framed { 8 } else { 0 };
    let (chunks, outcomes) = pump(&mut conn, &b, total);
    assert_eq!(sent_count(&outcomes), 1, "framed={framed}: one completion");
    let with_fds: Vec<&Chunk> = chunks.iter().filter(|c| !c.fds.is_empty()).collect();
    assert_eq!(
      with_fds.len(),
      1,
      "framed={framed}: the descriptors came once"
    );
    assert_eq!(
      with_fds[0].offset, 0,
      "framed={framed}: with the first byte"
    );
    assert_eq!(with_fds[0].fds.len(), 3);
    for (got, sent) in with_fds[0].fds.iter().zip(&files) {
      assert!(same_file(got, sent));
    }
    let bytes: Vec<u8> = chunks
      .iter()
      .flat_map(|c| c.bytes.iter().copied())
      .collect();
    assert_eq!(&bytes[total - big.len()..], &big[..]);
  }
}

#[test]
fn a_blocking_send_cut_short_sends_the_rest_without_the_descriptors() {
  let (a, b) = small_buffer_pair();
  let mut conn = Connection::new(a, SocketType::Stream, true, MAX_MESSAGE);
  let files = devnull(2);
  let big = vec![9u8; 1 << 20];
  let total = big.len() + 8;
  let reader = std::thread::spawn(move || {
    let (mut chunks, mut offset) = (Vec::new(), 0);
    while offset < total {
      wait_ready(b.as_fd(), false, -1).unwrap();
      drain_raw(&b, &mut offset, &mut chunks);
    }
    chunks
  });
  conn.send_blocking(&big, &raw(&files)).unwrap();
  let chunks = reader.join().unwrap();
  assert!(chunks.len() > 1, "the kernel took it in parts");
  let with_fds: Vec<&Chunk> = chunks.iter().filter(|c| !c.fds.is_empty()).collect();
  assert_eq!(with_fds.len(), 1, "the descriptors came once");
  assert_eq!((with_fds[0].offset, with_fds[0].fds.len()), (0, 2));
  let frames = decode(chunks);
  assert_eq!(frames.len(), 1);
  assert_eq!(frames[0].0, big);
}

#[test]
fn queued_frames_sent_together_and_cut_short_carry_each_descriptor_once() {
  let (a, b) = small_buffer_pair();
  let mut conn = Connection::new(a, SocketType::Stream, true, MAX_MESSAGE);
  // The first frame fills the buffer; the others queue behind it and go
  // several per sendmsg, some of those cut short.
  let files = devnull(4);
  let mut expected = Vec::new();
  for i in 0..40usize {
    let payload = vec![i as u8; 3000 + i * 97];
    let fds = &files[..i % 5];
    conn.send(&payload, &raw(fds), None).unwrap();
    expected.push((payload, fds.len()));
  }
  let queued = conn.pending_sends();
  assert!(queued > 1, "frames wait in the queue");
  let total: usize = expected.iter().map(|(p, _)| p.len() + 8).sum();
  let (chunks, outcomes) = pump(&mut conn, &b, total);
  assert_eq!(
    sent_count(&outcomes) as usize,
    queued,
    "every queued frame completes"
  );
  let fds_in: usize = chunks.iter().map(|c| c.fds.len()).sum();
  let fds_out: usize = expected.iter().map(|(_, n)| n).sum();
  assert_eq!(fds_in, fds_out, "no descriptor arrived twice");
  let frames = decode(chunks);
  assert_eq!(frames.len(), expected.len());
  for ((data, fds), (payload, n)) in frames.iter().zip(&expected) {
    assert_eq!(data, payload);
    assert_eq!(fds.len(), *n);
    for (got, sent) in fds.iter().zip(&files) {
      assert!(same_file(got, sent), "each frame gets its own descriptors");
    }
  }
}

#[test]
fn sends_on_a_full_buffer_queue_in_order_with_their_own_descriptors() {
  for (ty, framed) in [
    (SocketType::Stream, true),
    (SocketType::Stream, false),
    (MESSAGE, false),
  ] {
    let (a, b) = socketpair(ty).unwrap();
    nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
    let mut conn = Connection::new(a, ty, framed, MAX_MESSAGE);
    // Each message is numbered and carries the read end of its own pipe,
    // which the caller closes as soon as send returns.
    let mut sent: Vec<OwnedFd> = Vec::new();
    let send_next = |conn: &mut Connection, sent: &mut Vec<OwnedFd>| {
      let (r, w) = pipe();
      let mut msg = (sent.len() as u32).to_be_bytes().to_vec();
      msg.resize(512, 0);
      let queued = conn.send(&msg, &[r.as_raw_fd()], None).unwrap();
      sent.push(w);
      queued
    };
    // Fill the buffer until the kernel refuses (EAGAIN).
    while conn.pending_sends() < 20 {
      send_next(&mut conn, &mut sent);
      assert!(sent.len() < 100_000, "{ty:?}: the buffer never filled");
    }
    let mut got: Vec<(u32, OwnedFd)> = Vec::new();
    let mut reader = Reader::new(ty, framed, MAX_MESSAGE);
    let mut out = Vec::new();
    let take = |out: &mut Vec<Outcome>, got: &mut Vec<(u32, OwnedFd)>| {
      for o in out.drain(..) {
        let Outcome::Messages(batch) = o else {
          panic!("{ty:?}: the stream ended early");
        };
        got.extend(
          messages(batch, Some(512))
            .into_iter()
            .map(|(data, mut fds)| {
              assert_eq!(fds.len(), 1, "{ty:?}: one descriptor per message");
              (
                u32::from_be_bytes(data[..4].try_into().unwrap()),
                fds.remove(0),
              )
            }),
        );
      }
    };
    // The peer reads, so the kernel has room again, while messages still
    // wait here: new sends go behind them, not past them.
    reader.read(b.as_fd(), &mut out, fdpass_core::engine::Budget::Batch);
    take(&mut out, &mut got);
    assert!(!got.is_empty(), "{ty:?}: the peer read something");
    for _ in 0..5 {
      assert!(
        send_next(&mut conn, &mut sent),
        "{ty:?}: queued behind the others"
      );
    }
    let total = sent.len();
    let mut outcomes = Vec::new();
    for round in 0.. {
      if got.len() == total {
        break;
      }
      assert!(round < 100_000, "{ty:?}: {} of {total} arrived", got.len());
      conn.flush(&mut outcomes);
      reader.read(b.as_fd(), &mut out, fdpass_core::engine::Budget::Batch);
      take(&mut out, &mut got);
    }
    assert_eq!(sent_count(&outcomes) as usize, 25, "{ty:?}");
    for (n, (seq, fd)) in got.iter().enumerate() {
      assert_eq!(*seq as usize, n, "{ty:?}: in the order sent");
      // Each descriptor is the read end of its own message's pipe.
      nix::unistd::write(&sent[n], &seq.to_be_bytes()).unwrap();
      let mut back = [0u8; 4];
      assert_eq!(nix::unistd::read(fd.as_fd(), &mut back).unwrap(), 4);
      assert_eq!(
        u32::from_be_bytes(back),
        *seq,
        "{ty:?}: message {n}'s own pipe"
      );
    }
  }
}

/// A batch's messages: `(data, fds)` each; cut into messages of `size`
/// bytes when given (an unframed stream, whose reads keep no boundaries).
fn messages(batch: Batch, size: Option<usize>) -> Vec<(Vec<u8>, Vec<OwnedFd>)> {
  let Batch {
    data, meta, fds, ..
  } = batch;
  let mut fds = fds.into_iter();
  let (mut i, mut at, mut out) = (0, 0, Vec::new());
  while i < meta.len() {
    let (len, n) = (meta[i] as usize, meta[i + 1] as usize);
    assert_eq!(
      (meta[i + 2], meta[i + 3]),
      (0, 0),
      "nothing lost or truncated"
    );
    let taken: Vec<OwnedFd> = fds.by_ref().take(n).collect();
    for (fd, &num) in taken.iter().zip(&meta[i + 4..i + 4 + n]) {
      assert_eq!(
        fd.as_raw_fd(),
        num,
        "the metadata names the batch's descriptors"
      );
    }
    out.push((data[at..at + len].to_vec(), taken));
    at += len;
    i += 4 + n;
  }
  if let Some(size) = size.filter(|&n| out.iter().any(|(d, _)| d.len() != n)) {
    // Cut the bytes into messages, with their fds in order.
    let all: Vec<u8> = out.iter().flat_map(|(d, _)| d.clone()).collect();
    let mut fds: Vec<OwnedFd> = out.into_iter().flat_map(|(_, f)| f).collect();
    fds.reverse();
    return all
      .chunks(size)
      .map(|d| (d.to_vec(), fds.pop().into_iter().collect()))
      .collect();
  }
  out
}

#[test]
fn frames_sent_together_stop_at_the_descriptor_limit() {
  let (a, b) = small_buffer_pair();
  let mut conn = Connection::new(a, SocketType::Stream, true, MAX_MESSAGE);
  let files = devnull(MAX_FDS_PER_MESSAGE);
  // A first frame that fills the buffer, then frames whose descriptors
  // add up to more than one sendmsg can carry: 253 exactly, then 1 more;
  // 200 + 53 = 253; 200 + 54 > 253.
  let counts = [0, MAX_FDS_PER_MESSAGE, 1, 200, 53, 200, 54, 0, 3];
  let mut expected = Vec::new();
  for (i, &n) in counts.iter().enumerate() {
    let payload = vec![i as u8; if i == 0 { 1 << 20 } else { 10 }];
    conn.send(&payload, &raw(&files[..n]), None).unwrap();
    expected.push((payload, n));
  }
  assert_eq!(conn.pending_sends(), counts.len());
  let refused = conn.send(b"x", &raw(&devnull(MAX_FDS_PER_MESSAGE + 1)), None);
  assert!(
    matches!(refused, Err(Error::TooManyFds { count: 254, .. })),
    "{refused:?}"
  );
  let total: usize = expected.iter().map(|(p, _)| p.len() + 8).sum();
  let (chunks, outcomes) = pump(&mut conn, &b, total);
  assert_eq!(sent_count(&outcomes) as usize, counts.len());
  assert!(chunks.iter().all(|c| c.fds.len() <= MAX_FDS_PER_MESSAGE));
  let frames = decode(chunks);
  assert_eq!(frames.len(), counts.len());
  for ((data, fds), (payload, n)) in frames.iter().zip(&expected) {
    assert_eq!(data, payload);
    assert_eq!(fds.len(), *n);
  }
}

#[test]
fn a_framed_stream_split_at_every_byte_reads_whole_frames() {
  let files = devnull(3);
  // (payload, descriptors): an empty frame with descriptors included.
  let plan: [(&[u8], usize); 4] = [
    (b"hello", 1),
    (b"", 2),
    (b"twenty bytes of data", 0),
    (b"z", 3),
  ];
  let stream: Vec<u8> = plan.iter().flat_map(|(p, n)| frame(p, *n)).collect();
  let starts: Vec<usize> = plan
    .iter()
    .scan(0, |at, (p, _)| {
      let s = *at;
      *at += 8 + p.len();
      Some(s)
    })
    .collect();
  for cut in 1..stream.len() {
    let (a, b) = socketpair(SocketType::Stream).unwrap();
    let mut reader = Reader::new(SocketType::Stream, true, MAX_MESSAGE);
    let mut out = Vec::new();
    for (from, to) in [(0, cut), (cut, stream.len())] {
      // Each frame's descriptors ride with the part its first byte is in.
      let fds: Vec<RawFd> = plan
        .iter()
        .zip(&starts)
        .filter(|(_, &s)| s >= from && s < to)
        .flat_map(|((_, n), _)| raw(&files[..*n]))
        .collect();
      let n = fdpass_core::send::send_message(
        a.as_fd(),
        SocketType::Stream,
        &[IoSlice::new(&stream[from..to])],
        &fds,
        None,
      )
      .unwrap();
      assert_eq!(n, to - from);
      reader.read(b.as_fd(), &mut out, fdpass_core::engine::Budget::Batch);
    }
    let mut frames = Vec::new();
    for o in out {
      match o {
        Outcome::Messages(batch) => frames.extend(messages(batch, None)),
        _ => panic!("cut at {cut}: only messages"),
      }
    }
    assert_eq!(frames.len(), plan.len(), "cut at {cut}");
    for ((data, fds), (payload, n)) in frames.iter().zip(&plan) {
      assert_eq!(&data[..], *payload, "cut at {cut}");
      assert_eq!(fds.len(), *n, "cut at {cut}");
      for (got, sent) in fds.iter().zip(&files) {
        assert!(same_file(got, sent), "cut at {cut}");
      }
    }
    drop(a);
    let mut end = Vec::new();
    reader.read(b.as_fd(), &mut end, fdpass_core::engine::Budget::Batch);
    assert!(
      matches!(end[..], [Outcome::End]),
      "cut at {cut}: a clean end"
    );
  }
}
