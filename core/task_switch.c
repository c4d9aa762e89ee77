/* The context switch under tasks: a few instructions of assembly for x86-64 and
 * aarch64 (ELF), and a ucontext fallback for every other platform, also selected by
 * defining TIDE_TASK_UCONTEXT (tests/core/test_task_ucontext.c does, to run the
 * task suite over it).
 *
 * Both keep a suspended execution's state on its own stack and its stack pointer in
 * a tide__ctx: the assembly pushes the callee-saved registers (the only ones the
 * ABI says survive a call) plus the floating-point control words, so each task has
 * its own rounding mode as under swapcontext; the fallback keeps a ucontext_t in the
 * switch's own frame. No state is global: reentrant, any thread. */
#include <stdint.h>
#include <stdlib.h>

#include "core/core_int.h"

#if !defined(TIDE_TASK_UCONTEXT) && defined(__ELF__) && !defined(__ILP32__) && \
    (defined(__x86_64__) || defined(__aarch64__))
#define TIDE__CTX_ASM 1
#endif

#if defined(TIDE__CTX_ASM) && defined(__x86_64__)

/* Frame left on a suspended stack, from its saved stack pointer upwards: MXCSR (4
 * bytes) and x87 control word (2) in one slot, r15, r14, r13, r12, rbx, rbp, return
 * address. A fresh context starts with tide__ctx_entry as the return address, the
 * entry function in r12 and its argument in r13. */
#if defined(__CET__)
#define TIDE__ENDBR "endbr64\n\t"
#else
#define TIDE__ENDBR ""
#endif

__asm__(".text\n\t"
        ".globl tide__ctx_switch\n\t"
        ".hidden tide__ctx_switch\n\t"
        ".type tide__ctx_switch, @function\n\t"
        ".p2align 4\n"
        "tide__ctx_switch:\n\t"
        ".cfi_startproc\n\t" TIDE__ENDBR
        "pushq %rbp\n\t"
        "pushq %rbx\n\t"
        "pushq %r12\n\t"
        "pushq %r13\n\t"
        "pushq %r14\n\t"
        "pushq %r15\n\t"
        "subq $8, %rsp\n\t"
        "stmxcsr (%rsp)\n\t"
        "fnstcw 4(%rsp)\n\t"
        "movq %rsp, (%rdi)\n\t"
        "movq %rsi, %rsp\n\t"
        "ldmxcsr (%rsp)\n\t"
        "fldcw 4(%rsp)\n\t"
        "addq $8, %rsp\n\t"
        "popq %r15\n\t"
        "popq %r14\n\t"
        "popq %r13\n\t"
        "popq %r12\n\t"
        "popq %rbx\n\t"
        "popq %rbp\n\t"
        "ret\n\t"
        ".cfi_endproc\n\t"
        ".size tide__ctx_switch, .-tide__ctx_switch\n\t"
        /* Reached by the switch's ret with the stack 16-byte aligned; the undefined
         * return address ends a debugger's backtrace here. */
        ".globl tide__ctx_entry\n\t"
        ".hidden tide__ctx_entry\n\t"
        ".type tide__ctx_entry, @function\n\t"
        ".p2align 4\n"
        "tide__ctx_entry:\n\t"
        ".cfi_startproc\n\t"
        ".cfi_undefined rip\n\t"
        "movq %r13, %rdi\n\t"
        "callq *%r12\n\t"
        "ud2\n\t"
        ".cfi_endproc\n\t"
        ".size tide__ctx_entry, .-tide__ctx_entry\n\t");

void tide__ctx_entry(void);

tide__ctx tide__ctx_make(void *stack, size_t size, void (*entry)(void *arg), void *arg) {
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 64);
    /* MXCSR 0x1F80 (all exceptions masked, round to nearest) and x87 control word
     * 0x037F: the state a new thread starts with. */
    frame[0] = (uint64_t)0x037F << 32 | 0x1F80;
    frame[1] = 0;                             /* r15 */
    frame[2] = 0;                             /* r14 */
    frame[3] = (uint64_t)(uintptr_t)arg;      /* r13 */
    frame[4] = (uint64_t)(uintptr_t)entry;    /* r12 */
    frame[5] = 0;                             /* rbx */
    frame[6] = 0;                             /* rbp: ends frame-pointer chains */
    frame[7] = (uint64_t)(uintptr_t)tide__ctx_entry;
    return frame;
}

const char *tide__ctx_backend(void) { return "x86_64"; }

#elif defined(TIDE__CTX_ASM) && defined(__aarch64__)

/* Frame left on a suspended stack (176 bytes, keeping sp 16-byte aligned):
 * x19..x28, x29 (fp), x30 (lr), d8..d15, FPCR. A fresh context starts with lr at
 * tide__ctx_entry, the entry function in x19 and its argument in x20. "hint #34" is
 * BTI C (a no-op before ARMv8.5) for binaries built with branch protection. */
__asm__(".text\n\t"
        ".globl tide__ctx_switch\n\t"
        ".hidden tide__ctx_switch\n\t"
        ".type tide__ctx_switch, %function\n\t"
        ".p2align 4\n"
        "tide__ctx_switch:\n\t"
        ".cfi_startproc\n\t"
        "hint #34\n\t"
        "sub sp, sp, #176\n\t"
        "stp x19, x20, [sp, #0]\n\t"
        "stp x21, x22, [sp, #16]\n\t"
        "stp x23, x24, [sp, #32]\n\t"
        "stp x25, x26, [sp, #48]\n\t"
        "stp x27, x28, [sp, #64]\n\t"
        "stp x29, x30, [sp, #80]\n\t"
        "stp d8, d9, [sp, #96]\n\t"
        "stp d10, d11, [sp, #112]\n\t"
        "stp d12, d13, [sp, #128]\n\t"
        "stp d14, d15, [sp, #144]\n\t"
        "mrs x9, fpcr\n\t"
        "str x9, [sp, #160]\n\t"
        "mov x10, sp\n\t"
        "str x10, [x0]\n\t"
        "mov sp, x1\n\t"
        "ldp x19, x20, [sp, #0]\n\t"
        "ldp x21, x22, [sp, #16]\n\t"
        "ldp x23, x24, [sp, #32]\n\t"
        "ldp x25, x26, [sp, #48]\n\t"
        "ldp x27, x28, [sp, #64]\n\t"
        "ldp x29, x30, [sp, #80]\n\t"
        "ldp d8, d9, [sp, #96]\n\t"
        "ldp d10, d11, [sp, #112]\n\t"
        "ldp d12, d13, [sp, #128]\n\t"
        "ldp d14, d15, [sp, #144]\n\t"
        "ldr x10, [sp, #160]\n\t"
        /* Writing FPCR can stall the pipeline; skip it when nothing changes. */
        "cmp x9, x10\n\t"
        "b.eq 1f\n\t"
        "msr fpcr, x10\n"
        "1:\n\t"
        "add sp, sp, #176\n\t"
        "ret\n\t"
        ".cfi_endproc\n\t"
        ".size tide__ctx_switch, .-tide__ctx_switch\n\t"
        ".globl tide__ctx_entry\n\t"
        ".hidden tide__ctx_entry\n\t"
        ".type tide__ctx_entry, %function\n\t"
        ".p2align 4\n"
        "tide__ctx_entry:\n\t"
        ".cfi_startproc\n\t"
        ".cfi_undefined x30\n\t"
        "mov x0, x20\n\t"
        "blr x19\n\t"
        "brk #0\n\t"
        ".cfi_endproc\n\t"
        ".size tide__ctx_entry, .-tide__ctx_entry\n\t");

void tide__ctx_entry(void);

tide__ctx tide__ctx_make(void *stack, size_t size, void (*entry)(void *arg), void *arg) {
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 176);
    for (int i = 0; i < 22; i++)
        frame[i] = 0; /* callee-saved registers, fp = 0 ends frame chains, FPCR 0 */
    frame[0] = (uint64_t)(uintptr_t)entry;            /* x19 */
    frame[1] = (uint64_t)(uintptr_t)arg;              /* x20 */
    frame[11] = (uint64_t)(uintptr_t)tide__ctx_entry; /* x30 */
    return frame;
}

const char *tide__ctx_backend(void) { return "aarch64"; }

#else /* ucontext */

#include <ucontext.h>

/* Lives at the top of the new stack, below which the context's own stack begins. */
typedef struct boot {
    ucontext_t uc;
    void (*entry)(void *arg);
    void *arg;
} boot;

/* makecontext passes int arguments only: the boot pointer travels in two halves. */
static void trampoline(unsigned hi, unsigned lo) {
    boot *b = (boot *)(uintptr_t)((uint64_t)hi << 32 | lo);
    b->entry(b->arg);
    abort(); /* entry never returns */
}

tide__ctx tide__ctx_make(void *stack, size_t size, void (*entry)(void *arg), void *arg) {
    uintptr_t top = ((uintptr_t)stack + size - sizeof(boot)) & ~(uintptr_t)63;
    boot *b = (boot *)top;
    if (getcontext(&b->uc) != 0)
        return NULL;
    b->uc.uc_stack.ss_sp = stack;
    b->uc.uc_stack.ss_size = top - (uintptr_t)stack;
    b->uc.uc_link = NULL;
    b->entry = entry;
    b->arg = arg;
    uint64_t p = (uint64_t)(uintptr_t)b;
    makecontext(&b->uc, (void (*)(void))trampoline, 2, (unsigned)(p >> 32), (unsigned)p);
    return &b->uc;
}

void tide__ctx_switch(tide__ctx *save, tide__ctx to) {
    ucontext_t self;
    /* swapcontext does not fill uc_stack, and ASan's interceptor reads it from the
     * context being resumed to clear that stack's shadow: a zero size tells it not
     * to (only contexts fresh from makecontext carry one). */
    self.uc_stack.ss_sp = NULL;
    self.uc_stack.ss_size = 0;
    self.uc_stack.ss_flags = 0;
    *save = &self;
    swapcontext(&self, (ucontext_t *)to);
}

const char *tide__ctx_backend(void) { return "ucontext"; }

#endif
