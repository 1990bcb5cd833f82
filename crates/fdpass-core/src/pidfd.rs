//! Taking a descriptor from another process without a socket:
//! `pidfd_open(2)` + `pidfd_getfd(2)` (Linux 5.6+). The target process does
//! nothing; the kernel checks ptrace access (same uid and `ptrace_scope`, or
//! CAP_SYS_PTRACE) instead. Elsewhere, and on older kernels, it is
//! `Unsupported`.

use crate::error::{Error, Result};
use std::os::fd::OwnedFd;

#[cfg(target_os = "linux")]
pub fn take_fd(pid: i32, target_fd: i32) -> Result<OwnedFd> {
  use nix::errno::Errno;
  use std::os::fd::FromRawFd;
  // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
  let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
  if pidfd < 0 {
    return Err(match Errno::last() {
      Errno::ENOSYS => unsupported(),
      Errno::ESRCH => Error::InvalidArgument {
        reason: format!("no process with pid {pid}"),
      },
      e => Error::sys(e, "pidfd_open"),
    });
  }
  // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
  let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
  let raw = {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid pidfd, a descriptor number and no flags; returns a new CLOEXEC fd or -1.
    unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) }
  };
  if raw < 0 {
    return Err(match Errno::last() {
      Errno::ENOSYS => unsupported(),
      Errno::EPERM => Error::Sys {
        errno: Errno::EPERM,
        syscall: "pidfd_getfd",
        address: None,
      },
      Errno::EBADF => Error::InvalidFd {
        fd: target_fd,
        reason: format!("is not open in process {pid}"),
      },
      e => Error::sys(e, "pidfd_getfd"),
    });
  }
  // SAFETY: pidfd_getfd returned a new descriptor (close-on-exec) that nothing else owns.
  Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

#[cfg(not(target_os = "linux"))]
pub fn take_fd(_pid: i32, _target_fd: i32) -> Result<OwnedFd> {
  Err(unsupported())
}

fn unsupported() -> Error {
  Error::Unsupported {
    what: "pidfd_getfd (Linux 5.6 or later)".into(),
  }
}

/// Can this kernel do it? (Tries on our own process.)
pub fn supported() -> bool {
  !matches!(
    take_fd(std::process::id() as i32, -1),
    Err(Error::Unsupported { .. })
  )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
  use super::*;
  use std::os::fd::AsFd;

  #[test]
  fn takes_a_descriptor_of_our_own_process() {
    let file = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    let taken = take_fd(std::process::id() as i32, file.as_raw_fd()).unwrap();
    let a = nix::sys::stat::fstat(file.as_fd()).unwrap();
    let b = nix::sys::stat::fstat(taken.as_fd()).unwrap();
    assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
    assert!(crate::fd::is_cloexec(taken.as_fd()).unwrap());
  }

  #[test]
  fn a_closed_number_is_invalid_fd() {
    assert_eq!(
      take_fd(std::process::id() as i32, 999_999)
        .unwrap_err()
        .code(),
      "ERR_FDPASS_INVALID_FD"
    );
  }
}
