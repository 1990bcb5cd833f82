//! `NativeSocket`: the Node-API class over a `SocketCell`, and the
//! argument types its methods take.

use crate::env_state::{self, EnvState};
use crate::js::{self, OrThrow};
use crate::socket::SocketCell;
use crate::watched::{self, rewatch};
use fdpass_core::{Error as CoreError, SocketAddress};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;

/// A socket address from JavaScript: exactly one of the two is set.
#[napi(object)]
pub struct NativeAddress {
  pub path: Option<String>,
  pub abstract_name: Option<String>,
}

impl NativeAddress {
  pub fn to_core(&self) -> SocketAddress {
    match (&self.path, &self.abstract_name) {
      (Some(p), _) => SocketAddress::Path(p.into()),
      (None, Some(n)) => SocketAddress::Abstract(n.as_bytes().to_vec()),
      (None, None) => SocketAddress::Unnamed,
    }
  }
}

#[napi(object)]
pub struct NativePeerCredentials {
  pub pid: Option<i32>,
  pub uid: u32,
  pub gid: u32,
}

/// A connected or datagram Unix socket. Internal: use `FdSocket` from the package root.
#[napi]
pub struct NativeSocket {
  cell: Rc<SocketCell>,
}

impl NativeSocket {
  pub fn from_cell(cell: Rc<SocketCell>) -> Self {
    NativeSocket { cell }
  }
}

#[napi]
impl NativeSocket {
  /// The descriptor number, or -1 once closed.
  #[napi(getter)]
  pub fn fd(&self) -> i32 {
    self
      .cell
      .0
      .borrow()
      .conn
      .as_ref()
      .map_or(-1, |c| c.socket().as_raw_fd())
  }

  /// What kind of socket this is.
  #[napi(getter, js_name = "type")]
  pub fn socket_type(&self) -> crate::contract::SocketType {
    self.cell.0.borrow().ty.into()
  }

  /// Messages queued in user space, waiting for the kernel buffer to drain.
  #[napi(getter)]
  pub fn pending_sends(&self) -> u32 {
    let c = self.cell.0.borrow();
    c.conn.as_ref().map_or(0, |c| c.pending_sends() as u32)
  }

  /// Start delivering this socket's events to `receiver`: the env's
  /// socket dispatcher (setSocketDispatcher) is called with it as `this`
  /// and `(event, a, b, c)`; see the EV_* codes.
  #[napi(ts_args_type = "receiver: object")]
  pub fn start(&self, env: Env, receiver: Unknown<'_>) -> Result<()> {
    watched::start(&self.cell.0, &env, receiver, |c, r| c.receiver = Some(r))
  }

  /// Start or stop reading (backpressure). Returns true when reading
  /// resumes with whole messages already buffered: call `readBuffered()`
  /// soon, since the kernel will not report them as readable.
  #[napi]
  pub fn set_reading(&self, reading: bool) -> bool {
    rewatch(&self.cell.0, |c| c.reading = reading);
    self.cell.0.borrow().has_buffered_frame()
  }

  /// Deliver messages that are already buffered (see `setReading`).
  #[napi]
  pub fn read_buffered(&self) {
    crate::reactor::Ready::on_ready(&*self.cell, true, false);
  }

  /// Whether an active socket keeps the event loop alive.
  #[napi]
  pub fn set_ref(&self, refed: bool) {
    rewatch(&self.cell.0, |c| c.refed = refed);
  }

  /// Send one datagram to `address`.
  #[napi]
  pub fn send_to(
    &self,
    env: Env,
    address: NativeAddress,
    data: &[u8],
    fds: &[i32],
  ) -> Result<bool> {
    let to = address.to_core().to_unix_addr().or_throw(&env)?;
    self
      .cell
      .0
      .borrow_mut()
      .send(data, fds, Some(to))
      .or_throw(&env)
  }

  /// A handle for the per-message calls of `hot.rs`, which skip
  /// napi-rs's per-call glue. Taken once per socket by the TS layer.
  #[napi(ts_return_type = "object")]
  pub fn hot_handle(&self, env: Env) -> Result<Unknown<'_>> {
    // SAFETY: a method call on the env's thread.
    let raw = unsafe { crate::hot::socket_handle(env.raw(), &self.cell)? };
    // SAFETY: raw is a live value of this call.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
  }

  /// Close the socket now. Returns how many queued sends were dropped.
  #[napi]
  pub fn close(&self) -> u32 {
    self.cell.0.borrow_mut().close()
  }

  #[napi]
  pub fn peer_credentials(&self, env: Env) -> Result<NativePeerCredentials> {
    let c = self.cell.0.borrow();
    let conn = c.conn.as_ref().ok_or_else(|| {
      js::throw_in(
        &env,
        &CoreError::sys(nix::errno::Errno::EBADF, "getsockopt"),
      )
    })?;
    let p = fdpass_core::socket::peer_credentials(conn.socket()).or_throw(&env)?;
    Ok(NativePeerCredentials {
      pid: p.pid,
      uid: p.uid,
      gid: p.gid,
    })
  }

  #[napi(ts_return_type = "string | { abstract: string } | null")]
  pub fn local_address(&self, env: Env) -> Result<Unknown<'_>> {
    self.address_of(env, fdpass_core::socket::local_address)
  }

  #[napi(ts_return_type = "string | { abstract: string } | null")]
  pub fn remote_address(&self, env: Env) -> Result<Unknown<'_>> {
    self.address_of(env, fdpass_core::socket::peer_address)
  }
}

impl NativeSocket {
  /// null once closed (no descriptor to ask); a failure of the syscall
  /// itself is thrown (the descriptor was closed or replaced behind the socket).
  fn address_of<'e>(
    &self,
    env: Env,
    f: fn(BorrowedFd<'_>) -> fdpass_core::Result<SocketAddress>,
  ) -> Result<Unknown<'e>> {
    let c = self.cell.0.borrow();
    let addr = match c.conn.as_ref() {
      Some(conn) => f(conn.socket()).or_throw(&env)?,
      None => SocketAddress::Unnamed,
    };
    // SAFETY: value creation inside this napi call.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), js::address(env.raw(), &addr)) })
  }
}

pub fn state(env: &Env) -> Result<Rc<EnvState>> {
  env_state::get(env.raw())
}
