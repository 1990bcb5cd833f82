//! `NativeSocket`: one connected (or datagram) Unix socket, its send queue,
//! its framing decoder, and the bridge from readiness to JavaScript.
//!
//! Reads happen on the JS thread when the reactor says the socket is
//! readable: every queued message is read (up to a budget, for fairness)
//! and handed to JavaScript in one call, as one Buffer of data and one
//! Int32Array of per-message metadata and descriptor numbers.

use crate::env_state::{self, EnvState, Resource};
use crate::js::{self, JsRef, OrThrow, RawEnv, RawValue};
use crate::reactor::{Ready, Watch};
use fdpass_core::frame::{FrameDecoder, FrameHeader};
use fdpass_core::recv::{recv_into_vec, ControlBuffer};
use fdpass_core::send::{check_fd_count, send_message};
use fdpass_core::{Error as CoreError, SocketAddress, SocketType};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use nix::sys::socket::UnixAddr;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::thread::LocalKey;

/// Event codes passed to the JS callback; mirrored in ts/native.ts.
pub const EV_MESSAGES: i64 = 1;
pub const EV_SENT: i64 = 2;
pub const EV_SEND_FAILED: i64 = 3;
pub const EV_END: i64 = 4;
pub const EV_ERROR: i64 = 5;

/// Per-message flags in the metadata array.
const FLAG_DATA_TRUNCATED: i32 = 1;
const FLAG_FDS_TRUNCATED: i32 = 2;

thread_local! {
  static CONTROL: RefCell<ControlBuffer> = RefCell::new(ControlBuffer::new());
  static RECV_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
  /// A batch's parts and a read's outcomes while they are used; kept per
  /// thread between reads rather than allocated for each (malloc and free
  /// were 4% of a synchronous round trip), and not per socket, so that no
  /// socket keeps a buffer between reads. A read nested in a delivery
  /// (receiveSync in a listener) takes empty ones and allocates.
  static BATCH_DATA: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
  static BATCH_META: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
  static BATCH_FDS: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
  static OUTCOMES: RefCell<Vec<Outcome>> = const { RefCell::new(Vec::new()) };
}

/// The thread's spare vector of `pool`, empty (a new one if it is in use).
fn take_spare<T: 'static>(pool: &'static LocalKey<RefCell<Vec<T>>>) -> Vec<T> {
  pool.with(|b| std::mem::take(&mut *b.borrow_mut()))
}

/// Give `v` back to `pool` for the next read, emptied (dropping what is
/// left, which closes descriptors), unless it grew past `max` items.
fn give_spare<T: 'static>(pool: &'static LocalKey<RefCell<Vec<T>>>, mut v: Vec<T>, max: usize) {
  v.clear();
  if v.capacity() > max || v.capacity() == 0 {
    return;
  }
  pool.with(|b| {
    let mut b = b.borrow_mut();
    if b.capacity() == 0 {
      *b = v;
    }
  });
}

/// A read's outcomes vector is kept for the next one up to this many.
const MAX_OUTCOMES: usize = 16;

/// Bytes asked of each stream read.
const READ_CHUNK: usize = 64 * 1024;
/// A readiness event reads at most this much before yielding to other sockets.
const MAX_BATCH_MESSAGES: usize = 1024;
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Descriptors are open from the moment they arrive: a batch holds at most
/// this many, so a burst never runs the process into RLIMIT_NOFILE.
const MAX_BATCH_FDS: usize = 512;

/// A send that the kernel could not take at once.
struct PendingSend {
  bytes: Vec<u8>,
  written: usize,
  /// Our own duplicates, so the caller may close theirs; closed once sent.
  fds: Vec<OwnedFd>,
  to: Option<UnixAddr>,
}

impl PendingSend {
  /// Ok(true) when fully sent, Ok(false) when the kernel buffer is full.
  fn write(&mut self, socket: BorrowedFd<'_>, ty: SocketType) -> fdpass_core::Result<bool> {
    while self.written < self.bytes.len() {
      let raw: Vec<RawFd> = self.fds.iter().map(|f| f.as_raw_fd()).collect();
      match send_message(
        socket,
        ty,
        &[IoSlice::new(&self.bytes[self.written..])],
        &raw,
        self.to.as_ref(),
      ) {
        Ok(n) => {
          self.written += n;
          // The kernel holds its own references now; never send them twice.
          self.fds.clear();
        }
        Err(e) if e.is_would_block() => return Ok(false),
        Err(e) => return Err(e),
      }
    }
    Ok(true)
  }
}

/// How much one read takes.
#[derive(Clone, Copy, PartialEq)]
enum Budget {
  /// Everything queued, up to the batch limits (a readiness event).
  Batch,
  /// A first message, and the whole frames already buffered with it, but
  /// no further syscall (`receiveSync`: the next call reads the rest, and
  /// an exchange of one message at a time needs no read that says EAGAIN).
  FirstMessage,
  /// As FirstMessage, waiting in the first recvmsg for it (a message
  /// socket whose file was made blocking: read_blocking).
  WaitForFirst,
}

struct Batch {
  data: Vec<u8>,
  meta: Vec<i32>,
  fds: Vec<OwnedFd>,
  addresses: Option<Vec<SocketAddress>>,
}

impl Batch {
  fn new(want_address: bool) -> Batch {
    Batch {
      data: take_spare(&BATCH_DATA),
      meta: take_spare(&BATCH_META),
      fds: take_spare(&BATCH_FDS),
      addresses: want_address.then(Vec::new),
    }
  }

  /// Give the parts back to be reused; descriptors still here are closed.
  fn recycle(self) {
    give_spare(&BATCH_DATA, self.data, READ_CHUNK);
    give_spare(&BATCH_META, self.meta, 4 * 1024);
    give_spare(&BATCH_FDS, self.fds, MAX_BATCH_FDS);
  }
}

enum Outcome {
  Sent(u32),
  SendFailed(CoreError, u32),
  Messages(Batch),
  End,
  Error(CoreError),
}

pub struct SocketCore {
  state: Rc<EnvState>,
  id: u64,
  /// Before `fd`: fields drop in order, and the watch must end before the
  /// descriptor closes.
  watch: Option<Watch>,
  fd: Option<OwnedFd>,
  ty: SocketType,
  /// Boxed: only framed streams have one, and an idle seqpacket socket
  /// then costs ~90 bytes less.
  decoder: Option<Box<FrameDecoder>>,
  reading: bool,
  refed: bool,
  ended: bool,
  /// The JavaScript socket (FdSocket) that the env's socket dispatcher is
  /// called on with this socket's events; set by start().
  receiver: Option<JsRef>,
  queue: VecDeque<PendingSend>,
  max_message: usize,
  scratch_fds: Vec<OwnedFd>,
  /// The last receiveSync had to wait (see read_blocking).
  sync_waited: bool,
  /// receiveSync cleared the file's O_NONBLOCK to wait in recvmsg.
  blocking_file: bool,
}

pub struct SocketCell(RefCell<SocketCore>);

impl SocketCell {
  /// Wrap a connected or bound socket descriptor.
  pub fn open(
    state: &Rc<EnvState>,
    fd: OwnedFd,
    ty: SocketType,
    framed: bool,
    max_message: usize,
  ) -> fdpass_core::Result<Rc<Self>> {
    let framed = framed && ty == SocketType::Stream;
    let cell = Rc::new(SocketCell(RefCell::new(SocketCore {
      state: state.clone(),
      id: 0,
      fd: None,
      ty,
      decoder: framed.then(|| Box::new(FrameDecoder::new(max_message))),
      watch: None,
      reading: false,
      refed: true,
      ended: false,
      receiver: None,
      queue: VecDeque::new(),
      max_message,
      scratch_fds: Vec::new(),
      sync_waited: false,
      blocking_file: false,
    })));
    let ready: Weak<dyn Ready> = Rc::downgrade(&(cell.clone() as Rc<dyn Ready>));
    // SAFETY: the core keeps fd until close(), which closes the watch first,
    // and drops the watch before fd (field order) when it is never closed.
    let watch = unsafe { Watch::new(&state.reactor, fd.as_raw_fd(), ready)? };
    let resource: Weak<dyn Resource> = Rc::downgrade(&(cell.clone() as Rc<dyn Resource>));
    {
      let mut c = cell.0.borrow_mut();
      c.fd = Some(fd);
      c.watch = Some(watch);
      c.id = state.register(resource);
    }
    Ok(cell)
  }
}

impl SocketCore {
  fn update_watch(&mut self) {
    let readable = self.reading && !self.ended && self.receiver.is_some();
    let writable = !self.queue.is_empty();
    if let Some(w) = &mut self.watch {
      w.set(readable, writable, self.refed);
    }
  }

  fn close(&mut self) -> u32 {
    let dropped = self.queue.len() as u32;
    if let Some(mut w) = self.watch.take() {
      w.close();
    }
    self.fd = None; // closes the socket
    self.queue.clear(); // closes queued duplicates
    if let Some(d) = &mut self.decoder {
      let _ = d.finish(); // closes descriptors that arrived for unfinished frames
    }
    self.receiver = None;
    self.state.unregister(self.id);
    dropped
  }

  /// Is reading on, with a whole frame waiting in the decoder?
  fn has_buffered_frame(&self) -> bool {
    self.reading
      && !self.ended
      && self.fd.is_some()
      && self.decoder.as_ref().is_some_and(|d| d.has_frame())
  }

  fn framed(&self) -> bool {
    self.decoder.is_some()
  }

  fn send(&mut self, data: &[u8], fds: &[i32], to: Option<UnixAddr>) -> fdpass_core::Result<bool> {
    let Some(socket) = self.fd.as_ref() else {
      return Err(CoreError::sys(nix::errno::Errno::EBADF, "sendmsg"));
    };
    check_fd_count(fds.len())?;
    let header = self.frame_header(data, fds)?;
    let total = header.map_or(0, |h| h.len()) + data.len();
    if self.queue.is_empty() {
      let slices: &[IoSlice<'_>] = &match &header {
        Some(h) => [IoSlice::new(h), IoSlice::new(data)],
        None => [IoSlice::new(data), IoSlice::new(&[])],
      };
      match send_message(socket.as_fd(), self.ty, slices, fds, to.as_ref()) {
        Ok(n) if n >= total => return Ok(false),
        Ok(n) => {
          // A partial stream write: the descriptors went with the first
          // byte, so the rest goes without them.
          let rest = concat(header.as_ref(), data)[n..].to_vec();
          self.queue.push_back(PendingSend {
            bytes: rest,
            written: 0,
            fds: Vec::new(),
            to,
          });
        }
        Err(e) if e.is_would_block() => self.queue_whole(header.as_ref(), data, fds, to)?,
        Err(e) => return Err(e),
      }
    } else {
      self.queue_whole(header.as_ref(), data, fds, to)?;
    }
    self.update_watch();
    Ok(true)
  }

  /// The frame header a framed stream puts before `data`; None otherwise.
  fn frame_header(&self, data: &[u8], fds: &[i32]) -> fdpass_core::Result<Option<[u8; 8]>> {
    if !self.framed() {
      return Ok(None);
    }
    if data.len() > self.max_message {
      return Err(CoreError::MessageTooLarge {
        size: data.len(),
        max: self.max_message,
      });
    }
    Ok(Some(
      FrameHeader {
        fds: fds.len() as u16,
        len: data.len() as u32,
      }
      .encode(),
    ))
  }

  /// Send one message now, waiting while the kernel's buffer is full; the
  /// caller checked that no earlier send is queued.
  fn send_blocking(
    &mut self,
    data: &[u8],
    fds: &[i32],
    to: Option<UnixAddr>,
  ) -> fdpass_core::Result<()> {
    let Some(socket) = self.fd.as_ref().map(|f| f.as_raw_fd()) else {
      return Err(CoreError::sys(nix::errno::Errno::EBADF, "sendmsg"));
    };
    // SAFETY: self.fd stays open for the whole call (we hold &mut self).
    let socket = unsafe { BorrowedFd::borrow_raw(socket) };
    check_fd_count(fds.len())?;
    let header = self.frame_header(data, fds)?;
    let framed;
    let bytes: &[u8] = match &header {
      Some(h) => {
        framed = concat(Some(h), data);
        &framed
      }
      None => data,
    };
    let mut written = 0;
    let mut pass = fds;
    loop {
      match send_message(
        socket,
        self.ty,
        &[IoSlice::new(&bytes[written..])],
        pass,
        to.as_ref(),
      ) {
        Ok(n) => {
          written += n;
          // The descriptors went with the first byte.
          pass = &[];
          if written >= bytes.len() {
            return Ok(());
          }
        }
        Err(e) if e.is_would_block() => {
          fdpass_core::socket::wait_ready(socket, true, -1)?;
        }
        Err(e) => return Err(e),
      }
    }
  }

  /// Read a first message (and the whole frames buffered with it),
  /// waiting up to `timeout_ms` (negative: no limit). Empty when the time
  /// ran out.
  fn read_blocking(&mut self, timeout_ms: i64) -> fdpass_core::Result<Vec<Outcome>> {
    // A deadline past what Instant can hold is no deadline.
    let deadline = (timeout_ms >= 0)
      .then(|| {
        std::time::Instant::now().checked_add(std::time::Duration::from_millis(timeout_ms as u64))
      })
      .flatten();
    // A caller whose last message had to be waited for (an exchange of
    // requests and replies) most likely waits again: then it waits first
    // and skips a read that would only say EAGAIN.
    let mut read_now = !self.sync_waited || timeout_ms == 0;
    let mut has_read = false;
    let mut blocked = false;
    loop {
      if read_now {
        let mut out = take_spare(&OUTCOMES);
        if !self.ended {
          CONTROL.with(|c| self.read_with(&mut c.borrow_mut(), &mut out, Budget::FirstMessage));
        }
        has_read = true;
        if !out.is_empty() || self.ended {
          self.sync_waited = blocked;
          return Ok(out);
        }
        give_spare(&OUTCOMES, out, MAX_OUTCOMES);
      }
      read_now = true;
      let Some(socket) = self.fd.as_ref().map(|f| f.as_raw_fd()) else {
        return Err(CoreError::sys(nix::errno::Errno::EBADF, "recvmsg"));
      };
      // SAFETY: self.fd stays open for the whole call (we hold &mut self).
      let socket = unsafe { BorrowedFd::borrow_raw(socket) };
      // With no deadline, a message socket waits in recvmsg itself, as a C
      // program would: one syscall where poll and recvmsg are two (0.2 µs
      // of each wait). Its file stays blocking from then on; every other
      // read and send of ours passes MSG_DONTWAIT (fdpass-core recv/send).
      if deadline.is_none() && self.decoder.is_none() && !self.ended {
        if !self.blocking_file {
          fdpass_core::fd::set_nonblocking_to(socket, false)?;
          self.blocking_file = true;
        }
        let started = std::time::Instant::now();
        let mut out = take_spare(&OUTCOMES);
        CONTROL.with(|c| self.read_with(&mut c.borrow_mut(), &mut out, Budget::WaitForFirst));
        if !out.is_empty() || self.ended {
          self.sync_waited = blocked || started.elapsed() > std::time::Duration::from_micros(2);
          return Ok(out);
        }
        give_spare(&OUTCOMES, out, MAX_OUTCOMES);
        // EAGAIN: a process that shares the file made it non-blocking
        // again. Poll, as with a deadline.
        self.blocking_file = false;
      }
      let wait = match deadline {
        None => -1,
        Some(d) => {
          let left = d.saturating_duration_since(std::time::Instant::now());
          if left.is_zero() {
            if has_read {
              self.sync_waited = true;
              return Ok(Vec::new());
            }
            continue; // out of time, but read at least once
          }
          // Round up: poll(0) would spin until the last millisecond.
          left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
        }
      };
      let started = std::time::Instant::now();
      fdpass_core::socket::wait_ready(socket, false, wait)?;
      // A poll that returned at once did not wait: the message was there.
      blocked |= started.elapsed() > std::time::Duration::from_micros(2);
    }
  }

  /// Queue a message nothing of which was sent, with our own duplicates of its fds.
  fn queue_whole(
    &mut self,
    header: Option<&[u8; 8]>,
    data: &[u8],
    fds: &[i32],
    to: Option<UnixAddr>,
  ) -> fdpass_core::Result<()> {
    let fds = duplicate_all(fds)?;
    self.queue.push_back(PendingSend {
      bytes: concat(header, data),
      written: 0,
      fds,
      to,
    });
    Ok(())
  }

  fn flush(&mut self, out: &mut Vec<Outcome>) {
    let Some(socket) = self.fd.as_ref().map(|f| f.as_raw_fd()) else {
      return;
    };
    // SAFETY: self.fd stays open for the whole call.
    let socket = unsafe { BorrowedFd::borrow_raw(socket) };
    let mut done = 0u32;
    while !self.queue.is_empty() {
      let progressed = if self.decoder.is_some() && self.queue.len() > 1 {
        write_coalesced(&mut self.queue, socket).map(|n| {
          done += n;
          n > 0
        })
      } else {
        let p = self.queue.front_mut().expect("not empty");
        p.write(socket, self.ty).inspect(|&whole| {
          if whole {
            self.queue.pop_front();
            done += 1;
          }
        })
      };
      match progressed {
        Ok(true) => {}
        Ok(false) => break,
        Err(e) => {
          if done > 0 {
            out.push(Outcome::Sent(done));
            done = 0;
          }
          // A datagram fails alone; on a connection every later send fails too.
          let n = if self.ty == SocketType::Datagram {
            1
          } else {
            self.queue.len()
          };
          self.queue.drain(..n);
          out.push(Outcome::SendFailed(e, n as u32));
        }
      }
    }
    if done > 0 {
      out.push(Outcome::Sent(done));
    }
  }

  fn read(&mut self, out: &mut Vec<Outcome>) {
    // One control buffer per thread, not per socket: reads happen one at a
    // time on the JS thread, and a thousand idle sockets then cost no
    // kilobyte each.
    CONTROL.with(|c| self.read_with(&mut c.borrow_mut(), out, Budget::Batch));
  }

  fn read_with(&mut self, control: &mut ControlBuffer, out: &mut Vec<Outcome>, budget: Budget) {
    let Some(socket) = self.fd.as_ref().map(|f| f.as_raw_fd()) else {
      return;
    };
    // SAFETY: self.fd stays open for the whole call.
    let socket = unsafe { BorrowedFd::borrow_raw(socket) };
    let want_address = self.ty == SocketType::Datagram;
    let mut batch = Batch::new(want_address);
    let mut count = 0usize;
    let first_only = budget != Budget::Batch;
    let result: fdpass_core::Result<bool> = loop {
      if count >= MAX_BATCH_MESSAGES
        || batch.data.len() >= MAX_BATCH_BYTES
        || batch.fds.len() >= MAX_BATCH_FDS
      {
        break Ok(false);
      }
      if let Some(decoder) = &mut self.decoder {
        match decoder.next_frame(&mut batch.data, &mut batch.fds) {
          Ok(Some(f)) => {
            let flags = if f.fds_lost > 0 {
              FLAG_FDS_TRUNCATED
            } else {
              0
            };
            push_meta(
              &mut batch.meta,
              f.len,
              f.fds,
              f.fds_lost as i32,
              flags,
              &batch.fds,
            );
            count += 1;
            continue;
          }
          Ok(None) => {}
          Err(e) => break Err(e),
        }
        if first_only && count > 0 {
          break Ok(false);
        }
        let tmp = &mut self.scratch_fds;
        match recv_into_vec(
          socket,
          decoder.buffer(),
          READ_CHUNK,
          control,
          tmp,
          false,
          false,
        ) {
          Ok(r) if r.is_eof() => break decoder.finish().map(|_| true),
          Ok(r) => decoder.commit(r.bytes, tmp.drain(..), r.fds_truncated),
          Err(e) if e.is_would_block() => break Ok(false),
          Err(e) => break Err(e),
        }
      } else {
        if first_only && count > 0 {
          break Ok(false);
        }
        let room = if self.ty == SocketType::Stream {
          READ_CHUNK
        } else {
          self.max_message
        };
        // Receive into the thread's buffer (sized for the largest message)
        // and keep only the bytes that came, so no socket holds on to a
        // maxMessageSize allocation.
        let received = RECV_BUFFER.with(|b| {
          let mut buf = b.borrow_mut();
          buf.clear();
          let r = recv_into_vec(
            socket,
            &mut buf,
            room,
            control,
            &mut batch.fds,
            want_address,
            budget == Budget::WaitForFirst && count == 0,
          );
          if let Ok(r) = &r {
            batch.data.extend_from_slice(&buf[..r.bytes]);
          }
          if buf.capacity() > 4 * READ_CHUNK.max(room) {
            *buf = Vec::new();
          }
          r
        });
        match received {
          Ok(r) if r.is_eof() && self.ty != SocketType::Datagram => break Ok(true),
          Ok(r) => {
            let flags = if r.data_truncated {
              FLAG_DATA_TRUNCATED
            } else {
              0
            } | if r.fds_truncated {
              FLAG_FDS_TRUNCATED
            } else {
              0
            };
            // The kernel does not say how many were lost; -1 means unknown.
            let lost = if r.fds_truncated { -1 } else { 0 };
            push_meta(&mut batch.meta, r.bytes, r.fds, lost, flags, &batch.fds);
            if let (Some(a), Some(addr)) = (&mut batch.addresses, r.address) {
              a.push(addr);
            }
            count += 1;
          }
          Err(e) if e.is_would_block() => break Ok(false),
          Err(e) => break Err(e),
        }
      }
    };
    if count > 0 {
      out.push(Outcome::Messages(batch));
    } else {
      batch.recycle();
    }
    match result {
      Ok(false) => {}
      Ok(true) => {
        self.ended = true;
        out.push(Outcome::End);
      }
      Err(e) => {
        self.ended = true;
        out.push(Outcome::Error(e));
      }
    }
  }
}

/// Frames sent together: at most this many per sendmsg, and this many bytes.
const COALESCE_FRAMES: usize = 64;
const COALESCE_BYTES: usize = 256 * 1024;

/// Send several queued frames with one sendmsg, their descriptors
/// concatenated (the wire format allows it: each descriptor then arrives
/// with or before its frame's first byte). Returns how many frames were
/// completed; Ok(0) with frames left means the kernel buffer is full.
fn write_coalesced(
  queue: &mut VecDeque<PendingSend>,
  socket: BorrowedFd<'_>,
) -> fdpass_core::Result<u32> {
  let mut count = 0;
  let mut bytes = 0;
  let mut nfds = 0;
  for p in queue.iter() {
    let more = p.fds.len();
    if count > 0
      && (count == COALESCE_FRAMES
        || bytes >= COALESCE_BYTES
        || nfds + more > fdpass_core::MAX_FDS_PER_MESSAGE)
    {
      break;
    }
    count += 1;
    bytes += p.bytes.len() - p.written;
    nfds += more;
  }
  let slices: Vec<IoSlice<'_>> = queue
    .iter()
    .take(count)
    .map(|p| IoSlice::new(&p.bytes[p.written..]))
    .collect();
  let raw: Vec<RawFd> = queue
    .iter()
    .take(count)
    .flat_map(|p| p.fds.iter().map(|f| f.as_raw_fd()))
    .collect();
  let mut n = match send_message(socket, SocketType::Stream, &slices, &raw, None) {
    Ok(n) => n,
    Err(e) if e.is_would_block() => return Ok(0),
    Err(e) => return Err(e),
  };
  drop(slices);
  // Every included frame's descriptors went with this sendmsg's first byte.
  for p in queue.iter_mut().take(count) {
    p.fds.clear();
  }
  let mut completed = 0;
  while let Some(p) = queue.front_mut() {
    let left = p.bytes.len() - p.written;
    if n >= left && completed < count as u32 {
      n -= left;
      queue.pop_front();
      completed += 1;
    } else {
      p.written += n;
      break;
    }
  }
  Ok(completed)
}

/// Metadata per message: length, fd count, fds lost, flags, then the fd numbers.
fn push_meta(meta: &mut Vec<i32>, len: usize, nfds: usize, lost: i32, flags: i32, fds: &[OwnedFd]) {
  meta.extend_from_slice(&[len as i32, nfds as i32, lost, flags]);
  meta.extend(fds[fds.len() - nfds..].iter().map(|f| f.as_raw_fd()));
}

fn concat(header: Option<&[u8; 8]>, data: &[u8]) -> Vec<u8> {
  let mut v = Vec::with_capacity(8 + data.len());
  if let Some(h) = header {
    v.extend_from_slice(h);
  }
  v.extend_from_slice(data);
  v
}

fn duplicate_all(fds: &[i32]) -> fdpass_core::Result<Vec<OwnedFd>> {
  fds
    .iter()
    .map(|&raw| fdpass_core::fd::dup_raw_cloexec(raw))
    .collect()
}

impl Ready for SocketCell {
  fn on_ready(&self, readable: bool, mut writable: bool) {
    loop {
      let (outcomes, state) = {
        let mut c = self.0.borrow_mut();
        if c.fd.is_none() {
          return;
        }
        let mut out = take_spare(&OUTCOMES);
        if writable {
          c.flush(&mut out);
        }
        if readable && c.reading && !c.ended {
          c.read(&mut out);
        }
        (out, c.state.clone())
      };
      if !outcomes.is_empty() && !state.is_torn_down() {
        // SAFETY: readiness callbacks run on the env's JS thread.
        unsafe { js::with_scope(state.env, || self.deliver(&state, outcomes, Via::EventLoop)) };
      } else {
        give_spare(&OUTCOMES, outcomes, MAX_OUTCOMES);
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
    let state = {
      let mut c = self.0.borrow_mut();
      if c.fd.is_none() {
        return;
      }
      c.ended = true;
      c.state.clone()
    };
    if state.is_torn_down() {
      return;
    }
    let mut outcomes = take_spare(&OUTCOMES);
    outcomes.push(Outcome::Error(error));
    // SAFETY: the reactor reports failures from the event loop, on the
    // env's JS thread, outside any other handle scope of ours.
    unsafe { js::with_scope(state.env, || self.deliver(&state, outcomes, Via::EventLoop)) };
  }
}

impl SocketCell {
  /// Send one message. Ok(false) when the kernel took all of it, Ok(true)
  /// when (part of) it waits in the queue; EV_SENT reports its completion.
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

  pub fn send(&self, data: &[u8], fds: &[i32]) -> fdpass_core::Result<bool> {
    self.0.borrow_mut().send(data, fds, None)
  }

  /// Send one message, blocking the thread while the kernel's buffer is
  /// full, for `sendSync()`. The TS layer refuses it while sends are
  /// queued; here it is refused too (EBUSY), never reordered.
  pub fn send_sync(&self, data: &[u8], fds: &[i32]) -> fdpass_core::Result<()> {
    let mut c = self.0.borrow_mut();
    if !c.queue.is_empty() {
      return Err(CoreError::sys(nix::errno::Errno::EBUSY, "sendmsg"));
    }
    c.send_blocking(data, fds, None)
  }

  /// Read what is queued, blocking the thread up to `timeout_ms` (-1: no
  /// limit) for a first message, for `receiveSync()`. What was read goes
  /// to the callback before this returns, as EV_MESSAGES, EV_END or
  /// EV_ERROR would from the event loop. Ok(false) when the time ran out;
  /// Err(()) when a JavaScript exception is pending.
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
      let read = if c.fd.is_none() {
        Err(CoreError::sys(nix::errno::Errno::EBADF, "recvmsg"))
      } else {
        c.read_blocking(timeout_ms)
      };
      match read {
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
      let one = batch.meta.len() >= 4 && batch.meta.len() == 4 + batch.meta[1] as usize;
      let lent = match state.delivery.borrow().as_ref() {
        Some(b) if one && batch.addresses.is_none() => {
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
        give_spare(&OUTCOMES, outcomes, MAX_OUTCOMES);
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

/// How outcomes reach the JavaScript callback.
#[derive(Clone, Copy, PartialEq)]
enum Via {
  /// From the event loop: napi_make_callback, so that microtasks run
  /// after it as after any I/O callback.
  EventLoop,
  /// From inside a synchronous method (`receiveSync`): a plain call.
  Direct,
}

impl SocketCell {
  /// Returns false when a `Via::Direct` call threw (the exception is
  /// pending); what was left undelivered is dropped, closing its fds.
  ///
  /// # Safety
  /// On the env's JS thread, inside a handle scope.
  unsafe fn deliver(&self, state: &EnvState, mut outcomes: Vec<Outcome>, via: Via) -> bool {
    let env = state.env;
    // SAFETY: deliver's caller is on the JS thread, inside a scope.
    let Some(dispatch) = (unsafe { state.socket_dispatcher() }) else {
      return true;
    };
    let call = |recv: RawValue, args: &[RawValue]| -> bool {
      match via {
        Via::EventLoop => {
          // SAFETY: from the event loop on the env's thread, inside the
          // scope deliver's caller opened; recv, dispatch and args were
          // made in it.
          unsafe { state.call(Some(recv), dispatch, args) };
          true
        }
        // SAFETY: inside the call from JavaScript that receiveSync is, on
        // the env's thread and in its scope; the handles were made in it.
        Via::Direct => unsafe { js::call_direct(env, recv, dispatch, args) },
      }
    };
    for outcome in outcomes.drain(..) {
      // The callback may have closed the socket; then whatever is left is
      // dropped here, which closes its descriptors.
      // SAFETY: we are inside the scope opened by on_ready.
      let Some(target) = self
        .0
        .borrow()
        .receiver
        .as_ref()
        .map(|r| unsafe { r.get() })
      else {
        return true;
      };
      // SAFETY: value creation on the JS thread.
      unsafe {
        let called = match outcome {
          Outcome::Sent(n) => call(target, &[js::int(env, EV_SENT), js::int(env, n as i64)]),
          Outcome::SendFailed(e, n) => call(
            target,
            &[
              js::int(env, EV_SEND_FAILED),
              js::error_value(env, &e),
              js::int(env, n as i64),
            ],
          ),
          Outcome::End => call(target, &[js::int(env, EV_END)]),
          Outcome::Error(e) => call(target, &[js::int(env, EV_ERROR), js::error_value(env, &e)]),
          Outcome::Messages(mut batch) => {
            // If JavaScript can no longer take them (a worker being
            // terminated), stop: dropping the batch closes its descriptors.
            // Into the lent buffers when the batch fits (announced by its
            // length), else into new ones.
            let (data, meta) = {
              let lent = state.delivery.borrow();
              let lent = lent.as_ref();
              let data = match lent {
                Some(b) if b.put_data(&batch.data) => Some(js::int(env, batch.data.len() as i64)),
                _ => js::buffer_copy(env, &batch.data),
              };
              let meta = match lent {
                Some(b) if b.put_meta(&batch.meta) => Some(js::int(env, batch.meta.len() as i64)),
                _ => js::int32_array(env, &batch.meta),
              };
              (data, meta)
            };
            let (Some(data), Some(meta)) = (data, meta) else {
              return true;
            };
            let addresses = match &batch.addresses {
              Some(list) => addresses_array(env, list),
              None => js::undefined(env),
            };
            // From here on JavaScript owns the descriptors (ReceivedFd).
            for fd in batch.fds.drain(..) {
              let _ = fd.into_raw_fd();
            }
            let called = call(target, &[js::int(env, EV_MESSAGES), data, meta, addresses]);
            batch.recycle();
            called
          }
        };
        if !called {
          return false;
        }
      }
    }
    give_spare(&OUTCOMES, outcomes, MAX_OUTCOMES);
    true
  }
}

/// # Safety
/// On the JS thread, inside a handle scope.
unsafe fn addresses_array(env: RawEnv, list: &[SocketAddress]) -> RawValue {
  let mut arr = std::ptr::null_mut();
  // SAFETY: value creation on a live env.
  unsafe {
    napi::sys::napi_create_array_with_length(env, list.len(), &mut arr);
    for (i, a) in list.iter().enumerate() {
      napi::sys::napi_set_element(env, arr, i as u32, js::address(env, a));
    }
  }
  arr
}

impl Resource for SocketCell {
  fn close_for_teardown(&self) {
    self.0.borrow_mut().close();
  }
}

/// A socket address from JavaScript: exactly one of the two is set.
#[napi(object)]
pub struct NativeAddress {
  pub path: Option<String>,
  pub abstract_name: Option<String>,
}

impl NativeAddress {
  pub fn to_core(&self) -> SocketAddress {
    match (&self.path, &self.abstract_name) {
      (Some(p), _) => SocketAddress::Path(p.into()),
      (None, Some(n)) => SocketAddress::Abstract(n.as_bytes().to_vec()),
      (None, None) => SocketAddress::Unnamed,
    }
  }
}

#[napi(object)]
pub struct NativePeerCredentials {
  pub pid: Option<i32>,
  pub uid: u32,
  pub gid: u32,
}

/// A connected or datagram Unix socket. Internal: use `FdSocket` from the package root.
#[napi]
pub struct NativeSocket {
  cell: Rc<SocketCell>,
}

impl NativeSocket {
  pub fn from_cell(cell: Rc<SocketCell>) -> Self {
    NativeSocket { cell }
  }
}

#[napi]
impl NativeSocket {
  /// The descriptor number, or -1 once closed.
  #[napi(getter)]
  pub fn fd(&self) -> i32 {
    self
      .cell
      .0
      .borrow()
      .fd
      .as_ref()
      .map_or(-1, |f| f.as_raw_fd())
  }

  /// `'stream'`, `'seqpacket'` or `'dgram'`.
  #[napi(getter, js_name = "type")]
  pub fn socket_type(&self) -> &'static str {
    self.cell.0.borrow().ty.as_str()
  }

  /// Messages queued in user space, waiting for the kernel buffer to drain.
  #[napi(getter)]
  pub fn pending_sends(&self) -> u32 {
    self.cell.0.borrow().queue.len() as u32
  }

  /// Start delivering this socket's events to `receiver`: the env's
  /// socket dispatcher (setSocketDispatcher) is called with it as `this`
  /// and `(event, a, b, c)`; see the EV_* codes.
  #[napi(ts_args_type = "receiver: object")]
  pub fn start(&self, env: Env, receiver: Unknown<'_>) -> Result<()> {
    // SAFETY: receiver is a live handle of this call.
    let r = unsafe { JsRef::new(env.raw(), receiver.raw())? };
    let mut c = self.cell.0.borrow_mut();
    c.receiver = Some(r);
    c.update_watch();
    Ok(())
  }

  /// Start or stop reading (backpressure). Returns true when reading
  /// resumes with whole messages already buffered: call `readBuffered()`
  /// soon, since the kernel will not report them as readable.
  #[napi]
  pub fn set_reading(&self, reading: bool) -> bool {
    let mut c = self.cell.0.borrow_mut();
    c.reading = reading;
    c.update_watch();
    c.has_buffered_frame()
  }

  /// Deliver messages that are already buffered (see `setReading`).
  #[napi]
  pub fn read_buffered(&self) {
    self.cell.on_ready(true, false);
  }

  /// Whether an active socket keeps the event loop alive.
  #[napi]
  pub fn set_ref(&self, refed: bool) {
    let mut c = self.cell.0.borrow_mut();
    c.refed = refed;
    c.update_watch();
  }

  /// Send one datagram to `address`.
  #[napi]
  pub fn send_to(
    &self,
    env: Env,
    address: NativeAddress,
    data: &[u8],
    fds: &[i32],
  ) -> Result<bool> {
    let to = address.to_core().to_unix_addr().or_throw(&env)?;
    self
      .cell
      .0
      .borrow_mut()
      .send(data, fds, Some(to))
      .or_throw(&env)
  }

  /// A handle for the per-message calls of `crate::hot`, which skip
  /// napi-rs's per-call glue. Taken once per socket by the TS layer.
  #[napi(ts_return_type = "object")]
  pub fn hot_handle(&self, env: Env) -> Result<Unknown<'_>> {
    // SAFETY: a method call on the env's thread.
    let raw = unsafe { crate::hot::socket_handle(env.raw(), &self.cell)? };
    // SAFETY: raw is a live value of this call.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
  }

  /// Close the socket now. Returns how many queued sends were dropped.
  #[napi]
  pub fn close(&self) -> u32 {
    self.cell.0.borrow_mut().close()
  }

  #[napi]
  pub fn peer_credentials(&self, env: Env) -> Result<NativePeerCredentials> {
    let c = self.cell.0.borrow();
    let fd = c.fd.as_ref().ok_or_else(|| {
      js::throw_in(
        &env,
        &CoreError::sys(nix::errno::Errno::EBADF, "getsockopt"),
      )
    })?;
    let p = fdpass_core::socket::peer_credentials(fd.as_fd()).or_throw(&env)?;
    Ok(NativePeerCredentials {
      pid: p.pid,
      uid: p.uid,
      gid: p.gid,
    })
  }

  #[napi(ts_return_type = "string | { abstract: string } | null")]
  pub fn local_address(&self, env: Env) -> Result<Unknown<'_>> {
    self.address_of(env, fdpass_core::socket::local_address)
  }

  #[napi(ts_return_type = "string | { abstract: string } | null")]
  pub fn remote_address(&self, env: Env) -> Result<Unknown<'_>> {
    self.address_of(env, fdpass_core::socket::peer_address)
  }
}

impl NativeSocket {
  /// null once closed (no descriptor to ask); a failure of the syscall
  /// itself is thrown (the descriptor was closed or replaced behind the socket).
  fn address_of<'e>(
    &self,
    env: Env,
    f: fn(BorrowedFd<'_>) -> fdpass_core::Result<SocketAddress>,
  ) -> Result<Unknown<'e>> {
    let c = self.cell.0.borrow();
    let addr = match c.fd.as_ref() {
      Some(fd) => f(fd.as_fd()).or_throw(&env)?,
      None => SocketAddress::Unnamed,
    };
    // SAFETY: value creation inside this napi call.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), js::address(env.raw(), &addr)) })
  }
}

pub fn state(env: &Env) -> Result<Rc<EnvState>> {
  env_state::get(env.raw())
}
