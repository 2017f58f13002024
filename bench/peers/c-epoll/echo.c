/*
 * A minimal single-threaded epoll echo server: the practical floor that
 * "switchboard compare --peers" measures the epoll model against.
 *
 *     cc -O2 -o echo echo.c && ./echo PORT [HOST]
 *
 * Level-triggered epoll, one read per readiness event into one static
 * buffer, written straight back. A reply the socket will not take at once
 * is kept, and the connection stops being read until it has drained, so
 * memory stays bounded by one read per slow connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct pending { char *buf; size_t len, off; };

static struct pending *pend; /* indexed by descriptor */
static size_t maxfd;
static int ep;

static void watch(int fd, int op, unsigned events) {
	struct epoll_event ev = { .events = events, .data.fd = fd };
	epoll_ctl(ep, op, fd, &ev);
}

static void drop(int fd) {
	close(fd);
	free(pend[fd].buf);
	memset(&pend[fd], 0, sizeof pend[fd]);
}

/* Write what is pending on fd; once it is all gone, read again. */
static void flush(int fd) {
	struct pending *p = &pend[fd];
	while (p->off < p->len) {
		ssize_t n = write(fd, p->buf + p->off, p->len - p->off);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0 && errno == EAGAIN) return;
		if (n < 0) { drop(fd); return; }
		p->off += (size_t)n;
	}
	p->len = p->off = 0;
	watch(fd, EPOLL_CTL_MOD, EPOLLIN);
}

static void echo(int fd, char *buf, size_t cap) {
	ssize_t n = read(fd, buf, cap);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
	if (n <= 0) { drop(fd); return; } /* closed by the peer, or an error */
	ssize_t w = 0;
	while (w < n) {
		ssize_t k = write(fd, buf + w, (size_t)(n - w));
		if (k < 0 && errno == EINTR) continue;
		if (k < 0 && errno == EAGAIN) break;
		if (k < 0) { drop(fd); return; }
		w += k;
	}
	if (w < n) { /* keep the rest and wait for room */
		struct pending *p = &pend[fd];
		p->len = (size_t)(n - w);
		p->off = 0;
		p->buf = realloc(p->buf, p->len);
		memcpy(p->buf, buf + w, p->len);
		watch(fd, EPOLL_CTL_MOD, EPOLLOUT);
	}
}

int main(int argc, char **argv) {
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s PORT [HOST]\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl; /* as many connections as the hard limit allows */
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	maxfd = rl.rlim_cur;
	pend = calloc(maxfd, sizeof *pend);

	int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &sa.sin_addr) != 1 ||
	    bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, SOMAXCONN) < 0) {
		perror("echo: listen");
		return 1;
	}
	ep = epoll_create1(0);
	watch(ls, EPOLL_CTL_ADD, EPOLLIN);
	printf("listening on %s:%s\n", argc > 2 ? argv[2] : "127.0.0.1", argv[1]);
	fflush(stdout);

	static char buf[65536];
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd != ls) {
				if (evs[i].events & EPOLLOUT) flush(fd);
				else echo(fd, buf, sizeof buf);
				continue;
			}
			int c;
			while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
				if ((size_t)c >= maxfd) { close(c); continue; }
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				watch(c, EPOLL_CTL_ADD, EPOLLIN);
			}
		}
	}
}
