//! What the TypeScript layer and the addon must agree on, defined once on
//! this side and exported to it (binding.js, binding.d.ts): event codes,
//! per-message flags, the names of descriptor kinds, the descriptor limit,
//! and the string unions of the constructors' and `configure`'s arguments.
//! binding.d.ts declares each string enum as a union type (package.json
//! `napi.constEnum: false`), which the TypeScript layer uses and re-exports;
//! at run time binding.js exports each as an object of its values.
use fdpass_core::engine::reader;
use fdpass_core::fd::FdKind;
use fdpass_core::{listener, socket};
use napi_derive::napi;

/// The kind of a Unix socket: a byte stream, a connection that keeps
/// message boundaries (Linux only), or datagrams.
#[napi(string_enum)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
  #[napi(value = "stream")]
  Stream,
  #[napi(value = "seqpacket")]
  SeqPacket,
  #[napi(value = "dgram")]
  Dgram,
}

impl From<SocketType> for socket::SocketType {
  fn from(t: SocketType) -> Self {
    match t {
      SocketType::Stream => socket::SocketType::Stream,
      SocketType::SeqPacket => socket::SocketType::SeqPacket,
      SocketType::Dgram => socket::SocketType::Datagram,
    }
  }
}

impl From<socket::SocketType> for SocketType {
  fn from(t: socket::SocketType) -> Self {
    match t {
      socket::SocketType::Stream => SocketType::Stream,
      socket::SocketType::SeqPacket => SocketType::SeqPacket,
      socket::SocketType::Datagram => SocketType::Dgram,
    }
  }
}

/// The readiness mechanism of an environment: a uv_poll handle per socket
/// on the runtime's libuv loop (`'uv'`), or one poller thread (`'thread'`).
#[napi(string_enum = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reactor {
  Uv,
  Thread,
}

impl Reactor {
  pub fn as_str(self) -> &'static str {
    match self {
      Reactor::Uv => "uv",
      Reactor::Thread => "thread",
    }
  }
}

/// The JavaScript runtime hosting an environment: `'node'` (also
/// Electron), `'bun'` or `'deno'`.
#[napi(string_enum = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
  Node,
  Bun,
  Deno,
}

/// The kind of an inet socket for a runtime's own server: a listening TCP
/// socket or a bound UDP socket.
#[napi(string_enum = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InetKind {
  Tcp,
  Udp,
}

impl From<InetKind> for listener::InetKind {
  fn from(k: InetKind) -> Self {
    match k {
      InetKind::Tcp => listener::InetKind::Tcp,
      InetKind::Udp => listener::InetKind::Udp,
    }
  }
}

/// Each `NAME: type = value, "doc";` as a documented `#[napi]` constant:
/// a value of binding.js, a `const` of binding.d.ts. (The doc is a string:
/// a `///` comment passed through a macro reaches napi-derive as a raw
/// string, which it would write into binding.d.ts as `r"…`.)
macro_rules! napi_consts {
  ($($name:ident: $ty:ident = $value:expr, $doc:literal;)*) => {
    $(#[doc = $doc] #[napi] pub const $name: $ty = $value;)*
  };
}

napi_consts! {
  EV_MESSAGES: i64 = crate::deliver::EV_MESSAGES, "Socket event: messages arrived; the callback gets their data, their metadata and, for datagrams, their senders.";
  EV_SENT: i64 = crate::deliver::EV_SENT, "Socket event: this many queued sends reached the kernel.";
  EV_SEND_FAILED: i64 = crate::deliver::EV_SEND_FAILED, "Socket event: queued sends failed; the error, then how many.";
  EV_END: i64 = crate::deliver::EV_END, "Socket event: the peer closed its side.";
  EV_ERROR: i64 = crate::deliver::EV_ERROR, "Socket or server event: the connection or the watch failed; the error follows.";
  EV_ACCEPTABLE: i64 = crate::server::EV_ACCEPTABLE, "Server event: connections wait to be accepted.";

  FLAG_DATA_TRUNCATED: i32 = reader::FLAG_DATA_TRUNCATED, "Per-message flag in the metadata: the data was longer than the buffer and was cut.";
  FLAG_FDS_TRUNCATED: i32 = reader::FLAG_FDS_TRUNCATED, "Per-message flag in the metadata: the kernel dropped descriptors (MSG_CTRUNC).";

  MAX_FDS_PER_MESSAGE: u32 = fdpass_core::MAX_FDS_PER_MESSAGE as u32, "The most descriptors one message may carry.";
}

/// The names of the kinds of file a descriptor can refer to, indexed as
/// the stat calls report a kind.
#[napi]
pub fn fd_kinds() -> Vec<String> {
  FdKind::ALL.iter().map(|k| k.as_str().to_string()).collect()
}
