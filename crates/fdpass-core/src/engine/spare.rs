//! Vectors kept per thread between reads rather than allocated for each
//! (malloc and free were 4% of a synchronous round trip), and not per
//! socket, so that no socket keeps a buffer between reads. A read nested
//! in a delivery (a synchronous receive in a listener) finds them taken,
//! gets empty ones and allocates.

use super::Outcome;
use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::thread::LocalKey;

thread_local! {
  pub(super) static BATCH_DATA: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
  pub(super) static BATCH_META: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
  pub(super) static BATCH_FDS: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
  static OUTCOMES: RefCell<Vec<Outcome>> = const { RefCell::new(Vec::new()) };
}

/// A read's outcomes vector is kept for the next one up to this many.
const MAX_OUTCOMES: usize = 16;

/// The thread's spare vector of `pool`, empty (a new one if it is in use).
pub(super) fn take_spare<T: 'static>(pool: &'static LocalKey<RefCell<Vec<T>>>) -> Vec<T> {
  pool.with(|b| std::mem::take(&mut *b.borrow_mut()))
}

/// Give `v` back to `pool` for the next read, emptied (dropping what is
/// left, which closes descriptors), unless it grew past `max` items.
pub(super) fn give_spare<T: 'static>(
  pool: &'static LocalKey<RefCell<Vec<T>>>,
  mut v: Vec<T>,
  max: usize,
) {
  v.clear();
  if v.capacity() > max || v.capacity() == 0 {
    return;
  }
  pool.with(|b| {
    let mut b = b.borrow_mut();
    if b.capacity() == 0 {
      *b = v;
    }
  });
}

/// An empty outcomes vector: the thread's spare one when it is free.
pub fn outcomes() -> Vec<Outcome> {
  take_spare(&OUTCOMES)
}

/// Give an outcomes vector back for the next read; what is left in it is
/// dropped (closing the descriptors of undelivered batches).
pub fn recycle_outcomes(v: Vec<Outcome>) {
  give_spare(&OUTCOMES, v, MAX_OUTCOMES);
}
