//! Readiness: telling a socket, on its JS thread, that it can read or write.
//!
//! Two mechanisms, chosen once per environment when the TS layer loads:
//! - `uv`: a `uv_poll_t` per socket on the environment's own libuv loop.
//!   No extra thread and no cross-thread wake-up; needs a real libuv, so
//!   Node and Electron only.
//! - `thread`: one poller thread per environment (epoll/kqueue through the
//!   `polling` crate, one-shot interest) that wakes JavaScript through a
//!   Node-API threadsafe function. Needs nothing but Node-API, so it also
//!   runs on Bun and Deno, whose libuv is absent or partial.
//!
//! Sockets see only `Watch`: the desired interest (readable, writable) and
//! whether it keeps the event loop alive.

pub mod thread;
pub mod uv;

use crate::contract;
use std::os::fd::RawFd;
use std::rc::Weak;

/// Something that wants to hear that its descriptor is ready.
pub trait Ready {
  fn on_ready(&self, readable: bool, writable: bool);

  /// The reactor could not watch the descriptor for the interest last set
  /// (libuv refused `uv_poll_start`, epoll or kqueue refused the change):
  /// no readiness will come for it. Called from the event loop, never from
  /// inside `Watch::set`, so the target may close itself here.
  fn on_watch_failed(&self, error: fdpass_core::Error);
}

pub enum Reactor {
  Uv(uv::UvReactor),
  /// Boxed: the threadsafe function's context points at it.
  Thread(Box<thread::ThreadReactor>),
}

impl Reactor {
  pub fn kind(&self) -> contract::Reactor {
    match self {
      Reactor::Uv(_) => contract::Reactor::Uv,
      Reactor::Thread(_) => contract::Reactor::Thread,
    }
  }
}

enum WatchImpl {
  Uv(uv::UvWatch),
  Thread(thread::ThreadWatch),
  Closed,
}

/// A descriptor registered with the environment's reactor.
pub struct Watch {
  imp: WatchImpl,
}

impl Watch {
  /// # Safety
  /// `fd` stays open until the watch is closed (`close`, or dropping it):
  /// libuv aborts the process, and epoll may report another file, for a
  /// descriptor closed while it is watched.
  pub unsafe fn new(
    reactor: &Reactor,
    fd: RawFd,
    target: Weak<dyn Ready>,
  ) -> fdpass_core::Result<Watch> {
    // SAFETY: the caller keeps fd open until this watch is closed.
    let imp = unsafe {
      match reactor {
        Reactor::Uv(r) => WatchImpl::Uv(r.watch(fd, target)?),
        Reactor::Thread(r) => WatchImpl::Thread(r.watch(fd, target)?),
      }
    };
    Ok(Watch { imp })
  }

  /// Set the interest. An active, referenced watch keeps the loop alive.
  /// When the reactor refuses it, the target hears `on_watch_failed` from
  /// the event loop.
  pub fn set(&mut self, readable: bool, writable: bool, refed: bool) {
    match &mut self.imp {
      WatchImpl::Uv(w) => w.set(readable, writable, refed),
      WatchImpl::Thread(w) => w.set(readable, writable, refed),
      WatchImpl::Closed => {}
    }
  }

  /// Unregister. Must happen before the descriptor is closed.
  pub fn close(&mut self) {
    match std::mem::replace(&mut self.imp, WatchImpl::Closed) {
      WatchImpl::Uv(w) => w.close(),
      WatchImpl::Thread(w) => w.close(),
      WatchImpl::Closed => {}
    }
  }
}

impl Drop for Watch {
  fn drop(&mut self) {
    self.close();
  }
}
