//! `SharedCounters`: `fdpass_core::shared_counts` for the TypeScript layer
//! (`fdpass run`'s workers balancing their connections).

use crate::js::OrThrow;
use fdpass_core::shared_counts::SharedCounts;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::os::fd::BorrowedFd;

/// Per worker, its open connections and the connections passed to it that
/// it has not taken, shared with every process that maps the same file.
#[napi]
pub struct SharedCounters {
  counts: SharedCounts,
}

#[napi]
impl SharedCounters {
  /// The bytes the file must hold for `workers` workers.
  #[napi]
  pub fn file_len(workers: u32) -> u32 {
    SharedCounts::file_len(workers as usize) as u32
  }

  /// Map the counts of `workers` workers from the file `fd`. The caller
  /// keeps owning `fd`; the mapping outlives it.
  #[napi(constructor)]
  pub fn new(env: Env, fd: i32, workers: u32) -> Result<Self> {
    fdpass_core::fd::check_open(fd).or_throw(&env)?;
    // SAFETY: checked open; borrowed only for fstat and mmap.
    let file = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(SharedCounters {
      counts: SharedCounts::map(file, workers as usize).or_throw(&env)?,
    })
  }

  /// `worker`'s open connections, never below 0.
  #[napi]
  pub fn connections(&self, env: Env, worker: u32) -> Result<i32> {
    self.counts.connections(worker as usize).or_throw(&env)
  }

  /// Add `delta` to `worker`'s open connections.
  #[napi]
  pub fn add_connections(&self, env: Env, worker: u32, delta: i32) -> Result<()> {
    self
      .counts
      .add_connections(worker as usize, delta)
      .or_throw(&env)
  }

  /// Set `worker`'s open connections, with none passed and untaken.
  #[napi]
  pub fn reset(&self, env: Env, worker: u32, connections: i32) -> Result<()> {
    self
      .counts
      .reset(worker as usize, connections)
      .or_throw(&env)
  }

  /// The worker to pass a just-accepted connection to, or -1 to keep it:
  /// the one with the fewest open connections among those with fewer than
  /// `maxUntaken` passed and not taken, when `me` holds at least `margin`
  /// more. Its counts are raised at once; it calls `taken` when the
  /// connection arrives.
  #[napi]
  pub fn place(&self, env: Env, me: u32, margin: i32, max_untaken: i32) -> Result<i32> {
    Ok(
      self
        .counts
        .place(me as usize, margin, max_untaken)
        .or_throw(&env)?
        .map_or(-1, |worker| worker as i32),
    )
  }

  /// `me` took a connection passed to it (then counts it as its own).
  #[napi]
  pub fn taken(&self, env: Env, me: u32) -> Result<()> {
    self.counts.taken(me as usize).or_throw(&env)
  }
}
