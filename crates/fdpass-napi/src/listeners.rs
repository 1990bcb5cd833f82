//! Bare descriptors for a runtime's own servers (`net.Server`,
//! `dgram.Socket`): the JavaScript caller owns each returned number.

use crate::js::{self, OrThrow};
use fdpass_core::listener::bind_inet;
use fdpass_core::socket::{self, BindOptions, SocketType};
use fdpass_core::SocketAddress;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::os::fd::{BorrowedFd, IntoRawFd};

/// A listening TCP socket (`'tcp'`) or a bound UDP socket (`'udp'`) on
/// `host`, an IP address (names are resolved by the caller, with Node's
/// `dns.lookup`, off the JavaScript thread), non-blocking and close-on-exec.
/// The caller owns the returned descriptor.
#[napi]
pub fn bind_inet_socket(
  env: Env,
  kind: crate::contract::InetKind,
  host: String,
  port: u32,
  backlog: i32,
  reuse_port: bool,
) -> Result<i32> {
  let port = u16::try_from(port).map_err(|_| {
    js::throw_in(
      &env,
      &fdpass_core::Error::InvalidArgument {
        reason: format!("port {port} is out of range"),
      },
    )
  })?;
  Ok(
    bind_inet(kind.into(), &host, port, backlog, reuse_port)
      .or_throw(&env)?
      .into_raw_fd(),
  )
}

/// A listening Unix stream socket at `path` (mode 0600 unless given), for
/// a `net.Server`. The caller owns the returned descriptor; closing it
/// never removes the path.
#[napi]
pub fn listen_unix_socket(
  env: Env,
  path: String,
  backlog: i32,
  mode: Option<u32>,
  check_directory: Option<bool>,
) -> Result<i32> {
  let opts = BindOptions {
    mode: mode.or(Some(0o600)),
    replace_stale: true,
    check_directory: check_directory.unwrap_or(true),
  };
  let fd = socket::listen(
    SocketType::Stream,
    &SocketAddress::Path(path.into()),
    backlog,
    &opts,
  )
  .or_throw(&env)?;
  Ok(fd.into_raw_fd())
}

/// A close-on-exec duplicate of `fd`, owned by the caller.
#[napi]
pub fn dup_fd(env: Env, fd: i32) -> Result<i32> {
  fdpass_core::fd::check_open(fd).or_throw(&env)?;
  // SAFETY: checked open; borrowed only for the duplication.
  let b = unsafe { BorrowedFd::borrow_raw(fd) };
  Ok(
    fdpass_core::fd::dup_cloexec(b)
      .or_throw(&env)?
      .into_raw_fd(),
  )
}

/// The port an inet socket is bound to.
#[napi]
pub fn inet_port(env: Env, fd: i32) -> Result<u32> {
  fdpass_core::fd::check_open(fd).or_throw(&env)?;
  // SAFETY: checked open; borrowed only for getsockname.
  let b = unsafe { BorrowedFd::borrow_raw(fd) };
  Ok(fdpass_core::listener::local_port(b).or_throw(&env)? as u32)
}

/// Set close-on-exec on a descriptor the caller owns (inherited ones, e.g. LISTEN_FDS).
#[napi]
pub fn set_cloexec(env: Env, fd: i32) -> Result<()> {
  fdpass_core::fd::check_open(fd).or_throw(&env)?;
  // SAFETY: checked open; borrowed only for fcntl.
  let b = unsafe { BorrowedFd::borrow_raw(fd) };
  fdpass_core::fd::set_cloexec(b).or_throw(&env)
}
