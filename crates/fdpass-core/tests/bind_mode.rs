//! A datagram socket file is never more open than the mode asked for, not
//! even between `bind` and the chmod that makes the mode exact: anyone who
//! may write the file can send to the socket from the moment it exists.
//! The umask here is 000, the widest; that is why these tests are a binary
//! of their own (the umask belongs to the whole process).

use fdpass_core::platform;
use fdpass_core::socket::{bind, BindOptions};
use fdpass_core::{SocketAddress, SocketType};
use nix::sys::socket::UnixAddr;
use nix::sys::stat::{lstat, umask, Mode};
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

fn private_dir(tag: &str) -> PathBuf {
  let dir = std::env::temp_dir().join(format!("fdpass-bind-mode-{}-{tag}", std::process::id()));
  let _ = std::fs::remove_dir_all(&dir);
  std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
  dir
}

#[allow(clippy::unnecessary_cast)] // st_mode is u16 on macOS
fn permission_bits(st: &nix::sys::stat::FileStat) -> u32 {
  st.st_mode as u32 & 0o777
}

fn permissions(path: &std::path::Path) -> u32 {
  permission_bits(&lstat(path).unwrap())
}

#[test]
fn the_socket_file_is_created_no_wider_than_the_mode() {
  umask(Mode::empty());
  let dir = private_dir("created");
  for mode in [0o600, 0o620, 0o640, 0o660, 0o700] {
    let path = dir.join(format!("s-{mode:o}.sock"));
    let fd = platform::new_socket(SocketType::Datagram).unwrap();
    let addr = UnixAddr::new(&path).unwrap();
    platform::bind_with_mode(fd.as_fd(), &addr, SocketType::Datagram, Some(mode)).unwrap();
    // Before any chmod: what the kernel created.
    let created = permissions(&path);
    assert_eq!(created & !mode, 0, "created {created:o} for mode {mode:o}");
  }
  std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_mode_is_exact_after_bind_even_with_umask_000() {
  umask(Mode::empty());
  let dir = private_dir("exact");
  for mode in [0o600, 0o666, 0o640] {
    let path = dir.join(format!("s-{mode:o}.sock"));
    let options = BindOptions {
      mode: Some(mode),
      ..BindOptions::default()
    };
    let _fd = bind(
      SocketType::Datagram,
      &SocketAddress::Path(path.clone()),
      &options,
    )
    .unwrap();
    assert_eq!(permissions(&path), mode);
  }
  std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_watcher_never_sees_the_file_wider_than_the_mode_and_nothing_is_left_behind() {
  umask(Mode::empty());
  let dir = private_dir("watched");
  let path = dir.join("s.sock");
  let stop = Arc::new(AtomicBool::new(false));
  let wider = Arc::new(AtomicU32::new(0));
  let sightings = Arc::new(AtomicUsize::new(0));
  // Another thread looks at the path as fast as it can, as a process
  // waiting to send would.
  let watcher = {
    let (path, stop, wider, sightings) =
      (path.clone(), stop.clone(), wider.clone(), sightings.clone());
    std::thread::spawn(move || {
      while !stop.load(Ordering::Relaxed) {
        if let Ok(st) = lstat(&path) {
          sightings.fetch_add(1, Ordering::Relaxed);
          wider.fetch_or(permission_bits(&st) & !0o600, Ordering::Relaxed);
        }
      }
    })
  };
  let address = SocketAddress::Path(path.clone());
  for _ in 0..2000 {
    let fd = bind(SocketType::Datagram, &address, &BindOptions::default()).unwrap();
    drop(fd);
    std::fs::remove_file(&path).unwrap();
  }
  stop.store(true, Ordering::Relaxed);
  watcher.join().unwrap();
  assert!(
    sightings.load(Ordering::Relaxed) > 0,
    "the watcher never saw the file"
  );
  assert_eq!(
    wider.load(Ordering::Relaxed),
    0,
    "bits beyond 0600 were seen"
  );
  let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
  assert!(left.is_empty(), "left behind: {left:?}");
  std::fs::remove_dir_all(&dir).unwrap();
}
