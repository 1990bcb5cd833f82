//! Reads and writes on a descriptor, on the runtime's thread pool.
//!
//! For runtimes whose `node:fs` refuses descriptors it did not open itself
//! (Deno): `ReceivedFd`'s fs streams route their I/O here instead. Like
//! Node's own fs, a read or write may block (pipes), so it never runs on the
//! JS thread. Errors resolve as Node-shaped error values (not rejections) so
//! that they keep `code`, `errno` and `syscall`.

use crate::js;
use fdpass_core::Error as CoreError;
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use std::os::fd::BorrowedFd;

/// What a task produced: bytes read, a count written, or a system error.
pub enum IoOutcome {
  Read(Vec<u8>),
  Written(usize),
  Failed(CoreError),
}

impl TypeName for IoOutcome {
  fn type_name() -> &'static str {
    "Buffer | number | Error"
  }
  fn value_type() -> ValueType {
    ValueType::Unknown
  }
}

impl ToNapiValue for IoOutcome {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
    // SAFETY: called by napi-rs on the JS thread, inside a handle scope.
    unsafe {
      match val {
        IoOutcome::Read(bytes) => Buffer::to_napi_value(env, Buffer::from(bytes)),
        IoOutcome::Written(n) => u32::to_napi_value(env, n as u32),
        IoOutcome::Failed(e) => Ok(js::error_value(env, &e)),
      }
    }
  }
}

/// The most one read returns (fs streams read 64 KiB at a time by default).
const MAX_READ: usize = 8 << 20;

fn at(p: Option<i64>) -> Option<u64> {
  // fs streams pass -1 or null for "at the current offset".
  p.filter(|&p| p >= 0).map(|p| p as u64)
}

pub struct ReadTask {
  fd: i32,
  length: usize,
  position: Option<u64>,
}

impl Task for ReadTask {
  type Output = IoOutcome;
  type JsValue = IoOutcome;

  fn compute(&mut self) -> Result<IoOutcome> {
    let mut buf = vec![0u8; self.length];
    // SAFETY: the caller (an fs stream that owns the fd) keeps it open until
    // this operation completes, as with Node's fs.read.
    let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
    Ok(
      match fdpass_core::fd::read_at(fd, &mut buf, self.position) {
        Ok(n) => {
          buf.truncate(n);
          IoOutcome::Read(buf)
        }
        Err(e) => IoOutcome::Failed(e),
      },
    )
  }

  fn resolve(&mut self, _env: Env, output: IoOutcome) -> Result<IoOutcome> {
    Ok(output)
  }
}

pub struct WriteTask {
  fd: i32,
  data: Vec<u8>,
  position: Option<u64>,
}

impl Task for WriteTask {
  type Output = IoOutcome;
  type JsValue = IoOutcome;

  fn compute(&mut self) -> Result<IoOutcome> {
    // SAFETY: the caller (an fs stream that owns the fd) keeps it open until
    // this operation completes, as with Node's fs.write.
    let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
    Ok(
      match fdpass_core::fd::write_all_at(fd, &self.data, self.position) {
        Ok(n) => IoOutcome::Written(n),
        Err(e) => IoOutcome::Failed(e),
      },
    )
  }

  fn resolve(&mut self, _env: Env, output: IoOutcome) -> Result<IoOutcome> {
    Ok(output)
  }
}

/// Read up to `length` bytes from `fd` at `position` (current offset when
/// null or -1) on the thread pool. Resolves with a Buffer, or with an Error
/// value (not a rejection) carrying `code`, `errno` and `syscall`.
#[napi(ts_return_type = "Promise<Buffer | Error>")]
pub fn read_fd(fd: i32, length: u32, position: Option<i64>) -> Result<AsyncTask<ReadTask>> {
  if fd < 0 {
    return Err(Error::new(
      Status::InvalidArg,
      format!("fd must be ≥ 0, not {fd}"),
    ));
  }
  Ok(AsyncTask::new(ReadTask {
    fd,
    // A stream asks for its highWaterMark; a larger request is served in part,
    // as read(2) may do anyway, rather than allocating whatever was asked.
    length: (length as usize).min(MAX_READ),
    position: at(position),
  }))
}

/// Write all of `data` to `fd` at `position` (current offset when null or
/// -1) on the thread pool. Resolves with the count written, or with an Error
/// value carrying `code`, `errno` and `syscall`.
#[napi(ts_return_type = "Promise<number | Error>")]
pub fn write_fd(fd: i32, data: &[u8], position: Option<i64>) -> Result<AsyncTask<WriteTask>> {
  if fd < 0 {
    return Err(Error::new(
      Status::InvalidArg,
      format!("fd must be ≥ 0, not {fd}"),
    ));
  }
  Ok(AsyncTask::new(WriteTask {
    fd,
    data: data.to_vec(),
    position: at(position),
  }))
}
