//! The one write routine. Every byte a connection sends, whether at once,
//! from its queue, several frames per call, or blocking, goes through
//! [`write`], which is where the rule of `SCM_RIGHTS` on a stream lives:
//! the kernel attaches a call's descriptors to the first byte it takes, so
//! every descriptor included in a call has gone once that call took
//! anything, and the rest of a frame is sent without them. Sending them
//! again would hand the peer duplicates it never asked for.

use crate::error::Result;
use crate::send::{check_fd_count, send_message};
use crate::socket::SocketType;
use crate::MAX_FDS_PER_MESSAGE;
use nix::sys::socket::UnixAddr;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// At most this many frames share one `sendmsg` …
pub const COALESCE_FRAMES: usize = 64;
/// … and a call adds no further frame once it holds this many bytes.
pub const COALESCE_BYTES: usize = 256 * 1024;

/// The descriptors of a message still to go: numbers the caller vouches
/// for (a send from JavaScript), or duplicates a queued message owns.
#[derive(Clone, Copy)]
pub enum FdList<'a> {
  Raw(&'a [RawFd]),
  Owned(&'a [OwnedFd]),
}

impl FdList<'_> {
  pub fn len(&self) -> usize {
    match self {
      FdList::Raw(f) => f.len(),
      FdList::Owned(f) => f.len(),
    }
  }

  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }

  fn copy_to(&self, out: &mut [RawFd]) {
    match self {
      FdList::Raw(f) => out.copy_from_slice(f),
      FdList::Owned(f) => {
        for (o, fd) in out.iter_mut().zip(f.iter()) {
          *o = fd.as_raw_fd();
        }
      }
    }
  }
}

/// A message (or a framed stream's frame) on its way out.
pub trait Unsent {
  /// The bytes the kernel has not taken yet, in order (a framed stream's
  /// header and data are two parts, so that neither is copied).
  fn unsent(&self) -> [&[u8]; 2];
  /// The descriptors still to go with the message's first byte sent.
  fn fds(&self) -> FdList<'_>;
  /// Where a datagram goes; None on a connected socket.
  fn to(&self) -> Option<&UnixAddr>;
  /// The kernel took `n` more bytes of it (maybe none), and its
  /// descriptors went: `fds()` is empty from now on.
  fn taken(&mut self, n: usize);
  /// Its descriptors went while some of its bytes wait: the peer holds
  /// them unclaimed until the rest of it arrives.
  fn fds_in_flight(&self) -> bool;

  fn remaining(&self) -> usize {
    let [a, b] = self.unsent();
    a.len() + b.len()
  }
}

/// A message borrowed from the caller, for a send that is tried at once.
pub struct Message<'a> {
  parts: [&'a [u8]; 2],
  fds: &'a [RawFd],
  fds_gone: bool,
  to: Option<&'a UnixAddr>,
}

impl<'a> Message<'a> {
  /// `head` (a frame header, or empty) then `data`, with `fds`.
  pub fn new(head: &'a [u8], data: &'a [u8], fds: &'a [RawFd], to: Option<&'a UnixAddr>) -> Self {
    Message {
      parts: [head, data],
      fds,
      fds_gone: false,
      to,
    }
  }
}

impl Unsent for Message<'_> {
  fn unsent(&self) -> [&[u8]; 2] {
    self.parts
  }

  fn fds(&self) -> FdList<'_> {
    FdList::Raw(self.fds)
  }

  fn to(&self) -> Option<&UnixAddr> {
    self.to
  }

  fn taken(&mut self, n: usize) {
    let [a, b] = self.parts;
    self.parts = if n <= a.len() {
      [&a[n..], b]
    } else {
      [&[], &b[n - a.len()..]]
    };
    self.fds_gone |= !self.fds.is_empty();
    self.fds = &[];
  }

  fn fds_in_flight(&self) -> bool {
    self.fds_gone && self.remaining() > 0
  }
}

/// One `sendmsg` of the front of `frames`: the first frame, and with
/// `coalesce` (a framed stream, connected, whose decoder matches
/// descriptors that arrive ahead of their frame) as many following ones as
/// fit in one call (`COALESCE_*`, `MAX_FDS_PER_MESSAGE`). A call adds no
/// descriptors while some are in flight ahead of their frame's bytes, so
/// that the peer never holds more than two calls' worth unclaimed
/// (frame.rs `MAX_UNCLAIMED_FDS`). Every included frame's descriptors ride
/// on this call and are marked gone; a frame the kernel took only part of
/// keeps the rest of its bytes, without descriptors.
///
/// Returns how many frames at the front are now wholly sent, or None when
/// the kernel took nothing (its buffer is full: EAGAIN).
pub fn write<M: Unsent>(
  socket: std::os::fd::BorrowedFd<'_>,
  ty: SocketType,
  frames: &mut [M],
  coalesce: bool,
) -> Result<Option<usize>> {
  let Some(first) = frames.first() else {
    return Ok(Some(0));
  };
  let took = if frames.len() == 1 || !coalesce {
    // One message: its parts and descriptors as they are.
    let [a, b] = first.unsent();
    let iov = [IoSlice::new(a), IoSlice::new(b)];
    let sent = match first.fds() {
      FdList::Raw(fds) => send_message(socket, ty, &iov, fds, first.to()),
      owned => {
        check_fd_count(owned.len())?;
        let mut raw = [0 as RawFd; MAX_FDS_PER_MESSAGE];
        owned.copy_to(&mut raw[..owned.len()]);
        send_message(socket, ty, &iov, &raw[..owned.len()], first.to())
      }
    };
    (sent, 1)
  } else {
    let mut iov = [IoSlice::new(&[]); 2 * COALESCE_FRAMES];
    let mut raw = [0 as RawFd; MAX_FDS_PER_MESSAGE];
    let (mut count, mut slices, mut bytes, mut nfds) = (0, 0, 0, 0);
    let mut in_flight = false;
    for f in frames.iter() {
      let more = f.fds();
      if count > 0
        && (count == COALESCE_FRAMES
          || bytes >= COALESCE_BYTES
          || nfds + more.len() > MAX_FDS_PER_MESSAGE
          || (in_flight && !more.is_empty()))
      {
        break;
      }
      in_flight |= f.fds_in_flight();
      for part in f.unsent() {
        if !part.is_empty() {
          iov[slices] = IoSlice::new(part);
          slices += 1;
        }
      }
      if nfds + more.len() <= MAX_FDS_PER_MESSAGE {
        more.copy_to(&mut raw[nfds..nfds + more.len()]);
      }
      nfds += more.len();
      bytes += f.remaining();
      count += 1;
    }
    // Only a first frame can hold more (sends refuse that before queuing).
    check_fd_count(nfds)?;
    (
      send_message(socket, ty, &iov[..slices], &raw[..nfds], None),
      count,
    )
  };
  let (took, included) = match took {
    (Ok(n), included) => (n, included),
    (Err(e), _) if e.is_would_block() => return Ok(None),
    (Err(e), _) => return Err(e),
  };
  let mut left = took;
  let mut completed = 0;
  for (i, f) in frames[..included].iter_mut().enumerate() {
    let rem = f.remaining();
    let n = left.min(rem);
    // The descriptors of every included frame went with the first byte.
    f.taken(n);
    left -= n;
    if n == rem && completed == i {
      completed += 1;
    }
  }
  Ok(Some(completed))
}
