// Sends `count` copies of one UDP payload (hex) to addr:port at about `rate` datagrams per second, in batches
// of sendmmsg, then exits. For flood tests inside a test's own namespaces: bounded in count and in time.
// usage: udp-flood ADDR PORT RATE COUNT HEX
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kBatch = 64 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 6) { fprintf(stderr, "usage: udp-flood ADDR PORT RATE COUNT HEX\n"); return 2; }
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) { fprintf(stderr, "udp-flood: bad address\n"); return 2; }
  double rate = atof(argv[3]);
  long count = atol(argv[4]);
  size_t hexlen = strlen(argv[5]);
  size_t len = hexlen / 2;
  unsigned char* payload = malloc(len ? len : 1);
  for (size_t i = 0; i < len; i++) sscanf(argv[5] + 2 * i, "%2hhx", &payload[i]);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  struct iovec iov[kBatch];
  struct mmsghdr msgs[kBatch];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < kBatch; i++) {
    iov[i].iov_base = payload;
    iov[i].iov_len = len;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &to;
    msgs[i].msg_hdr.msg_namelen = sizeof to;
  }
  double start = now_s();
  long sent = 0;
  while (sent < count && now_s() - start < count / rate + 10) {
    double due = start + sent / rate;
    double wait = due - now_s();
    if (wait > 0) usleep((useconds_t)(wait * 1e6));
    int n = count - sent < kBatch ? (int)(count - sent) : kBatch;
    int r = sendmmsg(fd, msgs, n, 0);
    if (r > 0) sent += r;
  }
  printf("sent %ld in %.2f s\n", sent, now_s() - start);
  return 0;
}
