//! The send queue: messages the kernel could not take at once, kept in
//! order, with our own duplicates of their descriptors so that the caller
//! may close theirs as soon as `send` returns.

use super::write::{write, FdList, Message, Unsent};
use super::Outcome;
use crate::error::Result;
use crate::socket::SocketType;
use nix::sys::socket::UnixAddr;
use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};

/// A message waiting for room in the kernel's buffer.
struct Queued {
  bytes: Vec<u8>,
  written: usize,
  /// Duplicates that go with the first byte; closed once they have gone.
  fds: Vec<OwnedFd>,
  /// They went, ahead of bytes that wait here.
  fds_gone: bool,
  to: Option<UnixAddr>,
}

impl Queued {
  /// What is left of `m`: its unsent bytes, and duplicates of the
  /// descriptors that have not gone yet.
  fn rest_of(m: &Message<'_>, to: Option<UnixAddr>) -> Result<Queued> {
    let [a, b] = m.unsent();
    let mut bytes = Vec::with_capacity(a.len() + b.len());
    bytes.extend_from_slice(a);
    bytes.extend_from_slice(b);
    let fds = match m.fds() {
      FdList::Raw(fds) => fds
        .iter()
        .map(|&raw| crate::fd::dup_raw_cloexec(raw))
        .collect::<Result<_>>()?,
      FdList::Owned(_) => unreachable!("a message borrowed from the caller"),
    };
    Ok(Queued {
      bytes,
      written: 0,
      fds,
      fds_gone: m.fds_in_flight(),
      to,
    })
  }
}

impl Unsent for Queued {
  fn unsent(&self) -> [&[u8]; 2] {
    [&self.bytes[self.written..], &[]]
  }

  fn fds(&self) -> FdList<'_> {
    FdList::Owned(&self.fds)
  }

  fn to(&self) -> Option<&UnixAddr> {
    self.to.as_ref()
  }

  fn taken(&mut self, n: usize) {
    self.written += n;
    self.fds_gone |= !self.fds.is_empty();
    self.fds.clear();
  }

  fn fds_in_flight(&self) -> bool {
    self.fds_gone
  }
}

/// A connection's messages that wait for the kernel, oldest first.
#[derive(Default)]
pub struct SendQueue {
  queue: VecDeque<Queued>,
}

impl SendQueue {
  pub fn len(&self) -> usize {
    self.queue.len()
  }

  pub fn is_empty(&self) -> bool {
    self.queue.is_empty()
  }

  /// Drop every queued message (closing its duplicates); returns how many.
  pub fn clear(&mut self) -> usize {
    let n = self.queue.len();
    self.queue.clear();
    n
  }

  /// Send `m` now if nothing waits before it; queue whatever the kernel
  /// did not take. Ok(false) when all of it went, Ok(true) when (part of)
  /// it waits here; `flush` reports its completion.
  pub fn send(
    &mut self,
    socket: BorrowedFd<'_>,
    ty: SocketType,
    m: Message<'_>,
    to: Option<UnixAddr>,
  ) -> Result<bool> {
    let mut one = [m];
    // Else a partial stream write, or a full buffer (EAGAIN): the rest waits.
    if self.queue.is_empty() && write(socket, ty, &mut one, false)? == Some(1) {
      return Ok(false);
    }
    self.queue.push_back(Queued::rest_of(&one[0], to)?);
    Ok(true)
  }

  /// Write queued messages until the kernel's buffer is full or the queue
  /// is empty, several frames per call when `coalesce`. Completions go to
  /// `out` as `Sent`; a failure as `SendFailed`, dropping the message it
  /// hit (a datagram fails alone) or, on a connection, every message left.
  pub fn flush(
    &mut self,
    socket: BorrowedFd<'_>,
    ty: SocketType,
    coalesce: bool,
    out: &mut Vec<Outcome>,
  ) {
    let mut done = 0u32;
    while !self.queue.is_empty() {
      // The front's contiguous part: a ring buffer's wrap only shortens a
      // coalesced call, the next one goes on from there.
      let (front, _) = self.queue.as_mut_slices();
      match write(socket, ty, front, coalesce) {
        Ok(Some(n)) => {
          self.queue.drain(..n);
          done += n as u32;
        }
        Ok(None) => break,
        Err(e) => {
          if done > 0 {
            out.push(Outcome::Sent(done));
            done = 0;
          }
          let n = if ty == SocketType::Datagram {
            1
          } else {
            self.queue.len()
          };
          self.queue.drain(..n);
          out.push(Outcome::SendFailed(e, n as u32));
        }
      }
    }
    if done > 0 {
      out.push(Outcome::Sent(done));
    }
  }
}
