/* The whole task suite of test_task.c again, over the ucontext fallback of the
 * context switch instead of the assembly one.
 *
 * How: this file compiles core/task_switch.c itself with TIDE_TASK_UCONTEXT, so its
 * object defines every tide__ctx_* symbol before the linker reaches libtide.a;
 * task.o is then taken from the archive as usual while task_switch.o, whose symbols
 * are all defined already, is not. A tide__ctx is one pointer in both
 * implementations, so task.o works with either. test_raw_switch checks that the
 * fallback is really the one in use. */
#define TIDE_TASK_UCONTEXT 1
#include "core/task_switch.c"

#include "test_task.c"
