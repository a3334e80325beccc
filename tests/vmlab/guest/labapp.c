/*
 * labapp: the lab guest's user-space helper (built static, so any kernel's initramfs runs it).
 *
 *   labapp ioctl null|bug|divide|spin|hang|recurse   poke /dev/pmdblab
 *   labapp threads N                                 a process of N+1 threads that all sleep
 *   labapp hog                                       touch memory until the OOM killer acts
 */
#include <fcntl.h>
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

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "ioctl"))
		return poke(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "threads"))
		return threads(atoi(argv[2]));
	if (argc == 2 && !strcmp(argv[1], "hog"))
		return hog();
	fprintf(stderr, "usage: labapp ioctl NAME | threads N | hog\n");
	return 2;
}
