//! Connection counts that several processes share through one mapped file.
//!
//! `fdpass run --workers` keeps here, per worker, its open connections and
//! the connections passed to it that it has not taken yet, so that a
//! worker that accepted more than another passes its next connection on
//! (`place`), but not to one that does not take what it is given (a
//! blocked event loop). The counts steer a heuristic: a lost update (a
//! worker that died between two adds) makes a worker look a little busier
//! or idler than it is, never anything worse, and reads clamp at 0.

use crate::{Error, Result};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::fstat;
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};

/// The most workers one mapping holds (more than any machine has cores).
pub const MAX_WORKERS: usize = 512;

/// Per worker, two 32-bit counters: its open connections, then (after
/// every worker's) the connections passed to it that it has not taken.
pub struct SharedCounts {
  ptr: NonNull<AtomicI32>,
  workers: usize,
}

impl SharedCounts {
  /// The bytes a file must hold for `workers` workers.
  pub fn file_len(workers: usize) -> usize {
    2 * workers * std::mem::size_of::<AtomicI32>()
  }

  /// Map the counts of `workers` workers from `file`, which must be at
  /// least `file_len(workers)` bytes long. The mapping outlives the descriptor.
  pub fn map(file: BorrowedFd<'_>, workers: usize) -> Result<Self> {
    if workers == 0 || workers > MAX_WORKERS {
      return Err(Error::InvalidArgument {
        reason: format!("workers must be from 1 to {MAX_WORKERS}, not {workers}"),
      });
    }
    let bytes = Self::file_len(workers);
    let size = fstat(file).map_err(|e| Error::sys(e, "fstat"))?.st_size;
    if size < bytes as i64 {
      // A mapping past the end of the file would fault (SIGBUS) on first use.
      return Err(Error::InvalidArgument {
        reason: format!("the file holds {size} bytes, fewer than {bytes} for {workers} workers"),
      });
    }
    let length = NonZeroUsize::new(bytes).expect("workers > 0");
    // SAFETY: no address is requested, so the kernel picks one that
    // overlaps no existing mapping; the file is long enough for `length`
    // (checked above), so no access to the mapping faults.
    let ptr = unsafe {
      mmap(
        None,
        length,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_SHARED,
        file,
        0,
      )
    }
    .map_err(|e| Error::sys(e, "mmap"))?;
    Ok(SharedCounts {
      ptr: ptr.cast(),
      workers,
    })
  }

  fn counters(&self) -> &[AtomicI32] {
    // SAFETY: `ptr` is a page-aligned mapping of 2 × `workers` i32s that
    // lives until `drop`; `AtomicI32` has i32's layout and every bit
    // pattern is a valid value; other processes change it only with atomic
    // operations, and only through `&` here.
    unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), 2 * self.workers) }
  }

  fn check(&self, worker: usize) -> Result<usize> {
    if worker < self.workers {
      Ok(worker)
    } else {
      Err(Error::InvalidArgument {
        reason: format!("worker {worker} is not below {}", self.workers),
      })
    }
  }

  fn open(&self, worker: usize) -> &AtomicI32 {
    &self.counters()[worker]
  }

  fn untaken(&self, worker: usize) -> &AtomicI32 {
    &self.counters()[self.workers + worker]
  }

  /// How many workers there are.
  pub fn workers(&self) -> usize {
    self.workers
  }

  /// `worker`'s open connections, never below 0.
  pub fn connections(&self, worker: usize) -> Result<i32> {
    Ok(self.counts(worker)?.0)
  }

  /// `worker`'s open connections and the connections passed to it that it
  /// has not taken yet, each never below 0.
  pub fn counts(&self, worker: usize) -> Result<(i32, i32)> {
    let worker = self.check(worker)?;
    let read = |counter: &AtomicI32| counter.load(Ordering::Relaxed).max(0);
    Ok((read(self.open(worker)), read(self.untaken(worker))))
  }

  /// Add `delta` to `worker`'s open connections.
  pub fn add_connections(&self, worker: usize, delta: i32) -> Result<()> {
    self
      .open(self.check(worker)?)
      .fetch_add(delta, Ordering::Relaxed);
    Ok(())
  }

  /// Set `worker`'s counts: `connections` open, none untaken (a
  /// supervisor's reset when a generation starts with nobody serving it).
  pub fn reset(&self, worker: usize, connections: i32) -> Result<()> {
    let worker = self.check(worker)?;
    self.open(worker).store(connections, Ordering::Relaxed);
    self.untaken(worker).store(0, Ordering::Relaxed);
    Ok(())
  }

  /// Where `me` should pass a connection it just accepted: the worker with
  /// the fewest open connections among those with fewer than
  /// `max_untaken` connections passed and not taken, when `me` holds at
  /// least `margin` more. That worker's counts are raised at once, so that
  /// the next accept anywhere sees the connection on its way. `None`: keep it.
  pub fn place(&self, me: usize, margin: i32, max_untaken: i32) -> Result<Option<usize>> {
    let mine = self.connections(me)?;
    let mut best: Option<(usize, i32)> = None;
    for worker in (0..self.workers).filter(|&w| w != me) {
      let (count, untaken) = self.counts(worker)?;
      if untaken < max_untaken && best.is_none_or(|(_, lowest)| count < lowest) {
        best = Some((worker, count));
      }
    }
    match best {
      Some((worker, lowest)) if mine - lowest >= margin.max(1) => {
        self.open(worker).fetch_add(1, Ordering::Relaxed);
        self.untaken(worker).fetch_add(1, Ordering::Relaxed);
        Ok(Some(worker))
      }
      _ => Ok(None),
    }
  }

  /// `me` took a connection passed to it: it is no longer on its way (its
  /// receiver then counts it as open, as one it accepted).
  pub fn taken(&self, me: usize) -> Result<()> {
    let me = self.check(me)?;
    self.open(me).fetch_sub(1, Ordering::Relaxed);
    self.untaken(me).fetch_sub(1, Ordering::Relaxed);
    Ok(())
  }
}

impl Drop for SharedCounts {
  fn drop(&mut self) {
    // SAFETY: the mapping `map` made, of this length, unmapped once; no
    // reference into it outlives `self` (counters() borrows self).
    let _ = unsafe { munmap(self.ptr.cast::<c_void>(), Self::file_len(self.workers)) };
  }
}
