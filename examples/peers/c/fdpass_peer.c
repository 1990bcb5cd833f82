/* fdpass's stream framing in C (plain sendmsg/recvmsg), plus a reference peer.
 *
 * Copy send_msg, send_frame and the frame_reader into your program to
 * exchange descriptors with an fdpass 'stream' socket. On seqpacket and
 * dgram sockets (and raw streams) there is no framing: one sendmsg is one
 * message (send_msg / recv_msg).
 *
 * Frame: version (1) | flags (0) | fd count u16 BE | payload length u32 BE |
 * payload. A frame's fds ride on the sendmsg that carries its first byte.
 *
 * CLI (see ../README.md):
 *   fdpass_peer send|recv|echo --type stream|seqpacket|dgram [--raw]
 *               (--connect PATH | --listen PATH) [--count N] [--fds K]
 *
 * Build: cc -O2 -Wall -Wextra -Werror -o fdpass_peer fdpass_peer.c   (Linux)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define FRAME_HEADER 8
#define FRAME_VERSION 1
#define MAX_FDS 253 /* per message (SCM_MAX_FD) */
#define MAX_UNCLAIMED_FDS (2 * MAX_FDS)
#define MAX_LEN (16u << 20) /* largest payload the reader accepts */

/* ---- framing ------------------------------------------------------------ */

/* One sendmsg with data and (if n > 0) n fds as SCM_RIGHTS; `to` names the
 * destination of an unconnected dgram socket, else NULL. Returns bytes sent
 * or -1 (errno). */
static ssize_t send_msg(int s, const struct iovec *iov, int iovlen, const int *fds, int n,
                        const struct sockaddr_un *to, socklen_t tolen) {
  union { char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; struct cmsghdr align; } ctl;
  struct msghdr m = {.msg_name = (void *)to, .msg_namelen = to ? tolen : 0,
                     .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovlen};
  if (n > MAX_FDS) { errno = EINVAL; return -1; }
  if (n > 0) {
    memset(&ctl, 0, sizeof ctl);
    m.msg_control = ctl.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
  }
  ssize_t r;
  while ((r = sendmsg(s, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
  return r;
}

/* Send one frame: its fds ride on the sendmsg that carries the header; if
 * that sendmsg is partial, the rest goes without them. 0 or -1 (errno). */
static int send_frame(int s, const void *data, uint32_t len, const int *fds, int n) {
  unsigned char h[FRAME_HEADER] = {FRAME_VERSION, 0, (unsigned char)(n >> 8), (unsigned char)n,
                                   (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                                   (unsigned char)(len >> 8), (unsigned char)len};
  struct iovec iov[2] = {{h, FRAME_HEADER}, {(void *)data, len}};
  size_t total = FRAME_HEADER + (size_t)len, sent = 0;
  while (sent < total) {
    size_t skip = sent; /* drop what was already written from the iovecs */
    struct iovec v[2]; int k = 0;
    for (int i = 0; i < 2; i++) {
      if (skip >= iov[i].iov_len) { skip -= iov[i].iov_len; continue; }
      v[k].iov_base = (char *)iov[i].iov_base + skip; v[k++].iov_len = iov[i].iov_len - skip; skip = 0;
    }
    ssize_t r = send_msg(s, v, k, fds, sent ? 0 : n, NULL, 0);
    if (r < 0) return -1;
    sent += (size_t)r;
  }
  return 0;
}

/* One recvmsg with room for MAX_FDS fds (close-on-exec). Appends the fds to
 * fds[*nfds...] and returns bytes read (0: end of stream), or -1 with err set.
 * from/fromlen may be NULL. */
static ssize_t recv_msg(int s, void *buf, size_t cap, int *fds, int *nfds,
                        struct sockaddr_un *from, socklen_t *fromlen, char *err, size_t errlen) {
  union { char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; struct cmsghdr align; } ctl;
  struct iovec iov = {buf, cap};
  struct msghdr m = {.msg_name = from, .msg_namelen = from ? *fromlen : 0, .msg_iov = &iov,
                     .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t r;
  while ((r = recvmsg(s, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
  if (r < 0) { snprintf(err, errlen, "recvmsg: %s", strerror(errno)); return -1; }
  int got = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      memcpy(fds + *nfds + got, CMSG_DATA(c), sizeof(int) * (size_t)k);
      got += k;
    }
  if (m.msg_flags & MSG_CTRUNC) {
    for (int i = 0; i < got; i++) close(fds[*nfds + i]);
    snprintf(err, errlen, "descriptors were truncated (MSG_CTRUNC): raise RLIMIT_NOFILE or receive fewer");
    return -1;
  }
  *nfds += got;
  if (m.msg_flags & MSG_TRUNC) { snprintf(err, errlen, "the message was truncated (MSG_TRUNC)"); return -1; }
  if (fromlen) *fromlen = m.msg_namelen;
  return r;
}

/* Turns the bytes and fds of successive recvmsg calls back into frames. Each
 * fd is queued with the stream offset of the first byte of the read it came
 * with; a frame takes the oldest unclaimed fds that arrived with or before
 * the read holding its first byte (when one sendmsg carried several frames,
 * later frames' fds arrive ahead of them). Zero-initialise, set .sock. */
struct frame_reader {
  int sock;
  char *buf; size_t len, cap, skip; /* skip: the frame last returned */
  uint64_t base;                    /* stream offset of buf[0] */
  int fds[MAX_UNCLAIMED_FDS + MAX_FDS]; uint64_t fd_start[MAX_UNCLAIMED_FDS + MAX_FDS]; int nfds;
  char err[160];
};

struct frame { const char *data; uint32_t len; int fds[MAX_FDS]; int nfds; };

static void frame_reader_close(struct frame_reader *r) {
  for (int i = 0; i < r->nfds; i++) close(r->fds[i]);
  r->nfds = 0;
  free(r->buf); r->buf = NULL; r->len = r->cap = r->skip = 0;
}

static int fail(struct frame_reader *r, const char *fmt, ...) {
  va_list ap; va_start(ap, fmt); vsnprintf(r->err, sizeof r->err, fmt, ap); va_end(ap);
  return -1;
}

/* 1: *f holds the next frame (f->data stays valid until the next call; the
 * caller owns f->fds); 0: clean end of stream; -1: error in r->err. */
static int recv_frame(struct frame_reader *r, struct frame *f) {
  if (r->skip) {
    memmove(r->buf, r->buf + r->skip, r->len - r->skip);
    r->len -= r->skip; r->base += r->skip; r->skip = 0;
  }
  for (;;) {
    if (r->len >= FRAME_HEADER) {
      const unsigned char *h = (const unsigned char *)r->buf;
      int n = h[2] << 8 | h[3];
      uint32_t len = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
      if (h[0] != FRAME_VERSION) return fail(r, "frame version %d is unknown (expected %d); is the peer raw?", h[0], FRAME_VERSION);
      if (h[1] != 0) return fail(r, "reserved frame flags %#04x are set", h[1]);
      if (n > MAX_FDS) return fail(r, "a frame declares %d fds; the limit is %d", n, MAX_FDS);
      if (len > MAX_LEN) return fail(r, "a frame of %u bytes is larger than %u", len, MAX_LEN);
      if (r->len >= FRAME_HEADER + (size_t)len) {
        int k = 0;
        while (k < n && k < r->nfds && r->fd_start[k] <= r->base) k++;
        if (k < n) return fail(r, "a frame declares %d fds but %d arrived with it", n, k);
        memcpy(f->fds, r->fds, sizeof(int) * (size_t)k);
        memmove(r->fds, r->fds + k, sizeof(int) * (size_t)(r->nfds - k));
        memmove(r->fd_start, r->fd_start + k, sizeof(uint64_t) * (size_t)(r->nfds - k));
        r->nfds -= k;
        f->nfds = k; f->data = r->buf + FRAME_HEADER; f->len = len;
        r->skip = FRAME_HEADER + (size_t)len;
        return 1;
      }
    }
    if (r->nfds > MAX_UNCLAIMED_FDS) return fail(r, "more than %d fds arrived ahead of their frames", MAX_UNCLAIMED_FDS);
    if (r->cap - r->len < 65536) {
      char *b = realloc(r->buf, r->cap + 65536);
      if (!b) return fail(r, "out of memory");
      r->buf = b; r->cap += 65536;
    }
    int before = r->nfds;
    ssize_t got = recv_msg(r->sock, r->buf + r->len, r->cap - r->len, r->fds, &r->nfds, NULL, NULL, r->err, sizeof r->err);
    if (got < 0) return -1;
    if (got == 0) { /* end of stream (fds never come without bytes) */
      if (r->len || r->nfds) return fail(r, "the peer closed mid-message: %zu bytes and %d fds left over", r->len, r->nfds);
      return 0;
    }
    for (int i = before; i < r->nfds; i++) r->fd_start[i] = r->base + r->len;
    r->len += (size_t)got;
  }
}

/* ---- reference peer (CLI) ----------------------------------------------- */

static const char *role;
static char listen_path[sizeof ((struct sockaddr_un *)0)->sun_path];

static void die(const char *fmt, ...) {
  va_list ap; va_start(ap, fmt);
  fprintf(stderr, "fdpass_peer %s: ", role ? role : "");
  vfprintf(stderr, fmt, ap); fputc('\n', stderr); va_end(ap);
  if (listen_path[0]) unlink(listen_path);
  exit(1);
}

static void usage(const char *msg) {
  fprintf(stderr, "fdpass_peer: %s\nusage: fdpass_peer send|recv|echo --type stream|seqpacket|dgram [--raw] "
                  "(--connect PATH | --listen PATH) [--count N] [--fds K]\n", msg);
  exit(2);
}

static void json_string(const char *s, size_t n) {
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

/* One JSON line: {"data":"...","fds":[{"dev":D,"ino":I[,"content":"..."]}]} */
static void emit(const char *data, size_t len, const int *fds, int n, int content) {
  printf("{\"data\":");
  json_string(data, len);
  printf(",\"fds\":[");
  for (int k = 0; k < n; k++) {
    struct stat st;
    if (fstat(fds[k], &st)) die("fstat: %s", strerror(errno));
    printf("%s{\"dev\":%llu,\"ino\":%llu", k ? "," : "", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    if (content) {
      static char buf[65536];
      ssize_t r = pread(fds[k], buf, sizeof buf, 0);
      printf(",\"content\":");
      if (r < 0) printf("null"); /* not a file (pipe, socket...) */
      else json_string(buf, (size_t)r);
    }
    putchar('}');
  }
  printf("]}\n");
  fflush(stdout);
}

static void set_path(struct sockaddr_un *a, const char *path) {
  if (strlen(path) >= sizeof a->sun_path) usage("the socket path is too long");
  a->sun_family = AF_UNIX;
  strcpy(a->sun_path, path);
}

int main(int argc, char **argv) {
  const char *type_name = NULL, *connect_path = NULL, *listen_at = NULL;
  int raw = 0;
  long count = 1, nfds = 1;
  static const struct option opts[] = {
    {"type", required_argument, 0, 't'}, {"raw", no_argument, 0, 'r'},
    {"connect", required_argument, 0, 'c'}, {"listen", required_argument, 0, 'l'},
    {"count", required_argument, 0, 'n'}, {"fds", required_argument, 0, 'k'}, {0, 0, 0, 0}};
  if (argc < 2) usage("missing role");
  role = argv[1];
  int o;
  while ((o = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
    char *end = NULL;
    switch (o) {
    case 't': type_name = optarg; break;
    case 'r': raw = 1; break;
    case 'c': connect_path = optarg; break;
    case 'l': listen_at = optarg; break;
    case 'n': count = strtol(optarg, &end, 10); if (*end || count < 0) usage("--count N, N >= 0"); break;
    case 'k': nfds = strtol(optarg, &end, 10); if (*end || nfds < 0 || nfds > MAX_FDS) usage("--fds K, K in 0..253"); break;
    default: usage("unknown option");
    }
  }
  if (optind != argc - 1) usage("unexpected arguments");
  if (strcmp(role, "send") && strcmp(role, "recv") && strcmp(role, "echo")) usage("the role is send, recv or echo");
  if (!type_name) usage("--type is required");
  int type = !strcmp(type_name, "stream") ? SOCK_STREAM : !strcmp(type_name, "seqpacket") ? SOCK_SEQPACKET
           : !strcmp(type_name, "dgram") ? SOCK_DGRAM : -1;
  if (type < 0) usage("--type is stream, seqpacket or dgram");
  if (!connect_path == !listen_at) usage("give exactly one of --connect and --listen");
  int sending = !strcmp(role, "send");
  if (type == SOCK_DGRAM && sending != !!connect_path) usage("dgram: send uses --connect; recv and echo use --listen");
  int framed = type == SOCK_STREAM && !raw;

  struct sockaddr_un a = {0};
  set_path(&a, listen_at ? listen_at : connect_path);
  int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket: %s", strerror(errno));
  if (listen_at) {
    if (bind(s, (struct sockaddr *)&a, sizeof a)) die("bind %s: %s", listen_at, strerror(errno));
    strcpy(listen_path, listen_at);
    if (type != SOCK_DGRAM && listen(s, 1)) die("listen: %s", strerror(errno));
    fprintf(stderr, "listening\n");
    if (type != SOCK_DGRAM) {
      int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
      if (c < 0) die("accept: %s", strerror(errno));
      close(s);
      s = c;
    }
  } else {
    sa_family_t af = AF_UNIX; /* dgram: autobind, so that replies can come back */
    if (type == SOCK_DGRAM && bind(s, (struct sockaddr *)&af, sizeof af)) die("autobind: %s", strerror(errno));
    if (connect(s, (struct sockaddr *)&a, sizeof a)) die("connect %s: %s", connect_path, strerror(errno));
  }

  if (sending) {
    char dir[] = "/tmp/fdpass-peer-XXXXXX", path[64], name[48], msg[32];
    if (!mkdtemp(dir)) die("mkdtemp: %s", strerror(errno));
    for (long i = 0; i < count; i++) {
      int fds[MAX_FDS];
      for (long j = 0; j < nfds; j++) {
        int len = snprintf(name, sizeof name, "file-%ld-%ld", i, j);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int w = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (w < 0 || write(w, name, (size_t)len) != len) die("%s: %s", path, strerror(errno));
        close(w);
        if ((fds[j] = open(path, O_RDONLY | O_CLOEXEC)) < 0) die("%s: %s", path, strerror(errno));
      }
      int len = snprintf(msg, sizeof msg, "msg-%ld", i);
      emit(msg, (size_t)len, fds, (int)nfds, 0);
      struct iovec iov = {msg, (size_t)len};
      int bad = framed ? send_frame(s, msg, (uint32_t)len, fds, (int)nfds) < 0
                       : send_msg(s, &iov, 1, fds, (int)nfds, NULL, 0) < 0;
      if (bad) die("send: %s", strerror(errno));
      for (long j = 0; j < nfds; j++) close(fds[j]);
    }
    for (long i = 0; i < count; i++)
      for (long j = 0; j < nfds; j++) {
        snprintf(path, sizeof path, "%s/file-%ld-%ld", dir, i, j);
        unlink(path);
      }
    rmdir(dir);
    close(s);
    return 0;
  }

  static struct frame_reader reader;
  reader.sock = s;
  static char buf[65536];
  for (long i = 0; i < count; i++) {
    struct frame f = {0};
    struct sockaddr_un from = {0};
    socklen_t fromlen = sizeof from;
    if (framed) {
      int r = recv_frame(&reader, &f);
      if (r < 0) die("%s", reader.err);
      if (r == 0) die("the peer closed before all messages arrived");
    } else {
      ssize_t r = recv_msg(s, buf, sizeof buf, f.fds, &f.nfds, &from, &fromlen, reader.err, sizeof reader.err);
      if (r < 0) die("%s", reader.err);
      if (r == 0 && f.nfds == 0 && type != SOCK_DGRAM) die("the peer closed before all messages arrived");
      f.data = buf; f.len = (uint32_t)r;
    }
    emit(f.data, f.len, f.fds, f.nfds, 1);
    if (!strcmp(role, "echo")) {
      int bad;
      if (framed) bad = send_frame(s, f.data, f.len, f.fds, f.nfds) < 0;
      else {
        if (type == SOCK_DGRAM && fromlen <= sizeof(sa_family_t)) die("cannot echo: the sender has no address (bind it, e.g. autobind)");
        struct iovec iov = {(void *)f.data, f.len};
        bad = send_msg(s, &iov, 1, f.fds, f.nfds, type == SOCK_DGRAM ? &from : NULL, fromlen) < 0;
      }
      if (bad) die("send: %s", strerror(errno));
    }
    for (int k = 0; k < f.nfds; k++) close(f.fds[k]);
  }
  if (framed && (reader.len - reader.skip || reader.nfds))
    die("%zu bytes and %d fds arrived beyond %ld messages", reader.len - reader.skip, reader.nfds, count);
  frame_reader_close(&reader);
  if (listen_path[0]) unlink(listen_path);
  close(s);
  return 0;
}
