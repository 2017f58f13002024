/*
 * A minimal single-threaded io_uring echo server: the completion-based
 * floor that "switchboard compare --peers" measures the uring model
 * against, as c-epoll is the readiness floor.
 *
 *     cc -O2 -o echo echo.c -luring && ./echo PORT [HOST]
 *
 * One multishot accept; per connection one multishot receive into a
 * shared provided-buffer ring, so an idle connection holds no buffer;
 * each received buffer is sent back as it is and returned to the ring
 * when its send completes. One io_uring_submit_and_wait per iteration
 * submits everything prepared and reaps everything ready. A connection
 * has at most one send in flight (two could interleave on the socket);
 * buffers that arrive meanwhile wait in a per-connection list. When every
 * buffer is out, a receive ends with ENOBUFS and is armed again once sends
 * have returned some (the data waits in the socket meanwhile). The ring
 * asks for SINGLE_ISSUER, DEFER_TASKRUN, COOP_TASKRUN and a registered
 * ring fd, and runs without the first three on a kernel that refuses them.
 *
 * Needs liburing (Debian: apt-get install liburing-dev) and Linux 6.0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBUF 4096 /* buffers in the ring, a power of two */
#define BUFSZ 4096
#define BGID 0

enum { ACCEPT = 1, RECV, SEND };

struct conn {
	int sending;      /* a send is in flight */
	int recv_done;    /* the multishot receive has ended */
	int starved;      /* its receive ended for want of buffers */
	int qhead, qtail; /* buffers waiting to be sent, linked by next[] */
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static int next[NBUF], blen[NBUF];
static struct conn *conns; /* indexed by descriptor */
static size_t maxfd;
static int *starved, nstarved; /* descriptors to re-arm once buffers return */
static int ls, recycled;

static uint64_t ud(int type, int bid, int fd) {
	return (uint64_t)type << 56 | (uint64_t)(unsigned)bid << 32 | (uint32_t)fd;
}

static struct io_uring_sqe *sqe(void) {
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);
	if (!s) { /* full: hand the batch over and take a fresh slot */
		io_uring_submit(&ring);
		s = io_uring_get_sqe(&ring);
	}
	return s;
}

static void arm_accept(void) {
	struct io_uring_sqe *s = sqe();
	io_uring_prep_multishot_accept(s, ls, NULL, NULL, 0);
	io_uring_sqe_set_data64(s, ud(ACCEPT, 0, ls));
}

static void arm_recv(int fd) {
	struct io_uring_sqe *s = sqe();
	io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
	s->flags |= IOSQE_BUFFER_SELECT;
	s->buf_group = BGID;
	io_uring_sqe_set_data64(s, ud(RECV, 0, fd));
}

static void send_buf(int fd, int bid) {
	struct io_uring_sqe *s = sqe();
	/* MSG_WAITALL: the kernel retries a short send itself. */
	io_uring_prep_send(s, fd, bufs + (size_t)bid * BUFSZ, (size_t)blen[bid], MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(s, ud(SEND, bid, fd));
	conns[fd].sending = 1;
}

static void recycle(int bid) {
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
	                      io_uring_buf_ring_mask(NBUF), recycled++);
}

/* Close once nothing of the connection is in flight any more. */
static void maybe_close(int fd) {
	struct conn *c = &conns[fd];
	if (c->recv_done && !c->sending) {
		close(fd);
		memset(c, 0, sizeof *c);
		c->qhead = c->qtail = -1;
	}
}

static void on_recv(int fd, struct io_uring_cqe *cqe) {
	struct conn *c = &conns[fd];
	if (cqe->res == -ENOBUFS) { /* every buffer is out: re-arm once some come back */
		if (!c->starved) {
			c->starved = 1;
			starved[nstarved++] = fd;
		}
		return;
	}
	if (cqe->res <= 0) { /* end of stream, or an error */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			recycle((int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		if (!(cqe->flags & IORING_CQE_F_MORE))
			c->recv_done = 1;
		maybe_close(fd);
		return;
	}
	int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	blen[bid] = cqe->res;
	if (!(cqe->flags & IORING_CQE_F_MORE)) /* ended (CQ overflow, say) while the socket is open */
		arm_recv(fd);
	if (!c->sending) {
		send_buf(fd, bid);
		return;
	}
	next[bid] = -1; /* queue behind the send in flight */
	if (c->qtail >= 0) next[c->qtail] = bid;
	else c->qhead = bid;
	c->qtail = bid;
}

static void on_send(int fd, int bid, int res) {
	struct conn *c = &conns[fd];
	recycle(bid);
	c->sending = 0;
	if (res < 0) { /* the peer is gone: drop what waits; the receive ends too */
		for (int b = c->qhead; b >= 0; b = next[b]) recycle(b);
		c->qhead = c->qtail = -1;
	} else if (c->qhead >= 0) {
		int b = c->qhead;
		c->qhead = next[b];
		if (c->qhead < 0) c->qtail = -1;
		send_buf(fd, b);
	}
	maybe_close(fd);
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
	conns = calloc(maxfd, sizeof *conns);
	starved = calloc(maxfd, sizeof *starved);
	for (size_t i = 0; i < maxfd; i++) conns[i].qhead = conns[i].qtail = -1;

	/* The ring first, so that a machine without io_uring fails before listening. */
	struct io_uring_params p = {
		.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
		         IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
		.cq_entries = 16384,
	};
	int ret = io_uring_queue_init_params(4096, &ring, &p);
	if (ret == -EINVAL) { /* an older kernel: the essentials only */
		memset(&p, 0, sizeof p);
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = 16384;
		ret = io_uring_queue_init_params(4096, &ring, &p);
	}
	if (ret < 0) {
		fprintf(stderr, "echo: io_uring_queue_init: %s%s\n", strerror(-ret),
		        ret == -EPERM ? " (io_uring refused: a seccomp profile or kernel.io_uring_disabled)" :
		        ret == -ENOSYS ? " (this kernel has no io_uring)" : "");
		return 1;
	}
	io_uring_register_ring_fd(&ring); /* an optimisation: fine if refused */

	size_t brsz = NBUF * sizeof(struct io_uring_buf);
	br = mmap(NULL, brsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bufs = mmap(NULL, (size_t)NBUF * BUFSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED || bufs == MAP_FAILED) {
		perror("echo: mmap");
		return 1;
	}
	struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br, .ring_entries = NBUF, .bgid = BGID };
	if ((ret = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) {
		fprintf(stderr, "echo: io_uring_register_buf_ring: %s\n", strerror(-ret));
		return 1;
	}
	io_uring_buf_ring_init(br);
	for (int i = 0; i < NBUF; i++) recycle(i);
	io_uring_buf_ring_advance(br, recycled);
	recycled = 0;

	int one = 1;
	ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &sa.sin_addr) != 1 ||
	    bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, SOMAXCONN) < 0) {
		perror("echo: listen");
		return 1;
	}
	arm_accept();
	printf("listening on %s:%s\n", argc > 2 ? argv[2] : "127.0.0.1", argv[1]);
	fflush(stdout);

	for (;;) {
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			fprintf(stderr, "echo: io_uring_submit_and_wait: %s\n", strerror(-ret));
			return 1;
		}
		unsigned head, n = 0;
		struct io_uring_cqe *cqe;
		io_uring_for_each_cqe(&ring, head, cqe) {
			n++;
			int type = (int)(cqe->user_data >> 56);
			int bid = (int)(cqe->user_data >> 32 & 0xffff);
			int fd = (int)(uint32_t)cqe->user_data;
			switch (type) {
			case ACCEPT:
				if (cqe->res >= 0) {
					if ((size_t)cqe->res >= maxfd) {
						close(cqe->res);
					} else {
						setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
						arm_recv(cqe->res);
					}
				}
				if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept();
				break;
			case RECV: on_recv(fd, cqe); break;
			case SEND: on_send(fd, bid, cqe->res); break;
			}
		}
		io_uring_cq_advance(&ring, n);
		if (recycled) {
			io_uring_buf_ring_advance(br, recycled);
			recycled = 0;
			for (; nstarved > 0; nstarved--) {
				int fd = starved[nstarved - 1];
				conns[fd].starved = 0;
				arm_recv(fd);
			}
		}
	}
}
