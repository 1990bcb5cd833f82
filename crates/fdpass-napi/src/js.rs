//! Raw Node-API helpers for the places napi-rs's safe layer does not reach:
//! calling into JavaScript from an event-loop callback (where no napi call
//! frame exists) and building values in bulk on the hot path.

use fdpass_core::{Error as CoreError, SocketAddress};
use napi::sys;
use std::ffi::c_void;
use std::ptr;

pub type RawEnv = sys::napi_env;
pub type RawValue = sys::napi_value;

/// The extent of one call from JavaScript into the addon. A view of
/// JavaScript memory (a typed array's elements) borrows it, so that the view
/// cannot outlive the call whose arguments keep that memory alive.
pub struct CallScope {
  /// Not Send: a call belongs to its JS thread.
  _thread: std::marker::PhantomData<*mut ()>,
}

impl CallScope {
  /// # Safety
  /// At the start of a call from JavaScript (a Node-API callback or a
  /// `#[napi]` function), and dropped before it returns; no JavaScript runs
  /// while a view borrowed from it is alive.
  pub unsafe fn enter() -> CallScope {
    CallScope {
      _thread: std::marker::PhantomData,
    }
  }
}

fn ok(status: sys::napi_status) -> bool {
  status == sys::Status::napi_ok
}

/// A strong reference to a JS value that outlives the current call.
pub struct JsRef {
  env: RawEnv,
  raw: sys::napi_ref,
}

impl JsRef {
  /// # Safety
  /// `env` and `value` must be live handles of the calling JS thread.
  pub unsafe fn new(env: RawEnv, value: RawValue) -> napi::Result<Self> {
    let mut raw = ptr::null_mut();
    // SAFETY: env and value are live handles of this thread (the caller's
    // contract); raw is a local the call writes.
    let s = unsafe { sys::napi_create_reference(env, value, 1, &mut raw) };
    if !ok(s) {
      return Err(napi::Error::from_reason("napi_create_reference failed"));
    }
    Ok(JsRef { env, raw })
  }

  /// # Safety
  /// Call on the JS thread of `env`, inside a handle scope.
  pub unsafe fn get(&self) -> RawValue {
    let mut v = ptr::null_mut();
    // SAFETY: the reference belongs to this env and lives until drop; the
    // caller provides the JS thread and the handle scope the value lands in.
    unsafe { sys::napi_get_reference_value(self.env, self.raw, &mut v) };
    v
  }
}

impl Drop for JsRef {
  fn drop(&mut self) {
    // SAFETY: dropped on the JS thread that created it (the binding is !Send).
    // During env teardown the call may fail; the env frees it then anyway.
    unsafe { sys::napi_delete_reference(self.env, self.raw) };
  }
}

/// An async context for `napi_make_callback`, one per environment, so that
/// callbacks from the event loop run microtasks and async hooks as Node's own do.
pub struct CallbackContext {
  env: RawEnv,
  ctx: sys::napi_async_context,
  _resource: JsRef,
}

impl CallbackContext {
  /// # Safety
  /// On the JS thread, inside a napi call.
  pub unsafe fn new(env: RawEnv) -> napi::Result<Self> {
    let mut resource = ptr::null_mut();
    let mut name = ptr::null_mut();
    let mut ctx = ptr::null_mut();
    // SAFETY: on the env's thread inside a napi call (the caller's
    // contract): value creation and napi_async_init on a live env, writing
    // into locals; the name is 6 bytes of a NUL-terminated literal.
    unsafe {
      sys::napi_create_object(env, &mut resource);
      sys::napi_create_string_utf8(env, c"fdpass".as_ptr(), 6, &mut name);
      if !ok(sys::napi_async_init(env, resource, name, &mut ctx)) {
        return Err(napi::Error::from_reason("napi_async_init failed"));
      }
      Ok(CallbackContext {
        env,
        ctx,
        _resource: JsRef::new(env, resource)?,
      })
    }
  }

  /// Call `func(args...)` from an event-loop callback, with `this` = `recv`
  /// (None: the global object, as Node's own callbacks). An exception thrown
  /// by the callback becomes an uncaught exception, as for any Node callback.
  ///
  /// # Safety
  /// On the JS thread of this env; `recv`, `func` and `args` are live handles.
  pub unsafe fn call(&self, recv: Option<RawValue>, func: RawValue, args: &[RawValue]) {
    let env = self.env;
    // SAFETY: the caller's contract: on env's thread, with live handles of
    // env; self.ctx was made by napi_async_init on env and is not destroyed
    // before drop; `args` outlives the call.
    unsafe {
      // napi_make_callback wants an object receiver; the global is what Node uses.
      let recv = recv.unwrap_or_else(|| {
        let mut global = ptr::null_mut();
        sys::napi_get_global(env, &mut global);
        global
      });
      let mut result = ptr::null_mut();
      let status = sys::napi_make_callback(
        env,
        self.ctx,
        recv,
        func,
        args.len(),
        args.as_ptr(),
        &mut result,
      );
      if status == sys::Status::napi_pending_exception {
        let mut err = ptr::null_mut();
        sys::napi_get_and_clear_last_exception(env, &mut err);
        sys::napi_fatal_exception(env, err);
      }
    }
  }
}

impl Drop for CallbackContext {
  fn drop(&mut self) {
    // SAFETY: a CallbackContext is !Send (raw pointers), so this runs on the
    // thread of the env that made the context, destroyed only here.
    unsafe { sys::napi_async_destroy(self.env, self.ctx) };
  }
}

/// Call `func` with `this` = `recv` from inside a call from JavaScript (a
/// synchronous method): no async context and no microtask checkpoint, which
/// belong to calls from the event loop. Returns false when it threw; the
/// exception stays pending for the method to return.
///
/// # Safety
/// On the JS thread of `env`, inside a handle scope; live handles.
pub unsafe fn call_direct(env: RawEnv, recv: RawValue, func: RawValue, args: &[RawValue]) -> bool {
  // SAFETY: the caller's contract (env's thread, a handle scope, live
  // handles); `args` outlives the call and result is a local.
  unsafe {
    let mut result = ptr::null_mut();
    sys::napi_call_function(env, recv, func, args.len(), args.as_ptr(), &mut result)
      == sys::Status::napi_ok
  }
}

/// Run `f` inside a fresh handle scope (event-loop callbacks have none).
///
/// # Safety
/// On the JS thread of `env`.
pub unsafe fn with_scope<R>(env: RawEnv, f: impl FnOnce() -> R) -> R {
  let mut scope = ptr::null_mut();
  // SAFETY: on the env's own thread (the caller's contract); scope is a local.
  unsafe { sys::napi_open_handle_scope(env, &mut scope) };
  let r = f();
  // SAFETY: closes the scope opened above, on the same thread, after
  // everything made inside it is no longer used (f has returned).
  unsafe { sys::napi_close_handle_scope(env, scope) };
  r
}

/// # Safety
/// On the JS thread of `env`, inside a handle scope.
pub unsafe fn int(env: RawEnv, v: i64) -> RawValue {
  let mut out = ptr::null_mut();
  // SAFETY: value creation on a live env.
  unsafe { sys::napi_create_int64(env, v, &mut out) };
  out
}

/// # Safety
/// On the JS thread of `env`, inside a handle scope.
pub unsafe fn string(env: RawEnv, s: &str) -> RawValue {
  let mut out = ptr::null_mut();
  // SAFETY: the caller's thread and scope; s is valid UTF-8 of the given
  // length (napi copies it); out is a local.
  unsafe { sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut out) };
  out
}

/// # Safety
/// On the JS thread of `env`, inside a handle scope.
pub unsafe fn undefined(env: RawEnv) -> RawValue {
  let mut out = ptr::null_mut();
  // SAFETY: value creation on a live env.
  unsafe { sys::napi_get_undefined(env, &mut out) };
  out
}

/// # Safety
/// On the JS thread of `env`, inside a handle scope.
pub unsafe fn null(env: RawEnv) -> RawValue {
  let mut out = ptr::null_mut();
  // SAFETY: value creation on a live env.
  unsafe { sys::napi_get_null(env, &mut out) };
  out
}

/// A Buffer holding a copy of `data`.
///
/// # Safety
/// On the JS thread of `env`, inside a handle scope.
/// `None` when the environment can no longer create values (a worker
/// being terminated).
pub unsafe fn buffer_copy(env: RawEnv, data: &[u8]) -> Option<RawValue> {
  let mut out = ptr::null_mut();
  let mut dst: *mut c_void = ptr::null_mut();
  // SAFETY: the caller's thread and scope; napi copies data.len() bytes
  // from a live slice into the new buffer; dst and out are locals.
  let status = unsafe {
    sys::napi_create_buffer_copy(env, data.len(), data.as_ptr().cast(), &mut dst, &mut out)
  };
  (ok(status) && !out.is_null()).then_some(out)
}

/// The memory behind a typed array: its element type, its first byte and
/// its length in bytes.
///
/// # Safety
/// On the JS thread of `env`, with a live `value`. The memory is valid
/// while the array is alive and its buffer is not detached.
pub unsafe fn typed_array_memory(
  env: RawEnv,
  value: RawValue,
) -> Option<(sys::napi_typedarray_type, *mut c_void, usize)> {
  let mut ty = 0;
  let mut length = 0;
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  let mut offset = 0;
  let mut is = false;
  // SAFETY: queries on a live value of env (the caller's contract), writing
  // into locals.
  unsafe {
    if !ok(sys::napi_is_typedarray(env, value, &mut is)) || !is {
      return None;
    }
    if !ok(sys::napi_get_typedarray_info(
      env,
      value,
      &mut ty,
      &mut length,
      &mut data,
      &mut buffer,
      &mut offset,
    )) {
      return None;
    }
  }
  let element = match ty {
    sys::TypedarrayType::uint8_array => 1,
    sys::TypedarrayType::int32_array => 4,
    _ => return None,
  };
  (!data.is_null()).then_some((ty, data, length * element))
}

/// An Int32Array holding a copy of `data`.
///
/// # Safety
/// On the JS thread of `env`, inside a handle scope.
/// `None` when the environment can no longer create values (a worker
/// being terminated): V8 then leaves the buffer pointer null.
pub unsafe fn int32_array(env: RawEnv, data: &[i32]) -> Option<RawValue> {
  let bytes = std::mem::size_of_val(data);
  let mut ab = ptr::null_mut();
  let mut dst: *mut c_void = ptr::null_mut();
  let mut out = ptr::null_mut();
  // SAFETY: the copy happens only into an ArrayBuffer that was created,
  // whose data pointer is non-null and has room for `bytes` bytes.
  unsafe {
    if !ok(sys::napi_create_arraybuffer(env, bytes, &mut dst, &mut ab))
      || (bytes > 0 && dst.is_null())
    {
      return None;
    }
    if bytes > 0 {
      ptr::copy_nonoverlapping(data.as_ptr().cast::<u8>(), dst.cast::<u8>(), bytes);
    }
    if !ok(sys::napi_create_typedarray(
      env,
      sys::TypedarrayType::int32_array,
      data.len(),
      ab,
      0,
      &mut out,
    )) {
      return None;
    }
  }
  Some(out)
}

/// # Safety
/// On the JS thread of `env`, inside a handle scope; `obj` and `value` are
/// live values of `env`.
pub unsafe fn set(env: RawEnv, obj: RawValue, key: &std::ffi::CStr, value: RawValue) {
  // SAFETY: the caller's contract, and key is NUL-terminated.
  unsafe { sys::napi_set_named_property(env, obj, key.as_ptr(), value) };
}

/// An address as the TS layer expects it: a path string, `{ abstract }`, or null.
///
/// # Safety
/// On the JS thread of `env`, inside a handle scope.
pub unsafe fn address(env: RawEnv, a: &SocketAddress) -> RawValue {
  // SAFETY: the caller's thread and scope; every value set on `obj` was
  // made just before on the same env; obj is a local.
  unsafe {
    match a {
      SocketAddress::Path(p) => string(env, &p.to_string_lossy()),
      SocketAddress::Abstract(name) => {
        let mut obj = ptr::null_mut();
        sys::napi_create_object(env, &mut obj);
        set(
          env,
          obj,
          c"abstract",
          string(env, &String::from_utf8_lossy(name)),
        );
        obj
      }
      SocketAddress::Unnamed => null(env),
    }
  }
}

/// A JS Error shaped like Node's system errors: `code`, `errno` (negative,
/// as libuv reports it), `syscall`, `address`, plus the limits our own codes carry.
///
/// # Safety
/// On the JS thread of `env`, inside a handle scope.
pub unsafe fn error_value(env: RawEnv, err: &CoreError) -> RawValue {
  let code = err.code();
  let msg = err.to_string();
  // SAFETY: the caller's thread and scope; every property set on `out` was
  // made just before on the same env; out is a local.
  unsafe {
    let mut out = ptr::null_mut();
    sys::napi_create_error(env, string(env, &code), string(env, &msg), &mut out);
    match err {
      CoreError::Sys {
        errno,
        syscall,
        address,
      } => {
        set(env, out, c"errno", int(env, -(*errno as i64)));
        set(env, out, c"syscall", string(env, syscall));
        if let Some(a) = address {
          set(env, out, c"address", string(env, a));
        }
      }
      CoreError::TooManyFds { count, max } => {
        set(env, out, c"count", int(env, *count as i64));
        set(env, out, c"limit", int(env, *max as i64));
      }
      CoreError::AddressTooLong { len, max } => {
        set(env, out, c"length", int(env, *len as i64));
        set(env, out, c"limit", int(env, *max as i64));
      }
      CoreError::MessageTooLarge { size, max } => {
        set(env, out, c"size", int(env, *size as i64));
        set(env, out, c"limit", int(env, *max as i64));
      }
      CoreError::InvalidFd { fd, .. } => set(env, out, c"fd", int(env, *fd as i64)),
      CoreError::NotASocket { path } => set(env, out, c"address", string(env, path)),
      _ => {}
    }
    out
  }
}

/// Throw `err` as a JS exception and return the error that tells napi-rs it is pending.
///
/// # Safety
/// Inside a call from JavaScript on the JS thread of `env`, which returns
/// the pending exception to its caller.
pub unsafe fn throw(env: RawEnv, err: &CoreError) -> napi::Error {
  // SAFETY: the caller's contract: a call in progress on env's thread,
  // whose handle scope holds the error value.
  unsafe { sys::napi_throw(env, error_value(env, err)) };
  napi::Error::from_status(napi::Status::PendingException)
}

/// `throw` for a `#[napi]` function, with the `Env` napi-rs gave it.
pub fn throw_in(env: &napi::Env, err: &CoreError) -> napi::Error {
  // SAFETY: napi-rs hands an Env to a #[napi] function for the call in
  // progress, on its thread; its safe methods rely on the same.
  unsafe { throw(env.raw(), err) }
}

/// `Result<T, CoreError>` → `napi::Result<T>`, throwing a Node-shaped error.
pub trait OrThrow<T> {
  fn or_throw(self, env: &napi::Env) -> napi::Result<T>;
}

impl<T> OrThrow<T> for Result<T, CoreError> {
  fn or_throw(self, env: &napi::Env) -> napi::Result<T> {
    self.map_err(|e| throw_in(env, &e))
  }
}
