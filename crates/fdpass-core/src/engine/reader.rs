//! The batch reader: everything a readiness event finds queued on a
//! socket, up to a budget, as one batch of data, per-message metadata and
//! descriptors.

use super::spare::{give_spare, take_spare, BATCH_DATA, BATCH_FDS, BATCH_META};
use super::Outcome;
use crate::address::SocketAddress;
use crate::error::Result;
use crate::frame::FrameDecoder;
use crate::recv::{recv_into_vec, ControlBuffer};
use crate::socket::SocketType;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// Per-message flag in the metadata: the datagram was longer than the buffer.
pub const FLAG_DATA_TRUNCATED: i32 = 1;
/// Per-message flag in the metadata: descriptors were lost (MSG_CTRUNC).
pub const FLAG_FDS_TRUNCATED: i32 = 2;

/// Bytes asked of each stream read.
pub const READ_CHUNK: usize = 64 * 1024;
/// A readiness event reads at most this much before yielding to other sockets.
pub const MAX_BATCH_MESSAGES: usize = 1024;
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Descriptors are open from the moment they arrive: a batch holds at most
/// this many, so a burst never runs the process into RLIMIT_NOFILE.
pub const MAX_BATCH_FDS: usize = 512;

thread_local! {
  /// One control buffer per thread, not per socket: reads happen one at a
  /// time on a thread, and a thousand idle sockets then cost no kilobyte each.
  static CONTROL: RefCell<ControlBuffer> = RefCell::new(ControlBuffer::new());
  /// A message socket receives here (sized for its largest message) and
  /// keeps only the bytes that came, so no socket holds a maxMessageSize
  /// allocation.
  static RECV_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How much one read takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Budget {
  /// Everything queued, up to the batch limits (a readiness event).
  Batch,
  /// A first message, and the whole frames already buffered with it, but
  /// no further syscall (`receiveSync`: the next call reads the rest, and
  /// an exchange of one message at a time needs no read that says EAGAIN).
  FirstMessage,
  /// As FirstMessage, waiting in the first recvmsg for it (a message
  /// socket whose file was made blocking: blocking.rs).
  WaitForFirst,
}

/// Messages read together. `meta` holds, per message: its length, its
/// descriptor count, how many descriptors were lost (-1: unknown), its
/// flags, then its descriptor numbers, which index into `fds`.
pub struct Batch {
  pub data: Vec<u8>,
  pub meta: Vec<i32>,
  pub fds: Vec<OwnedFd>,
  /// Each message's sender, for datagram sockets.
  pub addresses: Option<Vec<SocketAddress>>,
}

impl Batch {
  fn new(want_address: bool) -> Batch {
    Batch {
      data: take_spare(&BATCH_DATA),
      meta: take_spare(&BATCH_META),
      fds: take_spare(&BATCH_FDS),
      addresses: want_address.then(Vec::new),
    }
  }

  /// Is it exactly one message?
  pub fn is_one_message(&self) -> bool {
    self.meta.len() >= 4 && self.meta.len() == 4 + self.meta[1] as usize
  }

  /// Give the parts back to the thread for the next read; descriptors
  /// still here are closed.
  pub fn recycle(self) {
    give_spare(&BATCH_DATA, self.data, READ_CHUNK);
    give_spare(&BATCH_META, self.meta, 4 * 1024);
    give_spare(&BATCH_FDS, self.fds, MAX_BATCH_FDS);
  }
}

/// A framed stream's decoder, and the descriptors of one read on their
/// way into it.
struct Framing {
  decoder: FrameDecoder,
  fds: Vec<OwnedFd>,
}

/// The receiving half of a connection.
pub struct Reader {
  ty: SocketType,
  max_message: usize,
  /// Boxed: only framed streams have one, and an idle seqpacket socket
  /// then costs ~110 bytes less.
  framing: Option<Box<Framing>>,
  ended: bool,
}

impl Reader {
  pub fn new(ty: SocketType, framed: bool, max_message: usize) -> Reader {
    Reader {
      ty,
      max_message,
      framing: (framed && ty == SocketType::Stream).then(|| {
        Box::new(Framing {
          decoder: FrameDecoder::new(max_message),
          fds: Vec::new(),
        })
      }),
      ended: false,
    }
  }

  pub fn socket_type(&self) -> SocketType {
    self.ty
  }

  /// The largest message it accepts (a framed stream's limit).
  pub fn max_message(&self) -> usize {
    self.max_message
  }

  pub fn framed(&self) -> bool {
    self.framing.is_some()
  }

  /// End of stream or an error was reported; nothing more is read.
  pub fn ended(&self) -> bool {
    self.ended
  }

  /// Stop reading for good because of `error` from outside the reader
  /// (the readiness mechanism can no longer watch the socket): it is
  /// reported as a read error would be.
  pub fn fail(&mut self, error: crate::Error, out: &mut Vec<Outcome>) {
    if self.ended {
      return;
    }
    self.ended = true;
    out.push(Outcome::Error(error));
  }

  /// A whole frame waits in the decoder: the kernel will not report it readable.
  pub fn has_buffered_frame(&self) -> bool {
    !self.ended && self.framing.as_ref().is_some_and(|f| f.decoder.has_frame())
  }

  /// Close the descriptors that arrived for frames that never completed.
  pub fn discard(&mut self) {
    if let Some(f) = &mut self.framing {
      let _ = f.decoder.finish();
    }
  }

  /// Read from `socket` as `budget` says, appending a batch (if anything
  /// came), then `End` or `Error` (if the stream ended) to `out`.
  pub fn read(&mut self, socket: BorrowedFd<'_>, out: &mut Vec<Outcome>, budget: Budget) {
    if self.ended {
      return;
    }
    CONTROL.with(|c| self.read_with(socket, &mut c.borrow_mut(), out, budget));
  }

  fn read_with(
    &mut self,
    socket: BorrowedFd<'_>,
    control: &mut ControlBuffer,
    out: &mut Vec<Outcome>,
    budget: Budget,
  ) {
    let want_address = self.ty == SocketType::Datagram;
    let mut batch = Batch::new(want_address);
    let mut count = 0usize;
    let first_only = budget != Budget::Batch;
    let result: Result<bool> = loop {
      if count >= MAX_BATCH_MESSAGES
        || batch.data.len() >= MAX_BATCH_BYTES
        || batch.fds.len() >= MAX_BATCH_FDS
      {
        break Ok(false);
      }
      if let Some(Framing { decoder, fds }) = self.framing.as_deref_mut() {
        match decoder.next_frame(&mut batch.data, &mut batch.fds) {
          Ok(Some(f)) => {
            let flags = if f.fds_lost > 0 {
              FLAG_FDS_TRUNCATED
            } else {
              0
            };
            push_meta(
              &mut batch.meta,
              f.len,
              f.fds,
              f.fds_lost as i32,
              flags,
              &batch.fds,
            );
            count += 1;
            continue;
          }
          Ok(None) => {}
          Err(e) => break Err(e),
        }
        if first_only && count > 0 {
          break Ok(false);
        }
        match recv_into_vec(
          socket,
          decoder.buffer(),
          READ_CHUNK,
          control,
          fds,
          false,
          false,
        ) {
          Ok(r) if r.is_eof() => break decoder.finish().map(|_| true),
          Ok(r) => decoder.commit(r.bytes, fds.drain(..), r.fds_truncated),
          Err(e) if e.is_would_block() => break Ok(false),
          Err(e) => break Err(e),
        }
      } else {
        if first_only && count > 0 {
          break Ok(false);
        }
        let room = if self.ty == SocketType::Stream {
          READ_CHUNK
        } else {
          self.max_message
        };
        let received = RECV_BUFFER.with(|b| {
          let mut buf = b.borrow_mut();
          buf.clear();
          let r = recv_into_vec(
            socket,
            &mut buf,
            room,
            control,
            &mut batch.fds,
            want_address,
            budget == Budget::WaitForFirst && count == 0,
          );
          if let Ok(r) = &r {
            batch.data.extend_from_slice(&buf[..r.bytes]);
          }
          if buf.capacity() > 4 * READ_CHUNK.max(room) {
            *buf = Vec::new();
          }
          r
        });
        match received {
          Ok(r) if r.is_eof() && self.ty != SocketType::Datagram => break Ok(true),
          Ok(r) => {
            let flags = if r.data_truncated {
              FLAG_DATA_TRUNCATED
            } else {
              0
            } | if r.fds_truncated {
              FLAG_FDS_TRUNCATED
            } else {
              0
            };
            // The kernel does not say how many were lost; -1 means unknown.
            let lost = if r.fds_truncated { -1 } else { 0 };
            push_meta(&mut batch.meta, r.bytes, r.fds, lost, flags, &batch.fds);
            if let (Some(a), Some(addr)) = (&mut batch.addresses, r.address) {
              a.push(addr);
            }
            count += 1;
          }
          Err(e) if e.is_would_block() => break Ok(false),
          Err(e) => break Err(e),
        }
      }
    };
    if count > 0 {
      out.push(Outcome::Messages(batch));
    } else {
      batch.recycle();
    }
    match result {
      Ok(false) => {}
      Ok(true) => {
        self.ended = true;
        out.push(Outcome::End);
      }
      Err(e) => {
        self.ended = true;
        out.push(Outcome::Error(e));
      }
    }
  }
}

/// Metadata per message: length, fd count, fds lost, flags, then the fd numbers.
fn push_meta(meta: &mut Vec<i32>, len: usize, nfds: usize, lost: i32, flags: i32, fds: &[OwnedFd]) {
  meta.extend_from_slice(&[len as i32, nfds as i32, lost, flags]);
  meta.extend(fds[fds.len() - nfds..].iter().map(|f| f.as_raw_fd()));
}
