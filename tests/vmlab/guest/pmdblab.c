// SPDX-License-Identifier: GPL-2.0
/*
 * pmdblab: a misc device whose ioctls kill the kernel in assorted ways, so that pmdb's kernel
 * lab gets crash dumps of real failures. Every bug sits in its own noinline function, so a
 * stack trace names it. Load-time addresses are printed with %px for the lab's truth record.
 */
#include <linux/completion.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/slab.h>
#include <linux/string.h>

#define PMDBLAB_NULL		_IO('L', 1)	/* store through a NULL record pointer */
#define PMDBLAB_BUG		_IO('L', 2)	/* BUG() on a broken invariant */
#define PMDBLAB_DIVIDE		_IO('L', 3)	/* integer division by zero */
#define PMDBLAB_SPIN		_IO('L', 4)	/* spin forever with preemption off */
#define PMDBLAB_HANG		_IO('L', 5)	/* sleep uninterruptibly forever (D state) */
#define PMDBLAB_RECURSE		_IO('L', 6)	/* recurse until the stack runs out */

struct pmdblab_record {
	u64 tag;			/* 0x00 */
	char label[24];			/* 0x08 */
	u32 hits;			/* 0x20 */
	u32 flags;			/* 0x24 */
	struct pmdblab_record *link;	/* 0x28 */
};

static struct pmdblab_record pmdblab_anchor = {
	.tag = 0x6c61626d64627063ULL,
	.label = "pmdblab-anchor",
};
static struct pmdblab_record *pmdblab_heap;	/* a kmalloc'd record, for slab lookups */
static DECLARE_COMPLETION(pmdblab_never);	/* nobody ever completes it */
static unsigned int pmdblab_divisor;		/* stays 0 */
static bool pmdblab_stop;			/* never set: the spin never ends */

static noinline void pmdblab_record_hit(struct pmdblab_record *rec)
{
	rec->hits++;				/* rec == NULL: fault at address 0x20 */
}

static noinline long pmdblab_null(void)
{
	struct pmdblab_record *rec = READ_ONCE(pmdblab_anchor.link);	/* never linked */

	pr_info("pmdblab: hitting record %px\n", rec);
	pmdblab_record_hit(rec);
	return 0;
}

static noinline long pmdblab_bug(void)
{
	pr_info("pmdblab: checking anchor flags %#x\n", READ_ONCE(pmdblab_anchor.flags));
	BUG_ON(READ_ONCE(pmdblab_anchor.flags) == 0);
	return 0;
}

static noinline long pmdblab_divide(void)
{
	unsigned int d = READ_ONCE(pmdblab_divisor);

	pr_info("pmdblab: dividing %u by %u\n", pmdblab_anchor.hits + 1000, d);
	return (pmdblab_anchor.hits + 1000) / d;
}

static noinline long pmdblab_spin(void)
{
	pr_info("pmdblab: spinning with preemption off on CPU %d\n", raw_smp_processor_id());
	preempt_disable();
	while (!READ_ONCE(pmdblab_stop))
		cpu_relax();
	preempt_enable();
	return 0;
}

static noinline long pmdblab_hang(void)
{
	pr_info("pmdblab: %s (pid %d) waiting uninterruptibly\n", current->comm, current->pid);
	wait_for_completion(&pmdblab_never);
	return 0;
}

static noinline unsigned long pmdblab_recurse(unsigned long depth)
{
	volatile unsigned char frame[256];	/* volatile: each level keeps its own frame */
	unsigned long below;

	frame[depth % sizeof(frame)] = (unsigned char)depth;
	if (depth == 0)
		return frame[0];
	below = pmdblab_recurse(depth - 1);	/* not a tail call: frame is read after it */
	return below + frame[depth % sizeof(frame)];
}

static long pmdblab_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case PMDBLAB_NULL:	return pmdblab_null();
	case PMDBLAB_BUG:	return pmdblab_bug();
	case PMDBLAB_DIVIDE:	return pmdblab_divide();
	case PMDBLAB_SPIN:	return pmdblab_spin();
	case PMDBLAB_HANG:	return pmdblab_hang();
	case PMDBLAB_RECURSE:
		pr_info("pmdblab: recursing %lu levels\n", arg);
		return (long)pmdblab_recurse(arg);
	}
	return -ENOTTY;
}

static const struct file_operations pmdblab_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = pmdblab_ioctl,
};

static struct miscdevice pmdblab_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "pmdblab",
	.fops = &pmdblab_fops,
};

static int __init pmdblab_init(void)
{
	pmdblab_heap = kzalloc(sizeof(*pmdblab_heap), GFP_KERNEL);
	if (!pmdblab_heap)
		return -ENOMEM;
	pmdblab_heap->tag = pmdblab_anchor.tag;
	strscpy(pmdblab_heap->label, "pmdblab-heap", sizeof(pmdblab_heap->label));
	pr_info("pmdblab: address anchor %px\n", &pmdblab_anchor);
	pr_info("pmdblab: address heap %px\n", pmdblab_heap);
	pr_info("pmdblab: address never %px\n", &pmdblab_never);
	pr_info("pmdblab: address record_hit %px\n", pmdblab_record_hit);
	pr_info("pmdblab: address ioctl %px\n", pmdblab_ioctl);
	return misc_register(&pmdblab_dev);
}

static void __exit pmdblab_exit(void)
{
	misc_deregister(&pmdblab_dev);
	kfree(pmdblab_heap);
}

module_init(pmdblab_init);
module_exit(pmdblab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pmdb kernel lab: deliberately buggy ioctls");
