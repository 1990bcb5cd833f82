//! Socket addresses as users write them: a filesystem path or a Linux
//! abstract name. Length limits are checked here so that a long path is an
//! error naming the limit, never a silently truncated address.

use crate::error::{Error, Result};
use crate::platform;
use nix::sys::socket::UnixAddr;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
  Path(PathBuf),
  /// A name in Linux's abstract namespace (without the leading NUL).
  Abstract(Vec<u8>),
  /// An unbound socket (a socketpair end, or a client that never bound).
  Unnamed,
}

impl SocketAddress {
  pub fn to_unix_addr(&self) -> Result<UnixAddr> {
    match self {
      SocketAddress::Path(p) => {
        let len = p.as_os_str().len();
        if len == 0 {
          return Err(empty_path());
        }
        if len > platform::MAX_PATH_LEN {
          return Err(Error::AddressTooLong {
            len,
            max: platform::MAX_PATH_LEN,
          });
        }
        if p.as_os_str().as_bytes().contains(&0) {
          return Err(Error::Unsupported {
            what: "a socket path containing a NUL byte".into(),
          });
        }
        UnixAddr::new(p.as_path()).map_err(|e| Error::sys_at(e, "bind", p.display().to_string()))
      }
      SocketAddress::Abstract(name) => {
        if !platform::SUPPORTS_ABSTRACT {
          return Err(Error::Unsupported {
            what: "the abstract socket namespace".into(),
          });
        }
        // The leading NUL takes one byte of sun_path.
        if name.len() > platform::MAX_PATH_LEN {
          return Err(Error::AddressTooLong {
            len: name.len(),
            max: platform::MAX_PATH_LEN,
          });
        }
        #[cfg(target_os = "linux")]
        {
          UnixAddr::new_abstract(name).map_err(|e| Error::sys(e, "bind"))
        }
        #[cfg(not(target_os = "linux"))]
        unreachable!()
      }
      SocketAddress::Unnamed => Err(Error::Unsupported {
        what: "sending to an unnamed socket".into(),
      }),
    }
  }

  pub fn from_unix_addr(addr: &UnixAddr) -> Self {
    if let Some(p) = addr.path() {
      return SocketAddress::Path(p.to_path_buf());
    }
    #[cfg(target_os = "linux")]
    if let Some(name) = addr.as_abstract() {
      return SocketAddress::Abstract(name.to_vec());
    }
    SocketAddress::Unnamed
  }

  pub fn path(&self) -> Option<&Path> {
    match self {
      SocketAddress::Path(p) => Some(p),
      _ => None,
    }
  }

  pub fn from_path_bytes(bytes: &[u8]) -> Self {
    SocketAddress::Path(PathBuf::from(OsStr::from_bytes(bytes)))
  }
}

fn empty_path() -> Error {
  Error::Unsupported {
    what: "an empty socket path".into(),
  }
}

/// How addresses appear in error messages: the path, or `@name` for abstract ones.
impl std::fmt::Display for SocketAddress {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      SocketAddress::Path(p) => write!(f, "{}", p.display()),
      SocketAddress::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
      SocketAddress::Unnamed => write!(f, "(unnamed)"),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_path_at_the_limit_is_accepted_and_one_byte_more_is_refused() {
    let ok = SocketAddress::Path(PathBuf::from("a".repeat(platform::MAX_PATH_LEN)));
    assert!(ok.to_unix_addr().is_ok());
    let long = SocketAddress::Path(PathBuf::from("a".repeat(platform::MAX_PATH_LEN + 1)));
    assert_eq!(
      long.to_unix_addr().unwrap_err(),
      Error::AddressTooLong {
        len: platform::MAX_PATH_LEN + 1,
        max: platform::MAX_PATH_LEN
      }
    );
  }

  #[test]
  fn the_error_names_the_limit() {
    let long = SocketAddress::Path(PathBuf::from("a".repeat(200)));
    let msg = long.to_unix_addr().unwrap_err().to_string();
    assert!(msg.contains(&platform::MAX_PATH_LEN.to_string()), "{msg}");
  }
}
