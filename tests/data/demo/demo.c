/* The program behind `pmdb --demo`: a few threads, a global struct, a linked
 * list on the heap, and a NULL dereference (SIGSEGV) in the main thread.
 * Workers spin in our own code (not in libc) so every thread's innermost
 * frames have DWARF even where the core's libc differs from the reader's. */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NWORKERS 3

struct node {
	int id;
	const char *name;
	struct node *next;
};

struct config {
	const char *title;
	int nworkers;
	unsigned long flags;
	struct node *head;
	double ratio;
};

struct config g_config = { "pmdb demo", NWORKERS, 0x2a, NULL, 0.75 };
volatile int g_ready;
volatile unsigned long g_ticks[NWORKERS];

static const char *names[] = { "alpha", "beta", "gamma", "delta", "epsilon" };

__attribute__((noinline)) static void spin(int i)
{
	for (;;)
		g_ticks[i]++;
}

__attribute__((noinline)) static void do_work(int i)
{
	__atomic_fetch_add(&g_ready, 1, __ATOMIC_SEQ_CST);
	spin(i);
}

static void *worker(void *arg)
{
	do_work((int)(long)arg);
	return NULL;
}

__attribute__((noinline)) static struct node *build_list(int n)
{
	struct node *head = NULL;

	for (int i = n - 1; i >= 0; i--) {
		struct node *nd = malloc(sizeof(*nd));
		nd->id = i + 1;
		nd->name = names[i % 5];
		nd->next = head;
		head = nd;
	}
	return head;
}

__attribute__((noinline)) static struct node *find_node(struct node *n, int id)
{
	for (; n != NULL; n = n->next)
		if (n->id == id)
			return n;
	return NULL;
}

__attribute__((noinline)) static size_t name_length(int id)
{
	struct node *n = find_node(g_config.head, id);

	return strlen(n->name);	/* n is NULL for a missing id: the crash */
}

int main(int argc, char **argv)
{
	pthread_attr_t attr;
	pthread_t tids[NWORKERS];
	int missing = argc > 1 ? atoi(argv[1]) : 9;

	mallopt(M_TOP_PAD, 0);	/* a small heap keeps the core small */
	g_config.head = build_list(5);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 32 * 1024);
	for (long i = 0; i < NWORKERS; i++)
		pthread_create(&tids[i], &attr, worker, (void *)i);
	while (g_ready < NWORKERS)
		;
	return (int)name_length(missing);
}
