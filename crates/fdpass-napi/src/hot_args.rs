//! Reading the arguments of the per-message callbacks (hot.rs) straight
//! from Node-API, each checked for its type and length: a value of the
//! wrong type is None (the callback then throws a TypeError), never
//! trusted.

use crate::js::{self, CallScope, RawEnv, RawValue};
use fdpass_core::Error as CoreError;
use napi::sys;
use std::ffi::CStr;
use std::ptr;

/// Do two ranges of memory share a byte?
pub(crate) fn overlap<A, B>(a: std::ops::Range<*const A>, b: std::ops::Range<*const B>) -> bool {
  (a.start as usize) < (b.end as usize) && (b.start as usize) < (a.end as usize)
}

// Argument access. Each returns None for a value of the wrong type.
// Safety, for all: inside a Node-API callback on the env's thread, with
// values of that callback (its arguments).

pub(crate) unsafe fn args<const N: usize>(
  env: RawEnv,
  info: sys::napi_callback_info,
) -> [RawValue; N] {
  let mut argv = [ptr::null_mut(); N];
  let mut argc = N;
  // SAFETY: argv has room for argc values; missing ones come back as undefined.
  unsafe {
    sys::napi_get_cb_info(
      env,
      info,
      &mut argc,
      argv.as_mut_ptr(),
      ptr::null_mut(),
      ptr::null_mut(),
    );
  }
  argv
}

pub(crate) unsafe fn is_null(env: RawEnv, v: RawValue) -> bool {
  let mut ty = 0;
  // SAFETY: a type query on a live value of this env, writing one int.
  unsafe {
    sys::napi_typeof(env, v, &mut ty) == sys::Status::napi_ok && ty == sys::ValueType::napi_null
  }
}

/// Where the elements of typed array `v` are, if it is one of type `want`:
/// their first element and how many there are (null and 0 when empty).
pub(crate) unsafe fn typed_memory<T>(
  env: RawEnv,
  v: RawValue,
  want: sys::napi_typedarray_type,
) -> Option<(*mut T, usize)> {
  let (mut ty, mut len, mut data, mut buffer, mut offset) =
    (0, 0, ptr::null_mut(), ptr::null_mut(), 0);
  // SAFETY: a query on a live value of this env, writing into locals.
  let ok = unsafe {
    sys::napi_get_typedarray_info(
      env,
      v,
      &mut ty,
      &mut len,
      &mut data,
      &mut buffer,
      &mut offset,
    ) == sys::Status::napi_ok
  };
  if !ok || ty != want {
    return None;
  }
  if len == 0 || data.is_null() {
    return Some((ptr::null_mut(), 0));
  }
  Some((data.cast::<T>(), len))
}

/// The address range of typed array `v`'s elements, without a view of them.
pub(crate) unsafe fn typed_range(
  env: RawEnv,
  v: RawValue,
  want: sys::napi_typedarray_type,
) -> Option<std::ops::Range<*const u8>> {
  // SAFETY: the callback context is this function's contract.
  let (data, len) = unsafe { typed_memory::<u8>(env, v, want)? };
  let element = match want {
    sys::TypedarrayType::float64_array => 8,
    sys::TypedarrayType::int32_array => 4,
    _ => 1,
  };
  let start = data.cast_const();
  Some(start..start.wrapping_add(len * element))
}

/// The elements of typed array `v`, read only, for as long as `scope`.
pub(crate) unsafe fn typed<T>(
  _scope: &CallScope,
  env: RawEnv,
  v: RawValue,
  want: sys::napi_typedarray_type,
) -> Option<&[T]> {
  // SAFETY: the callback context is this function's contract.
  let (data, len) = unsafe { typed_memory::<T>(env, v, want)? };
  if len == 0 {
    return Some(&[]);
  }
  // SAFETY: V8 reports `len` elements of T at `data` (aligned: a typed
  // array's offset is a multiple of its element size). The array is an
  // argument of the current call, so its memory lives at least as long as
  // `scope`; no JavaScript runs while the addon holds the view, so nothing
  // writes or detaches it, and the addon's own writes never go through a
  // shared view (a writable one is checked for overlap first).
  Some(unsafe { std::slice::from_raw_parts(data.cast_const(), len) })
}

pub(crate) unsafe fn bytes(scope: &CallScope, env: RawEnv, v: RawValue) -> Option<&[u8]> {
  // SAFETY: the callback context is this function's contract.
  unsafe { typed::<u8>(scope, env, v, sys::TypedarrayType::uint8_array) }
}

pub(crate) unsafe fn int32s(scope: &CallScope, env: RawEnv, v: RawValue) -> Option<&[i32]> {
  // SAFETY: the callback context is this function's contract.
  unsafe { typed::<i32>(scope, env, v, sys::TypedarrayType::int32_array) }
}

/// The elements of Float64Array `v`, writable, for as long as `scope`. The
/// caller has checked that no other view of this call shares its memory.
#[allow(clippy::mut_from_ref)] // a view of JavaScript memory; the scope only bounds its life
pub(crate) unsafe fn float64s_mut(
  _scope: &CallScope,
  env: RawEnv,
  v: RawValue,
) -> Option<&mut [f64]> {
  // SAFETY: the callback context is this function's contract.
  let (data, len) = unsafe { typed_memory::<f64>(env, v, sys::TypedarrayType::float64_array)? };
  if len == 0 {
    return Some(&mut []);
  }
  // SAFETY: V8 reports `len` aligned elements of f64 at `data`, an
  // argument's memory that lives as long as `scope`; the caller made sure
  // no other view overlaps them, and no JavaScript runs while this one is
  // held.
  Some(unsafe { std::slice::from_raw_parts_mut(data, len) })
}

pub(crate) unsafe fn int32(env: RawEnv, v: RawValue) -> Option<i32> {
  let mut out = 0;
  // SAFETY: a query on a live value of this env, writing one int.
  (unsafe { sys::napi_get_value_int32(env, v, &mut out) } == sys::Status::napi_ok).then_some(out)
}

pub(crate) unsafe fn int64(env: RawEnv, v: RawValue) -> Option<i64> {
  let mut out = 0;
  // SAFETY: a query on a live value of this env, writing one int.
  (unsafe { sys::napi_get_value_int64(env, v, &mut out) } == sys::Status::napi_ok).then_some(out)
}

pub(crate) unsafe fn boolean(env: RawEnv, b: bool) -> RawValue {
  let mut out = ptr::null_mut();
  // SAFETY: value creation on a live env, inside the callback's handle scope.
  unsafe { sys::napi_get_boolean(env, b, &mut out) };
  out
}

pub(crate) unsafe fn uint32(env: RawEnv, n: u32) -> RawValue {
  let mut out = ptr::null_mut();
  // SAFETY: value creation on a live env, inside the callback's handle scope.
  unsafe { sys::napi_create_uint32(env, n, &mut out) };
  out
}

pub(crate) unsafe fn throw(env: RawEnv, e: &CoreError) -> RawValue {
  // SAFETY: inside a callback from JavaScript, which returns the pending
  // exception to its caller.
  unsafe { js::throw(env, e) };
  ptr::null_mut()
}

pub(crate) unsafe fn type_error(env: RawEnv, message: &CStr) -> RawValue {
  // SAFETY: a NUL-terminated message on a live env.
  unsafe { sys::napi_throw_type_error(env, c"ERR_INVALID_ARG_TYPE".as_ptr(), message.as_ptr()) };
  ptr::null_mut()
}
