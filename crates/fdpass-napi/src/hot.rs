//! The calls made once per message or per descriptor, as plain Node-API
//! callbacks registered at load time.
//!
//! napi-rs's generated glue allocates a borrow-tracking scope at every call
//! of a function with arguments, and a method also locks a process-wide map
//! of borrowed instances: measured here, a call cost 94 ns through a
//! function and 255 ns through a method, against 22 ns for a plain callback
//! (`node` on this project's machine). For a send that is a tenth of its
//! CPU. These callbacks take what they need from their arguments directly;
//! a socket comes as the handle `NativeSocket.hotHandle()` made for it (an
//! External holding a weak reference, type-tagged so that nothing else
//! passes for one). The TS layer (ts/native.ts `hot`) is their only caller
//! and has validated every argument; they check types anyway, and throw a
//! TypeError rather than trust them.

use crate::hot_args::*;
use crate::js::{self, CallScope, RawEnv, RawValue};
use crate::socket::{SocketCell, SyncReceived};
use napi::sys;
use std::ffi::{c_void, CStr};
use std::ptr;
use std::rc::{Rc, Weak};

const SOCKET_TAG: sys::napi_type_tag = sys::napi_type_tag {
  lower: 0x6664_7061_7373_736f,
  upper: 0x636b_6574_6861_6e64,
};

/// An External for `cell` that the functions below accept as a socket.
///
/// # Safety
/// Inside a call from JavaScript on the env's thread.
pub unsafe fn socket_handle(env: RawEnv, cell: &Rc<SocketCell>) -> napi::Result<RawValue> {
  let data = Box::into_raw(Box::new(Rc::downgrade(cell)));
  let mut out = ptr::null_mut();
  // SAFETY: data is a live box; the finalizer frees it once.
  let ok = unsafe {
    sys::napi_create_external(
      env,
      data.cast(),
      Some(drop_handle),
      ptr::null_mut(),
      &mut out,
    ) == sys::Status::napi_ok
      && sys::napi_type_tag_object(env, out, &SOCKET_TAG) == sys::Status::napi_ok
  };
  if !ok {
    return Err(napi::Error::from_reason("could not create a socket handle"));
  }
  Ok(out)
}

unsafe extern "C" fn drop_handle(_env: RawEnv, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: data is the box made by socket_handle, finalized once.
  drop(unsafe { Box::from_raw(data.cast::<Weak<SocketCell>>()) });
}

/// The functions, under their JavaScript names.
pub fn exports() -> [(&'static CStr, sys::napi_callback); 7] {
  [
    (c"socketSend", Some(socket_send)),
    (c"socketSendSync", Some(socket_send_sync)),
    (c"socketReceiveSync", Some(socket_receive_sync)),
    (c"closeFd", Some(close_fd)),
    (c"closeFds", Some(close_fds)),
    (c"fdStatInto", Some(fd_stat_into)),
    (c"fdStatMany", Some(fd_stat_many)),
  ]
}

/// Define `exports()` on `target`.
///
/// # Safety
/// At module registration, on the env's thread.
pub unsafe fn define(env: RawEnv, target: RawValue) -> napi::Result<()> {
  for (name, cb) in exports() {
    let mut f = ptr::null_mut();
    // SAFETY: name is NUL-terminated; cb is a plain Node-API callback.
    let ok = unsafe {
      sys::napi_create_function(
        env,
        name.as_ptr(),
        name.count_bytes() as isize,
        cb,
        ptr::null_mut(),
        &mut f,
      ) == sys::Status::napi_ok
        && sys::napi_set_named_property(env, target, name.as_ptr(), f) == sys::Status::napi_ok
    };
    if !ok {
      return Err(napi::Error::from_reason(format!(
        "could not define {}",
        name.to_string_lossy()
      )));
    }
  }
  Ok(())
}

/// socketSend(handle, data: Uint8Array | null, byteLength, fds: Int32Array
/// | null, fdCount) → boolean (queued): the first `byteLength` bytes and
/// the first `fdCount` descriptors, so that the caller can pass shared
/// arrays (ts/fd-like.ts sendArgs) instead of a new view per send; null,
/// the lent send scratch.
unsafe extern "C" fn socket_send(env: RawEnv, info: sys::napi_callback_info) -> RawValue {
  // SAFETY: Node calls this callback on the env's JS thread, inside a
  // handle scope, with this call's `info`; `scope` ends with it.
  unsafe {
    let scope = CallScope::enter();
    sending(
      &scope,
      env,
      info,
      c"socketSend(handle, Uint8Array, byteLength, Int32Array, fdCount)",
      |s, data, fds| s.send(data, fds).map(|queued| boolean(env, queued)),
    )
  }
}

/// socketSendSync(handle, data, byteLength, fds, fdCount) → undefined.
unsafe extern "C" fn socket_send_sync(env: RawEnv, info: sys::napi_callback_info) -> RawValue {
  // SAFETY: Node calls this callback on the env's JS thread, inside a
  // handle scope, with this call's `info`; `scope` ends with it.
  unsafe {
    let scope = CallScope::enter();
    sending(
      &scope,
      env,
      info,
      c"socketSendSync(handle, Uint8Array, byteLength, Int32Array, fdCount)",
      |s, data, fds| s.send_sync(data, fds).map(|()| js::undefined(env)),
    )
  }
}

/// Run one kind of send with the callback's arguments; `usage` is the
/// TypeError's message when they are not what it takes.
///
/// # Safety
/// Inside the Node-API callback that `info` and `scope` belong to, on the
/// env's thread.
unsafe fn sending<'s>(
  scope: &'s CallScope,
  env: RawEnv,
  info: sys::napi_callback_info,
  usage: &CStr,
  send: impl FnOnce(&SocketCell, &'s [u8], &'s [i32]) -> fdpass_core::Result<RawValue>,
) -> RawValue {
  // SAFETY: the caller's callback context is this function's contract;
  // `send` runs no JavaScript, so the views stay valid while it runs.
  unsafe {
    let Some((socket, data, fds)) = send_args(scope, env, info) else {
      return type_error(env, usage);
    };
    match send(&socket, data, fds) {
      Ok(v) => v,
      Err(e) => throw(env, &e),
    }
  }
}

/// The socket, the bytes and the descriptors of a send. Null for the data
/// or the descriptors stands for the send scratch the TS layer lent
/// (ts/fd-like.ts sendArgs), which is then not looked up as a typed array.
///
/// # Safety
/// Inside the Node-API callback that `info` and `scope` belong to.
unsafe fn send_args(
  scope: &CallScope,
  env: RawEnv,
  info: sys::napi_callback_info,
) -> Option<(Rc<SocketCell>, &[u8], &[i32])> {
  // SAFETY: `info` is this callback's (the caller's contract), so its
  // arguments are live values of `env`; the views borrow `scope`.
  unsafe {
    let [h, d, dl, f, fl] = args(env, info);
    let socket = socket(env, h)?;
    let data_len = usize::try_from(int32(env, dl)?).ok()?;
    let fds_len = usize::try_from(int32(env, fl)?).ok()?;
    let (lent_data, lent_fds) = (is_null(env, d), is_null(env, f));
    let lent = if lent_data || lent_fds {
      socket.lent_send_args(
        scope,
        if lent_data { data_len } else { 0 },
        if lent_fds { fds_len } else { 0 },
      )?
    } else {
      (&[][..], &[][..])
    };
    let data = if lent_data {
      lent.0
    } else {
      bytes(scope, env, d)?.get(..data_len)?
    };
    let fds = if lent_fds {
      lent.1
    } else {
      int32s(scope, env, f)?.get(..fds_len)?
    };
    Some((socket, data, fds))
  }
}

/// socketReceiveSync(handle, timeoutMs: number, -1 for none) → number:
/// -1 when the time ran out, 0 when what was read went to the socket's
/// callback, else the length of the metadata of the one message written
/// into the lent delivery buffers (ts/native.ts), which the caller reads at
/// once.
unsafe extern "C" fn socket_receive_sync(env: RawEnv, info: sys::napi_callback_info) -> RawValue {
  // SAFETY: Node calls this callback on the env's JS thread, inside a
  // handle scope, with this call's `info`: receive_sync's contract.
  unsafe {
    let [h, t] = args(env, info);
    let (Some(socket), Some(timeout)) = (socket(env, h), int64(env, t)) else {
      return type_error(env, c"socketReceiveSync(handle, number)");
    };
    match socket.receive_sync(env, timeout) {
      Ok(SyncReceived::Nothing) => js::int(env, -1),
      Ok(SyncReceived::Delivered) => js::int(env, 0),
      Ok(SyncReceived::Lent(meta_len)) => js::int(env, meta_len as i64),
      Err(()) => ptr::null_mut(), // an exception is pending
    }
  }
}

/// closeFd(fd) → undefined. Closes natively (works where `node:fs`
/// refuses foreign fds).
unsafe extern "C" fn close_fd(env: RawEnv, info: sys::napi_callback_info) -> RawValue {
  // SAFETY: Node calls this callback on the env's JS thread, inside a
  // handle scope, with this call's `info`.
  let fd = unsafe {
    let [n] = args(env, info);
    match int32(env, n) {
      Some(fd) => fd,
      None => return type_error(env, c"closeFd(number)"),
    }
  };
  // SAFETY: closeFd is how JavaScript gives a descriptor up: the TS layer
  // calls it only with numbers it owns (a ReceivedFd, a listener's fd) and
  // forgets them; no OwnedFd of the addon holds them.
  let closed = unsafe { fdpass_core::fd::close_raw(fd) };
  // SAFETY: still inside the callback, on the env's thread.
  unsafe {
    match closed {
      Ok(()) => js::undefined(env),
      Err(e) => throw(env, &e),
    }
  }
}

/// closeFds(fds: Int32Array, count) → undefined: closes the first
/// `count`, every one even when some fail; then throws the first failure.
unsafe extern "C" fn close_fds(env: RawEnv, info: sys::napi_callback_info) -> RawValue {
  // SAFETY: Node calls this callback on the env's JS thread, inside a
  // handle scope, with this call's `info`; `scope` ends with it.
  let scope = unsafe { CallScope::enter() };
  // SAFETY: inside this callback, with its `info`: `f` and `c` are live
  // values of env, and the view borrows `scope`.
  let fds = unsafe {
    let [f, c] = args(env, info);
    int32s(&scope, env, f)
      .zip(int32(env, c))
      .and_then(|(fds, n)| fds.get(..usize::try_from(n).ok()?))
  };
  let Some(fds) = fds else {
    // SAFETY: still inside the callback, on the env's thread.
    return unsafe { type_error(env, c"closeFds(Int32Array, count within it)") };
  };
  let mut first = None;
  for &fd in fds {
    // SAFETY: closeFds is how JavaScript gives descriptors up: the TS
    // layer (closeBatch) passes only numbers it owns and forgets them.
    if let Err(e) = unsafe { fdpass_core::fd::close_raw(fd) } {
      first.get_or_insert(e);
    }
  }
  // SAFETY: still inside the callback, on the env's thread.
  unsafe {
    match first {
      None => js::undefined(env),
      Some(e) => throw(env, &e),
    }
  }
}

/// fdStatInto(fd, out: Float64Array of 5) → kind index: fills dev, ino,
/// mode, size and close-on-exec (0 or 1). Numbers in a caller's buffer
/// rather than an object: building the object in JavaScript is cheaper.
unsafe extern "C" fn fd_stat_into(env: RawEnv, info: sys::napi_callback_info) -> RawValue {
  // SAFETY: Node calls this callback on the env's JS thread, inside a
  // handle scope, with this call's `info`; `scope` ends with it, and `out`
  // is the only view this call makes.
  unsafe {
    let scope = CallScope::enter();
    let [n, o] = args(env, info);
    let (Some(fd), Some(out)) = (
      int32(env, n),
      float64s_mut(&scope, env, o).filter(|o| o.len() >= 5),
    ) else {
      return type_error(env, c"fdStatInto(number, Float64Array of 5)");
    };
    match fdpass_core::fd::stat_raw(fd) {
      Ok((st, cloexec)) => {
        fill_file_stat(out, &st);
        out[4] = if cloexec { 1.0 } else { 0.0 };
        uint32(env, fdpass_core::fd::FdKind::from_stat(&st) as u32)
      }
      Err(e) => throw(env, &e),
    }
  }
}

/// fdStatMany(fds: Int32Array, count, out: Float64Array) → undefined:
/// record `i` is `out[5 * i ..]`, the kind's index, dev, ino, mode and
/// size, one fstat each (no `fcntl` for close-on-exec, a flag of the
/// descriptor that would cost a second syscall). Throws at the first
/// descriptor that fails (the error names it).
unsafe extern "C" fn fd_stat_many(env: RawEnv, info: sys::napi_callback_info) -> RawValue {
  // SAFETY: Node calls this callback on the env's JS thread, inside a
  // handle scope, with this call's `info`; `scope` ends with it.
  unsafe {
    let scope = CallScope::enter();
    let [f, c, o] = args(env, info);
    let Some(fds) = int32s(&scope, env, f)
      .zip(int32(env, c))
      .and_then(|(fds, n)| fds.get(..usize::try_from(n).ok()?))
    else {
      return type_error(
        env,
        c"fdStatMany(Int32Array, count within it, Float64Array)",
      );
    };
    // Two views of one ArrayBuffer would make `fds` change under the
    // writes (and a shared view of memory that a `&mut` view writes is
    // undefined behaviour): refuse before the writable view exists.
    let Some(out_range) = typed_range(env, o, sys::TypedarrayType::float64_array) else {
      return type_error(
        env,
        c"fdStatMany(Int32Array, count within it, Float64Array)",
      );
    };
    if overlap(fds.as_ptr_range(), out_range) {
      return type_error(env, c"fdStatMany: fds and out must not share memory");
    }
    let Some(out) = float64s_mut(&scope, env, o) else {
      return type_error(
        env,
        c"fdStatMany(Int32Array, count within it, Float64Array)",
      );
    };
    if out.len() < fds.len() * 5 {
      return type_error(env, c"fdStatMany: out must hold 5 numbers per descriptor");
    }
    for (&fd, record) in fds.iter().zip(out.chunks_exact_mut(5)) {
      match fdpass_core::fd::fstat_raw(fd) {
        Ok(st) => {
          record[0] = fdpass_core::fd::FdKind::from_stat(&st) as u32 as f64;
          fill_file_stat(&mut record[1..], &st);
        }
        Err(e) => return throw(env, &e),
      }
    }
    js::undefined(env)
  }
}

/// dev, ino, mode, size.
fn fill_file_stat(out: &mut [f64], st: &nix::sys::stat::FileStat) {
  out[0] = st.st_dev as f64;
  out[1] = st.st_ino as f64;
  out[2] = st.st_mode as f64;
  out[3] = st.st_size as f64;
}

unsafe fn socket(env: RawEnv, v: RawValue) -> Option<Rc<SocketCell>> {
  let mut tagged = false;
  let mut data = ptr::null_mut();
  // SAFETY: queries on a live value; the data of an External with our tag
  // is a Weak<SocketCell> box that lives as long as the External.
  unsafe {
    // Only an External can be one (and the tag check would throw on null).
    let mut ty = 0;
    if sys::napi_typeof(env, v, &mut ty) != sys::Status::napi_ok
      || ty != sys::ValueType::napi_external
    {
      return None;
    }
    if sys::napi_check_object_type_tag(env, v, &SOCKET_TAG, &mut tagged) != sys::Status::napi_ok
      || !tagged
    {
      return None;
    }
    if sys::napi_get_value_external(env, v, &mut data) != sys::Status::napi_ok || data.is_null() {
      return None;
    }
    (*data.cast::<Weak<SocketCell>>()).upgrade()
  }
}
