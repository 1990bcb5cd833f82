//! `SocketCell`: one connection engine (`fdpass_core::engine::Connection`)
//! tied to this environment: its readiness watch, whether it reads, and
//! the JavaScript socket its events go to (deliver.rs).
//!
//! Reads happen on the JS thread when the reactor says the socket is
//! readable: every queued message is read (up to a budget, for fairness)
//! and handed to JavaScript in one call.

use crate::deliver::Via;
use crate::env_state::{EnvState, Resource};
use crate::js::{self, JsRef, RawEnv};
use crate::reactor::{Ready, Watch};
use crate::watched::Watched;
use fdpass_core::engine::spare::{outcomes, recycle_outcomes};
use fdpass_core::engine::{Connection, Outcome};
use fdpass_core::{Error as CoreError, SocketType};
use nix::errno::Errno;
use nix::sys::socket::UnixAddr;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::rc::{Rc, Weak};

pub struct SocketCore {
  pub(crate) state: Rc<EnvState>,
  id: u64,
  pub(crate) ty: SocketType,
  /// Before `conn`: fields drop in order, and the watch must end before
  /// the connection's descriptor closes.
  watch: Option<Watch>,
  /// None once closed.
  pub(crate) conn: Option<Connection>,
  pub(crate) reading: bool,
  pub(crate) refed: bool,
  /// The JavaScript socket (FdSocket) that the env's socket dispatcher is
  /// called on with this socket's events; set by start().
  pub(crate) receiver: Option<JsRef>,
}

pub struct SocketCell(pub(crate) RefCell<SocketCore>);

impl SocketCell {
  /// Wrap a connected or bound socket descriptor.
  pub fn open(
    state: &Rc<EnvState>,
    fd: OwnedFd,
    ty: SocketType,
    framed: bool,
    max_message: usize,
  ) -> fdpass_core::Result<Rc<Self>> {
    let raw = fd.as_raw_fd();
    let cell = Rc::new(SocketCell(RefCell::new(SocketCore {
      state: state.clone(),
      id: 0,
      ty,
      watch: None,
      conn: Some(Connection::new(fd, ty, framed, max_message)),
      reading: false,
      refed: true,
      receiver: None,
    })));
    let ready: Weak<dyn Ready> = Rc::downgrade(&(cell.clone() as Rc<dyn Ready>));
    // SAFETY: the core keeps the descriptor (in `conn`) until close(),
    // which closes the watch first, and drops the watch before it (field
    // order) when it is never closed.
    let watch = unsafe { Watch::new(&state.reactor, raw, ready)? };
    let resource: Weak<dyn Resource> = Rc::downgrade(&(cell.clone() as Rc<dyn Resource>));
    {
      let mut c = cell.0.borrow_mut();
      c.watch = Some(watch);
      c.id = state.register(resource);
    }
    Ok(cell)
  }
}

impl Watched for SocketCore {
  fn update_watch(&mut self) {
    let Some(conn) = &self.conn else {
      return;
    };
    let readable = self.reading && !conn.ended() && self.receiver.is_some();
    let writable = conn.pending_sends() > 0;
    if let Some(w) = &mut self.watch {
      w.set(readable, writable, self.refed);
    }
  }
}

impl SocketCore {
  /// Close the socket now. Returns how many queued sends were dropped.
  pub(crate) fn close(&mut self) -> u32 {
    // The watch goes before the descriptor it watches.
    if let Some(mut w) = self.watch.take() {
      w.close();
    }
    let dropped = self.conn.take().map_or(0, |c| c.close());
    self.receiver = None;
    self.state.unregister(self.id);
    dropped as u32
  }

  /// Is reading on, with a whole frame waiting in the decoder?
  pub(crate) fn has_buffered_frame(&self) -> bool {
    self.reading && self.conn.as_ref().is_some_and(|c| c.has_buffered_frame())
  }

  /// The open connection, or EBADF for `syscall`.
  pub(crate) fn conn(&mut self, syscall: &'static str) -> fdpass_core::Result<&mut Connection> {
    self
      .conn
      .as_mut()
      .ok_or_else(|| CoreError::sys(Errno::EBADF, syscall))
  }

  pub(crate) fn send(
    &mut self,
    data: &[u8],
    fds: &[i32],
    to: Option<UnixAddr>,
  ) -> fdpass_core::Result<bool> {
    let queued = self.conn("sendmsg")?.send(data, fds, to)?;
    if queued {
      self.update_watch();
    }
    Ok(queued)
  }
}

impl Ready for SocketCell {
  fn on_ready(&self, readable: bool, mut writable: bool) {
    loop {
      let (outcomes, state) = {
        let mut c = self.0.borrow_mut();
        let reading = c.reading;
        let Some(conn) = &mut c.conn else {
          return;
        };
        let mut out = outcomes();
        if writable {
          conn.flush(&mut out);
        }
        if readable && reading {
          conn.read(&mut out);
        }
        (out, c.state.clone())
      };
      if !outcomes.is_empty() && !state.is_torn_down() {
        // SAFETY: readiness callbacks run on the env's JS thread.
        unsafe { js::with_scope(state.env, || self.deliver(&state, outcomes, Via::EventLoop)) };
      } else {
        recycle_outcomes(outcomes);
      }
      // A read that stopped at its budget may have left whole frames in
      // the decoder, and the kernel will not say "readable" for them.
      if !(readable && self.0.borrow().has_buffered_frame()) {
        break;
      }
      writable = false;
    }
    self.0.borrow_mut().update_watch();
  }

  fn on_watch_failed(&self, error: CoreError) {
    // Nothing would wake this socket again: it fails as a read error
    // does, and JavaScript closes it.
    let (outcomes, state) = {
      let mut c = self.0.borrow_mut();
      let Some(conn) = &mut c.conn else {
        return;
      };
      let mut out = outcomes();
      conn.fail(error, &mut out);
      (out, c.state.clone())
    };
    if outcomes.is_empty() || state.is_torn_down() {
      recycle_outcomes(outcomes);
      return;
    }
    // SAFETY: the reactor reports failures from the event loop, on the
    // env's JS thread, outside any other handle scope of ours.
    unsafe { js::with_scope(state.env, || self.deliver(&state, outcomes, Via::EventLoop)) };
  }
}

impl SocketCell {
  /// The first `data_len` bytes and `fds_len` descriptor numbers of the
  /// send scratch this socket's environment was lent (env_state.rs
  /// SendScratch), if it was and holds that many; views for as long as
  /// the current call from JavaScript.
  pub fn lent_send_args<'s>(
    &self,
    scope: &'s js::CallScope,
    data_len: usize,
    fds_len: usize,
  ) -> Option<(&'s [u8], &'s [i32])> {
    let core = self.0.borrow();
    let scratch = core.state.send_scratch.borrow();
    scratch.as_ref()?.get(scope, data_len, fds_len)
  }

  /// Send one message. Ok(false) when the kernel took all of it, Ok(true)
  /// when (part of) it waits in the queue; EV_SENT reports its completion.
  pub fn send(&self, data: &[u8], fds: &[i32]) -> fdpass_core::Result<bool> {
    self.0.borrow_mut().send(data, fds, None)
  }

  /// Send one message, blocking the thread while the kernel's buffer is
  /// full, for `sendSync()`. The TS layer refuses it while sends are
  /// queued; the engine refuses it too (EBUSY), never reordered.
  pub fn send_sync(&self, data: &[u8], fds: &[i32]) -> fdpass_core::Result<()> {
    self
      .0
      .borrow_mut()
      .conn("sendmsg")?
      .send_blocking(data, fds)
  }

  /// Read what is queued, blocking the thread up to `timeout_ms` (-1: no
  /// limit) for a first message, for `receiveSync()`. What was read goes
  /// to the callback before this returns, as EV_MESSAGES, EV_END or
  /// EV_ERROR would from the event loop. Err(()) when a JavaScript
  /// exception is pending.
  ///
  /// # Safety
  /// Inside a call from JavaScript on the env's thread.
  pub unsafe fn receive_sync(
    &self,
    env: RawEnv,
    timeout_ms: i64,
  ) -> std::result::Result<SyncReceived, ()> {
    let (mut outcomes, state) = {
      let mut c = self.0.borrow_mut();
      match c
        .conn("recvmsg")
        .and_then(|conn| conn.read_blocking(timeout_ms))
      {
        Ok(outcomes) => (outcomes, c.state.clone()),
        Err(e) => {
          // SAFETY: inside the call from JavaScript (this function's
          // contract), which returns the pending exception.
          unsafe { js::throw(env, &e) };
          return Err(());
        }
      }
    };
    if outcomes.is_empty() {
      return Ok(SyncReceived::Nothing);
    }
    // The common case, one message without a sender address that fits the
    // lent buffers (read_blocking reads one), is handed back as the call's
    // result: no call from here into JavaScript (a third of a synchronous
    // receive's own time).
    if let [Outcome::Messages(batch)] = outcomes.as_mut_slice() {
      let lent = match state.delivery.borrow().as_ref() {
        Some(b) if batch.is_one_message() && batch.addresses.is_none() => {
          b.put_data(&batch.data) && b.put_meta(&batch.meta)
        }
        _ => false,
      };
      if lent {
        // From here on JavaScript owns the descriptors (ReceivedFd).
        for fd in batch.fds.drain(..) {
          let _ = fd.into_raw_fd();
        }
        let meta_len = batch.meta.len();
        if let Some(Outcome::Messages(batch)) = outcomes.pop() {
          batch.recycle();
        }
        recycle_outcomes(outcomes);
        self.0.borrow_mut().update_watch();
        return Ok(SyncReceived::Lent(meta_len));
      }
    }
    // SAFETY: the caller's promise: on the env's JS thread, inside its scope.
    if unsafe { self.deliver(&state, outcomes, Via::Direct) } {
      self.0.borrow_mut().update_watch();
      Ok(SyncReceived::Delivered)
    } else {
      Err(())
    }
  }
}

/// What `receive_sync` did with what it read.
pub enum SyncReceived {
  /// The time ran out.
  Nothing,
  /// Through the socket's callback, as the event loop delivers.
  Delivered,
  /// One message written into the lent delivery buffers; its metadata's length.
  Lent(usize),
}

impl Resource for SocketCell {
  fn close_for_teardown(&self) {
    self.0.borrow_mut().close();
  }
}
