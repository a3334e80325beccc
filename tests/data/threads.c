/* threads.c - a test program for pmdb: globals, blocked threads, a crash.
 *
 * Usage: threads [NTHREADS [HEAP_MB]]   (default 4 threads, no extra heap)
 *
 * Each thread goes a few noinline calls deep and blocks in a different libc call
 * (read on a pipe, a condition variable, nanosleep, a mutex held by main). Once
 * /proc says every thread sleeps, main crashes by storing through NULL (SIGSEGV),
 * so the core shows each thread inside the kernel and main at the faulting store.
 * HEAP_MB mallocs that much and touches one page per MB, for big sparse cores.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256

struct point {
    int x;
    int y;
};

struct config {
    char name[16];
    int id;
    struct point origin;        /* nested struct */
    long values[4];             /* array */
    struct config *self;        /* pointer (to itself) */
    const char *label;
    double ratio;
};

struct config g_config = {
    "threads", 42, { 3, -4 }, { 1, 2, 3, 0x11223344 }, &g_config, "hello", 2.5
};
struct point g_points[3] = { { 1, 2 }, { 3, 4 }, { 5, 6 } };
volatile int g_ready;
int g_tids[MAX_THREADS];
char *g_heap;

static int g_pipe[2];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;

__attribute__((noinline)) int block_here(int kind)
{
    char c;
    struct timespec ts = { 100000, 0 };

    __sync_fetch_and_add(&g_ready, 1);
    switch (kind % 4) {
    case 0:
        return (int)read(g_pipe[0], &c, 1);
    case 1:
        pthread_mutex_lock(&g_cond_lock);
        pthread_cond_wait(&g_cond, &g_cond_lock);
        pthread_mutex_unlock(&g_cond_lock);
        return 1;
    case 2:
        return nanosleep(&ts, NULL);
    default:
        pthread_mutex_lock(&g_lock);
        pthread_mutex_unlock(&g_lock);
        return 3;
    }
}

/* The result of each call is used, so -O2 cannot turn them into tail calls. */
__attribute__((noinline)) int level_c(int kind)
{
    return block_here(kind) + 1;
}

__attribute__((noinline)) int level_b(int kind)
{
    return level_c(kind) * 2;
}

__attribute__((noinline)) int level_a(int kind)
{
    return level_b(kind) - 3;
}

__attribute__((noinline)) static void *worker(void *arg)
{
    int kind = (int)(long)arg;
    long r;

    g_tids[kind] = (int)syscall(SYS_gettid);
    r = level_a(kind);
    __asm__ volatile("" ::: "memory");   /* keeps level_a from being a tail call */
    return (void *)r;
}

/* 1 when the thread's /proc state is S (sleeping in the kernel). */
static int sleeping(int tid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] == 'S';
}

static void wait_all_asleep(int n)
{
    struct timespec ts = { 0, 2000000 };
    int i, all;

    for (int tries = 0; tries < 5000; tries++) {
        all = g_ready == n;
        for (i = 0; all && i < n; i++)
            all = g_tids[i] != 0 && sleeping(g_tids[i]);
        if (all)
            return;
        nanosleep(&ts, NULL);
    }
}

__attribute__((noinline)) void crash_now(volatile long *p)
{
    *p = 0xdead;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    long mb = argc > 2 ? atol(argv[2]) : 0;
    pthread_t th;

    if (n < 0 || n > MAX_THREADS)
        n = 4;
    if (mb > 0) {
        g_heap = malloc((size_t)mb << 20);
        for (long i = 0; g_heap != NULL && i < mb; i++)
            g_heap[i << 20] = (char)i;
    }
    if (pipe(g_pipe) != 0)
        return 2;
    pthread_mutex_lock(&g_lock);
    for (long i = 0; i < n; i++)
        pthread_create(&th, NULL, worker, (void *)i);
    wait_all_asleep(n);
    printf("threads=%d ready=%d\n", n, g_ready);
    fflush(stdout);
    crash_now((volatile long *)(long)(g_config.id == 0));
    return 0;
}
