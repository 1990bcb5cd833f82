//! Listening sockets of other families (TCP, UDP) and plain Unix listeners,
//! returned as bare descriptors for a runtime's own server objects (Node's
//! `net.Server.listen({ fd })`, `dgram.Socket.bind({ fd })`). Socket
//! handoff creates them here so that every generation holds the same
//! kernel sockets, and so that no runtime object owns a socket *path*
//! (libuv unlinks a pipe path it bound when the handle closes).

use crate::error::{Error, Result, SyscallContext};
use crate::platform;
use nix::sys::socket::{self as sock, sockopt, AddressFamily, Backlog, SockType, SockaddrStorage};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InetKind {
  Tcp,
  Udp,
}

/// The socket address for `host`, which must be an IP address. A name is
/// the caller's to resolve first (fdpass/handoff asks Node's resolver): a
/// lookup here would block the JavaScript thread for as long as the
/// resolver takes, and `getaddrinfo`'s own errors are not errnos.
pub fn inet_address(host: &str, port: u16) -> Result<SocketAddr> {
  let ip: IpAddr = host.parse().map_err(|_| Error::InvalidArgument {
    reason: format!("'{host}' is not an IP address: resolve the host name first (dns.lookup)"),
  })?;
  Ok(SocketAddr::new(ip, port))
}

/// A bound (and, for TCP, listening) inet socket, non-blocking and CLOEXEC,
/// on `host`, an IP address (see `inet_address`).
/// TCP sets SO_REUSEADDR as Node does; `::` accepts IPv4 too, as in Node.
pub fn bind_inet(
  kind: InetKind,
  host: &str,
  port: u16,
  backlog: i32,
  reuse_port: bool,
) -> Result<OwnedFd> {
  let addr = inet_address(host, port)?;
  let shown = addr.to_string();
  let family = if addr.is_ipv6() {
    AddressFamily::Inet6
  } else {
    AddressFamily::Inet
  };
  let ty = match kind {
    InetKind::Tcp => SockType::Stream,
    InetKind::Udp => SockType::Datagram,
  };
  let fd = platform::new_socket_in(family, ty)?;
  if kind == InetKind::Tcp {
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true).syscall("setsockopt")?;
  }
  if reuse_port {
    sock::setsockopt(&fd, sockopt::ReusePort, &true).syscall("setsockopt")?;
  }
  if addr.is_ipv6() && addr.ip().is_unspecified() {
    sock::setsockopt(&fd, sockopt::Ipv6V6Only, &false).syscall("setsockopt")?;
  }
  let storage = SockaddrStorage::from(addr);
  sock::bind(fd.as_raw_fd(), &storage).syscall_at("bind", &shown)?;
  if kind == InetKind::Tcp {
    let backlog = Backlog::new(backlog.clamp(1, libc::SOMAXCONN)).syscall("listen")?;
    sock::listen(&fd, backlog).syscall_at("listen", &shown)?;
  }
  Ok(fd)
}

/// The port an inet socket is bound to (after binding port 0).
pub fn local_port(fd: std::os::fd::BorrowedFd<'_>) -> Result<u16> {
  let a: SockaddrStorage = sock::getsockname(fd.as_raw_fd()).syscall("getsockname")?;
  if let Some(v4) = a.as_sockaddr_in() {
    return Ok(v4.port());
  }
  if let Some(v6) = a.as_sockaddr_in6() {
    return Ok(v6.port());
  }
  Err(Error::InvalidArgument {
    reason: "not an inet socket".into(),
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::os::fd::AsFd;

  #[test]
  fn tcp_listener_on_an_ephemeral_port_accepts() {
    let fd = bind_inet(InetKind::Tcp, "127.0.0.1", 0, 16, false).unwrap();
    let port = local_port(fd.as_fd()).unwrap();
    assert!(port > 0);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(crate::fd::is_cloexec(fd.as_fd()).unwrap());
  }

  #[test]
  fn udp_socket_receives() {
    let fd = bind_inet(InetKind::Udp, "127.0.0.1", 0, 0, true).unwrap();
    let port = local_port(fd.as_fd()).unwrap();
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 8];
    std::thread::sleep(std::time::Duration::from_millis(20));
    let n = nix::sys::socket::recv(
      fd.as_raw_fd(),
      &mut buf,
      nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    assert_eq!(&buf[..n], b"ping");
  }

  #[test]
  fn a_host_name_is_refused_without_a_lookup() {
    let err = bind_inet(InetKind::Tcp, "localhost", 0, 16, false).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE");
    assert!(
      err.to_string().contains("'localhost' is not an IP address"),
      "{err}"
    );
    assert_eq!(
      inet_address("::", 80).unwrap(),
      "[::]:80".parse::<SocketAddr>().unwrap()
    );
  }

  #[test]
  fn a_busy_port_is_eaddrinuse_with_the_address() {
    let a = bind_inet(InetKind::Tcp, "127.0.0.1", 0, 16, false).unwrap();
    let port = local_port(a.as_fd()).unwrap();
    let err = bind_inet(InetKind::Tcp, "127.0.0.1", port, 16, false).unwrap_err();
    assert_eq!(err.code(), "EADDRINUSE");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
  }
}
