/* noreturn.c - a test program for pmdb's user cores, built -O2 -fomit-frame-pointer.
 *
 * Usage: noreturn MODE
 *   0      handler() calls abort() as its last instruction
 *   N<999  die_now() (noreturn, ends in abort) is handler's last call: a caller named by its
 *          return address would be named after the function that follows it
 *   9      prints "ready" and waits to be killed from outside (kill -SEGV: a sent signal)
 * Two threads block in read() on a pipe (frame 0 in the vdso on i386). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_pipe[2];
volatile int g_ready;

__attribute__((noinline, noreturn)) void die_now(int code)
{
    if (code > 1000)
        exit(code);
    abort();
}

__attribute__((noinline)) void handler(int how)
{
    if (how)
        die_now(how);
    abort();
}

__attribute__((noinline)) int recurse(int n)
{
    if (n <= 0)
        return n;
    return recurse(n - 1) + n * 3;
}

__attribute__((noinline)) void *blocker(void *arg)
{
    char c;
    __sync_fetch_and_add(&g_ready, 1);
    if (read(g_pipe[0], &c, 1) < 0)
        recurse((int)(long)arg);
    return arg;
}

int main(int argc, char **argv)
{
    pthread_t t[2];
    int mode = argc > 1 ? atoi(argv[1]) : 1;
    if (pipe(g_pipe))
        return 1;
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, blocker, (void *)i);
    while (g_ready < 2)
        usleep(1000);
    usleep(20000);
    if (mode == 9) {            /* wait to be killed from outside */
        puts("ready");
        fflush(stdout);
        for (;;) pause();
    }
    handler(mode);
    return recurse(mode);
}
