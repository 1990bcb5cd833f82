//! The blocking calls, for `sendSync()` and `receiveSync()`: the same write
//! routine and reader as the event loop's, waiting in between.

use super::spare::{outcomes, recycle_outcomes};
use super::write::{write, Message};
use super::{Budget, Outcome, Reader};
use crate::error::Result;
use crate::socket::{wait_ready, SocketType};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// Send `m` whole, waiting while the kernel's buffer is full.
pub fn send(socket: BorrowedFd<'_>, ty: SocketType, m: Message<'_>) -> Result<()> {
  let mut one = [m];
  loop {
    match write(socket, ty, &mut one, false)? {
      Some(1) => return Ok(()),
      Some(_) => {}
      None => {
        wait_ready(socket, true, -1)?;
      }
    }
  }
}

/// What a connection remembers between synchronous receives.
#[derive(Default)]
pub struct SyncReads {
  /// The last receive had to wait.
  waited: bool,
  /// A receive cleared the file's O_NONBLOCK to wait in recvmsg.
  blocking_file: bool,
}

/// A poll that returned within this did not wait: the message was there.
const NO_WAIT: Duration = Duration::from_micros(2);

impl SyncReads {
  /// Read a first message (and the whole frames buffered with it),
  /// waiting up to `timeout_ms` (negative: no limit). Empty when the time
  /// ran out.
  pub fn read(
    &mut self,
    socket: BorrowedFd<'_>,
    reader: &mut Reader,
    timeout_ms: i64,
  ) -> Result<Vec<Outcome>> {
    // A deadline past what Instant can hold is no deadline.
    let deadline = (timeout_ms >= 0)
      .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms as u64)))
      .flatten();
    // A caller whose last message had to be waited for (an exchange of
    // requests and replies) most likely waits again: then it waits first
    // and skips a read that would only say EAGAIN.
    let mut read_now = !self.waited || timeout_ms == 0;
    let mut has_read = false;
    let mut blocked = false;
    loop {
      if read_now {
        let mut out = outcomes();
        reader.read(socket, &mut out, Budget::FirstMessage);
        has_read = true;
        if !out.is_empty() || reader.ended() {
          self.waited = blocked;
          return Ok(out);
        }
        recycle_outcomes(out);
      }
      read_now = true;
      // With no deadline, a message socket waits in recvmsg itself, as a C
      // program would: one syscall where poll and recvmsg are two (0.2 µs
      // of each wait). Its file stays blocking from then on; every other
      // read and send passes MSG_DONTWAIT (recv.rs, platform.rs SEND_FLAGS).
      if deadline.is_none() && !reader.framed() && !reader.ended() {
        if !self.blocking_file {
          crate::fd::set_nonblocking_to(socket, false)?;
          self.blocking_file = true;
        }
        let started = Instant::now();
        let mut out = outcomes();
        reader.read(socket, &mut out, Budget::WaitForFirst);
        if !out.is_empty() || reader.ended() {
          self.waited = blocked || started.elapsed() > NO_WAIT;
          return Ok(out);
        }
        recycle_outcomes(out);
        // EAGAIN: a process that shares the file made it non-blocking
        // again. Poll, as with a deadline.
        self.blocking_file = false;
      }
      let wait = match deadline {
        None => -1,
        Some(d) => {
          let left = d.saturating_duration_since(Instant::now());
          if left.is_zero() {
            if has_read {
              self.waited = true;
              return Ok(Vec::new());
            }
            continue; // out of time, but read at least once
          }
          // Round up: poll(0) would spin until the last millisecond.
          left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
        }
      };
      let started = Instant::now();
      wait_ready(socket, false, wait)?;
      blocked |= started.elapsed() > NO_WAIT;
    }
  }
}
