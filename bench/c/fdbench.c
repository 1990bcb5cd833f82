/* The kernel's limit: sendmsg/recvmsg with SCM_RIGHTS over SOCK_SEQPACKET.
 * Same command line as every implementation in bench/impl (see run.js):
 *   fdbench recv PATH COUNT NFDS FILE | send PATH COUNT NFDS FILE
 *   fdbench echo PATH COUNT           | ping PATH COUNT FILE [WARMUP]
 *   fdbench many-recv PATH CONNS PER FILE | many-send PATH CONNS PER FILE
 * With FDBENCH_THREAD=1 the process first starts one idle thread: the same
 * program, as a process with threads (every Node process has several). The
 * kernel then takes a reference on each file a syscall looks up (fdget), and
 * glibc makes close a cancellation point: the limit for a runtime's process.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <pthread.h>

#define MAXFDS 253
static void die(const char *what) { perror(what); exit(1); }
static long long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static long long cpu_us(void) { struct rusage r; getrusage(RUSAGE_SELF, &r); return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000LL + r.ru_utime.tv_usec + r.ru_stime.tv_usec; }
static int open_fds(void) { int n = 0; DIR *d = opendir("/proc/self/fd"); struct dirent *e; while ((e = readdir(d))) if (e->d_name[0] != '.') n++; closedir(d); return n - 1; }
/* statm: resident pages, then those of them backed by files: the rest is anonymous. */
static long rss_kb(int anon_only) { FILE *f = fopen("/proc/self/statm", "r"); long a, b, c; if (fscanf(f, "%ld %ld %ld", &a, &b, &c) != 3) b = c = 0; fclose(f); return (anon_only ? b - c : b) * (sysconf(_SC_PAGESIZE) / 1024); }

static struct sockaddr_un addr_of(const char *path) {
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  return a;
}
static int listen_on(const char *path) {
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = addr_of(path);
  unlink(path);
  if (s < 0 || bind(s, (void *)&a, sizeof a) || listen(s, 1024)) die("listen");
  return s;
}
static int connect_to(const char *path) {
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = addr_of(path);
  if (s < 0 || connect(s, (void *)&a, sizeof a)) die("connect");
  return s;
}
static void send_fds(int s, const char *data, size_t len, const int *fds, int n) {
  char ctl[CMSG_SPACE(sizeof(int) * MAXFDS)];
  struct iovec iov = { (void *)data, len };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (n) {
    m.msg_control = ctl; m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  while (sendmsg(s, &m, MSG_NOSIGNAL) < 0) if (errno != EINTR) die("sendmsg");
}
/* Returns the number of fds received into fds[]; -1 at end of stream. */
static int recv_fds(int s, char *buf, size_t cap, int *fds, int *truncated) {
  char ctl[CMSG_SPACE(sizeof(int) * MAXFDS)];
  struct iovec iov = { buf, cap };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
  ssize_t r;
  while ((r = recvmsg(s, &m, MSG_CMSG_CLOEXEC)) < 0) if (errno != EINTR) die("recvmsg");
  if (r == 0) return -1;
  *truncated = (m.msg_flags & MSG_CTRUNC) != 0;
  int n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      memcpy(fds + n, CMSG_DATA(c), sizeof(int) * k);
      n += k;
    }
  return n;
}

static int by_value(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

static void *idle(void *unused) { (void)unused; for (;;) pause(); return NULL; }

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: see the comment at the top\n"); return 2; }
  if (getenv("FDBENCH_THREAD") && !strcmp(getenv("FDBENCH_THREAD"), "1")) {
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL)) die("pthread_create");
  }
  const char *role = argv[1], *path = argv[2];
  long count = atol(argv[3]);
  int fds[MAXFDS]; char buf[256];
  if (!strcmp(role, "recv")) {
    int nfds = atoi(argv[4]); struct stat want; if (stat(argv[5], &want)) die("stat");
    int l = listen_on(path); printf("{\"ready\":1}\n"); fflush(stdout);
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    int before = open_fds();
    long long first = 0, last = 0, got = 0, bad = 0, msgs = 0, trunc = 0;
    long long cpu0 = cpu_us();
    while (msgs < count) {
      int t = 0, n = recv_fds(s, buf, sizeof buf, fds, &t);
      if (n < 0) break;
      if (!msgs) first = now_ns();
      msgs++; got += n; trunc += t;
      for (int i = 0; i < n; i++) { struct stat st; if (fstat(fds[i], &st) || st.st_dev != want.st_dev || st.st_ino != want.st_ino) bad++; close(fds[i]); }
    }
    last = now_ns();
    printf("{\"msgs\":%lld,\"fds\":%lld,\"bad\":%lld,\"lost\":%lld,\"leaked\":%d,\"ns\":%lld,\"cpuUs\":%lld}\n", msgs, got, bad, count * nfds - got, open_fds() - before, last - first, cpu_us() - cpu0);
    return 0;
  }
  if (!strcmp(role, "send")) {
    int nfds = atoi(argv[4]); int f = open(argv[5], O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < nfds; i++) fds[i] = f;
    int s = connect_to(path); long long cpu0 = cpu_us();
    for (long i = 0; i < count; i++) send_fds(s, "message", 7, fds, nfds);
    printf("{\"cpuUs\":%lld}\n", cpu_us() - cpu0);
    return 0;
  }
  if (!strcmp(role, "echo")) {
    int l = listen_on(path); printf("{\"ready\":1}\n"); fflush(stdout);
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    for (;;) {
      int t = 0, n = recv_fds(s, buf, sizeof buf, fds, &t);
      if (n < 0) return 0;
      send_fds(s, "p", 1, fds, n);
      for (int i = 0; i < n; i++) close(fds[i]);
    }
  }
  if (!strcmp(role, "ping")) {
    int f = open(argv[4], O_RDONLY | O_CLOEXEC); int s = connect_to(path);
    double *lat = malloc(sizeof(double) * count);
    long warmup = argc > 5 ? atol(argv[5]) : 0;
    for (long i = -warmup; i < count; i++) {
      long long t0 = now_ns(); int t = 0;
      send_fds(s, "x", 1, &f, 1);
      int n = recv_fds(s, buf, sizeof buf, fds, &t);
      if (i >= 0) lat[i] = (now_ns() - t0) / 1000.0;
      for (int k = 0; k < n; k++) close(fds[k]);
    }
    qsort(lat, count, sizeof(double), by_value);
    printf("{\"p50\":%.2f,\"p99\":%.2f}\n", lat[count / 2], lat[(long)(count * 0.99)]);
    return 0;
  }
  if (!strcmp(role, "many-recv")) {
    long conns = count; long per = atol(argv[4]); struct stat want; if (stat(argv[5], &want)) die("stat");
    int l = listen_on(path); long rss0 = rss_kb(0), anon0 = rss_kb(1); printf("{\"ready\":1}\n"); fflush(stdout);
    struct pollfd *p = calloc(conns, sizeof *p);
    for (long i = 0; i < conns; i++) { p[i].fd = accept4(l, NULL, NULL, SOCK_CLOEXEC); p[i].events = POLLIN; }
    long rss1 = rss_kb(0), anon1 = rss_kb(1);
    printf("{\"idle\":1}\n"); fflush(stdout);
    long long got = 0, bad = 0, want_total = conns * per, first = 0;
    while (got < want_total) {
      if (poll(p, conns, -1) < 0) die("poll");
      for (long i = 0; i < conns; i++) if (p[i].revents & POLLIN) {
        int t = 0, n = recv_fds(p[i].fd, buf, sizeof buf, fds, &t);
        if (n < 0) { p[i].fd = -1; continue; }
        if (!first) first = now_ns();
        for (int k = 0; k < n; k++) { struct stat st; if (fstat(fds[k], &st) || st.st_ino != want.st_ino) bad++; close(fds[k]); }
        got += n;
      }
    }
    printf("{\"fds\":%lld,\"bad\":%lld,\"ns\":%lld,\"rssIdleKb\":%ld,\"rssIdleAnonKb\":%ld}\n", got, bad, now_ns() - first, rss1 - rss0, anon1 - anon0);
    return 0;
  }
  if (!strcmp(role, "many-send")) {
    long conns = count; long per = atol(argv[4]); int f = open(argv[5], O_RDONLY | O_CLOEXEC);
    int *s = calloc(conns, sizeof(int));
    for (long i = 0; i < conns; i++) s[i] = connect_to(path);
    char line[64]; if (!fgets(line, sizeof line, stdin)) return 1; /* go */
    for (long r = 0; r < per; r++) for (long i = 0; i < conns; i++) send_fds(s[i], "m", 1, &f, 1);
    return 0;
  }
  fprintf(stderr, "unknown role %s\n", role);
  return 2;
}
