//! One error type for the core. Each variant maps to a stable `code` string
//! that the binding exposes to JavaScript; system errors keep their errno and
//! the syscall that failed, like Node's own system errors.

use nix::errno::Errno;
use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
  /// A syscall failed. `address` is the socket path, when one is involved.
  Sys {
    errno: Errno,
    syscall: &'static str,
    address: Option<String>,
  },
  /// More descriptors than one message can carry.
  TooManyFds { count: usize, max: usize },
  /// A socket path longer than `sockaddr_un.sun_path` can hold.
  AddressTooLong { len: usize, max: usize },
  /// The path exists and is not a socket, so fdpass refuses to replace it.
  NotASocket { path: String },
  /// The platform has no such feature (SOCK_SEQPACKET or abstract sockets on macOS).
  Unsupported { what: String },
  /// The peer broke the stream framing; the connection cannot continue.
  Protocol { reason: String },
  /// A message larger than the configured maximum.
  MessageTooLarge { size: usize, max: usize },
  /// A descriptor handed over for adoption is not what the caller said it is.
  InvalidFd { fd: i32, reason: String },
  /// Another user could replace a socket file in this directory.
  InsecureDirectory { path: String, owner: u32, mode: u32 },
  /// An argument the kernel would misread or silently ignore.
  InvalidArgument { reason: String },
}

impl Error {
  pub fn sys(errno: Errno, syscall: &'static str) -> Self {
    Error::Sys {
      errno,
      syscall,
      address: None,
    }
  }

  pub fn sys_at(errno: Errno, syscall: &'static str, address: impl Into<String>) -> Self {
    Error::Sys {
      errno,
      syscall,
      address: Some(address.into()),
    }
  }

  /// The stable code: the errno name for system errors, `ERR_FDPASS_*` for ours.
  pub fn code(&self) -> String {
    match self {
      Error::Sys { errno, .. } => errno_name(*errno).into(),
      Error::TooManyFds { .. } => "ERR_FDPASS_TOO_MANY_FDS".into(),
      Error::AddressTooLong { .. } => "ERR_FDPASS_ADDRESS_TOO_LONG".into(),
      Error::NotASocket { .. } => "ERR_FDPASS_NOT_A_SOCKET".into(),
      Error::Unsupported { .. } => "ERR_FDPASS_UNSUPPORTED".into(),
      Error::Protocol { .. } => "ERR_FDPASS_PROTOCOL".into(),
      Error::MessageTooLarge { .. } => "ERR_FDPASS_MESSAGE_TOO_LARGE".into(),
      Error::InvalidFd { .. } => "ERR_FDPASS_INVALID_FD".into(),
      Error::InvalidArgument { .. } => "ERR_INVALID_ARG_VALUE".into(),
      Error::InsecureDirectory { .. } => "ERR_FDPASS_INSECURE_DIRECTORY".into(),
    }
  }

  pub fn errno(&self) -> Option<Errno> {
    match self {
      Error::Sys { errno, .. } => Some(*errno),
      _ => None,
    }
  }

  pub fn is_would_block(&self) -> bool {
    matches!(
      self,
      Error::Sys {
        errno: Errno::EAGAIN,
        ..
      }
    )
  }
}

/// The `code` of each errno this package can report, under the names
/// Node and libuv give them. A list rather than nix's `Debug` output, whose
/// names are nix's to change and which says `EOPNOTSUPP` where Node says
/// `ENOTSUP` (Linux gives both one number). Where two names share a number
/// the first one listed is reported: `ENOTSUP` before `EOPNOTSUPP`, which is
/// a number of its own on macOS.
pub const ERRNO_NAMES: &[(libc::c_int, &str)] = &[
  (libc::E2BIG, "E2BIG"),
  (libc::EACCES, "EACCES"),
  (libc::EADDRINUSE, "EADDRINUSE"),
  (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
  (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
  (libc::EAGAIN, "EAGAIN"),
  (libc::EALREADY, "EALREADY"),
  (libc::EBADF, "EBADF"),
  (libc::EBUSY, "EBUSY"),
  (libc::ECANCELED, "ECANCELED"),
  (libc::ECONNABORTED, "ECONNABORTED"),
  (libc::ECONNREFUSED, "ECONNREFUSED"),
  (libc::ECONNRESET, "ECONNRESET"),
  (libc::EDESTADDRREQ, "EDESTADDRREQ"),
  (libc::EDQUOT, "EDQUOT"),
  (libc::EEXIST, "EEXIST"),
  (libc::EFAULT, "EFAULT"),
  (libc::EFBIG, "EFBIG"),
  (libc::EHOSTDOWN, "EHOSTDOWN"),
  (libc::EHOSTUNREACH, "EHOSTUNREACH"),
  (libc::EILSEQ, "EILSEQ"),
  (libc::EINTR, "EINTR"),
  (libc::EINVAL, "EINVAL"),
  (libc::EIO, "EIO"),
  (libc::EISCONN, "EISCONN"),
  (libc::EISDIR, "EISDIR"),
  (libc::ELOOP, "ELOOP"),
  (libc::EMFILE, "EMFILE"),
  (libc::EMLINK, "EMLINK"),
  (libc::EMSGSIZE, "EMSGSIZE"),
  (libc::ENAMETOOLONG, "ENAMETOOLONG"),
  (libc::ENETDOWN, "ENETDOWN"),
  (libc::ENETUNREACH, "ENETUNREACH"),
  (libc::ENFILE, "ENFILE"),
  (libc::ENOBUFS, "ENOBUFS"),
  (libc::ENODATA, "ENODATA"),
  (libc::ENODEV, "ENODEV"),
  (libc::ENOENT, "ENOENT"),
  (libc::ENOMEM, "ENOMEM"),
  (libc::ENOPROTOOPT, "ENOPROTOOPT"),
  (libc::ENOSPC, "ENOSPC"),
  (libc::ENOSYS, "ENOSYS"),
  (libc::ENOTCONN, "ENOTCONN"),
  (libc::ENOTDIR, "ENOTDIR"),
  (libc::ENOTEMPTY, "ENOTEMPTY"),
  (libc::ENOTSOCK, "ENOTSOCK"),
  (libc::ENOTSUP, "ENOTSUP"),
  (libc::EOPNOTSUPP, "EOPNOTSUPP"),
  (libc::ENOTTY, "ENOTTY"),
  (libc::ENXIO, "ENXIO"),
  (libc::EOVERFLOW, "EOVERFLOW"),
  (libc::EPERM, "EPERM"),
  (libc::EPIPE, "EPIPE"),
  (libc::EPROTO, "EPROTO"),
  (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
  (libc::EPROTOTYPE, "EPROTOTYPE"),
  (libc::ERANGE, "ERANGE"),
  (libc::EROFS, "EROFS"),
  (libc::ESHUTDOWN, "ESHUTDOWN"),
  (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
  (libc::ESPIPE, "ESPIPE"),
  (libc::ESRCH, "ESRCH"),
  (libc::ESTALE, "ESTALE"),
  (libc::ETIMEDOUT, "ETIMEDOUT"),
  (libc::ETOOMANYREFS, "ETOOMANYREFS"),
  (libc::ETXTBSY, "ETXTBSY"),
  (libc::EXDEV, "EXDEV"),
];

/// The code for an errno outside `ERRNO_NAMES`, as libuv names one it does
/// not know; the number itself stays in the error's `errno`.
pub const UNKNOWN_ERRNO_NAME: &str = "UNKNOWN";

/// `"EPIPE"` for `Errno::EPIPE`; `UNKNOWN_ERRNO_NAME` for a number not listed.
pub fn errno_name(errno: Errno) -> &'static str {
  let raw = errno as libc::c_int;
  ERRNO_NAMES
    .iter()
    .find(|(n, _)| *n == raw)
    .map_or(UNKNOWN_ERRNO_NAME, |(_, name)| name)
}

/// What the caller can do about the most common system errors of this package.
fn hint(errno: Errno, syscall: &str) -> Option<&'static str> {
  Some(match (errno, syscall) {
    (Errno::ENOENT, "connect") => "no socket exists at this path; is the server running?",
    // The directory check (check_directory) stats the socket's directory.
    (Errno::ENOENT, "stat") => {
      "this directory does not exist: create it first (mkdir -p; mode 0700 keeps it private), or put the socket in an existing directory"
    }
    (Errno::ENOENT, "bind") => {
      "the socket's directory does not exist: create it first (mkdir -p; mode 0700 keeps it private), or put the socket in an existing directory"
    }
    (Errno::ECONNREFUSED, _) => "nobody is listening on this socket",
    (Errno::EADDRINUSE, _) => "another process is listening on this address",
    (Errno::EPIPE, _) | (Errno::ECONNRESET, _) => "the peer closed the connection",
    (Errno::EBADF, "sendmsg") => "one of the descriptors to send is not open",
    (Errno::ETOOMANYREFS, _) => {
      "too many descriptors are in flight; the receiver must read its messages first (the kernel bounds in-flight fds by RLIMIT_NOFILE)"
    }
    (Errno::EMFILE, _) => "this process has reached its open-file limit (RLIMIT_NOFILE); close descriptors or raise the limit",
    (Errno::ENFILE, _) => "the system-wide open-file table is full",
    (Errno::EACCES, _) => "permission denied by the socket file or its directory",
    (Errno::EPERM, "pidfd_getfd") => {
      "the kernel's ptrace rules refuse it: the target must run as your uid and /proc/sys/kernel/yama/ptrace_scope must allow it (0, or 1 for your descendants), or you need CAP_SYS_PTRACE"
    }
    (Errno::EPROTOTYPE, _) => "the socket type does not match the peer's (stream, seqpacket or dgram)",
    _ => return None,
  })
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Error::Sys { errno, syscall, address } => {
        // Node's shape first ("connect ENOENT /tmp/a.sock"), then what to do.
        write!(f, "{syscall} {}", errno_name(*errno))?;
        if let Some(a) = address {
          write!(f, " {a}")?;
        }
        match hint(*errno, syscall) {
          Some(h) => write!(f, ": {h}"),
          None => write!(f, ": {}", errno.desc()),
        }
      }
      Error::TooManyFds { count, max } => write!(
        f,
        "cannot send {count} file descriptors in one message: the limit is {max} (SCM_MAX_FD); split them across messages"
      ),
      Error::AddressTooLong { len, max } => write!(
        f,
        "socket path is {len} bytes, but {} allows at most {max}: use a shorter path (for example under /tmp or $XDG_RUNTIME_DIR) or a relative one",
        crate::platform::OS_NAME
      ),
      Error::NotASocket { path } => write!(
        f,
        "{path} exists and is not a socket; fdpass never removes such a path: delete it yourself or choose another"
      ),
      Error::Unsupported { what } => write!(f, "{what} is not supported on {}", crate::platform::OS_NAME),
      Error::Protocol { reason } => write!(f, "fdpass stream protocol error: {reason}"),
      Error::MessageTooLarge { size, max } => write!(
        f,
        "message of {size} bytes is larger than maxMessageSize ({max} bytes); raise maxMessageSize on both ends"
      ),
      Error::InvalidFd { fd, reason } => write!(f, "fd {fd}: {reason}"),
      Error::InvalidArgument { reason } => f.write_str(reason),
      Error::InsecureDirectory { path, owner, mode } => write!(
        f,
        "{path} (owner uid {owner}, mode {mode:o}) can be changed by other users, who could replace the socket file: use a directory only you can write (or a sticky one like /tmp), or pass checkDirectory: false"
      ),
    }
  }
}

impl std::error::Error for Error {}

impl From<Errno> for Error {
  fn from(errno: Errno) -> Self {
    Error::sys(errno, "syscall")
  }
}

/// Attach the syscall name to a nix result.
pub trait SyscallContext<T> {
  fn syscall(self, name: &'static str) -> Result<T>;
  fn syscall_at(self, name: &'static str, address: &dyn fmt::Display) -> Result<T>;
}

impl<T> SyscallContext<T> for nix::Result<T> {
  fn syscall(self, name: &'static str) -> Result<T> {
    self.map_err(|e| Error::sys(e, name))
  }
  fn syscall_at(self, name: &'static str, address: &dyn fmt::Display) -> Result<T> {
    self.map_err(|e| Error::sys_at(e, name, address.to_string()))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// `(libc::EAGAIN, "EAGAIN")` for `EAGAIN`: the constant and its own name.
  macro_rules! named {
    ($($name:ident),* $(,)?) => { [$((libc::$name, stringify!($name))),*] };
  }

  #[test]
  fn every_listed_name_is_the_name_of_its_libc_constant() {
    let expected = named![
      E2BIG,
      EACCES,
      EADDRINUSE,
      EADDRNOTAVAIL,
      EAFNOSUPPORT,
      EAGAIN,
      EALREADY,
      EBADF,
      EBUSY,
      ECANCELED,
      ECONNABORTED,
      ECONNREFUSED,
      ECONNRESET,
      EDESTADDRREQ,
      EDQUOT,
      EEXIST,
      EFAULT,
      EFBIG,
      EHOSTDOWN,
      EHOSTUNREACH,
      EILSEQ,
      EINTR,
      EINVAL,
      EIO,
      EISCONN,
      EISDIR,
      ELOOP,
      EMFILE,
      EMLINK,
      EMSGSIZE,
      ENAMETOOLONG,
      ENETDOWN,
      ENETUNREACH,
      ENFILE,
      ENOBUFS,
      ENODATA,
      ENODEV,
      ENOENT,
      ENOMEM,
      ENOPROTOOPT,
      ENOSPC,
      ENOSYS,
      ENOTCONN,
      ENOTDIR,
      ENOTEMPTY,
      ENOTSOCK,
      ENOTSUP,
      EOPNOTSUPP,
      ENOTTY,
      ENXIO,
      EOVERFLOW,
      EPERM,
      EPIPE,
      EPROTO,
      EPROTONOSUPPORT,
      EPROTOTYPE,
      ERANGE,
      EROFS,
      ESHUTDOWN,
      ESOCKTNOSUPPORT,
      ESPIPE,
      ESRCH,
      ESTALE,
      ETIMEDOUT,
      ETOOMANYREFS,
      ETXTBSY,
      EXDEV,
    ];
    assert_eq!(ERRNO_NAMES, &expected[..]);
    for (i, &(raw, name)) in ERRNO_NAMES.iter().enumerate() {
      // A number listed twice (ENOTSUP and EOPNOTSUPP on Linux) reports
      // its first name.
      let first = ERRNO_NAMES[..i].iter().find(|(n, _)| *n == raw);
      let want = first.map_or(name, |(_, n)| n);
      assert_eq!(errno_name(Errno::from_raw(raw)), want, "errno {raw}");
      assert_eq!(Error::sys(Errno::from_raw(raw), "read").code(), want);
    }
  }

  #[test]
  fn names_are_the_ones_node_uses() {
    assert_eq!(errno_name(Errno::EAGAIN), "EAGAIN");
    assert_eq!(errno_name(Errno::EWOULDBLOCK), "EAGAIN");
    assert_eq!(errno_name(Errno::ECONNRESET), "ECONNRESET");
    assert_eq!(errno_name(Errno::ENOTSUP), "ENOTSUP");
  }

  #[test]
  fn an_unlisted_errno_has_a_stable_code_and_keeps_its_number() {
    let listed = |raw| ERRNO_NAMES.iter().any(|(n, _)| *n == raw);
    let unlisted = (1..4096).find(|&raw| !listed(raw)).unwrap();
    let err = Error::sys(Errno::from_raw(unlisted), "ioctl");
    assert_eq!(err.code(), "UNKNOWN");
    assert_eq!(err.errno().map(|e| e as libc::c_int), Some(unlisted));
    assert!(err.to_string().starts_with("ioctl UNKNOWN"), "{err}");
    assert_eq!(Error::sys(Errno::from_raw(4095), "ioctl").code(), "UNKNOWN");
  }
}
