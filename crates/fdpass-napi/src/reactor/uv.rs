//! `uv_poll_t` on the environment's own loop (Node, Electron).
//!
//! libuv is reached through `dlsym` rather than link-time symbols, so the
//! addon loads in runtimes without libuv and can tell whether it has one.
//! `uv_poll_t` is allocated by `uv_handle_size`, so no libuv header layout
//! is assumed except that a handle starts with its `void* data` field,
//! which libuv documents as public and stable.

use super::Ready;
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void, CStr};
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::OnceLock;

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type CloseCb = unsafe extern "C" fn(*mut c_void);

const UV_POLL: c_int = 8; // uv_handle_type
const UV_READABLE: c_int = 1;
const UV_WRITABLE: c_int = 2;

type PollInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStartFn = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
type HandleIntFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void, Option<CloseCb>);
type HandleFn = unsafe extern "C" fn(*mut c_void);
type HandleSizeFn = unsafe extern "C" fn(c_int) -> usize;

struct UvApi {
  poll_init: PollInitFn,
  poll_start: PollStartFn,
  poll_stop: HandleIntFn,
  close: CloseFn,
  ref_: HandleFn,
  unref: HandleFn,
  handle_size: HandleSizeFn,
}

fn sym(name: &CStr) -> Option<*mut c_void> {
  // SAFETY: dlsym with RTLD_DEFAULT only looks a name up in loaded objects.
  let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
  (!p.is_null()).then_some(p)
}

fn api() -> Option<&'static UvApi> {
  static API: OnceLock<Option<UvApi>> = OnceLock::new();
  API
    .get_or_init(|| {
      // SAFETY: each symbol, when present, is the libuv function of that name
      // with the C signature declared in UvApi (libuv's stable public ABI).
      unsafe {
        Some(UvApi {
          poll_init: std::mem::transmute::<*mut c_void, PollInitFn>(sym(c"uv_poll_init")?),
          poll_start: std::mem::transmute::<*mut c_void, PollStartFn>(sym(c"uv_poll_start")?),
          poll_stop: std::mem::transmute::<*mut c_void, HandleIntFn>(sym(c"uv_poll_stop")?),
          close: std::mem::transmute::<*mut c_void, CloseFn>(sym(c"uv_close")?),
          ref_: std::mem::transmute::<*mut c_void, HandleFn>(sym(c"uv_ref")?),
          unref: std::mem::transmute::<*mut c_void, HandleFn>(sym(c"uv_unref")?),
          handle_size: std::mem::transmute::<*mut c_void, HandleSizeFn>(sym(c"uv_handle_size")?),
        })
      }
    })
    .as_ref()
}

/// Does this process export libuv's poll functions?
pub fn available() -> bool {
  api().is_some()
}

pub struct UvReactor {
  uv_loop: *mut c_void,
  closing: Rc<Closing>,
}

/// Handles whose close callback has not run yet, and what to do when none is left.
#[derive(Default)]
struct Closing {
  count: Cell<usize>,
  then: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl Closing {
  fn started(&self) {
    self.count.set(self.count.get() + 1);
  }
  fn finished(&self) {
    self.count.set(self.count.get() - 1);
    if self.count.get() == 0 {
      if let Some(f) = self.then.borrow_mut().take() {
        f();
      }
    }
  }
}

/// What a handle's `data` field points to.
struct Target {
  ready: Weak<dyn Ready>,
  closing: Rc<Closing>,
}

impl UvReactor {
  pub fn new(uv_loop: *mut c_void) -> Option<Self> {
    api()?;
    Some(UvReactor {
      uv_loop,
      closing: Rc::new(Closing::default()),
    })
  }

  pub fn pending_closes(&self) -> usize {
    self.closing.count.get()
  }

  /// Run `f` once the last pending handle close has completed.
  pub fn when_closed(&self, f: Box<dyn FnOnce()>) {
    if self.pending_closes() == 0 {
      f();
    } else {
      *self.closing.then.borrow_mut() = Some(f);
    }
  }

  pub fn watch(&self, fd: RawFd, ready: Weak<dyn Ready>) -> fdpass_core::Result<UvWatch> {
    let api = api().expect("checked in new");
    // SAFETY: handle_size is a pure query; calloc gives zeroed memory of that size.
    let handle = unsafe { libc::calloc(1, (api.handle_size)(UV_POLL)) };
    if handle.is_null() {
      return Err(fdpass_core::Error::sys(
        nix::errno::Errno::ENOMEM,
        "uv_poll_init",
      ));
    }
    // SAFETY: handle is a fresh uv_poll_t-sized block on this env's loop thread.
    let r = unsafe { (api.poll_init)(self.uv_loop, handle, fd) };
    if r != 0 {
      // SAFETY: uv_poll_init failed, so libuv holds no reference to the block.
      unsafe { libc::free(handle) };
      return Err(fdpass_core::Error::sys(
        nix::errno::Errno::from_raw(-r),
        "uv_poll_init",
      ));
    }
    let target = Box::into_raw(Box::new(Target {
      ready,
      closing: self.closing.clone(),
    }));
    // SAFETY: `data` is the first field of every uv handle.
    unsafe { *(handle as *mut *mut Target) = target };
    // A new handle is referenced; the socket decides below.
    Ok(UvWatch {
      handle,
      events: 0,
      refed: true,
    })
  }
}

pub struct UvWatch {
  handle: *mut c_void,
  events: c_int,
  refed: bool,
}

unsafe extern "C" fn on_poll(handle: *mut c_void, status: c_int, events: c_int) {
  // SAFETY: data was set in `watch` and stays valid until the close callback.
  let target = unsafe { &**(handle as *mut *mut Target) };
  if let Some(ready) = target.ready.upgrade() {
    // An error status (EBADF, ...) is reported as readable: the read that
    // follows surfaces the error through recvmsg.
    ready.on_ready(
      status < 0 || events & UV_READABLE != 0,
      events & UV_WRITABLE != 0,
    );
  }
}

unsafe extern "C" fn on_close(handle: *mut c_void) {
  // SAFETY: libuv is done with the handle; data still points to our Target.
  unsafe {
    let target = Box::from_raw(*(handle as *mut *mut Target));
    libc::free(handle);
    target.closing.finished();
  }
}

impl UvWatch {
  pub fn set(&mut self, readable: bool, writable: bool, refed: bool) {
    let api = api().expect("a watch exists only with libuv");
    let events = if readable { UV_READABLE } else { 0 } | if writable { UV_WRITABLE } else { 0 };
    if events != self.events {
      // SAFETY: the handle is initialised and not closed.
      unsafe {
        if events == 0 {
          (api.poll_stop)(self.handle);
        } else {
          (api.poll_start)(self.handle, events, on_poll);
        }
      }
      self.events = events;
    }
    if refed != self.refed {
      // SAFETY: as above.
      unsafe {
        if refed {
          (api.ref_)(self.handle)
        } else {
          (api.unref)(self.handle)
        }
      }
      self.refed = refed;
    }
  }

  pub fn close(self) {
    let api = api().expect("a watch exists only with libuv");
    // SAFETY: stopping removes the fd from epoll at once, so the caller may
    // close it right after; the memory is freed in on_close.
    unsafe {
      (api.poll_stop)(self.handle);
      let target = &**(self.handle as *mut *mut Target);
      target.closing.started();
      (api.close)(self.handle, Some(on_close));
    }
  }
}
