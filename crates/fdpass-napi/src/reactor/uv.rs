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
type IdleCb = unsafe extern "C" fn(*mut c_void);

// uv_handle_type
const UV_IDLE: c_int = 6;
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;
const UV_WRITABLE: c_int = 2;

type PollInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStartFn = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
type HandleIntFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void, Option<CloseCb>);
type HandleFn = unsafe extern "C" fn(*mut c_void);
type HandleSizeFn = unsafe extern "C" fn(c_int) -> usize;
type LoopHandleFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type IdleStartFn = unsafe extern "C" fn(*mut c_void, IdleCb) -> c_int;

struct UvApi {
  poll_init: PollInitFn,
  poll_start: PollStartFn,
  poll_stop: HandleIntFn,
  close: CloseFn,
  ref_: HandleFn,
  unref: HandleFn,
  handle_size: HandleSizeFn,
  idle_init: LoopHandleFn,
  idle_start: IdleStartFn,
  idle_stop: HandleIntFn,
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
          idle_init: std::mem::transmute::<*mut c_void, LoopHandleFn>(sym(c"uv_idle_init")?),
          idle_start: std::mem::transmute::<*mut c_void, IdleStartFn>(sym(c"uv_idle_start")?),
          idle_stop: std::mem::transmute::<*mut c_void, HandleIntFn>(sym(c"uv_idle_stop")?),
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

/// What every watch of one loop shares: handles whose close callback has
/// not run yet, what to do when none is left, and failed watches waiting
/// to be reported.
struct Closing {
  uv_loop: *mut c_void,
  count: Cell<usize>,
  then: RefCell<Option<Box<dyn FnOnce()>>>,
  /// Targets whose `uv_poll_start` failed, told so from `idle`'s callback:
  /// `UvWatch::set` runs inside the socket's own calls, where it cannot
  /// be told at once.
  failed: RefCell<Vec<(Weak<dyn Ready>, fdpass_core::Error)>>,
  /// A `uv_idle_t`, made at the first failure; its `data` is an
  /// `Rc<Closing>` (from `Rc::into_raw`), released when it closes.
  idle: Cell<*mut c_void>,
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

  /// Tell `ready` from the event loop, in the next iteration, that its
  /// watch failed.
  fn report(self: &Rc<Self>, ready: &Weak<dyn Ready>, error: fdpass_core::Error) {
    {
      let mut failed = self.failed.borrow_mut();
      // Once per target: it may set its interest again before it hears.
      if failed.iter().any(|(w, _)| w.ptr_eq(ready)) {
        return;
      }
      failed.push((ready.clone(), error));
    }
    let api = api().expect("a watch exists only with libuv");
    let mut idle = self.idle.get();
    if idle.is_null() {
      // SAFETY: handle_size is a pure query; calloc gives zeroed memory of that size.
      idle = unsafe { libc::calloc(1, (api.handle_size)(UV_IDLE)) };
      // SAFETY: a fresh uv_idle_t-sized block, initialised on this loop's thread.
      if idle.is_null() || unsafe { (api.idle_init)(self.uv_loop, idle) } != 0 {
        // SAFETY: libuv holds no reference to a block it did not initialise.
        unsafe { libc::free(idle) };
        // No way to defer: the failures wait for the next successful report.
        return;
      }
      // SAFETY: `data` is the first field of every uv handle; the Rc it
      // holds is released by on_idle_close.
      unsafe { *(idle as *mut *const Closing) = Rc::into_raw(self.clone()) };
      self.idle.set(idle);
    }
    // SAFETY: an initialised idle handle that is not closing (shutdown
    // clears `idle` before it closes it). An active idle handle keeps the
    // loop running and polling without blocking until on_idle stops it.
    unsafe { (api.idle_start)(idle, on_idle) };
  }

  /// Close the idle handle, if there is one (the loop's environment is
  /// going away); counted among the pending closes.
  fn shutdown(&self) {
    self.failed.borrow_mut().clear();
    let idle = self.idle.replace(std::ptr::null_mut());
    if idle.is_null() {
      return;
    }
    let api = api().expect("a watch exists only with libuv");
    self.started();
    // SAFETY: an initialised idle handle, closed once; on_idle_close frees it.
    unsafe { (api.close)(idle, Some(on_idle_close)) };
  }
}

unsafe extern "C" fn on_idle(idle: *mut c_void) {
  let api = api().expect("a watch exists only with libuv");
  // SAFETY: data holds the Rc<Closing> that report stored; it lives until
  // on_idle_close, which cannot have run while the handle is active.
  let shared = unsafe { &*(*(idle as *mut *const Closing)) };
  // SAFETY: the handle is initialised and active.
  unsafe { (api.idle_stop)(idle) };
  let failed = std::mem::take(&mut *shared.failed.borrow_mut());
  for (ready, error) in failed {
    if let Some(ready) = ready.upgrade() {
      ready.on_watch_failed(error);
    }
  }
}

unsafe extern "C" fn on_idle_close(idle: *mut c_void) {
  // SAFETY: libuv is done with the handle; data is the Rc from report.
  unsafe {
    let shared = Rc::from_raw(*(idle as *mut *const Closing));
    libc::free(idle);
    shared.finished();
  }
}

/// What a handle's `data` field points to.
struct Target {
  ready: Weak<dyn Ready>,
  closing: Rc<Closing>,
}

impl UvReactor {
  /// # Safety
  /// `uv_loop` is the loop of the calling thread's environment, and it
  /// outlives the reactor (every watch is closed on the loop's thread
  /// before the loop ends).
  pub unsafe fn new(uv_loop: *mut c_void) -> Option<Self> {
    api()?;
    Some(UvReactor {
      uv_loop,
      closing: Rc::new(Closing {
        uv_loop,
        count: Cell::new(0),
        then: RefCell::new(None),
        failed: RefCell::new(Vec::new()),
        idle: Cell::new(std::ptr::null_mut()),
      }),
    })
  }

  /// Release what the reactor itself holds on the loop (at env teardown,
  /// after every watch has closed).
  pub fn shutdown(&self) {
    self.closing.shutdown();
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

  /// # Safety
  /// `fd` stays open until the returned watch is closed.
  pub unsafe fn watch(&self, fd: RawFd, ready: Weak<dyn Ready>) -> fdpass_core::Result<UvWatch> {
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
      let status = unsafe {
        if events == 0 {
          (api.poll_stop)(self.handle)
        } else {
          (api.poll_start)(self.handle, events, on_poll)
        }
      };
      if status == 0 {
        self.events = events;
      } else {
        // UV_EEXIST: another handle of this loop watches the same number
        // (the descriptor was closed and reused behind the socket's back).
        // SAFETY: data was set in `watch` and stays valid until on_close.
        let target = unsafe { &**(self.handle as *mut *mut Target) };
        let syscall = if events == 0 {
          "uv_poll_stop"
        } else {
          "uv_poll_start"
        };
        let error = fdpass_core::Error::sys(nix::errno::Errno::from_raw(-status), syscall);
        target.closing.report(&target.ready, error);
      }
    }
    if refed != self.refed {
      // SAFETY: the handle is initialised and not closed (close takes self).
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
