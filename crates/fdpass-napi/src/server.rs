//! `NativeServer`: a listening Unix socket. Readiness is reported to
//! JavaScript, which pulls connections with `accept()` as long as it has
//! room for them, so a slow consumer leaves them in the kernel's backlog.

use crate::env_state::{EnvState, Resource};
use crate::js::{self, JsRef, OrThrow};
use crate::native_socket::NativeSocket;
use crate::reactor::{Ready, Watch};
use crate::socket::SocketCell;
use crate::watched::{self, rewatch, Watched};
use fdpass_core::{SocketAddress, SocketType};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::{Rc, Weak};

pub const EV_ACCEPTABLE: i64 = 6;
/// The reactor cannot watch the listening socket; the error follows.
pub const EV_ERROR: i64 = crate::deliver::EV_ERROR;

/// The socket file we created, recognised by device and inode.
struct BoundPath {
  path: PathBuf,
  dev: u64,
  ino: u64,
}

pub struct ServerCore {
  state: Rc<EnvState>,
  id: u64,
  /// Before `fd`: fields drop in order, and the watch must end before the
  /// descriptor closes.
  watch: Option<Watch>,
  fd: Option<OwnedFd>,
  ty: SocketType,
  framed: bool,
  max_message: usize,
  accepting: bool,
  refed: bool,
  callback: Option<JsRef>,
  bound: Option<BoundPath>,
}

pub struct ServerCell(RefCell<ServerCore>);

impl Watched for ServerCore {
  fn update_watch(&mut self) {
    let readable = self.accepting && self.callback.is_some();
    if let Some(w) = &mut self.watch {
      w.set(readable, false, self.refed);
    }
  }
}

impl ServerCore {
  fn close(&mut self, unlink: bool) -> fdpass_core::Result<()> {
    if let Some(mut w) = self.watch.take() {
      w.close();
    }
    self.fd = None;
    self.callback = None;
    self.state.unregister(self.id);
    match self.bound.take() {
      Some(b) if unlink => fdpass_core::socket::unlink_if_same(&b.path, b.dev, b.ino).map(drop),
      _ => Ok(()),
    }
  }
}

impl ServerCell {
  /// Call the server's JavaScript callback with the arguments `args` makes
  /// inside the handle scope opened for them. False, and no call, once the
  /// server is closed or its environment torn down.
  ///
  /// # Safety
  /// On the env's JS thread, where the reactor reports readiness and failures.
  unsafe fn call_back<const N: usize>(
    &self,
    args: impl FnOnce(js::RawEnv) -> [js::RawValue; N],
  ) -> bool {
    let (func_state, env) = {
      let c = self.0.borrow();
      if c.fd.is_none() || c.state.is_torn_down() {
        return false;
      }
      (c.state.clone(), c.state.env)
    };
    // SAFETY: on the env's JS thread (this function's contract).
    unsafe {
      js::with_scope(env, || {
        let func = self.0.borrow().callback.as_ref().map(|r| r.get());
        if let Some(func) = func {
          func_state.call(None, func, &args(env));
        }
      })
    };
    true
  }
}

impl Ready for ServerCell {
  fn on_ready(&self, readable: bool, _writable: bool) {
    if !readable {
      return;
    }
    // SAFETY: readiness callbacks run on the env's JS thread; the number is
    // made inside the scope call_back opens, on that thread.
    if unsafe { self.call_back(|env| [js::int(env, EV_ACCEPTABLE)]) } {
      self.0.borrow_mut().update_watch();
    }
  }

  fn on_watch_failed(&self, error: fdpass_core::Error) {
    // SAFETY: the reactor reports failures from the event loop, on the
    // env's JS thread; the values are made inside the scope call_back opens.
    unsafe { self.call_back(|env| [js::int(env, EV_ERROR), js::error_value(env, &error)]) };
  }
}

impl Resource for ServerCell {
  fn close_for_teardown(&self) {
    // At teardown the file stays: a successor generation may own it now.
    let _ = self.0.borrow_mut().close(false);
  }
}

/// A listening Unix socket. Internal: use `FdServer` from the package root.
#[napi]
pub struct NativeServer {
  cell: Rc<ServerCell>,
}

impl NativeServer {
  pub fn open(
    state: &Rc<EnvState>,
    fd: OwnedFd,
    ty: SocketType,
    framed: bool,
    max_message: usize,
    bound: Option<&SocketAddress>,
  ) -> fdpass_core::Result<Self> {
    let bound = match bound.and_then(|a| a.path()) {
      Some(p) => {
        let (dev, ino) = fdpass_core::socket::path_identity(p)?;
        Some(BoundPath {
          path: p.to_path_buf(),
          dev,
          ino,
        })
      }
      None => None,
    };
    let cell = Rc::new(ServerCell(RefCell::new(ServerCore {
      state: state.clone(),
      id: 0,
      fd: None,
      ty,
      framed,
      max_message,
      watch: None,
      accepting: true,
      refed: true,
      callback: None,
      bound,
    })));
    let ready: Weak<dyn Ready> = Rc::downgrade(&(cell.clone() as Rc<dyn Ready>));
    // SAFETY: the core keeps fd until close(), which closes the watch first,
    // and drops the watch before fd (field order) when it is never closed.
    let watch = unsafe { Watch::new(&state.reactor, fd.as_raw_fd(), ready)? };
    let resource: Weak<dyn Resource> = Rc::downgrade(&(cell.clone() as Rc<dyn Resource>));
    {
      let mut c = cell.0.borrow_mut();
      c.fd = Some(fd);
      c.watch = Some(watch);
      c.id = state.register(resource);
    }
    Ok(NativeServer { cell })
  }
}

#[napi]
impl NativeServer {
  #[napi(getter)]
  pub fn fd(&self) -> i32 {
    self
      .cell
      .0
      .borrow()
      .fd
      .as_ref()
      .map_or(-1, |f| f.as_raw_fd())
  }

  #[napi(getter, js_name = "type")]
  pub fn socket_type(&self) -> crate::contract::SocketType {
    self.cell.0.borrow().ty.into()
  }

  /// Register the callback, called with EV_ACCEPTABLE when connections
  /// wait, and with EV_ERROR and the error when they can no longer be watched.
  #[napi(ts_args_type = "callback: (event: number, error?: Error) => void")]
  pub fn start(&self, env: Env, callback: Unknown<'_>) -> Result<()> {
    watched::start(&self.cell.0, &env, callback, |c, r| c.callback = Some(r))
  }

  #[napi]
  pub fn set_accepting(&self, accepting: bool) {
    rewatch(&self.cell.0, |c| c.accepting = accepting);
  }

  #[napi]
  pub fn set_ref(&self, refed: bool) {
    rewatch(&self.cell.0, |c| c.refed = refed);
  }

  /// One pending connection, or null when the backlog is empty.
  #[napi]
  pub fn accept(&self, env: Env) -> Result<Option<NativeSocket>> {
    let c = self.cell.0.borrow();
    let Some(fd) = c.fd.as_ref() else {
      return Ok(None);
    };
    let Some(conn) = fdpass_core::platform::accept(fd.as_fd()).or_throw(&env)? else {
      return Ok(None);
    };
    let cell = SocketCell::open(&c.state, conn, c.ty, c.framed, c.max_message).or_throw(&env)?;
    Ok(Some(NativeSocket::from_cell(cell)))
  }

  /// Stop listening. With `unlink`, remove the socket file if it is still
  /// the one this server created.
  #[napi]
  pub fn close(&self, env: Env, unlink: bool) -> Result<()> {
    self.cell.0.borrow_mut().close(unlink).or_throw(&env)
  }

  #[napi(ts_return_type = "string | { abstract: string } | null")]
  pub fn local_address(&self, env: Env) -> Result<Unknown<'_>> {
    let c = self.cell.0.borrow();
    let addr = match c.fd.as_ref() {
      Some(fd) => fdpass_core::socket::local_address(fd.as_fd()).or_throw(&env)?,
      None => SocketAddress::Unnamed,
    };
    // SAFETY: value creation inside this napi call.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), js::address(env.raw(), &addr)) })
  }
}
