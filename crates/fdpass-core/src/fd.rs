//! Small operations on single descriptors: flags, duplication, kind.

use crate::error::{Error, Result, SyscallContext};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::stat::{fstat, FileStat, SFlag};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub fn set_cloexec(fd: BorrowedFd<'_>) -> Result<()> {
  let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).syscall("fcntl")?);
  if !flags.contains(FdFlag::FD_CLOEXEC) {
    fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).syscall("fcntl")?;
  }
  Ok(())
}

pub fn is_cloexec(fd: BorrowedFd<'_>) -> Result<bool> {
  let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).syscall("fcntl")?);
  Ok(flags.contains(FdFlag::FD_CLOEXEC))
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<()> {
  set_nonblocking_to(fd, true)
}

/// Set or clear O_NONBLOCK (a flag of the open file description, shared by
/// every descriptor for it).
pub fn set_nonblocking_to(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
  let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).syscall("fcntl")?);
  if flags.contains(OFlag::O_NONBLOCK) != on {
    fcntl(fd, FcntlArg::F_SETFL(flags ^ OFlag::O_NONBLOCK)).syscall("fcntl")?;
  }
  Ok(())
}

/// A close-on-exec duplicate: a queued send keeps its own reference to each
/// descriptor, so the caller may close theirs before the kernel takes them.
pub fn dup_cloexec(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
  fd.try_clone_to_owned().map_err(|e| {
    let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF));
    Error::sys(errno, "fcntl")
  })
}

/// Borrow a descriptor number the caller vouches for, after checking that it is open.
pub fn check_open(raw: RawFd) -> Result<()> {
  if raw < 0 {
    return Err(Error::InvalidFd {
      fd: raw,
      reason: "a descriptor is a non-negative integer".into(),
    });
  }
  // SAFETY: F_GETFD only queries the descriptor table; a closed number yields EBADF.
  let r = unsafe { libc::fcntl(raw, libc::F_GETFD) };
  if r < 0 {
    return Err(Error::InvalidFd {
      fd: raw,
      reason: "not an open file descriptor".into(),
    });
  }
  Ok(())
}

/// Take ownership of a descriptor number handed over by the caller.
///
/// # Safety
/// The caller must own `raw` and must not use or close it afterwards.
pub unsafe fn adopt(raw: RawFd) -> Result<OwnedFd> {
  check_open(raw)?;
  // SAFETY: the number is open, and the caller hands us its ownership.
  Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// What a descriptor refers to, as `fstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum FdKind {
  // The binding passes a kind to JavaScript as its index in `ALL`, whose
  // names it also exports (fdKinds()): the order here is the contract.
  File,
  Directory,
  Pipe,
  Socket,
  CharDevice,
  BlockDevice,
  Symlink,
  Unknown,
}

impl FdKind {
  /// Every kind, in the order of their indexes (`kind as u32`).
  pub const ALL: [FdKind; 8] = [
    FdKind::File,
    FdKind::Directory,
    FdKind::Pipe,
    FdKind::Socket,
    FdKind::CharDevice,
    FdKind::BlockDevice,
    FdKind::Symlink,
    FdKind::Unknown,
  ];

  pub fn as_str(self) -> &'static str {
    match self {
      FdKind::File => "file",
      FdKind::Directory => "directory",
      FdKind::Pipe => "pipe",
      FdKind::Socket => "socket",
      FdKind::CharDevice => "character-device",
      FdKind::BlockDevice => "block-device",
      FdKind::Symlink => "symlink",
      FdKind::Unknown => "unknown",
    }
  }

  pub fn from_stat(st: &FileStat) -> Self {
    let fmt = SFlag::from_bits_truncate(st.st_mode as _) & SFlag::S_IFMT;
    match fmt {
      SFlag::S_IFREG => FdKind::File,
      SFlag::S_IFDIR => FdKind::Directory,
      SFlag::S_IFIFO => FdKind::Pipe,
      SFlag::S_IFSOCK => FdKind::Socket,
      SFlag::S_IFCHR => FdKind::CharDevice,
      SFlag::S_IFBLK => FdKind::BlockDevice,
      SFlag::S_IFLNK => FdKind::Symlink,
      _ => FdKind::Unknown,
    }
  }
}

/// fstat and the close-on-exec flag of a number the caller vouches for, with
/// no check first: fstat itself says EBADF for a number that is not open.
pub fn stat_raw(raw: RawFd) -> Result<(FileStat, bool)> {
  let st = fstat_raw(raw)?;
  // SAFETY: F_GETFD only reads the descriptor table.
  let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
  if flags < 0 {
    return Err(Error::sys(nix::errno::Errno::last(), "fcntl"));
  }
  Ok((st, flags & libc::FD_CLOEXEC != 0))
}

/// fstat of a number the caller vouches for, and nothing else: one syscall.
pub fn fstat_raw(raw: RawFd) -> Result<FileStat> {
  if raw < 0 {
    return Err(not_open(raw));
  }
  let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
  // SAFETY: fstat writes a whole struct stat or fails.
  if unsafe { libc::fstat(raw, st.as_mut_ptr()) } != 0 {
    return Err(match nix::errno::Errno::last() {
      nix::errno::Errno::EBADF => not_open(raw),
      e => Error::sys(e, "fstat"),
    });
  }
  // SAFETY: fstat succeeded, so the struct is initialised.
  Ok(unsafe { st.assume_init() })
}

pub fn stat(fd: BorrowedFd<'_>) -> Result<FileStat> {
  fstat(fd).syscall("fstat")
}

pub fn kind(fd: BorrowedFd<'_>) -> Result<FdKind> {
  Ok(FdKind::from_stat(&stat(fd)?))
}

/// Close a descriptor by number, reporting EBADF instead of ignoring it.
/// One syscall: `close` itself says whether the number was open.
///
/// # Safety
/// The caller owns `raw` (no `OwnedFd` or other owner will close or use
/// it) and never uses the number again: closing a number someone else owns
/// would close their file, or a file that reuses the number later. A
/// number that is not open is safe: close says EBADF.
pub unsafe fn close_raw(raw: RawFd) -> Result<()> {
  if raw < 0 {
    return Err(not_open(raw));
  }
  // SAFETY: the caller owns `raw` and gives it up (this function's contract).
  if unsafe { crate::platform::close(raw) } == 0 {
    return Ok(());
  }
  match nix::errno::Errno::last() {
    nix::errno::Errno::EBADF => Err(not_open(raw)),
    // Linux and macOS release the descriptor even when close is interrupted.
    nix::errno::Errno::EINTR => Ok(()),
    e => Err(Error::sys(e, "close")),
  }
}

/// A close-on-exec duplicate of a number the caller vouches for, in one
/// syscall (`F_DUPFD_CLOEXEC` says EBADF for a number that is not open).
pub fn dup_raw_cloexec(raw: RawFd) -> Result<OwnedFd> {
  if raw < 0 {
    return Err(not_open(raw));
  }
  // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table.
  let new = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) };
  if new >= 0 {
    // SAFETY: a fresh descriptor that nobody else owns.
    return Ok(unsafe { OwnedFd::from_raw_fd(new) });
  }
  match nix::errno::Errno::last() {
    nix::errno::Errno::EBADF => Err(not_open(raw)),
    e => Err(Error::sys(e, "fcntl")),
  }
}

fn not_open(fd: RawFd) -> Error {
  Error::InvalidFd {
    fd,
    reason: if fd < 0 {
      "a descriptor is a non-negative integer".into()
    } else {
      "not an open file descriptor".into()
    },
  }
}

/// Read up to `buf.len()` bytes at `position` (`pread`), or at the current
/// offset when `None` (`read`), retrying on EINTR. Blocks on a pipe or socket:
/// callers run it off the JS thread.
pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], position: Option<u64>) -> Result<usize> {
  loop {
    let r = match position {
      Some(p) => nix::sys::uio::pread(fd, buf, p as libc::off_t).syscall("read"),
      None => nix::unistd::read(fd, buf).syscall("read"),
    };
    match r {
      Err(Error::Sys {
        errno: nix::errno::Errno::EINTR,
        ..
      }) => continue,
      other => return other,
    }
  }
}

/// Write all of `buf` at `position` (`pwrite`), or at the current offset when
/// `None` (`write`), retrying on EINTR and short writes. Blocks like `read_at`.
pub fn write_all_at(
  fd: BorrowedFd<'_>,
  mut buf: &[u8],
  mut position: Option<u64>,
) -> Result<usize> {
  let total = buf.len();
  while !buf.is_empty() {
    let r = match position {
      Some(p) => nix::sys::uio::pwrite(fd, buf, p as libc::off_t).syscall("write"),
      None => nix::unistd::write(fd, buf).syscall("write"),
    };
    match r {
      Err(Error::Sys {
        errno: nix::errno::Errno::EINTR,
        ..
      }) => continue,
      Err(e) => return Err(e),
      Ok(0) => break,
      Ok(n) => {
        buf = &buf[n..];
        position = position.map(|p| p + n as u64);
      }
    }
  }
  Ok(total - buf.len())
}

#[cfg(test)]
mod tests {
  use super::FdKind;

  #[test]
  fn all_kinds_are_listed_at_their_index() {
    for (index, kind) in FdKind::ALL.iter().enumerate() {
      assert_eq!(*kind as usize, index, "{kind:?}");
    }
    assert_eq!(FdKind::ALL.len(), FdKind::Unknown as usize + 1);
  }
}
