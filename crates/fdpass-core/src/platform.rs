//! The differences between Linux and macOS in how sockets and descriptors
//! behave. Two features that exist on Linux only keep their halves beside
//! the code they belong to: abstract addresses (address.rs) and
//! `pidfd_getfd` (pidfd.rs).
//!
//! | concern | Linux | macOS |
//! |---|---|---|
//! | CLOEXEC/NONBLOCK on new sockets | `SOCK_CLOEXEC \| SOCK_NONBLOCK` atomically | `fcntl` right after `socket`/`accept` |
//! | CLOEXEC on received fds | `MSG_CMSG_CLOEXEC` atomically | `fcntl` right after `recvmsg` |
//! | SIGPIPE | `MSG_NOSIGNAL` on each send | `SO_NOSIGPIPE` on the socket |
//! | `sun_path` | 108 bytes | 104 bytes, plus `sun_len` (set by nix) |
//! | SOCK_SEQPACKET, abstract names | yes | no |
//! | peer credentials | `SO_PEERCRED` | `getpeereid` + `LOCAL_PEERPID` |
//! | control buffer | sized for `SCM_MAX_FD` | larger: the kernel installs every fd before it truncates |
//! | close, sendmsg, recvmsg | the syscalls themselves | libc's functions |
//! | readiness (the binding's thread reactor) | `epoll_ctl` | `kevent` |
//! | a socket file's mode from its creation | `fchmod` on the socket before `bind` | a narrowed umask around a datagram socket's `bind` |

use crate::error::{Error, Result, SyscallContext};
use crate::socket::{PeerCredentials, SocketType};
use nix::sys::socket::{self as sock, AddressFamily, MsgFlags, SockFlag, SockaddrLike};
#[allow(unused_imports)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!(
  "fdpass supports Linux and macOS: SCM_RIGHTS means something else, or nothing, elsewhere"
);

#[cfg(target_os = "linux")]
pub const OS_NAME: &str = "Linux";
#[cfg(target_os = "macos")]
pub const OS_NAME: &str = "macOS";

/// The syscall that registers interest in a descriptor with the `polling`
/// crate (the binding's thread reactor), named in the errors it reports.
#[cfg(target_os = "linux")]
pub const POLLER_SYSCALL: &str = "epoll_ctl";
#[cfg(target_os = "macos")]
pub const POLLER_SYSCALL: &str = "kevent";

/// Flags for every `sendmsg`: a vanished peer is an EPIPE error, never a
/// SIGPIPE; and it never waits, whether or not the file is O_NONBLOCK (a
/// socket whose receiveSync() waits in recvmsg is not: recv.rs).
#[cfg(target_os = "linux")]
pub const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL.union(MsgFlags::MSG_DONTWAIT);
#[cfg(target_os = "macos")]
pub const SEND_FLAGS: MsgFlags = MsgFlags::MSG_DONTWAIT;

/// Flags for every `recvmsg`: received descriptors are close-on-exec from
/// birth. recv.rs adds MSG_DONTWAIT unless the caller means to wait.
#[cfg(target_os = "linux")]
pub const RECV_FLAGS: libc::c_int = libc::MSG_CMSG_CLOEXEC;
#[cfg(target_os = "macos")]
pub const RECV_FLAGS: libc::c_int = 0;

/// Room for this many descriptors in the receive control buffer. Linux never
/// delivers more than SCM_MAX_FD. macOS has no such limit below its 2 KiB
/// control mbuf and installs every descriptor before truncating, so its
/// buffer must hold all a message can carry or the rest are lost.
#[cfg(target_os = "linux")]
pub const RECV_FD_CAPACITY: usize = 253;
#[cfg(target_os = "macos")]
pub const RECV_FD_CAPACITY: usize = 512;

// close, sendmsg and recvmsg without glibc's cancellation-point wrappers:
// in a process with threads (every JavaScript runtime is one) glibc enables
// and disables asynchronous thread cancellation around each of these calls,
// 6% of a receiver's CPU when it closes a message's worth of descriptors
// and 3% of a synchronous round trip (perf, W2 and W3). fdpass never
// cancels threads, so the bare syscalls do the same work. macOS keeps libc.

/// # Safety
/// The caller owns `fd` and never uses the number again.
#[cfg(target_os = "linux")]
pub unsafe fn close(fd: std::os::fd::RawFd) -> libc::c_int {
  // SAFETY: the caller's promise; the syscall takes one int.
  unsafe { libc::syscall(libc::SYS_close, fd) as libc::c_int }
}

/// # Safety
/// As for libc's `sendmsg`: `msg` and everything it points to are live.
#[cfg(target_os = "linux")]
pub unsafe fn sendmsg(
  fd: std::os::fd::RawFd,
  msg: *const libc::msghdr,
  flags: libc::c_int,
) -> isize {
  // SAFETY: the caller's promise; the kernel's sendmsg takes these three.
  unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg, flags) as isize }
}

/// # Safety
/// As for libc's `recvmsg`: `msg` and everything it points to are live.
#[cfg(target_os = "linux")]
pub unsafe fn recvmsg(fd: std::os::fd::RawFd, msg: *mut libc::msghdr, flags: libc::c_int) -> isize {
  // SAFETY: the caller's promise (msg and its buffers are live and
  // writable); the kernel's recvmsg takes these three.
  unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg, flags) as isize }
}

/// # Safety
/// The caller owns `fd` and never uses the number again.
#[cfg(target_os = "macos")]
pub unsafe fn close(fd: std::os::fd::RawFd) -> libc::c_int {
  // SAFETY: the caller owns fd and gives it up (this function's contract).
  unsafe { libc::close(fd) }
}

/// # Safety
/// As for libc's `sendmsg`: `msg` and everything it points to are live.
#[cfg(target_os = "macos")]
pub unsafe fn sendmsg(
  fd: std::os::fd::RawFd,
  msg: *const libc::msghdr,
  flags: libc::c_int,
) -> isize {
  // SAFETY: msg and what it points to are live (this function's contract).
  unsafe { libc::sendmsg(fd, msg, flags) as isize }
}

/// # Safety
/// As for libc's `recvmsg`: `msg` and everything it points to are live.
#[cfg(target_os = "macos")]
pub unsafe fn recvmsg(fd: std::os::fd::RawFd, msg: *mut libc::msghdr, flags: libc::c_int) -> isize {
  // SAFETY: msg and its buffers are live and writable (this function's contract).
  unsafe { libc::recvmsg(fd, msg, flags) as isize }
}

/// Usable bytes of `sun_path`: one is kept for the terminating NUL.
pub const MAX_PATH_LEN: usize = {
  // SAFETY: sockaddr_un is plain old data; an all-zero value is valid.
  let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
  addr.sun_path.len() - 1
};

pub const SUPPORTS_ABSTRACT: bool = cfg!(target_os = "linux");

pub fn check_supported(ty: SocketType) -> Result<()> {
  if ty == SocketType::SeqPacket && cfg!(not(target_os = "linux")) {
    return Err(Error::Unsupported {
      what: "SOCK_SEQPACKET for Unix sockets (use 'stream' or 'dgram')".into(),
    });
  }
  Ok(())
}

/// A new Unix socket, non-blocking and close-on-exec.
pub fn new_socket(ty: SocketType) -> Result<OwnedFd> {
  check_supported(ty)?;
  new_socket_in(AddressFamily::Unix, ty.into())
}

/// A new socket of any family, non-blocking and close-on-exec.
pub fn new_socket_in(family: AddressFamily, ty: sock::SockType) -> Result<OwnedFd> {
  #[cfg(target_os = "linux")]
  {
    sock::socket(
      family,
      ty,
      SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
      None,
    )
    .syscall("socket")
  }
  #[cfg(target_os = "macos")]
  {
    let fd = sock::socket(family, ty, SockFlag::empty(), None).syscall("socket")?;
    prepare_fd(fd.as_fd())?;
    Ok(fd)
  }
}

pub fn new_socketpair(ty: SocketType) -> Result<(OwnedFd, OwnedFd)> {
  check_supported(ty)?;
  #[cfg(target_os = "linux")]
  {
    sock::socketpair(
      AddressFamily::Unix,
      ty.into(),
      None,
      SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .syscall("socketpair")
  }
  #[cfg(target_os = "macos")]
  {
    let (a, b) = sock::socketpair(AddressFamily::Unix, ty.into(), None, SockFlag::empty())
      .syscall("socketpair")?;
    prepare_fd(a.as_fd())?;
    prepare_fd(b.as_fd())?;
    Ok((a, b))
  }
}

/// Bind `fd` to the path in `addr`, creating the socket file with no more
/// permission than `mode` from the moment it exists. The caller chmods it to
/// exactly `mode` afterwards (the umask may have taken bits away).
///
/// A datagram socket receives from anyone who may write its file as soon as
/// `bind` returns, so a chmod after `bind` alone would leave a window in
/// which the umask decides who can send to it. Linux creates the file with
/// the socket's own inode mode minus the umask, and that mode is what
/// `fchmod` on the socket sets. macOS creates it with 0777 minus the umask,
/// whatever the socket's own mode, so the umask is narrowed
/// around the `bind`: it is the process's, so a file another thread creates
/// at that instant gets no more than `mode` either. Stream and seqpacket
/// sockets need none of this there (nobody can connect before `listen`).
pub fn bind_with_mode(
  fd: BorrowedFd<'_>,
  addr: &sock::UnixAddr,
  ty: SocketType,
  mode: Option<u32>,
) -> nix::Result<()> {
  use nix::sys::stat::Mode;
  let Some(mode) = mode else {
    return sock::bind(fd.as_raw_fd(), addr);
  };
  let mode = Mode::from_bits_truncate((mode & 0o777) as _);
  #[cfg(target_os = "linux")]
  {
    let _ = ty;
    nix::sys::stat::fchmod(fd, mode)?;
    sock::bind(fd.as_raw_fd(), addr)
  }
  #[cfg(target_os = "macos")]
  {
    if ty != SocketType::Datagram {
      return sock::bind(fd.as_raw_fd(), addr);
    }
    // One narrowed bind at a time, so that none restores another's umask.
    static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o777));
    nix::sys::stat::umask(old | (Mode::from_bits_truncate(0o777) - mode));
    let bound = sock::bind(fd.as_raw_fd(), addr);
    nix::sys::stat::umask(old);
    bound
  }
}

/// Accept one connection; `None` when the backlog is empty.
pub fn accept(listener: BorrowedFd<'_>) -> Result<Option<OwnedFd>> {
  loop {
    #[cfg(target_os = "linux")]
    let r = sock::accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK);
    // macOS has no accept4: the flags are set right after (prepare_fd).
    #[cfg(target_os = "macos")]
    let r = sock::accept(listener);
    match r {
      Ok(fd) => {
        #[cfg(target_os = "macos")]
        prepare_fd(fd.as_fd())?;
        return Ok(Some(fd));
      }
      Err(nix::errno::Errno::EINTR) => continue,
      // A connection reset while still queued is not the listener's failure.
      Err(nix::errno::Errno::ECONNABORTED) => continue,
      Err(nix::errno::Errno::EAGAIN) => return Ok(None),
      Err(e) => return Err(Error::sys(e, "accept")),
    }
  }
}

/// Make an inherited or adopted descriptor behave like one fdpass created.
pub fn prepare_fd(fd: BorrowedFd<'_>) -> Result<()> {
  crate::fd::set_cloexec(fd)?;
  crate::fd::set_nonblocking(fd)?;
  #[cfg(target_os = "macos")]
  set_nosigpipe(fd)?;
  Ok(())
}

/// nix has no SO_NOSIGPIPE option, so this one goes through libc.
#[cfg(target_os = "macos")]
fn set_nosigpipe(fd: BorrowedFd<'_>) -> Result<()> {
  let on: libc::c_int = 1;
  // SAFETY: a valid fd, a pointer to a live c_int and its exact size.
  let r = unsafe {
    libc::setsockopt(
      fd.as_raw_fd(),
      libc::SOL_SOCKET,
      libc::SO_NOSIGPIPE,
      (&on as *const libc::c_int).cast(),
      std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    )
  };
  nix::errno::Errno::result(r).map(drop).syscall("setsockopt")
}

/// CLOEXEC for descriptors that just arrived. Linux set it atomically with
/// MSG_CMSG_CLOEXEC; macOS needs a call per descriptor, whose failure is
/// reported rather than ignored (the fds still belong to the caller, who closes them).
#[cfg(target_os = "linux")]
#[inline]
pub fn after_receive(_fds: &[OwnedFd]) -> Result<()> {
  Ok(())
}

#[cfg(target_os = "macos")]
pub fn after_receive(fds: &[OwnedFd]) -> Result<()> {
  for fd in fds {
    crate::fd::set_cloexec(fd.as_fd())?;
  }
  Ok(())
}

pub fn peer_credentials(fd: BorrowedFd<'_>) -> Result<PeerCredentials> {
  #[cfg(target_os = "linux")]
  {
    let c = sock::getsockopt(&fd, sock::sockopt::PeerCredentials).syscall("getsockopt")?;
    Ok(PeerCredentials {
      pid: Some(c.pid()),
      uid: c.uid(),
      gid: c.gid(),
    })
  }
  #[cfg(target_os = "macos")]
  {
    let (uid, gid) = nix::unistd::getpeereid(fd).syscall("getpeereid")?;
    // LOCAL_PEERPID fails for socketpair peers on some releases; the pid is then unknown.
    let pid = sock::getsockopt(&fd, sock::sockopt::LocalPeerPid).ok();
    Ok(PeerCredentials {
      pid,
      uid: uid.as_raw(),
      gid: gid.as_raw(),
    })
  }
}

/// Is the descriptor a listening socket?
pub fn is_listening(fd: BorrowedFd<'_>) -> Result<bool> {
  sock::getsockopt(&fd, sock::sockopt::AcceptConn).syscall("getsockopt")
}

/// The address family of a socket (Unix, Inet, ...), from its own name.
pub fn socket_family(fd: BorrowedFd<'_>) -> Result<Option<AddressFamily>> {
  let addr: sock::SockaddrStorage = sock::getsockname(fd.as_raw_fd()).syscall("getsockname")?;
  Ok(addr.family())
}
