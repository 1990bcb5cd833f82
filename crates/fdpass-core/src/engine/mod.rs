//! The connection engine: what a connected (or datagram) socket does with
//! its bytes and descriptors, independent of how readiness is learnt or
//! who receives the results.
//!
//! - `write`: the one write routine, and the rule that a message's
//!   descriptors ride with its first byte.
//! - `send_queue`: messages the kernel could not take yet, in order.
//! - `reader`: the batch reader (framed streams through `FrameDecoder`).
//! - `blocking`: `sendSync()`/`receiveSync()`, waiting between those calls.
//! - `spare`: per-thread vectors a read reuses.
//!
//! Every send and receive passes MSG_DONTWAIT (platform.rs), so a socket
//! whose file a synchronous receive made blocking never blocks elsewhere.

pub mod blocking;
pub mod reader;
pub mod send_queue;
pub mod spare;
pub mod write;

pub use reader::{Batch, Budget, Reader};
pub use send_queue::SendQueue;
pub use write::Message;

use crate::error::{Error, Result};
use crate::frame::FrameHeader;
use crate::send::check_fd_count;
use crate::socket::SocketType;
use nix::errno::Errno;
use nix::sys::socket::UnixAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

/// What a connection did, for whoever receives its events.
pub enum Outcome {
  /// This many queued messages were wholly sent.
  Sent(u32),
  /// A send failed, and this many queued messages were dropped with it.
  SendFailed(Error, u32),
  Messages(Batch),
  /// The peer closed the connection.
  End,
  /// The connection failed; nothing more is read.
  Error(Error),
}

/// A connected or datagram Unix socket: its descriptor, send queue and reader.
/// (Its type and largest message are the reader's: an idle socket is
/// mostly this struct, so nothing in it is kept twice.)
pub struct Connection {
  socket: OwnedFd,
  queue: SendQueue,
  reader: Reader,
  sync: blocking::SyncReads,
}

impl Connection {
  /// `framed` applies to streams: each message is a frame (frame.rs).
  pub fn new(socket: OwnedFd, ty: SocketType, framed: bool, max_message: usize) -> Connection {
    Connection {
      socket,
      queue: SendQueue::default(),
      reader: Reader::new(ty, framed, max_message),
      sync: blocking::SyncReads::default(),
    }
  }

  pub fn socket(&self) -> BorrowedFd<'_> {
    self.socket.as_fd()
  }

  pub fn socket_type(&self) -> SocketType {
    self.reader.socket_type()
  }

  /// Messages waiting in the send queue.
  pub fn pending_sends(&self) -> usize {
    self.queue.len()
  }

  /// End of stream or an error was reported; nothing more is read.
  pub fn ended(&self) -> bool {
    self.reader.ended()
  }

  /// End reading with `error` (see `Reader::fail`).
  pub fn fail(&mut self, error: Error, out: &mut Vec<Outcome>) {
    self.reader.fail(error, out)
  }

  /// A whole frame waits in the decoder: the kernel will not report it readable.
  pub fn has_buffered_frame(&self) -> bool {
    self.reader.has_buffered_frame()
  }

  /// Send one message: at once if the kernel takes it, else (what is left
  /// of it) through the queue. Ok(false) when all of it went, Ok(true)
  /// when it waits; `flush` reports its completion as `Sent`.
  pub fn send(&mut self, data: &[u8], fds: &[RawFd], to: Option<UnixAddr>) -> Result<bool> {
    let header = self.frame_header(data, fds)?;
    let head = header.as_ref().map_or(&[][..], |h| &h[..]);
    let m = Message::new(head, data, fds, to.as_ref());
    self
      .queue
      .send(self.socket.as_fd(), self.socket_type(), m, to)
  }

  /// Send one message whole, blocking the thread while the kernel's buffer
  /// is full. Refused (EBUSY) while sends are queued, never reordered.
  pub fn send_blocking(&mut self, data: &[u8], fds: &[RawFd]) -> Result<()> {
    if !self.queue.is_empty() {
      return Err(Error::sys(Errno::EBUSY, "sendmsg"));
    }
    let header = self.frame_header(data, fds)?;
    let head = header.as_ref().map_or(&[][..], |h| &h[..]);
    blocking::send(
      self.socket.as_fd(),
      self.socket_type(),
      Message::new(head, data, fds, None),
    )
  }

  /// Write what the queue holds, until it is empty or the kernel is full.
  pub fn flush(&mut self, out: &mut Vec<Outcome>) {
    let coalesce = self.reader.framed();
    self
      .queue
      .flush(self.socket.as_fd(), self.socket_type(), coalesce, out);
  }

  /// Read everything queued, up to the batch limits.
  pub fn read(&mut self, out: &mut Vec<Outcome>) {
    self.reader.read(self.socket.as_fd(), out, Budget::Batch);
  }

  /// Read a first message (and the whole frames buffered with it),
  /// waiting up to `timeout_ms` (negative: no limit). Empty when the time
  /// ran out.
  pub fn read_blocking(&mut self, timeout_ms: i64) -> Result<Vec<Outcome>> {
    self
      .sync
      .read(self.socket.as_fd(), &mut self.reader, timeout_ms)
  }

  /// Close the socket, the queued messages' duplicates and the descriptors
  /// of unfinished frames. Returns how many queued sends were dropped.
  pub fn close(mut self) -> usize {
    self.reader.discard();
    self.queue.clear()
  }

  /// The frame header a framed stream puts before `data`; None otherwise.
  /// Refuses what the peer could not take, before any syscall.
  fn frame_header(&self, data: &[u8], fds: &[RawFd]) -> Result<Option<[u8; 8]>> {
    check_fd_count(fds.len())?;
    if !self.reader.framed() {
      return Ok(None);
    }
    let max = self.reader.max_message();
    if data.len() > max {
      return Err(Error::MessageTooLarge {
        size: data.len(),
        max,
      });
    }
    Ok(Some(
      FrameHeader {
        fds: fds.len() as u16,
        len: data.len() as u32,
      }
      .encode(),
    ))
  }
}
