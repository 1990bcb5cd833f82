"""fdpass's stream framing in Python, plus a test peer (stdlib only).

Copy send_frame / FrameReader into your program to talk to an fdpass
stream socket; on seqpacket and dgram sockets use socket.send_fds and
socket.recv_fds directly (no framing).

CLI: fdpass_peer.py send|recv TYPE MODE PATH COUNT FILE
  TYPE stream|seqpacket|dgram, MODE framed|raw (framed: stream only).
  send: connects to PATH and sends COUNT messages "msg-<i>", each with two
        descriptors of FILE. recv: listens on (dgram: binds) PATH, prints
        "ready", then one JSON line per message: {"data", "fds": [{"dev","ino"}]}.
"""
import json
import os
import socket
import struct
import sys

HEADER = struct.Struct('>BBHI')  # version, flags, fd count, payload length
MAX_FDS = 253


def send_frame(sock, data, fds=()):
    """Send one frame; its fds ride on the sendmsg that carries the header."""
    buf = HEADER.pack(1, 0, len(fds), len(data)) + data
    sent = socket.send_fds(sock, [buf], list(fds)) if fds else sock.send(buf)
    while sent < len(buf):  # the rest goes without descriptors
        sent += sock.send(buf[sent:])


class FrameReader:
    """Reassembles frames; a frame takes the oldest fds that arrived with or before it."""

    def __init__(self, sock):
        self.sock, self.buf, self.fds = sock, b'', []

    def recv_frame(self):
        while True:
            if len(self.buf) >= HEADER.size:
                version, flags, nfds, length = HEADER.unpack_from(self.buf)
                if version != 1 or flags != 0 or nfds > MAX_FDS:
                    raise ValueError('not an fdpass frame')
                if len(self.buf) >= HEADER.size + length:
                    if len(self.fds) < nfds:
                        raise ValueError(f'frame declares {nfds} fds, {len(self.fds)} arrived')
                    data = self.buf[HEADER.size:HEADER.size + length]
                    self.buf = self.buf[HEADER.size + length:]
                    fds, self.fds = self.fds[:nfds], self.fds[nfds:]
                    return data, fds
            data, fds, flags, _ = socket.recv_fds(self.sock, 65536, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
            if flags & socket.MSG_CTRUNC:
                raise ValueError('descriptors were truncated (MSG_CTRUNC)')
            if not data and not fds:
                return None
            self.buf += data
            self.fds += fds


def main():
    role, kind, mode, path, count, file = sys.argv[1:7]
    count = int(count)
    stype = {'stream': socket.SOCK_STREAM, 'seqpacket': socket.SOCK_SEQPACKET, 'dgram': socket.SOCK_DGRAM}[kind]
    framed = kind == 'stream' and mode == 'framed'
    if role == 'send':
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
        s = socket.socket(socket.AF_UNIX, stype)
        s.connect(path)
        for i in range(count):
            data = f'msg-{i}'.encode()
            if framed:
                send_frame(s, data, [fd, fd])
            else:
                socket.send_fds(s, [data], [fd, fd])
        s.close()
        return
    s = socket.socket(socket.AF_UNIX, stype)
    s.bind(path)
    if kind != 'dgram':
        s.listen(1)
    print('ready', flush=True)
    conn = s.accept()[0] if kind != 'dgram' else s
    reader = FrameReader(conn)
    for _ in range(count):
        if framed:
            got = reader.recv_frame()
            if got is None:
                sys.exit('the peer closed early')
            data, fds = got
        else:
            data, fds, flags, _ = socket.recv_fds(conn, 65536, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
            if flags & socket.MSG_CTRUNC:
                sys.exit('MSG_CTRUNC')
        ids = []
        for fd in fds:
            st = os.fstat(fd)
            ids.append({'dev': st.st_dev, 'ino': st.st_ino})
            os.close(fd)
        print(json.dumps({'data': data.decode(), 'fds': ids}), flush=True)


if __name__ == '__main__':
    main()
