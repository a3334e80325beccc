/*
 * labapp: the lab guest's user-space helper (built static, so any kernel's initramfs runs it).
 *
 *   labapp ioctl null|bug|divide|spin|hang|recurse   poke /dev/pmdblab
 *   labapp threads N                                 a process of N+1 threads that all sleep
 *   labapp hog                                       touch memory until the OOM killer acts
 *   labapp busy PROCS THREADS FILES PAIRS PIPES VMAS  a big, busy machine (the busy scenario):
 *       PROCS processes of THREADS sleeping threads each, then in this process FILES small
 *       files in /tmp/busy (a tmpfs: inodes, dentries, page cache), PAIRS unix socket pairs,
 *       PIPES pipes, and VMAS one-page mappings that do not merge; it writes /tmp/busy.ready
 *       and sleeps holding it all
 *   labapp sockets                                   the netswap scenario's sockets, held open:
 *       TCP (a listener, a connected client and its accepted peer) and UDP (a bound one and
 *       one connected to it) on 127.0.0.1 and on ::1, unix stream (listener, client, accepted),
 *       a bound unix dgram, a unix socketpair, and a pipe and an eventfd besides (pseudo
 *       files for `files`); it writes its pid to /tmp/sockets.ready
 *   labapp pageout N                                 touch memory until the kernel has put N MB
 *       in swap; writes /tmp/pageout.ready and sleeps holding it
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

static const struct { const char *name; unsigned long cmd; unsigned long arg; } pokes[] = {
	{ "null",    _IO('L', 1), 0 },
	{ "bug",     _IO('L', 2), 0 },
	{ "divide",  _IO('L', 3), 0 },
	{ "spin",    _IO('L', 4), 0 },
	{ "hang",    _IO('L', 5), 0 },
	{ "recurse", _IO('L', 6), ~0UL >> 1 },
};

static int poke(const char *what)
{
	for (unsigned i = 0; i < sizeof(pokes) / sizeof(pokes[0]); i++) {
		if (strcmp(what, pokes[i].name))
			continue;
		int fd = open("/dev/pmdblab", O_RDWR);
		if (fd < 0) {
			perror("/dev/pmdblab");
			return 1;
		}
		printf("labapp: ioctl %s\n", what);
		fflush(stdout);
		if (ioctl(fd, pokes[i].cmd, pokes[i].arg) < 0)
			perror("ioctl");
		close(fd);
		return 0;
	}
	fprintf(stderr, "labapp: unknown ioctl %s\n", what);
	return 2;
}

static void *sleeper(void *arg)
{
	char name[16];

	snprintf(name, sizeof(name), "labthr-%ld", (long)arg);
	prctl(PR_SET_NAME, name);
	for (;;)
		pause();
	return NULL;
}

static int threads(int n)
{
	pthread_t t;

	for (long i = 1; i <= n; i++)
		if (pthread_create(&t, NULL, sleeper, (void *)i))
			return 1;
	for (;;)
		pause();
}

static int hog(void)
{
	for (;;) {
		char *p = malloc(1 << 20);

		if (!p)
			continue;
		memset(p, 0x5a, 1 << 20);
	}
}

/* the busy scenario's threads sleep in a few different ways, so their stacks differ */
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t busy_cond = PTHREAD_COND_INITIALIZER;
static int busy_pipe[2];

static void *busy_sleeper(void *arg)
{
	long i = (long)arg;
	char name[16], c;
	struct timespec ts = { 1000000, 0 };

	snprintf(name, sizeof(name), "busythr-%ld", i);
	prctl(PR_SET_NAME, name);
	for (;;) {
		switch (i % 4) {
		case 0: pause(); break;
		case 1: nanosleep(&ts, NULL); break;
		case 2: if (read(busy_pipe[0], &c, 1) <= 0) pause(); break;
		case 3:
			pthread_mutex_lock(&busy_lock);
			pthread_cond_wait(&busy_cond, &busy_lock);
			pthread_mutex_unlock(&busy_lock);
			break;
		}
	}
	return NULL;
}

static void busy_process(int p, int nthreads)
{
	pthread_attr_t attr;
	pthread_t t;
	char name[16];

	snprintf(name, sizeof(name), "busy-%d", p);
	prctl(PR_SET_NAME, name);
	if (pipe(busy_pipe))
		_exit(1);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	for (long i = 1; i <= nthreads; i++)
		if (pthread_create(&t, &attr, busy_sleeper, (void *)(p * 1000L + i)))
			break;
	for (;;)
		pause();
}

static int busy(int procs, int nthreads, int files, int pairs, int pipes, int vmas)
{
	struct rlimit rl = { 1 << 20, 1 << 20 };
	char path[64], text[128];
	int ready, fd, sv[2];

	for (int p = 0; p < procs; p++) {  /* before the fds: a fork would copy them all */
		pid_t pid = fork();

		if (pid == 0)
			busy_process(p, nthreads);
		if (pid < 0)
			perror("fork");
	}
	prctl(PR_SET_NAME, "busy-main");
	if (setrlimit(RLIMIT_NOFILE, &rl))
		perror("setrlimit");
	mkdir("/tmp/busy", 0755);
	for (int i = 0; i < files; i++) {
		if (i % 1000 == 0) {
			snprintf(path, sizeof(path), "/tmp/busy/d%d", i / 1000);
			mkdir(path, 0755);
		}
		snprintf(path, sizeof(path), "/tmp/busy/d%d/f%d", i / 1000, i);
		fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0)
			continue;
		int n = snprintf(text, sizeof(text), "pmdblab busy file %d\n", i);
		if (write(fd, text, n) != n)
			perror("write");
		close(fd);
	}
	for (int i = 0; i < pairs; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
			perror("socketpair");
			break;
		}
	for (int i = 0; i < pipes; i++)
		if (pipe(sv)) {
			perror("pipe");
			break;
		}
	for (int i = 0; i < vmas; i++) {  /* alternate protections so neighbours never merge */
		char *m = mmap(NULL, 4096, i % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED) {
			perror("mmap");
			break;
		}
		if (!(i % 2))
			m[0] = 1;
	}
	ready = open("/tmp/busy.ready", O_CREAT | O_WRONLY, 0644);
	close(ready);
	for (;;)
		pause();
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static socklen_t inet_address(int family, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	in6->sin6_addr = in6addr_loopback;
	return sizeof(*in6);
}

/* bind, retried for a few seconds: ::1 may not be usable the moment lo comes up */
static void bind_retry(int fd, struct sockaddr *sa, socklen_t len, const char *what)
{
	for (int i = 0; bind(fd, sa, len); i++) {
		if (i == 50)
			die(what);
		usleep(100000);
	}
}

/* a TCP listener on port, a client connected to it and the accepted peer */
static void tcp_trio(int family, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_address(family, port, &ss);
	int one = 1, l = socket(family, SOCK_STREAM, 0), c = socket(family, SOCK_STREAM, 0);

	if (l < 0 || c < 0)
		die("socket tcp");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	bind_retry(l, (struct sockaddr *)&ss, len, "bind tcp");
	if (listen(l, 4) || connect(c, (struct sockaddr *)&ss, len) || accept(l, NULL, NULL) < 0)
		die("tcp connect");
}

/* a UDP socket bound to port and another (bound by the kernel) connected to it */
static void udp_pair(int family, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_address(family, port, &ss);
	int b = socket(family, SOCK_DGRAM, 0), c = socket(family, SOCK_DGRAM, 0);

	if (b < 0 || c < 0)
		die("socket udp");
	bind_retry(b, (struct sockaddr *)&ss, len, "bind udp");
	if (connect(c, (struct sockaddr *)&ss, len))
		die("udp connect");
}

static int sockets(void)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int l, c, d, sv[2], pv[2];
	FILE *ready;

	prctl(PR_SET_NAME, "labsock");
	tcp_trio(AF_INET, 7001);
	tcp_trio(AF_INET6, 7002);
	udp_pair(AF_INET, 7003);
	udp_pair(AF_INET6, 7004);
	strcpy(un.sun_path, "/tmp/lab.stream");
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&un, sizeof(un)) || listen(l, 4) ||
	    connect(c, (struct sockaddr *)&un, sizeof(un)) || accept(l, NULL, NULL) < 0)
		die("unix stream");
	strcpy(un.sun_path, "/tmp/lab.dgram");
	d = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (d < 0 || bind(d, (struct sockaddr *)&un, sizeof(un)))
		die("unix dgram");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || pipe(pv) || eventfd(0, 0) < 0)
		die("socketpair/pipe/eventfd");
	ready = fopen("/tmp/sockets.ready.tmp", "w");
	if (!ready)
		die("/tmp/sockets.ready");
	fprintf(ready, "%d\n", getpid());
	fclose(ready);
	rename("/tmp/sockets.ready.tmp", "/tmp/sockets.ready");
	for (;;)
		pause();
}

/* swap in use, in MB (SwapTotal - SwapFree of /proc/meminfo) */
static long swap_used_mb(void)
{
	char line[128];
	long total = 0, free = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		sscanf(line, "SwapTotal: %ld kB", &total);
		sscanf(line, "SwapFree: %ld kB", &free);
	}
	if (f)
		fclose(f);
	return (total - free) / 1024;
}

/*
 * Touch fresh anonymous memory, one MB at a time, until the kernel has put want MB in swap;
 * then give back the last HEADROOM MB, so that nothing more is swapped out (nor, swap being
 * less than half full, are slots freed on swap-in) while the truth is recorded: swap's use
 * in the dump is then the one /proc/swaps showed.
 */
#define HEADROOM 24
static int pageout(long want)
{
	static char *chunk[4096];
	long mb = 0;
	int fd;

	prctl(PR_SET_NAME, "labpageout");
	while (swap_used_mb() < want && mb < 4096) {
		char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			die("mmap");
		for (long off = 0; off < 1 << 20; off += 4096)
			p[off] = (char)(mb + off / 4096 + 1);  /* not zero: real pages, not the zero page */
		chunk[mb++] = p;
	}
	for (long i = mb - 1; i >= 0 && i >= mb - HEADROOM; i--)
		munmap(chunk[i], 1 << 20);
	printf("labapp: pageout touched %ld MB, %ld MB in swap\n", mb, swap_used_mb());
	fflush(stdout);
	fd = open("/tmp/pageout.ready", O_CREAT | O_WRONLY, 0644);
	close(fd);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc == 8 && !strcmp(argv[1], "busy"))
		return busy(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
			    atoi(argv[6]), atoi(argv[7]));
	if (argc == 3 && !strcmp(argv[1], "ioctl"))
		return poke(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "threads"))
		return threads(atoi(argv[2]));
	if (argc == 2 && !strcmp(argv[1], "hog"))
		return hog();
	if (argc == 2 && !strcmp(argv[1], "sockets"))
		return sockets();
	if (argc == 3 && !strcmp(argv[1], "pageout"))
		return pageout(atol(argv[2]));
	fprintf(stderr, "usage: labapp ioctl NAME | threads N | hog | busy PROCS THREADS FILES PAIRS PIPES VMAS | sockets | pageout N\n");
	return 2;
}
