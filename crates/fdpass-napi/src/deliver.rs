//! Delivering a connection's outcomes to JavaScript: the socket
//! dispatcher is called with the JavaScript socket as `this` and
//! `(event, a, b, c)`. A batch of messages arrives as one Buffer of data
//! and one Int32Array of per-message metadata and descriptor numbers
//! (fdpass_core::engine::Batch), or, when it fits, written into the lent
//! delivery buffers and announced by its lengths.

use crate::env_state::EnvState;
use crate::js::{self, RawEnv, RawValue};
use crate::socket::SocketCell;
use fdpass_core::engine::spare::recycle_outcomes;
use fdpass_core::engine::Outcome;
use fdpass_core::SocketAddress;
use std::os::fd::IntoRawFd;

/// Event codes passed to the JS callback; exported to the TS layer by contract.rs.
pub const EV_MESSAGES: i64 = 1;
pub const EV_SENT: i64 = 2;
pub const EV_SEND_FAILED: i64 = 3;
pub const EV_END: i64 = 4;
pub const EV_ERROR: i64 = 5;

/// How outcomes reach the JavaScript callback.
#[derive(Clone, Copy, PartialEq)]
pub enum Via {
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
  pub(crate) unsafe fn deliver(
    &self,
    state: &EnvState,
    mut outcomes: Vec<Outcome>,
    via: Via,
  ) -> bool {
    let env = state.env;
    // SAFETY: deliver's caller is on the JS thread, inside a scope.
    let Some(dispatch) = (unsafe { state.socket_dispatcher() }) else {
      return true;
    };
    let call = |recv: RawValue, args: &[RawValue]| -> bool {
      match via {
        Via::EventLoop => {
          // SAFETY: on the JS thread inside a scope (deliver's contract);
          // recv, dispatch and args are live values of that scope.
          unsafe { state.call(Some(recv), dispatch, args) };
          true
        }
        // SAFETY: on the JS thread inside a scope (deliver's contract);
        // the values are live in it.
        Via::Direct => unsafe { js::call_direct(env, recv, dispatch, args) },
      }
    };
    for outcome in outcomes.drain(..) {
      // The callback may have closed the socket; then whatever is left is
      // dropped here, which closes its descriptors.
      // SAFETY: the reference's value is read inside the caller's scope.
      let Some(target) = self
        .0
        .borrow()
        .receiver
        .as_ref()
        .map(|r| unsafe { r.get() })
      else {
        return true;
      };
      // SAFETY: value creation on the JS thread inside a scope (deliver's contract).
      let called = unsafe {
        match outcome {
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
            // If JavaScript can no longer take them (a worker being
            // terminated), stop: dropping the batch closes its descriptors.
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
        }
      };
      if !called {
        return false;
      }
    }
    recycle_outcomes(outcomes);
    true
  }
}

/// # Safety
/// On the JS thread, inside a handle scope.
unsafe fn addresses_array(env: RawEnv, list: &[SocketAddress]) -> RawValue {
  let mut arr = std::ptr::null_mut();
  // SAFETY: value creation on a live env inside the caller's scope.
  unsafe {
    napi::sys::napi_create_array_with_length(env, list.len(), &mut arr);
    for (i, a) in list.iter().enumerate() {
      napi::sys::napi_set_element(env, arr, i as u32, js::address(env, a));
    }
  }
  arr
}
