# Sends the read end of a pipe to server.mjs and gets it back.
import os, socket

s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect('py.sock')
r, w = os.pipe()
socket.send_fds(s, [b'hello from python'], [r])
data, fds, flags, addr = socket.recv_fds(s, 65536, 253)
os.write(w, b'the same pipe')
print(data.decode() + ':', os.read(fds[0], 100).decode())
