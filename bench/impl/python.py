# Python's socket.send_fds / recv_fds over SOCK_SEQPACKET; the same command
# line as bench/c/fdbench.c (recv, send, echo, ping).
import json, os, socket, sys, time

role, path = sys.argv[1], sys.argv[2]
def cpu_us():
    t = os.times()
    return int((t.user + t.system) * 1e6)
def open_fds():
    return len(os.listdir('/proc/self/fd'))
def out(v):
    print(json.dumps(v), flush=True)

def listen():
    try: os.unlink(path)
    except FileNotFoundError: pass
    l = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); l.bind(path); l.listen(16)
    out({'ready': 1})
    s, _ = l.accept(); return s

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(path); return s

if role == 'recv':
    count, nfds, want = int(sys.argv[3]), int(sys.argv[4]), os.stat(sys.argv[5])
    s = listen(); before = open_fds(); cpu0 = cpu_us()
    msgs = got = bad = 0; first = 0
    while msgs < count:
        data, fds, flags, _ = socket.recv_fds(s, 256, 253)
        if not data and not fds: break
        if msgs == 0: first = time.perf_counter_ns()
        msgs += 1; got += len(fds)
        for fd in fds:
            st = os.fstat(fd)
            if st.st_ino != want.st_ino or st.st_dev != want.st_dev: bad += 1
            os.close(fd)
    out({'msgs': msgs, 'fds': got, 'bad': bad, 'lost': count * nfds - got, 'leaked': open_fds() - before,
         'ns': time.perf_counter_ns() - first, 'cpuUs': cpu_us() - cpu0})
elif role == 'send':
    count, nfds = int(sys.argv[3]), int(sys.argv[4])
    fd = os.open(sys.argv[5], os.O_RDONLY); fds = [fd] * nfds
    s = connect(); cpu0 = cpu_us()
    for _ in range(count): socket.send_fds(s, [b'message'], fds)
    out({'cpuUs': cpu_us() - cpu0})
elif role == 'echo':
    s = listen()
    while True:
        data, fds, flags, _ = socket.recv_fds(s, 256, 253)
        if not data and not fds: break
        socket.send_fds(s, [b'p'], fds)
        for fd in fds: os.close(fd)
elif role == 'ping':
    count = int(sys.argv[3]); fd = os.open(sys.argv[4], os.O_RDONLY); s = connect(); lat = []
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    for i in range(-warmup, count):
        t0 = time.perf_counter_ns()
        socket.send_fds(s, [b'x'], [fd])
        data, fds, flags, _ = socket.recv_fds(s, 256, 253)
        if i >= 0: lat.append((time.perf_counter_ns() - t0) / 1000)
        for f in fds: os.close(f)
    lat.sort(); out({'p50': round(lat[len(lat) // 2], 2), 'p99': round(lat[int(len(lat) * 0.99)], 2)})
