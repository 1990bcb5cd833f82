/* fdpass's stream framing in C, plus a test peer. Same command line as
 * python/fdpass_peer.py:  fdpass_peer send|recv TYPE MODE PATH COUNT FILE
 * Build: cc -O2 -Wall -Wextra -Werror -o fdpass_peer fdpass_peer.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FDS 253
#define HEADER 8

static void die(const char *what) { perror(what); exit(1); }

/* One sendmsg carrying data and fds; returns bytes sent. */
static size_t send_with_fds(int s, const void *data, size_t len, const int *fds, int n) {
  char ctl[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct iovec iov = {(void *)data, len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n) {
    memset(ctl, 0, sizeof ctl);
    m.msg_control = ctl;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  ssize_t r;
  while ((r = sendmsg(s, &m, MSG_NOSIGNAL)) < 0)
    if (errno != EINTR) die("sendmsg");
  return (size_t)r;
}

/* fdpass framing: the fds ride on the sendmsg that carries the header; the
 * rest of a partial write goes without them. */
static void send_frame(int s, const char *data, uint32_t len, const int *fds, int n) {
  char *buf = malloc(HEADER + len);
  buf[0] = 1; buf[1] = 0; buf[2] = (char)(n >> 8); buf[3] = (char)n;
  buf[4] = (char)(len >> 24); buf[5] = (char)(len >> 16); buf[6] = (char)(len >> 8); buf[7] = (char)len;
  memcpy(buf + HEADER, data, len);
  size_t sent = send_with_fds(s, buf, HEADER + len, fds, n);
  while (sent < HEADER + len) sent += send_with_fds(s, buf + sent, HEADER + len - sent, NULL, 0);
  free(buf);
}

/* recvmsg appending bytes to buf and fds to fds; returns bytes (0 at EOF). */
static size_t recv_some(int s, char *buf, size_t cap, int *fds, int *nfds) {
  char ctl[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct iovec iov = {buf, cap};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
  ssize_t r;
  while ((r = recvmsg(s, &m, MSG_CMSG_CLOEXEC)) < 0)
    if (errno != EINTR) die("recvmsg");
  if (m.msg_flags & MSG_CTRUNC) { fprintf(stderr, "MSG_CTRUNC\n"); exit(1); }
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      memcpy(fds + *nfds, CMSG_DATA(c), sizeof(int) * k);
      *nfds += k;
    }
  return (size_t)r;
}

/* Frame reader state: buffered bytes and unclaimed fds (oldest first). */
static char rbuf[1 << 20]; static size_t rlen;
static int rfds[4 * MAX_FDS]; static int rnfds;

static int recv_frame(int s, char *data, uint32_t *len, int *fds, int *n) {
  for (;;) {
    if (rlen >= HEADER) {
      unsigned char *h = (unsigned char *)rbuf;
      uint32_t l = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
      int k = h[2] << 8 | h[3];
      if (h[0] != 1 || h[1] != 0 || k > MAX_FDS) { fprintf(stderr, "not an fdpass frame\n"); exit(1); }
      if (rlen >= HEADER + l) {
        if (rnfds < k) { fprintf(stderr, "missing fds\n"); exit(1); }
        memcpy(data, rbuf + HEADER, l); *len = l;
        memmove(rbuf, rbuf + HEADER + l, rlen - HEADER - l); rlen -= HEADER + l;
        memcpy(fds, rfds, sizeof(int) * k); *n = k;
        memmove(rfds, rfds + k, sizeof(int) * (rnfds - k)); rnfds -= k;
        return 1;
      }
    }
    size_t got = recv_some(s, rbuf + rlen, sizeof rbuf - rlen, rfds, &rnfds);
    if (got == 0) return 0;
    rlen += got;
  }
}

int main(int argc, char **argv) {
  if (argc != 7) { fprintf(stderr, "usage: fdpass_peer send|recv TYPE MODE PATH COUNT FILE\n"); return 2; }
  const char *role = argv[1], *kind = argv[2], *mode = argv[3], *path = argv[4], *file = argv[6];
  long count = atol(argv[5]);
  int type = !strcmp(kind, "stream") ? SOCK_STREAM : !strcmp(kind, "seqpacket") ? SOCK_SEQPACKET : SOCK_DGRAM;
  int framed = type == SOCK_STREAM && !strcmp(mode, "framed");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  if (!strcmp(role, "send")) {
    int f = open(file, O_RDONLY | O_CLOEXEC), fds[2] = {f, f};
    if (connect(s, (struct sockaddr *)&a, sizeof a)) die("connect");
    for (long i = 0; i < count; i++) {
      char msg[32]; int len = snprintf(msg, sizeof msg, "msg-%ld", i);
      if (framed) send_frame(s, msg, (uint32_t)len, fds, 2);
      else send_with_fds(s, msg, (size_t)len, fds, 2);
    }
    return 0;
  }
  if (bind(s, (struct sockaddr *)&a, sizeof a)) die("bind");
  if (type != SOCK_DGRAM && listen(s, 1)) die("listen");
  printf("ready\n"); fflush(stdout);
  int c = type == SOCK_DGRAM ? s : accept4(s, NULL, NULL, SOCK_CLOEXEC);
  for (long i = 0; i < count; i++) {
    char data[65536]; uint32_t len = 0; int fds[4 * MAX_FDS], n = 0;
    if (framed) {
      if (!recv_frame(c, data, &len, fds, &n)) { fprintf(stderr, "the peer closed early\n"); return 1; }
    } else {
      len = (uint32_t)recv_some(c, data, sizeof data, fds, &n);
    }
    printf("{\"data\":\"%.*s\",\"fds\":[", (int)len, data);
    for (int k = 0; k < n; k++) {
      struct stat st; if (fstat(fds[k], &st)) die("fstat");
      printf("%s{\"dev\":%lu,\"ino\":%lu}", k ? "," : "", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
      close(fds[k]);
    }
    printf("]}\n"); fflush(stdout);
  }
  return 0;
}
