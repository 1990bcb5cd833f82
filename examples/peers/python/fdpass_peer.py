#!/usr/bin/env python3
"""fdpass's stream framing in Python (stdlib only), plus a reference peer.

Copy HEADER, send_frame and FrameReader into your program to exchange
descriptors with an fdpass 'stream' socket. On seqpacket and dgram sockets
(and raw streams) there is no framing: one sendmsg is one message
(send_msg; socket.recv_fds).

Frame: version (1) | flags (0) | fd count u16 BE | payload length u32 BE | payload.
A frame's fds ride on the sendmsg that carries its first byte.

CLI (see ../README.md):
  fdpass_peer.py send|recv|echo --type stream|seqpacket|dgram [--raw]
                 (--connect PATH | --listen PATH) [--count N] [--fds K]
"""
import argparse
import array
import collections
import json
import os
import shutil
import socket
import struct
import sys
import tempfile

HEADER = struct.Struct('>BBHI')  # version, flags, fd count, payload length
VERSION = 1
MAX_FDS = 253  # per message (SCM_MAX_FD)
MAX_UNCLAIMED_FDS = 2 * MAX_FDS
MAX_LEN = 16 << 20  # largest payload this reader accepts


class FrameError(Exception):
    """The peer broke the protocol, or the kernel truncated descriptors."""


def send_msg(sock, data, fds=(), address=None):
    """One sendmsg carrying data and fds (unframed: seqpacket, dgram, raw
    stream). Not socket.send_fds, which ignores its flags and address
    arguments in some Python versions (3.11 among them)."""
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))] if fds else []
    if address is None:
        return sock.sendmsg([data], anc)
    return sock.sendmsg([data], anc, 0, address)


def send_frame(sock, data, fds=()):
    """Send one frame. Its fds ride on the sendmsg that carries the first
    byte; if that sendmsg is partial, the rest goes without fds."""
    fds = list(fds)
    if len(fds) > MAX_FDS:
        raise ValueError(f'at most {MAX_FDS} fds per message')
    buf = HEADER.pack(VERSION, 0, len(fds), len(data)) + bytes(data)
    sent = send_msg(sock, buf, fds)
    while sent < len(buf):
        sent += sock.send(buf[sent:])


class FrameReader:
    """Turns the bytes and fds of successive recvmsg calls back into frames.

    Each recvmsg's fds are remembered with the stream offset of that read's
    first byte. A frame takes the oldest unclaimed fds that arrived with or
    before the read holding its first byte (when one sendmsg carried several
    frames, later frames' fds arrive ahead of them)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0]
        self.batches = collections.deque()  # [start offset, [fds]]

    def recv_frame(self):
        """Return (data, fds) for the next frame, or None at a clean end of
        stream. Raises FrameError on a protocol error or truncation. The
        caller owns (and must close) the returned fds."""
        while True:
            frame = self._next_frame()
            if frame is not None:
                return frame
            data, fds, flags, _ = socket.recv_fds(self.sock, 65536, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
            if flags & socket.MSG_CTRUNC:
                _close(fds)
                raise FrameError('descriptors were truncated (MSG_CTRUNC): raise RLIMIT_NOFILE or receive fewer')
            if not data:  # end of stream (fds never come without bytes)
                nbytes, nfds = self.pending()
                self.close()
                if nbytes or nfds:
                    raise FrameError(f'the peer closed mid-message: {nbytes} bytes and {nfds} fds left over')
                return None
            if fds:
                self.batches.append([self.base + len(self.buf), fds])
            self.buf += data

    def _next_frame(self):
        if len(self.buf) < HEADER.size:
            return None
        version, flags, nfds, length = HEADER.unpack_from(self.buf)
        if version != VERSION:
            raise FrameError(f'frame version {version} is unknown (expected {VERSION}); is the peer raw?')
        if flags != 0:
            raise FrameError(f'reserved frame flags {flags:#04x} are set')
        if nfds > MAX_FDS:
            raise FrameError(f'a frame declares {nfds} fds; the limit is {MAX_FDS}')
        if length > MAX_LEN:
            raise FrameError(f'a frame of {length} bytes is larger than {MAX_LEN}')
        if len(self.buf) < HEADER.size + length:
            return None
        fds = []
        while self.batches and len(fds) < nfds and self.batches[0][0] <= self.base:
            batch = self.batches[0][1]
            take = batch[:nfds - len(fds)]
            del batch[:len(take)]
            fds += take
            if not batch:
                self.batches.popleft()
        if len(fds) < nfds:
            _close(fds)
            raise FrameError(f'a frame declares {nfds} fds but {len(fds)} arrived with it')
        if self.pending()[1] > MAX_UNCLAIMED_FDS:
            _close(fds)
            raise FrameError(f'more than {MAX_UNCLAIMED_FDS} fds arrived ahead of their frames')
        data = bytes(self.buf[HEADER.size:HEADER.size + length])
        del self.buf[:HEADER.size + length]
        self.base += HEADER.size + length
        return data, fds

    def pending(self):
        """(bytes buffered, fds not yet claimed by a frame)."""
        return len(self.buf), sum(len(b[1]) for b in self.batches)

    def close(self):
        """Close unclaimed fds and drop buffered bytes."""
        for _, fds in self.batches:
            _close(fds)
        self.batches.clear()
        self.base += len(self.buf)
        self.buf.clear()


def _close(fds):
    for fd in fds:
        os.close(fd)


# ---- reference peer (CLI) -------------------------------------------------

TYPES = {'stream': socket.SOCK_STREAM, 'seqpacket': socket.SOCK_SEQPACKET, 'dgram': socket.SOCK_DGRAM}


class Peer:
    """One end of the conversation: framed stream, or one sendmsg per message."""

    def __init__(self, sock, framed):
        self.sock, self.framed = sock, framed
        self.reader = FrameReader(sock) if framed else None

    def send(self, data, fds, addr=None):
        if self.framed:
            send_frame(self.sock, data, fds)
        else:
            send_msg(self.sock, data, fds, addr)

    def recv(self):
        """(data, fds, sender address); raises FrameError, EOFError."""
        if self.framed:
            got = self.reader.recv_frame()
            if got is None:
                raise EOFError
            return got[0], got[1], None
        data, fds, flags, addr = socket.recv_fds(self.sock, 65536, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        if flags & socket.MSG_CTRUNC:
            _close(fds)
            raise FrameError('descriptors were truncated (MSG_CTRUNC)')
        if flags & socket.MSG_TRUNC:
            _close(fds)
            raise FrameError('the message was truncated (MSG_TRUNC)')
        if not data and not fds and self.sock.type != socket.SOCK_DGRAM:
            raise EOFError
        return data, fds, addr

    def leftover(self):
        return self.reader.pending() if self.framed else (0, 0)


def describe(fd, content=False):
    st = os.fstat(fd)
    d = {'dev': st.st_dev, 'ino': st.st_ino}
    if content:
        try:
            d['content'] = os.pread(fd, 65536, 0).decode('utf-8', 'replace')
        except OSError:
            d['content'] = None  # not a file (pipe, socket...)
    return d


def emit(data, fds):
    print(json.dumps({'data': data.decode('utf-8', 'replace'), 'fds': fds}, separators=(',', ':')), flush=True)


def open_socket(args):
    kind = TYPES[args.type]
    if args.listen:
        s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
        s.bind(args.listen)
        if kind != socket.SOCK_DGRAM:
            s.listen(1)
        print('listening', file=sys.stderr, flush=True)
        if kind == socket.SOCK_DGRAM:
            return s
        conn, _ = s.accept()
        s.close()
        return conn
    s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    if kind == socket.SOCK_DGRAM:
        s.bind('')  # Linux autobind: an abstract address replies can come back to
    s.connect(args.connect)
    return s


def main():
    p = argparse.ArgumentParser(prog='fdpass_peer.py', description='fdpass reference peer')
    p.add_argument('role', choices=['send', 'recv', 'echo'])
    p.add_argument('--type', required=True, choices=list(TYPES))
    p.add_argument('--raw', action='store_true', help='stream without fdpass framing')
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument('--connect', metavar='PATH')
    where.add_argument('--listen', metavar='PATH')
    p.add_argument('--count', type=int, default=1, metavar='N')
    p.add_argument('--fds', type=int, default=1, metavar='K')
    args = p.parse_args()
    if not 0 <= args.fds <= MAX_FDS or args.count < 0:
        p.error(f'--fds must be 0..{MAX_FDS} and --count >= 0')
    if args.type == 'dgram' and (args.role == 'send') != bool(args.connect):
        p.error('dgram: send uses --connect; recv and echo use --listen')
    try:
        run(args)
    except (FrameError, EOFError, OSError) as e:
        msg = 'the peer closed before all messages arrived' if isinstance(e, EOFError) else str(e)
        print(f'fdpass_peer.py {args.role}: {msg}', file=sys.stderr)
        sys.exit(1)
    finally:
        if args.listen:
            try:
                os.unlink(args.listen)
            except OSError:
                pass


def run(args):
    framed = args.type == 'stream' and not args.raw
    sock = open_socket(args)
    peer = Peer(sock, framed)
    if args.role == 'send':
        tmp = tempfile.mkdtemp(prefix='fdpass-peer-')
        try:
            for i in range(args.count):
                fds = []
                for j in range(args.fds):
                    path = os.path.join(tmp, f'file-{i}-{j}')
                    with open(path, 'w') as f:
                        f.write(f'file-{i}-{j}')
                    fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                data = f'msg-{i}'.encode()
                emit(data, [describe(fd) for fd in fds])
                peer.send(data, fds)
                _close(fds)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        sock.close()
        return
    for _ in range(args.count):
        data, fds, addr = peer.recv()
        try:
            if args.type == 'dgram' and args.role == 'echo' and not addr:
                raise FrameError('cannot echo: the sender has no address (bind it, e.g. autobind)')
            emit(data, [describe(fd, content=True) for fd in fds])
            if args.role == 'echo':
                peer.send(data, fds, addr if args.type == 'dgram' else None)
        finally:
            _close(fds)
    nbytes, nfds = peer.leftover()
    if nbytes or nfds:
        raise FrameError(f'{nbytes} bytes and {nfds} fds arrived beyond {args.count} messages')
    sock.close()


if __name__ == '__main__':
    main()
