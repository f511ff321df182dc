// A closed-loop HTTP/1.1 keep-alive load generator that records every request (bench/tail.ts builds and
// runs it): wrk reports only a latency histogram, and telling a stall (every connection slow at once) from
// late service (some connections slow) needs each request's send time.
//
//   tail_client <port> <conns> <seconds> <path> <out>
//
// <out> gets one line per completed request: "<connection> <sent µs since start> <latency µs>". Responses
// must carry Content-Length (bench/run.ts's upstream serves a 1 KiB file).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

typedef struct {
  int fd;
  int len;
  long long sent;
  char buf[65536];
} Conn;

typedef struct {
  int conn;
  long long sent, latency;
} Record;

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s <port> <conns> <seconds> <path> <out>\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]), n = atoi(argv[2]), seconds = atoi(argv[3]);
  char req[1024];
  int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", argv[4]);
  Conn *conns = calloc(n, sizeof(Conn));
  size_t cap = 1 << 23, count = 0;
  Record *recs = malloc(cap * sizeof(Record));
  int ep = epoll_create1(0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
      perror("connect");
      return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  long long start = now_us(), end = start + seconds * 1000000LL;
  for (int i = 0; i < n; i++) {
    conns[i].sent = now_us();
    if (write(conns[i].fd, req, reqlen) != reqlen) {
      perror("write");
      return 1;
    }
  }
  struct epoll_event evs[256];
  while (now_us() < end) {
    int k = epoll_wait(ep, evs, 256, 100);
    for (int e = 0; e < k; e++) {
      int id = evs[e].data.u32;
      Conn *c = &conns[id];
      ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
      if (r <= 0) {
        fprintf(stderr, "connection %d closed by the server\n", id);
        return 1;
      }
      c->len += r;
      for (;;) {
        char *head_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (head_end == NULL) break;
        int head = head_end + 4 - c->buf, body = -1;
        for (char *p = c->buf; p < head_end; p++) {
          if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = atoi(p + 15);
            break;
          }
        }
        if (body < 0) {
          fprintf(stderr, "a response without Content-Length\n");
          return 1;
        }
        if (c->len < head + body) break;
        long long done = now_us();
        if (count < cap) recs[count++] = (Record){id, c->sent - start, done - c->sent};
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
        c->sent = now_us();
        if (write(c->fd, req, reqlen) != reqlen) {
          perror("write");
          return 1;
        }
      }
    }
  }
  FILE *f = fopen(argv[5], "w");
  if (f == NULL) {
    perror(argv[5]);
    return 1;
  }
  for (size_t i = 0; i < count; i++) fprintf(f, "%d %lld %lld\n", recs[i].conn, recs[i].sent, recs[i].latency);
  fclose(f);
  return 0;
}
