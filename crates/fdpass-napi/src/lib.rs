//! Node-API binding of fdpass. The connection engine is `fdpass-core`'s
//! (`fdpass_core::engine`); this crate adapts it to Node-API and to an
//! event loop. The public API is the TypeScript layer in `ts/`; these
//! exports are its private interface. One job per file:
//!
//! - `lib.rs`: the constructors (`connect`, `listen`, `socketpair`,
//!   `adopt`, ...) and per-environment set-up calls.
//! - `socket.rs`: a connection tied to its environment and readiness watch.
//! - `deliver.rs`: a connection's outcomes as calls into JavaScript.
//! - `native_socket.rs`: the `NativeSocket` class.
//! - `hot.rs`: the per-message calls, as plain Node-API callbacks;
//!   `hot_args.rs`: how they read and check their arguments.
//! - `server.rs`: the `NativeServer` class (listening sockets).
//! - `listeners.rs`: TCP/UDP descriptors for a runtime's own servers.
//! - `shared_counts.rs`: counters shared between processes (`SharedCounters`).
//! - `fd_io.rs`: descriptor reads and writes on the thread pool.
//! - `env_state.rs`: per-environment state, lent buffers and teardown.
//! - `js.rs`: raw Node-API helpers.
//! - `contract.rs`: the constants the TypeScript layer reads from here.
//! - `watched.rs`: what the two classes share of their readiness
//!   registration (`start`, and the state changes the watch follows).
//! - `reactor/`: the two readiness mechanisms (`uv.rs`, `thread.rs`).

#![allow(clippy::new_without_default)]

pub mod contract;
mod deliver;
mod env_state;
pub mod fd_io;
mod hot;
mod hot_args;
mod js;
pub mod listeners;
mod native_socket;
mod reactor;
mod server;
mod shared_counts;
mod socket;
mod watched;

use fdpass_core::socket::{BindOptions, SocketType};
use js::OrThrow;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use native_socket::{state, NativeAddress, NativeSocket};
use server::NativeServer;
use socket::SocketCell;
use std::os::fd::{AsFd, OwnedFd};

/// Choose the readiness mechanism for this environment, and say which
/// runtime hosts it (teardown differs; `'node'` when not given). Returns
/// the mechanism in use. Called once by the TS layer at load time.
#[napi]
pub fn configure(
  env: Env,
  reactor: contract::Reactor,
  runtime: Option<contract::Runtime>,
) -> Result<contract::Reactor> {
  env_state::configure(&env, reactor, runtime.unwrap_or(contract::Runtime::Node))
}

/// Lend the addon a Uint8Array and an Int32Array (off-heap) that
/// deliveries write into when a batch fits; EV_MESSAGES then passes
/// lengths instead of a Buffer and an Int32Array. Called once per
/// environment by the TS layer, after `configure`.
#[napi(ts_args_type = "data: Uint8Array, meta: Int32Array")]
pub fn lend_delivery_buffers(env: Env, data: Unknown<'_>, meta: Unknown<'_>) -> Result<()> {
  let st = state(&env)?;
  // SAFETY: a #[napi] call on the env's thread; the values are its arguments.
  unsafe { st.lend_delivery_buffers(data.raw(), meta.raw()) }
}

/// Lend the addon the TS layer's shared send arguments (a Uint8Array and
/// an Int32Array, off-heap): a send that passes null for either means the
/// lent one. Called once per environment by the TS layer.
#[napi(ts_args_type = "data: Uint8Array, fds: Int32Array")]
pub fn lend_send_scratch(env: Env, data: Unknown<'_>, fds: Unknown<'_>) -> Result<()> {
  let st = state(&env)?;
  // SAFETY: a #[napi] call on the env's thread; the values are its arguments.
  unsafe { st.lend_send_scratch(data.raw(), fds.raw()) }
}

/// Set the function every socket's events are delivered through, called
/// with the JavaScript socket given to `NativeSocket.start()` as `this` and
/// `(event, a, b, c)`. Called once per environment by the TS layer.
#[napi(ts_args_type = "dispatcher: (this: any, event: number, a?: any, b?: any, c?: any) => void")]
pub fn set_socket_dispatcher(env: Env, dispatcher: Unknown<'_>) -> Result<()> {
  let st = state(&env)?;
  // SAFETY: a #[napi] call on the env's thread; the value is its argument.
  unsafe { st.set_socket_dispatcher(dispatcher.raw()) }
}

/// Whether this process exports libuv's poll functions (Node, Electron).
#[napi]
pub fn has_libuv() -> bool {
  reactor::uv::available()
}

fn wrap_socket(
  env: &Env,
  fd: OwnedFd,
  ty: SocketType,
  framed: bool,
  max_message: u32,
) -> Result<NativeSocket> {
  let st = state(env)?;
  let cell = SocketCell::open(&st, fd, ty, framed, max_message as usize).or_throw(env)?;
  Ok(NativeSocket::from_cell(cell))
}

/// Connect to a listening socket. On a full backlog this throws EAGAIN and the caller retries.
#[napi]
pub fn connect(
  env: Env,
  socket_type: contract::SocketType,
  address: NativeAddress,
  framed: bool,
  max_message: u32,
) -> Result<NativeSocket> {
  let ty = socket_type.into();
  let fd = fdpass_core::socket::connect(ty, &address.to_core()).or_throw(&env)?;
  wrap_socket(&env, fd, ty, framed, max_message)
}

/// A connected pair of sockets.
#[napi]
pub fn socketpair(
  env: Env,
  socket_type: contract::SocketType,
  framed: bool,
  max_message: u32,
) -> Result<(NativeSocket, NativeSocket)> {
  let ty = socket_type.into();
  let (a, b) = fdpass_core::socket::socketpair(ty).or_throw(&env)?;
  Ok((
    wrap_socket(&env, a, ty, framed, max_message)?,
    wrap_socket(&env, b, ty, framed, max_message)?,
  ))
}

/// A datagram socket, bound to `address` when given, connected to `peer` when given.
#[napi]
pub fn bind_datagram(
  env: Env,
  address: Option<NativeAddress>,
  peer: Option<NativeAddress>,
  options: NativeBindOptions,
  max_message: u32,
) -> Result<NativeSocket> {
  let ty = SocketType::Datagram;
  let fd = match &address {
    Some(a) => fdpass_core::socket::bind(ty, &a.to_core(), &options.to_core()).or_throw(&env)?,
    None => fdpass_core::platform::new_socket(ty).or_throw(&env)?,
  };
  if let Some(p) = &peer {
    let core = p.to_core();
    let addr = core.to_unix_addr().or_throw(&env)?;
    fdpass_core::socket::connect_fd(fd.as_fd(), &addr, &core).or_throw(&env)?;
  }
  wrap_socket(&env, fd, ty, false, max_message)
}

/// How a socket file is created.
#[napi(object)]
pub struct NativeBindOptions {
  /// Permission bits of the socket file. @default 0o600
  pub mode: Option<u32>,
  /// Replace a stale socket file. @default true
  pub replace_stale: Option<bool>,
  /// Refuse directories other users can write (unless sticky). @default true
  pub check_directory: Option<bool>,
}

impl NativeBindOptions {
  fn to_core(&self) -> BindOptions {
    BindOptions {
      mode: Some(self.mode.unwrap_or(0o600)),
      replace_stale: self.replace_stale.unwrap_or(true),
      check_directory: self.check_directory.unwrap_or(true),
    }
  }
}

/// Listen on `address`.
#[napi]
pub fn listen(
  env: Env,
  socket_type: contract::SocketType,
  address: NativeAddress,
  backlog: i32,
  options: NativeBindOptions,
  framed: bool,
  max_message: u32,
) -> Result<NativeServer> {
  let ty = socket_type.into();
  let addr = address.to_core();
  let fd = fdpass_core::socket::listen(ty, &addr, backlog, &options.to_core()).or_throw(&env)?;
  let st = state(&env)?;
  NativeServer::open(&st, fd, ty, framed, max_message as usize, Some(&addr)).or_throw(&env)
}

/// What an inherited descriptor is, before adopting it.
#[napi(object)]
pub struct SocketInfo {
  pub r#type: contract::SocketType,
  pub listening: bool,
  #[napi(ts_type = "'unix' | 'inet' | 'inet6' | 'other'")]
  pub family: String,
}

/// Take ownership of an inherited Unix socket descriptor (child stdio,
/// LISTEN_FDS, a received fd). It becomes non-blocking and close-on-exec.
#[napi]
pub fn adopt(
  env: Env,
  fd: i32,
  framed: bool,
  max_message: u32,
) -> Result<Either<NativeSocket, NativeServer>> {
  // SAFETY: the TS layer hands over a descriptor the caller owns and gives up.
  let owned = unsafe { fdpass_core::fd::adopt(fd) }.or_throw(&env)?;
  let info = fdpass_core::socket::inspect_for_adoption(owned.as_fd()).or_throw(&env)?;
  if info.listening {
    let st = state(&env)?;
    return Ok(Either::B(
      NativeServer::open(&st, owned, info.ty, framed, max_message as usize, None).or_throw(&env)?,
    ));
  }
  Ok(Either::A(wrap_socket(
    &env,
    owned,
    info.ty,
    framed,
    max_message,
  )?))
}

/// Inspect a descriptor without taking it.
#[napi]
pub fn inspect_socket(env: Env, fd: i32) -> Result<SocketInfo> {
  fdpass_core::fd::check_open(fd).or_throw(&env)?;
  // SAFETY: checked open; only borrowed for the queries.
  let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
  let kind = fdpass_core::fd::kind(b).or_throw(&env)?;
  if kind != fdpass_core::fd::FdKind::Socket {
    return Err(js::throw_in(
      &env,
      &fdpass_core::Error::InvalidFd {
        fd,
        reason: format!("is a {}, not a socket", kind.as_str()),
      },
    ));
  }
  let ty = SocketType::of(b).or_throw(&env)?;
  let listening =
    ty != SocketType::Datagram && fdpass_core::platform::is_listening(b).or_throw(&env)?;
  let family = match fdpass_core::platform::socket_family(b).or_throw(&env)? {
    Some(nix::sys::socket::AddressFamily::Unix) => "unix",
    Some(nix::sys::socket::AddressFamily::Inet) => "inet",
    Some(nix::sys::socket::AddressFamily::Inet6) => "inet6",
    _ => "other",
  };
  Ok(SocketInfo {
    r#type: ty.into(),
    listening,
    family: family.into(),
  })
}

/// The per-message and per-descriptor calls (`socketSend`, `closeFd`,
/// `fdStatInto`, ...) are plain Node-API callbacks: see `hot.rs`.
#[napi(module_exports)]
pub fn define_hot_functions(exports: Object, env: Env) -> Result<()> {
  // SAFETY: module registration runs on the env's thread.
  unsafe { hot::define(env.raw(), exports.raw()) }
}

/// Platform facts the TS layer reports and validates against.
#[napi(object)]
pub struct PlatformInfo {
  pub max_fds_per_message: u32,
  pub max_path_length: u32,
  pub supports_seqpacket: bool,
  pub supports_abstract: bool,
  pub supports_pidfd: bool,
}

#[napi]
pub fn platform_info() -> PlatformInfo {
  PlatformInfo {
    max_fds_per_message: fdpass_core::MAX_FDS_PER_MESSAGE as u32,
    max_path_length: fdpass_core::platform::MAX_PATH_LEN as u32,
    supports_seqpacket: fdpass_core::platform::check_supported(SocketType::SeqPacket).is_ok(),
    supports_abstract: fdpass_core::platform::SUPPORTS_ABSTRACT,
    supports_pidfd: fdpass_core::pidfd::supported(),
  }
}

/// A duplicate of descriptor `fd` of process `pid` (pidfd_getfd, Linux 5.6+).
/// The caller owns the returned descriptor (close-on-exec).
#[napi]
pub fn take_fd(env: Env, pid: i32, fd: i32) -> Result<i32> {
  use std::os::fd::IntoRawFd;
  Ok(
    fdpass_core::pidfd::take_fd(pid, fd)
      .or_throw(&env)?
      .into_raw_fd(),
  )
}
