//! What `NativeSocket` and `NativeServer` share of their readiness
//! registration: `start()` (holding the JavaScript value that hears the
//! events), and any change of state that the watch's interest follows
//! (`setRef()`, `setReading()`, `setAccepting()`).

use crate::js::JsRef;
use napi::bindgen_prelude::*;
use std::cell::RefCell;

/// A socket's or server's core, as far as its readiness watch goes.
pub(crate) trait Watched {
  /// Set the watch's interest from the core's state.
  fn update_watch(&mut self);
}

/// Apply `change` to `core`, then bring its watch up to date.
pub(crate) fn rewatch<C: Watched, R>(core: &RefCell<C>, change: impl FnOnce(&mut C) -> R) -> R {
  let mut c = core.borrow_mut();
  let result = change(&mut c);
  c.update_watch();
  result
}

/// `start(listener)`: `hold` keeps a reference to `listener` in the core,
/// and the watch starts asking for the events it wants.
pub(crate) fn start<C: Watched>(
  core: &RefCell<C>,
  env: &Env,
  listener: Unknown<'_>,
  hold: impl FnOnce(&mut C, JsRef),
) -> Result<()> {
  // SAFETY: `listener` is a handle of the napi call that passed it, made
  // on this env's JS thread and live until that call returns.
  let r = unsafe { JsRef::new(env.raw(), listener.raw())? };
  rewatch(core, |c| hold(c, r));
  Ok(())
}
