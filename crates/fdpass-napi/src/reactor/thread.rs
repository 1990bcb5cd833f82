//! One poller thread per environment, waking JavaScript through a
//! Node-API threadsafe function. Runs wherever Node-API does.
//!
//! Interest is one-shot (the `polling` crate's default): after an event the
//! descriptor is silent until the socket re-arms it on the JS thread, so the
//! poller never races ahead of a socket that has not read yet.

use super::Ready;
use napi::sys;
use polling::{Event, Events, Poller};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::os::fd::{BorrowedFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// State shared with the poller thread.
struct Shared {
  poller: Poller,
  ready: Mutex<Vec<(usize, bool, bool)>>,
  stop: AtomicBool,
}

struct Registration {
  ready: Weak<dyn Ready>,
  armed: Rc<Cell<bool>>,
  /// The poller refused a change of interest; reported by the next dispatch.
  failure: Option<fdpass_core::Error>,
}

/// JS-thread side of the reactor.
pub struct ThreadReactor {
  env: sys::napi_env,
  shared: Arc<Shared>,
  thread: RefCell<Option<JoinHandle<()>>>,
  tsfn: Cell<sys::napi_threadsafe_function>,
  registrations: Rc<RefCell<HashMap<usize, Registration>>>,
  next_key: Cell<usize>,
  /// Watches that are active and referenced; the tsfn is ref'd while > 0.
  active: Rc<Cell<usize>>,
}

struct TsfnPtr(sys::napi_threadsafe_function);
// SAFETY: napi_call_threadsafe_function is documented as callable from any thread.
unsafe impl Send for TsfnPtr {}

impl ThreadReactor {
  /// # Safety
  /// On the JS thread of `env`, inside a napi call. The returned box must
  /// stay at its address until `shutdown` (the tsfn's context points at it).
  pub unsafe fn new(env: sys::napi_env) -> napi::Result<Box<Self>> {
    let poller = Poller::new().map_err(|e| napi::Error::from_reason(format!("poller: {e}")))?;
    let shared = Arc::new(Shared {
      poller,
      ready: Mutex::new(Vec::new()),
      stop: AtomicBool::new(false),
    });
    let reactor = Box::new(ThreadReactor {
      env,
      shared: shared.clone(),
      thread: RefCell::new(None),
      tsfn: Cell::new(std::ptr::null_mut()),
      registrations: Rc::new(RefCell::new(HashMap::new())),
      next_key: Cell::new(1),
      active: Rc::new(Cell::new(0)),
    });
    let mut tsfn = std::ptr::null_mut();
    // SAFETY: creating a tsfn with no JS function and our own call_js; the
    // context pointer stays valid until shutdown releases the tsfn.
    unsafe {
      let mut name = std::ptr::null_mut();
      sys::napi_create_string_utf8(env, c"fdpass poller".as_ptr(), 13, &mut name);
      let status = sys::napi_create_threadsafe_function(
        env,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        name,
        0,
        1,
        std::ptr::null_mut(),
        None,
        (&*reactor as *const ThreadReactor).cast_mut().cast(),
        Some(call_js),
        &mut tsfn,
      );
      if status != sys::Status::napi_ok {
        return Err(napi::Error::from_reason(
          "napi_create_threadsafe_function failed",
        ));
      }
      // Idle until a referenced socket is active.
      sys::napi_unref_threadsafe_function(env, tsfn);
    }
    reactor.tsfn.set(tsfn);
    let wake = TsfnPtr(tsfn);
    let handle = std::thread::Builder::new()
      .name("fdpass-poller".into())
      .spawn(move || poll_loop(shared, wake))
      .map_err(|e| napi::Error::from_reason(format!("cannot start the poller thread: {e}")))?;
    *reactor.thread.borrow_mut() = Some(handle);
    Ok(reactor)
  }

  /// # Safety
  /// `fd` stays open until the returned watch is closed.
  pub unsafe fn watch(
    &self,
    fd: RawFd,
    ready: Weak<dyn Ready>,
  ) -> fdpass_core::Result<ThreadWatch> {
    let key = self.next_key.get();
    self.next_key.set(key + 1);
    // SAFETY: polling's contract is this function's: fd stays open until
    // ThreadWatch::close has deleted it from the poller.
    unsafe { self.shared.poller.add(fd, Event::none(key)) }.map_err(|e| poller_error(&e))?;
    let armed = Rc::new(Cell::new(false));
    self.registrations.borrow_mut().insert(
      key,
      Registration {
        ready,
        armed: armed.clone(),
        failure: None,
      },
    );
    Ok(ThreadWatch {
      fd,
      key,
      shared: self.shared.clone(),
      registrations: self.registrations.clone(),
      active: self.active.clone(),
      env: self.env,
      tsfn: self.tsfn.get(),
      armed,
      interest: (false, false),
      counted: false,
    })
  }

  /// Stop the thread and release the tsfn. Called once, at env teardown.
  pub fn shutdown(&self) {
    self.shared.stop.store(true, Ordering::SeqCst);
    let _ = self.shared.poller.notify();
    if let Some(t) = self.thread.borrow_mut().take() {
      let _ = t.join();
    }
    let tsfn = self.tsfn.replace(std::ptr::null_mut());
    if !tsfn.is_null() {
      // SAFETY: the poller thread has exited, so nobody calls the tsfn any more.
      unsafe {
        sys::napi_release_threadsafe_function(tsfn, sys::ThreadsafeFunctionReleaseMode::abort)
      };
    }
  }

  /// Deliver queued events (runs on the JS thread, from the tsfn).
  fn dispatch(&self) {
    let ready = std::mem::take(&mut *self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()));
    for (key, readable, writable) in ready {
      let target = {
        let mut regs = self.registrations.borrow_mut();
        regs.get_mut(&key).map(|r| {
          r.armed.set(false);
          (r.ready.clone(), r.failure.take())
        })
      };
      let Some((target, failure)) = target else {
        continue;
      };
      let Some(t) = target.upgrade() else {
        continue;
      };
      match failure {
        Some(e) => t.on_watch_failed(e),
        None => t.on_ready(readable, writable),
      }
    }
  }
}

fn poller_error(e: &std::io::Error) -> fdpass_core::Error {
  let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
  fdpass_core::Error::sys(errno, fdpass_core::platform::POLLER_SYSCALL)
}

unsafe extern "C" fn call_js(
  env: sys::napi_env,
  _js_cb: sys::napi_value,
  context: *mut c_void,
  _data: *mut c_void,
) {
  if env.is_null() || context.is_null() {
    return; // the tsfn is being torn down
  }
  // SAFETY: context is the boxed reactor, alive until shutdown released the tsfn.
  let reactor = unsafe { &*(context as *const ThreadReactor) };
  reactor.dispatch();
}

fn poll_loop(shared: Arc<Shared>, wake: TsfnPtr) {
  let mut events = Events::new();
  loop {
    events.clear();
    match shared.poller.wait(&mut events, None) {
      Ok(_) => {}
      Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
      Err(_) => return,
    }
    if shared.stop.load(Ordering::SeqCst) {
      return;
    }
    if events.is_empty() {
      continue;
    }
    let mut queue = shared.ready.lock().unwrap_or_else(|e| e.into_inner());
    let was_empty = queue.is_empty();
    queue.extend(events.iter().map(|e| (e.key, e.readable, e.writable)));
    drop(queue);
    // One wake-up per batch: the JS side drains everything queued.
    if was_empty {
      // SAFETY: the tsfn is released only after this thread has been joined.
      unsafe {
        sys::napi_call_threadsafe_function(
          wake.0,
          std::ptr::null_mut(),
          sys::ThreadsafeFunctionCallMode::nonblocking,
        )
      };
    }
  }
}

pub struct ThreadWatch {
  fd: RawFd,
  key: usize,
  shared: Arc<Shared>,
  registrations: Rc<RefCell<HashMap<usize, Registration>>>,
  active: Rc<Cell<usize>>,
  env: sys::napi_env,
  tsfn: sys::napi_threadsafe_function,
  armed: Rc<Cell<bool>>,
  interest: (bool, bool),
  counted: bool,
}

impl ThreadWatch {
  pub fn set(&mut self, readable: bool, writable: bool, refed: bool) {
    let want = readable || writable;
    if (readable, writable) != self.interest || (want && !self.armed.get()) {
      // SAFETY: fd stays open until close() below has unregistered it.
      let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
      let ev = Event::new(self.key, readable, writable);
      match self.shared.poller.modify(fd, ev) {
        Ok(()) => {
          self.interest = (readable, writable);
          self.armed.set(want);
        }
        // The descriptor was closed or replaced behind the socket's back:
        // without a registration nothing would ever wake it.
        Err(e) => self.report(poller_error(&e)),
      }
    }
    self.count(want && refed);
  }

  /// Have the next dispatch tell the target that its watch failed (once,
  /// however often the interest changes before then).
  fn report(&self, error: fdpass_core::Error) {
    {
      let mut regs = self.registrations.borrow_mut();
      let Some(r) = regs.get_mut(&self.key) else {
        return;
      };
      if r.failure.is_some() {
        return;
      }
      r.failure = Some(error);
    }
    let mut queue = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner());
    let was_empty = queue.is_empty();
    queue.push((self.key, false, false));
    drop(queue);
    // Whoever makes the queue non-empty wakes the JS thread (poll_loop
    // does the same).
    if was_empty {
      // SAFETY: the tsfn lives until the reactor's shutdown, which comes
      // after every watch has closed; any thread may call it.
      unsafe {
        sys::napi_call_threadsafe_function(
          self.tsfn,
          std::ptr::null_mut(),
          sys::ThreadsafeFunctionCallMode::nonblocking,
        )
      };
    }
  }

  fn count(&mut self, counted: bool) {
    if counted == self.counted {
      return;
    }
    self.counted = counted;
    let before = self.active.get();
    let after = if counted { before + 1 } else { before - 1 };
    self.active.set(after);
    // SAFETY: ref/unref of our tsfn on its JS thread.
    unsafe {
      if before == 0 && after == 1 {
        sys::napi_ref_threadsafe_function(self.env, self.tsfn);
      } else if before == 1 && after == 0 {
        sys::napi_unref_threadsafe_function(self.env, self.tsfn);
      }
    }
  }

  pub fn close(mut self) {
    self.count(false);
    // SAFETY: the fd is still open; the caller closes it after this returns.
    let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
    let _ = self.shared.poller.delete(fd);
    self.registrations.borrow_mut().remove(&self.key);
  }
}
