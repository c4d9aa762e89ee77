/* malloc_count: an LD_PRELOAD library that keeps, in a shared file, the number of bytes
 * the process has obtained from malloc and not freed (as malloc_usable_size counts
 * them, so allocator rounding is included; its per-chunk header is not). The runner
 * reads it to give heap bytes per idle connection.
 *
 *   MALLOC_COUNT_FILE=/tmp/x LD_PRELOAD=malloc_count.so server ...
 * The file holds one int64 at offset 0 (native byte order), updated atomically, so
 * threads may allocate concurrently. Wraps glibc's __libc_* entry points (no dlsym,
 * which itself allocates). Memory from mmap directly (task stacks, Python's arenas)
 * is not counted: RSS covers it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static int64_t dummy;
static int64_t *live = &dummy;

__attribute__((constructor)) static void setup(void) {
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (path == NULL)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        return;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED) {
        int64_t *counter = p;
        *counter = __atomic_load_n(&dummy, __ATOMIC_RELAXED);
        live = counter;
    }
}

static void *count(void *p) {
    if (p != NULL)
        __atomic_add_fetch(live, (int64_t)malloc_usable_size(p), __ATOMIC_RELAXED);
    return p;
}

static void uncount(void *p) {
    if (p != NULL)
        __atomic_sub_fetch(live, (int64_t)malloc_usable_size(p), __ATOMIC_RELAXED);
}

void *malloc(size_t n) {
    return count(__libc_malloc(n));
}

void *calloc(size_t n, size_t m) {
    return count(__libc_calloc(n, m));
}

void *realloc(void *p, size_t n) {
    uncount(p);
    void *q = __libc_realloc(p, n);
    if (q == NULL && p != NULL && n != 0) {
        count(p); /* the old block is still there */
        return NULL;
    }
    return count(q);
}

void free(void *p) {
    uncount(p);
    __libc_free(p);
}

void *memalign(size_t a, size_t n) {
    return count(__libc_memalign(a, n));
}

void *aligned_alloc(size_t a, size_t n) {
    return count(__libc_memalign(a, n));
}

int posix_memalign(void **out, size_t a, size_t n) {
    void *p = __libc_memalign(a, n);
    if (p == NULL)
        return 12; /* ENOMEM */
    *out = count(p);
    return 0;
}
