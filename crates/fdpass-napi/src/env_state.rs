//! Per-environment state: the reactor, the callback context, and every open
//! socket, so that a worker's exit closes them (and their libuv handles)
//! instead of aborting the process or leaking descriptors.

use crate::contract::{Reactor as ReactorKind, Runtime};
use crate::js::{self, CallScope, CallbackContext, JsRef, RawEnv, RawValue};
use crate::reactor::{thread::ThreadReactor, uv::UvReactor, Reactor};
use napi::sys;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::{Rc, Weak};

/// Something that must be closed when its environment goes away.
pub trait Resource {
  fn close_for_teardown(&self);
}

// Node-API is the same in every runtime except at teardown, where Deno
// needs two things done differently.
impl Runtime {
  /// Deno (2.x) aborts the process ("Cannot create a handle without a
  /// HandleScope") on `napi_async_destroy` from a cleanup hook, even inside
  /// a handle scope; the context dies with the isolate anyway.
  fn destroys_async_context_at_teardown(self) -> bool {
    self != Runtime::Deno
  }

  /// Deno frees an async cleanup hook's handle itself after the hook
  /// returns; removing it as Node requires is a double free there.
  fn removes_hook_itself(self) -> bool {
    self == Runtime::Deno
  }
}

/// Off-heap memory that JavaScript lends the addon for deliveries: a batch
/// whose data and metadata fit is written here and announced by its
/// length, instead of in a new Buffer and Int32Array. Each new ArrayBuffer
/// costs a malloc, a free and a sweep by the collector: a fifth of a
/// one-message delivery (perf, W3). JavaScript copies the data out and
/// reads the metadata before any listener runs, so the next delivery may
/// overwrite both.
pub struct DeliveryBuffers(LentPair);

impl DeliveryBuffers {
  /// Write `bytes` into the data area; false when they do not fit.
  pub fn put_data(&self, bytes: &[u8]) -> bool {
    if bytes.len() > self.0.bytes_len {
      return false;
    }
    // SAFETY: the area holds bytes_len bytes and stays alive (_keep); only
    // the JS thread touches it, no JS runs during the copy, and no view of
    // it exists (it overlaps neither the metadata nor the send scratch:
    // checked when lent). The source is the addon's own memory.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.0.bytes, bytes.len()) };
    true
  }

  /// Write `meta` into the metadata area; false when it does not fit.
  pub fn put_meta(&self, meta: &[i32]) -> bool {
    if meta.len() > self.0.ints_len {
      return false;
    }
    // SAFETY: the area holds ints_len aligned i32s and stays alive (_keep);
    // only the JS thread touches it, no JS runs during the copy, and no
    // view of it exists (it overlaps neither the data area nor the send
    // scratch: checked when lent). The source is the addon's own memory.
    unsafe { std::ptr::copy_nonoverlapping(meta.as_ptr(), self.0.ints, meta.len()) };
    true
  }
}

/// The TS layer's shared send arguments (ts/fd-like.ts sendArgs): a
/// Uint8Array for short strings and an Int32Array for descriptor numbers,
/// lent once so that a send that used them passes only their lengths
/// (looking up two typed arrays was 40 ns of a send).
pub struct SendScratch(LentPair);

impl SendScratch {
  /// The first `data_len` bytes and `fds_len` descriptor numbers, if the
  /// scratch holds that many, for as long as the current call from
  /// JavaScript (`scope`).
  pub fn get<'s>(
    &self,
    _scope: &'s CallScope,
    data_len: usize,
    fds_len: usize,
  ) -> Option<(&'s [u8], &'s [i32])> {
    let lent = &self.0;
    if data_len > lent.bytes_len || fds_len > lent.ints_len {
      return None;
    }
    // SAFETY: the arrays hold that many (aligned) elements and stay alive
    // as long as the environment (_keep), which outlives any call from it;
    // off-heap, their memory never moves. Only JavaScript writes them, on
    // this thread, and no JavaScript runs while a call from it is in
    // progress and holds these views (CallScope's contract). Two shared
    // views may overlap.
    unsafe {
      Some((
        std::slice::from_raw_parts(lent.bytes, data_len),
        std::slice::from_raw_parts(lent.ints, fds_len),
      ))
    }
  }
}

/// A Uint8Array and an Int32Array that JavaScript lends the addon for as
/// long as the environment lives (both off-heap, so their memory never
/// moves): where it is, and the references that keep them.
struct LentPair {
  bytes: *mut u8,
  bytes_len: usize,
  ints: *mut i32,
  ints_len: usize,
  _keep: [JsRef; 2],
}

impl LentPair {
  /// The byte ranges of the two arrays.
  fn ranges(&self) -> [std::ops::Range<usize>; 2] {
    let bytes = self.bytes as usize;
    let ints = self.ints as usize;
    [
      bytes..bytes + self.bytes_len,
      ints..ints + 4 * self.ints_len,
    ]
  }

  /// Does any array of this pair share memory with one of `other`, or with
  /// the other array of this pair?
  fn overlaps(&self, other: Option<&LentPair>) -> bool {
    let [a, b] = self.ranges();
    let shared =
      |x: &std::ops::Range<usize>, y: &std::ops::Range<usize>| x.start < y.end && y.start < x.end;
    shared(&a, &b)
      || other.is_some_and(|o| o.ranges().iter().any(|r| shared(&a, r) || shared(&b, r)))
  }
}

/// # Safety
/// On `env`'s JS thread, inside a call; the values are live.
unsafe fn lent_pair(
  env: RawEnv,
  bytes: RawValue,
  ints: RawValue,
  what: &str,
) -> napi::Result<LentPair> {
  let usage = || napi::Error::from_reason(format!("{what}: a Uint8Array and an Int32Array"));
  // SAFETY: queries of live values on their env's thread (this function's contract).
  let (b, i) = unsafe {
    (
      js::typed_array_memory(env, bytes),
      js::typed_array_memory(env, ints),
    )
  };
  let (Some((b_ty, b, b_len)), Some((i_ty, i, i_len))) = (b, i) else {
    return Err(usage());
  };
  if b_ty != sys::TypedarrayType::uint8_array || i_ty != sys::TypedarrayType::int32_array {
    return Err(usage());
  }
  Ok(LentPair {
    bytes: b.cast(),
    bytes_len: b_len,
    ints: i.cast(),
    ints_len: i_len / 4,
    // SAFETY: references to live values, made on their env's thread
    // (this function's contract).
    _keep: unsafe { [JsRef::new(env, bytes)?, JsRef::new(env, ints)?] },
  })
}

pub struct EnvState {
  pub env: RawEnv,
  runtime: Runtime,
  pub reactor: Reactor,
  callbacks: RefCell<Option<CallbackContext>>,
  /// The one function every socket's events go through, called with the
  /// socket's JavaScript object as `this` (a closure per socket cost 93
  /// bytes of an idle socket's 661).
  socket_dispatcher: RefCell<Option<JsRef>>,
  pub delivery: RefCell<Option<DeliveryBuffers>>,
  pub send_scratch: RefCell<Option<SendScratch>>,
  resources: RefCell<HashMap<u64, Weak<dyn Resource>>>,
  next_id: Cell<u64>,
  torn_down: Cell<bool>,
}

thread_local! {
  // One JS environment per thread (main thread, or one per worker).
  static STATES: RefCell<Vec<Rc<EnvState>>> = const { RefCell::new(Vec::new()) };
}

pub fn get(env: RawEnv) -> napi::Result<Rc<EnvState>> {
  STATES
    .with(|s| s.borrow().iter().find(|st| st.env == env).cloned())
    .ok_or_else(|| {
      napi::Error::from_reason(
        "fdpass is not initialised in this environment (load it through its package entry point)",
      )
    })
}

/// Create this environment's state with the chosen reactor. Idempotent for
/// the same kind; asking for another kind later is an error.
pub fn configure(
  env: &napi::Env,
  kind: ReactorKind,
  runtime: Runtime,
) -> napi::Result<ReactorKind> {
  let env = env.raw();
  if let Ok(st) = get(env) {
    let have = st.reactor.kind();
    if have != kind {
      return Err(napi::Error::from_reason(format!(
        "fdpass already uses the '{}' reactor in this environment",
        have.as_str()
      )));
    }
    return Ok(have);
  }
  // SAFETY: napi-rs gives an Env to a #[napi] function only, for the call
  // in progress on the env's own thread.
  let callbacks = unsafe { CallbackContext::new(env)? };
  let reactor = match kind {
    ReactorKind::Uv => {
      let mut uv_loop = std::ptr::null_mut();
      // SAFETY: querying the loop of a live env on its thread, into a local.
      unsafe { sys::napi_get_uv_event_loop(env, &mut uv_loop) };
      // SAFETY: the loop of this env, on its thread; it outlives the env's
      // state, which closes every handle at the env's teardown.
      let r = unsafe { UvReactor::new(uv_loop.cast()) }.ok_or_else(|| {
        napi::Error::from_reason(
          "this runtime does not export libuv's uv_poll functions; use FDPASS_REACTOR=thread",
        )
      })?;
      Reactor::Uv(r)
    }
    // SAFETY: on the env's thread, inside a napi call.
    ReactorKind::Thread => Reactor::Thread(unsafe { ThreadReactor::new(env)? }),
  };
  let st = Rc::new(EnvState {
    env,
    runtime,
    reactor,
    callbacks: RefCell::new(Some(callbacks)),
    socket_dispatcher: RefCell::new(None),
    delivery: RefCell::new(None),
    send_scratch: RefCell::new(None),
    resources: RefCell::new(HashMap::new()),
    next_id: Cell::new(1),
    torn_down: Cell::new(false),
  });
  // SAFETY: on the env's thread, inside the #[napi] call that gave us env.
  unsafe { install_cleanup_hook(env) };
  STATES.with(|s| s.borrow_mut().push(st));
  Ok(kind)
}

impl EnvState {
  /// Take the two typed arrays (a Uint8Array and an Int32Array) for
  /// deliveries; see `DeliveryBuffers`.
  ///
  /// # Safety
  /// On this env's JS thread, inside a call; the values are live.
  pub unsafe fn lend_delivery_buffers(&self, data: RawValue, meta: RawValue) -> napi::Result<()> {
    // SAFETY: the values are live on this env's thread (this method's contract).
    let lent = unsafe { lent_pair(self.env, data, meta, "delivery buffers")? };
    if lent.overlaps(self.send_scratch.borrow().as_ref().map(|s| &s.0)) {
      return Err(napi::Error::from_reason(
        "delivery buffers: the two arrays, and the send scratch, must not share memory",
      ));
    }
    *self.delivery.borrow_mut() = Some(DeliveryBuffers(lent));
    Ok(())
  }

  /// Take the TS layer's send scratch (a Uint8Array and an Int32Array, both
  /// off-heap); see `SendScratch`.
  ///
  /// # Safety
  /// On this env's JS thread, inside a call; the values are live.
  pub unsafe fn lend_send_scratch(&self, data: RawValue, fds: RawValue) -> napi::Result<()> {
    // SAFETY: the values are live on this env's thread (this method's contract).
    let lent = unsafe { lent_pair(self.env, data, fds, "send scratch")? };
    if lent.overlaps(self.delivery.borrow().as_ref().map(|d| &d.0)) {
      return Err(napi::Error::from_reason(
        "send scratch: the two arrays, and the delivery buffers, must not share memory",
      ));
    }
    *self.send_scratch.borrow_mut() = Some(SendScratch(lent));
    Ok(())
  }

  pub fn register(&self, r: Weak<dyn Resource>) -> u64 {
    let id = self.next_id.get();
    self.next_id.set(id + 1);
    self.resources.borrow_mut().insert(id, r);
    id
  }

  pub fn unregister(&self, id: u64) {
    self.resources.borrow_mut().remove(&id);
  }

  pub fn is_torn_down(&self) -> bool {
    self.torn_down.get()
  }

  /// Call a JS function from an event-loop callback, in a handle scope,
  /// with `this` = `recv` (None: the global object).
  ///
  /// # Safety
  /// On this env's JS thread, inside a handle scope; handles are live.
  pub unsafe fn call(
    &self,
    recv: Option<crate::js::RawValue>,
    func: crate::js::RawValue,
    args: &[crate::js::RawValue],
  ) {
    if let Some(cb) = self.callbacks.borrow().as_ref() {
      // SAFETY: the context was made on this env; the caller provides its
      // thread, a handle scope and live handles (this method's contract).
      unsafe { cb.call(recv, func, args) };
    }
  }

  /// # Safety
  /// On this env's JS thread, inside a call; `func` is live.
  pub unsafe fn set_socket_dispatcher(&self, func: RawValue) -> napi::Result<()> {
    // SAFETY: a live value on this env's thread (this method's contract).
    *self.socket_dispatcher.borrow_mut() = Some(unsafe { JsRef::new(self.env, func)? });
    Ok(())
  }

  /// The sockets' dispatcher, once the TS layer set it.
  ///
  /// # Safety
  /// On this env's JS thread, inside a handle scope.
  pub unsafe fn socket_dispatcher(&self) -> Option<RawValue> {
    // SAFETY: the reference belongs to this env; the caller provides its
    // thread and the handle scope the value lands in.
    self
      .socket_dispatcher
      .borrow()
      .as_ref()
      .map(|r| unsafe { r.get() })
  }

  fn teardown(&self) {
    // Cleanup hooks run outside any JS call; some runtimes (Deno) then need
    // an explicit handle scope for the napi calls that closing makes.
    // SAFETY: cleanup hooks run on the env's own thread.
    unsafe { crate::js::with_scope(self.env, || self.teardown_in_scope()) }
  }

  fn teardown_in_scope(&self) {
    self.torn_down.set(true);
    let live: Vec<_> = self
      .resources
      .borrow_mut()
      .drain()
      .map(|(_, w)| w)
      .collect();
    for r in live.into_iter().filter_map(|w| w.upgrade()) {
      r.close_for_teardown();
    }
    match &self.reactor {
      Reactor::Thread(t) => t.shutdown(),
      Reactor::Uv(u) => u.shutdown(),
    }
    drop(self.delivery.borrow_mut().take());
    drop(self.send_scratch.borrow_mut().take());
    drop(self.socket_dispatcher.borrow_mut().take());
    let callbacks = self.callbacks.borrow_mut().take();
    if !self.runtime.destroys_async_context_at_teardown() {
      std::mem::forget(callbacks);
    }
  }
}

struct HookData {
  env: RawEnv,
  handle: Cell<sys::napi_async_cleanup_hook_handle>,
}

/// # Safety
/// On env's thread, inside a napi call.
unsafe fn install_cleanup_hook(env: RawEnv) {
  let data = Box::into_raw(Box::new(HookData {
    env,
    handle: Cell::new(std::ptr::null_mut()),
  }));
  let mut handle = std::ptr::null_mut();
  // SAFETY: on env's thread inside a napi call (this function's
  // contract); data stays alive until the hook has run (freed there).
  let status =
    unsafe { sys::napi_add_async_cleanup_hook(env, Some(async_cleanup), data.cast(), &mut handle) };
  if status == sys::Status::napi_ok {
    // SAFETY: data is our live box.
    unsafe { (*data).handle.set(handle) };
  } else {
    // Runtimes without async cleanup hooks get the synchronous kind.
    // SAFETY: on env's thread inside a napi call (this function's
    // contract); data stays alive until the hook has run (freed there).
    unsafe { sys::napi_add_env_cleanup_hook(env, Some(sync_cleanup), data.cast()) };
  }
}

fn take_state(env: RawEnv) -> Option<Rc<EnvState>> {
  STATES.with(|s| {
    let mut v = s.borrow_mut();
    let i = v.iter().position(|st| st.env == env)?;
    Some(v.remove(i))
  })
}

unsafe extern "C" fn sync_cleanup(arg: *mut c_void) {
  // SAFETY: arg is the HookData box from install_cleanup_hook, used once.
  let data = unsafe { Box::from_raw(arg as *mut HookData) };
  if let Some(st) = take_state(data.env) {
    st.teardown();
  }
}

/// Close every socket; libuv handles close asynchronously, so the hook is
/// removed only when their close callbacks have run (a worker aborts if a
/// handle outlives its loop).
unsafe extern "C" fn async_cleanup(handle: sys::napi_async_cleanup_hook_handle, arg: *mut c_void) {
  // SAFETY: arg is the HookData box from install_cleanup_hook, used once.
  let data = unsafe { Box::from_raw(arg as *mut HookData) };
  let _ = data.handle.get();
  let Some(st) = take_state(data.env) else {
    // SAFETY: removing our own hook once.
    unsafe { sys::napi_remove_async_cleanup_hook(handle) };
    return;
  };
  st.teardown();
  if st.runtime.removes_hook_itself() {
    return;
  }
  match &st.reactor {
    Reactor::Uv(uv) if uv.pending_closes() > 0 => uv.when_closed(Box::new(move || {
      // SAFETY: removing our own hook once, after the last handle closed.
      unsafe { sys::napi_remove_async_cleanup_hook(handle) };
    })),
    // SAFETY: removing our own hook once.
    _ => unsafe {
      sys::napi_remove_async_cleanup_hook(handle);
    },
  }
}
