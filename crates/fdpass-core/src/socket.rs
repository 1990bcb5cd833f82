//! Creating, binding, connecting and adopting Unix sockets.

use crate::address::SocketAddress;
use crate::error::{Error, Result, SyscallContext};
use crate::platform;
use nix::errno::Errno;
use nix::sys::socket::{self as sock, AddressFamily, Backlog, SockType, UnixAddr};
use nix::sys::stat::{lstat, Mode, SFlag};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
  Stream,
  SeqPacket,
  Datagram,
}

impl From<SocketType> for SockType {
  fn from(t: SocketType) -> SockType {
    match t {
      SocketType::Stream => SockType::Stream,
      SocketType::SeqPacket => SockType::SeqPacket,
      SocketType::Datagram => SockType::Datagram,
    }
  }
}

impl SocketType {
  pub fn as_str(self) -> &'static str {
    match self {
      SocketType::Stream => "stream",
      SocketType::SeqPacket => "seqpacket",
      SocketType::Datagram => "dgram",
    }
  }

  /// Does the kernel keep message boundaries for this type?
  pub fn is_message_oriented(self) -> bool {
    self != SocketType::Stream
  }

  pub fn of(fd: BorrowedFd<'_>) -> Result<Self> {
    match sock::getsockopt(&fd, sock::sockopt::SockType).syscall("getsockopt")? {
      SockType::Stream => Ok(SocketType::Stream),
      SockType::SeqPacket => Ok(SocketType::SeqPacket),
      SockType::Datagram => Ok(SocketType::Datagram),
      other => Err(Error::InvalidFd {
        fd: fd.as_raw_fd(),
        reason: format!("socket type {other:?} cannot pass descriptors"),
      }),
    }
  }
}

/// Who is at the other end of a connected socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
  /// `None` where the platform cannot tell (some macOS socketpairs).
  pub pid: Option<i32>,
  pub uid: u32,
  pub gid: u32,
}

pub fn peer_credentials(fd: BorrowedFd<'_>) -> Result<PeerCredentials> {
  platform::peer_credentials(fd)
}

/// How a listening or bound socket is created.
#[derive(Debug, Clone)]
pub struct BindOptions {
  /// Permission bits for the socket file (path addresses only).
  pub mode: Option<u32>,
  /// Replace a socket file that nobody listens on any more.
  pub replace_stale: bool,
  /// Refuse a directory in which another user could replace the socket file.
  pub check_directory: bool,
}

impl Default for BindOptions {
  fn default() -> Self {
    BindOptions {
      mode: Some(0o600),
      replace_stale: true,
      check_directory: true,
    }
  }
}

/// A listening stream or seqpacket socket.
pub fn listen(
  ty: SocketType,
  address: &SocketAddress,
  backlog: i32,
  options: &BindOptions,
) -> Result<OwnedFd> {
  if ty == SocketType::Datagram {
    return Err(Error::Unsupported {
      what: "listen() on a datagram socket (use bind)".into(),
    });
  }
  let fd = bind(ty, address, options)?;
  let backlog = Backlog::new(backlog.clamp(1, libc::SOMAXCONN)).syscall("listen")?;
  sock::listen(&fd, backlog).syscall_at("listen", address)?;
  Ok(fd)
}

/// A socket bound to `address`. A stale socket file (nobody accepts on it)
/// is replaced; a live one is EADDRINUSE; a path that is not a socket, or a
/// symlink, is never touched.
pub fn bind(ty: SocketType, address: &SocketAddress, options: &BindOptions) -> Result<OwnedFd> {
  let addr = address.to_unix_addr()?;
  if let (true, Some(path)) = (options.check_directory, address.path()) {
    check_directory(path)?;
  }
  let fd = platform::new_socket(ty)?;
  // The file is created no wider than the mode (a datagram socket can be
  // sent to from the moment it is bound); the chmod below makes it exact.
  let mode = options.mode.filter(|_| address.path().is_some());
  match platform::bind_with_mode(fd.as_fd(), &addr, ty, mode) {
    Ok(()) => {}
    Err(Errno::EADDRINUSE) if options.replace_stale && address.path().is_some() => {
      let path = address.path().expect("checked above");
      remove_if_stale(ty, path, &addr)?;
      platform::bind_with_mode(fd.as_fd(), &addr, ty, mode).syscall_at("bind", address)?;
    }
    Err(e) => return Err(Error::sys_at(e, "bind", address.to_string())),
  }
  if let (Some(mode), Some(path)) = (options.mode, address.path()) {
    nix::sys::stat::fchmodat(
      nix::fcntl::AT_FDCWD,
      path,
      Mode::from_bits_truncate(mode as _),
      nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .syscall_at("chmod", address)?;
  }
  Ok(fd)
}

/// The socket's directory must be one that only we (or root) can change,
/// or a sticky one like /tmp, where others cannot rename or remove our
/// file: otherwise another user could swap the socket for their own.
pub fn check_directory(path: &Path) -> Result<()> {
  let dir = match path.parent() {
    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
    _ => std::path::PathBuf::from("."),
  };
  let shown = dir.display().to_string();
  let st = nix::sys::stat::stat(&dir).syscall_at("stat", &shown)?;
  let mode = st.st_mode as u32;
  let me = nix::unistd::geteuid().as_raw();
  let owner_ok = st.st_uid == me || st.st_uid == 0;
  let others_write = mode & 0o022 != 0;
  let sticky = mode & 0o1000 != 0;
  if !owner_ok || (others_write && !sticky) {
    return Err(Error::InsecureDirectory {
      path: shown,
      owner: st.st_uid,
      mode: mode & 0o7777,
    });
  }
  Ok(())
}

fn remove_if_stale(ty: SocketType, path: &Path, addr: &UnixAddr) -> Result<()> {
  let shown = path.display().to_string();
  let st = lstat(path).syscall_at("lstat", &shown)?;
  let fmt = SFlag::from_bits_truncate(st.st_mode as _) & SFlag::S_IFMT;
  if fmt != SFlag::S_IFSOCK {
    return Err(Error::NotASocket { path: shown });
  }
  let probe = platform::new_socket(ty)?;
  match sock::connect(probe.as_raw_fd(), addr) {
    // Nobody listens: the file is left over from a process that died.
    Err(Errno::ECONNREFUSED) => {
      nix::unistd::unlink(path).syscall_at("unlink", &shown)?;
      Ok(())
    }
    // Connected, or the backlog is full: somebody is alive there.
    Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => {
      Err(Error::sys_at(Errno::EADDRINUSE, "bind", shown))
    }
    Err(Errno::EPROTOTYPE) => Err(Error::sys_at(Errno::EADDRINUSE, "bind", shown)),
    Err(e) => Err(Error::sys_at(e, "connect", shown)),
  }
}

/// Connect to `address`. On a full backlog Linux answers EAGAIN for a
/// non-blocking Unix socket; the caller retries.
pub fn connect(ty: SocketType, address: &SocketAddress) -> Result<OwnedFd> {
  let addr = address.to_unix_addr()?;
  let fd = platform::new_socket(ty)?;
  connect_fd(fd.as_fd(), &addr, address)?;
  Ok(fd)
}

pub fn connect_fd(fd: BorrowedFd<'_>, addr: &UnixAddr, shown: &SocketAddress) -> Result<()> {
  loop {
    match sock::connect(fd.as_raw_fd(), addr) {
      Ok(()) => return Ok(()),
      Err(Errno::EINTR) => continue,
      Err(e) => return Err(Error::sys_at(e, "connect", shown.to_string())),
    }
  }
}

/// Block until `fd` is readable (or, with `writable`, writable), for at most
/// `timeout_ms` milliseconds (negative: no limit). Ok(false) when the time
/// ran out. An error or hang-up on the socket counts as ready: the next read
/// or write reports it. A signal also returns Ok(true): the caller tries
/// its I/O again and waits again with what is left of its time.
pub fn wait_ready(fd: BorrowedFd<'_>, writable: bool, timeout_ms: i32) -> Result<bool> {
  let mut p = libc::pollfd {
    fd: fd.as_raw_fd(),
    events: if writable {
      libc::POLLOUT
    } else {
      libc::POLLIN
    },
    revents: 0,
  };
  // SAFETY: one valid pollfd for the duration of the call.
  match unsafe { libc::poll(&mut p, 1, timeout_ms) } {
    0 => Ok(false),
    n if n > 0 => Ok(true),
    _ => match Errno::last() {
      Errno::EINTR => Ok(true),
      e => Err(Error::sys(e, "poll")),
    },
  }
}

pub fn socketpair(ty: SocketType) -> Result<(OwnedFd, OwnedFd)> {
  platform::new_socketpair(ty)
}

/// The socket's own address: `Unnamed` when it was never bound.
pub fn local_address(fd: BorrowedFd<'_>) -> Result<SocketAddress> {
  let a: UnixAddr = sock::getsockname(fd.as_raw_fd()).syscall("getsockname")?;
  Ok(SocketAddress::from_unix_addr(&a))
}

/// The peer's address: `Unnamed` when the peer never bound one, and when
/// there is no peer (ENOTCONN: a datagram socket that is not connected).
/// Any other failure is an error: the descriptor is not the socket it was.
pub fn peer_address(fd: BorrowedFd<'_>) -> Result<SocketAddress> {
  match sock::getpeername::<UnixAddr>(fd.as_raw_fd()) {
    Ok(a) => Ok(SocketAddress::from_unix_addr(&a)),
    Err(Errno::ENOTCONN) => Ok(SocketAddress::Unnamed),
    Err(e) => Err(Error::sys(e, "getpeername")),
  }
}

/// What an adopted descriptor turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdoptedSocket {
  pub ty: SocketType,
  pub listening: bool,
}

/// Check that an inherited descriptor is a Unix socket, learn its type and
/// whether it listens, and give it fdpass's flags (non-blocking, CLOEXEC).
pub fn inspect_for_adoption(fd: BorrowedFd<'_>) -> Result<AdoptedSocket> {
  let raw = fd.as_raw_fd();
  let kind = crate::fd::kind(fd)?;
  if kind != crate::fd::FdKind::Socket {
    return Err(Error::InvalidFd {
      fd: raw,
      reason: format!("is a {}, not a socket", kind.as_str()),
    });
  }
  match platform::socket_family(fd)? {
    Some(AddressFamily::Unix) => {}
    other => {
      return Err(Error::InvalidFd {
        fd: raw,
        reason: format!("is a {other:?} socket; descriptors travel only over Unix sockets"),
      })
    }
  }
  let ty = SocketType::of(fd)?;
  let listening = ty != SocketType::Datagram && platform::is_listening(fd)?;
  platform::prepare_fd(fd)?;
  Ok(AdoptedSocket { ty, listening })
}

/// Remove the socket file at `path` only if it is still the one we bound
/// (same device and inode), so a successor's socket is never deleted.
#[allow(clippy::unnecessary_cast)] // st_dev is i32 on macOS
pub fn unlink_if_same(path: &Path, dev: u64, ino: u64) -> Result<bool> {
  match lstat(path) {
    Ok(st) if st.st_dev as u64 == dev && st.st_ino as u64 == ino => {
      nix::unistd::unlink(path).syscall_at("unlink", &path.display())?;
      Ok(true)
    }
    Ok(_) | Err(Errno::ENOENT) => Ok(false),
    Err(e) => Err(Error::sys_at(e, "lstat", path.display().to_string())),
  }
}

/// Device and inode of a socket file, to recognise it later.
#[allow(clippy::unnecessary_cast)] // st_dev is i32 on macOS
pub fn path_identity(path: &Path) -> Result<(u64, u64)> {
  let st = lstat(path).syscall_at("lstat", &path.display())?;
  Ok((st.st_dev as u64, st.st_ino as u64))
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::path::PathBuf;

  fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fdpass-core-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    dir
  }

  #[test]
  fn a_stale_socket_file_is_replaced() {
    let path = temp_path("stale");
    let addr = SocketAddress::Path(path.clone());
    drop(listen(SocketType::Stream, &addr, 8, &BindOptions::default()).unwrap());
    assert!(path.exists(), "closing a socket leaves its file behind");
    let again = listen(SocketType::Stream, &addr, 8, &BindOptions::default());
    assert!(again.is_ok(), "{again:?}");
    std::fs::remove_file(&path).unwrap();
  }

  #[test]
  fn a_live_socket_gives_eaddrinuse() {
    let path = temp_path("live");
    let addr = SocketAddress::Path(path.clone());
    let _live = listen(SocketType::Stream, &addr, 8, &BindOptions::default()).unwrap();
    let err = listen(SocketType::Stream, &addr, 8, &BindOptions::default()).unwrap_err();
    assert_eq!(err.code(), "EADDRINUSE");
    std::fs::remove_file(&path).unwrap();
  }

  #[test]
  fn a_regular_file_is_never_unlinked() {
    let path = temp_path("regular");
    std::fs::write(&path, b"precious").unwrap();
    let err = listen(
      SocketType::Stream,
      &SocketAddress::Path(path.clone()),
      8,
      &BindOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "ERR_FDPASS_NOT_A_SOCKET");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    std::fs::remove_file(&path).unwrap();
  }

  #[test]
  fn a_symlink_to_a_stale_socket_is_not_followed() {
    let target = temp_path("symlink-target");
    let link = temp_path("symlink");
    drop(
      listen(
        SocketType::Stream,
        &SocketAddress::Path(target.clone()),
        8,
        &BindOptions::default(),
      )
      .unwrap(),
    );
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = listen(
      SocketType::Stream,
      &SocketAddress::Path(link.clone()),
      8,
      &BindOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "ERR_FDPASS_NOT_A_SOCKET");
    assert!(target.exists() && link.symlink_metadata().is_ok());
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&target).unwrap();
  }

  #[test]
  fn the_socket_file_gets_mode_0600_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let path = temp_path("mode");
    let _l = listen(
      SocketType::Stream,
      &SocketAddress::Path(path.clone()),
      8,
      &BindOptions::default(),
    )
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::remove_file(&path).unwrap();
  }

  #[test]
  fn a_directory_others_can_write_is_refused_unless_sticky() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_path("open-dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let addr = SocketAddress::Path(dir.join("s.sock"));
    let err = listen(SocketType::Stream, &addr, 8, &BindOptions::default()).unwrap_err();
    assert_eq!(err.code(), "ERR_FDPASS_INSECURE_DIRECTORY");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(listen(SocketType::Stream, &addr, 8, &BindOptions::default()).is_ok());
    let opts = BindOptions {
      check_directory: false,
      ..BindOptions::default()
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::remove_file(dir.join("s.sock")).unwrap();
    assert!(listen(SocketType::Stream, &addr, 8, &opts).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
  }

  #[test]
  fn an_unconnected_datagram_socket_has_no_peer_address() {
    let fd = platform::new_socket(SocketType::Datagram).unwrap();
    assert_eq!(peer_address(fd.as_fd()).unwrap(), SocketAddress::Unnamed);
    assert_eq!(local_address(fd.as_fd()).unwrap(), SocketAddress::Unnamed);
  }

  #[test]
  fn addresses_of_a_descriptor_that_is_no_socket_are_errors() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = local_address(file.as_fd()).unwrap_err();
    assert_eq!(
      (err.code(), err.to_string().starts_with("getsockname ")),
      ("ENOTSOCK".into(), true)
    );
    let err = peer_address(file.as_fd()).unwrap_err();
    assert_eq!(
      (err.code(), err.to_string().starts_with("getpeername ")),
      ("ENOTSOCK".into(), true)
    );
  }

  #[test]
  fn adoption_reports_type_and_listening() {
    let ty = if cfg!(target_os = "linux") {
      SocketType::SeqPacket
    } else {
      SocketType::Stream
    };
    let (a, _b) = socketpair(ty).unwrap();
    let info = inspect_for_adoption(a.as_fd()).unwrap();
    assert_eq!(
      info,
      AdoptedSocket {
        ty,
        listening: false
      }
    );
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = inspect_for_adoption(file.as_fd()).unwrap_err();
    assert_eq!(err.code(), "ERR_FDPASS_INVALID_FD");
  }
}
