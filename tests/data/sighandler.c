/* sighandler.c - crash inside a signal handler, so the core's stack crosses a
 * signal frame: crash_now <- handler <- [signal trampoline] <- raise <- spin <- main. */
#include <signal.h>
#include <string.h>

__attribute__((noinline)) void crash_now(volatile long *p)
{
    *p = 1;
}

__attribute__((noinline)) void handler(int sig)
{
    crash_now((volatile long *)(long)(sig == 0));
    __asm__ volatile("" ::: "memory");   /* not a tail call */
}

__attribute__((noinline)) int spin(volatile int *x)
{
    raise(SIGUSR1);
    return *x + 1;
}

int main(void)
{
    struct sigaction sa;
    volatile int x = 0;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(SIGUSR1, &sa, NULL);
    return spin(&x);
}
