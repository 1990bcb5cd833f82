//! Connection counts shared through a mapped file: what one mapping (or
//! process) adds, every other sees; `place` passes a connection on only
//! past the margin, and never to a worker that has not taken what it was given.

use fdpass_core::shared_counts::SharedCounts;
use fdpass_core::Error;
use std::fs::File;
use std::os::fd::AsFd;

fn counts_file(workers: usize) -> File {
  bytes_file(SharedCounts::file_len(workers) as u64)
}

fn bytes_file(bytes: u64) -> File {
  let path = std::env::temp_dir().join(format!(
    "fdpass-counts-{}-{:?}-{bytes}",
    std::process::id(),
    std::thread::current().id()
  ));
  let file = std::fs::OpenOptions::new()
    .read(true)
    .write(true)
    .create(true)
    .truncate(true)
    .open(&path)
    .unwrap();
  std::fs::remove_file(&path).unwrap();
  file.set_len(bytes).unwrap();
  file
}

#[test]
fn two_mappings_of_one_file_see_each_others_counts() {
  let file = counts_file(4);
  let a = SharedCounts::map(file.as_fd(), 4).unwrap();
  let b = SharedCounts::map(file.as_fd(), 4).unwrap();
  drop(file); // the mappings outlive the descriptor
  a.add_connections(2, 5).unwrap();
  b.add_connections(2, -2).unwrap();
  assert_eq!(a.connections(2).unwrap(), 3);
  assert_eq!(b.connections(2).unwrap(), 3);
  assert_eq!(b.connections(0).unwrap(), 0);
  b.reset(2, 0).unwrap();
  assert_eq!(a.connections(2).unwrap(), 0);
}

#[test]
fn a_forked_process_adds_to_the_same_counts() {
  let file = counts_file(2);
  let counts = SharedCounts::map(file.as_fd(), 2).unwrap();
  // SAFETY: the child only adds to the mapping and calls _exit, both
  // async-signal-safe; it touches no lock another thread could hold.
  let pid = unsafe { libc::fork() };
  assert!(pid >= 0);
  if pid == 0 {
    for _ in 0..1000 {
      let _ = counts.add_connections(1, 1);
    }
    // SAFETY: ends the child without running the parent's exit handlers.
    unsafe { libc::_exit(0) };
  }
  for _ in 0..1000 {
    counts.add_connections(1, 1).unwrap();
  }
  let mut status = 0;
  // SAFETY: waits for the child forked above.
  assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
  assert_eq!(counts.connections(1).unwrap(), 2000);
}

#[test]
fn place_keeps_a_connection_until_the_margin_then_reserves_the_least_loaded_worker() {
  let file = counts_file(3);
  let counts = SharedCounts::map(file.as_fd(), 3).unwrap();
  counts.add_connections(0, 1).unwrap();
  assert_eq!(
    counts.place(0, 2, 4).unwrap(),
    None,
    "1 against 0: within the margin"
  );
  counts.add_connections(0, 1).unwrap();
  counts.add_connections(1, 1).unwrap();
  // Worker 0 holds 2, worker 1 holds 1, worker 2 holds 0: the least loaded is 2.
  assert_eq!(counts.place(0, 2, 4).unwrap(), Some(2));
  assert_eq!(counts.connections(2).unwrap(), 1, "reserved at once");
  assert_eq!(counts.counts(2).unwrap(), (1, 1));
  assert_eq!(counts.place(0, 2, 4).unwrap(), None, "2 against 1 and 1");
  // Worker 2 takes it: no longer on its way, and its own once it counts it.
  counts.taken(2).unwrap();
  counts.add_connections(2, 1).unwrap();
  assert_eq!(counts.counts(2).unwrap(), (1, 0));
  // A count below zero (a reset raced with a close) reads as 0.
  counts.add_connections(1, -5).unwrap();
  assert_eq!(counts.connections(1).unwrap(), 0);
  assert_eq!(counts.place(0, 2, 4).unwrap(), Some(1));
  // A margin below 1 is 1: equal counts never pass a connection on.
  let file = counts_file(2);
  let even = SharedCounts::map(file.as_fd(), 2).unwrap();
  assert_eq!(even.place(0, 0, 4).unwrap(), None);
  // One worker: nowhere to pass it.
  let file = counts_file(1);
  let alone = SharedCounts::map(file.as_fd(), 1).unwrap();
  alone.add_connections(0, 10).unwrap();
  assert_eq!(alone.place(0, 1, 4).unwrap(), None);
}

#[test]
fn a_worker_that_does_not_take_what_it_was_given_gets_no_more() {
  let file = counts_file(2);
  let counts = SharedCounts::map(file.as_fd(), 2).unwrap();
  // Worker 1 is blocked: it takes nothing. Worker 0 keeps accepting.
  let mut passed = 0;
  for _ in 0..100 {
    match counts.place(0, 2, 2).unwrap() {
      Some(1) => passed += 1,
      Some(other) => panic!("passed to {other}"),
      None => counts.add_connections(0, 1).unwrap(),
    }
  }
  assert_eq!(passed, 2, "at most max_untaken wait for a blocked worker");
  assert_eq!(counts.connections(0).unwrap(), 98);
  // A reset (a new generation with nobody serving the worker) clears both counts.
  counts.reset(1, 0).unwrap();
  assert_eq!(counts.counts(1).unwrap(), (0, 0));
  assert_eq!(counts.place(0, 2, 2).unwrap(), Some(1));
}

#[test]
fn a_file_too_short_or_a_worker_out_of_range_is_an_error_not_a_fault() {
  let file = bytes_file(SharedCounts::file_len(2) as u64 - 1);
  assert!(matches!(
    SharedCounts::map(file.as_fd(), 2),
    Err(Error::InvalidArgument { .. })
  ));
  assert!(matches!(
    SharedCounts::map(file.as_fd(), 0),
    Err(Error::InvalidArgument { .. })
  ));
  let counts = SharedCounts::map(file.as_fd(), 1).unwrap();
  assert!(matches!(
    counts.add_connections(1, 1),
    Err(Error::InvalidArgument { .. })
  ));
  assert!(matches!(
    counts.place(3, 1, 1),
    Err(Error::InvalidArgument { .. })
  ));
  assert!(matches!(
    counts.taken(1),
    Err(Error::InvalidArgument { .. })
  ));
}
