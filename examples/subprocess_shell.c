/* subprocess_shell: asyncio's documented subprocess example, run(cmd), in C, written
 * as a task with the _await calls:
 *
 *   async def run(cmd):
 *       proc = await asyncio.create_subprocess_shell(
 *           cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
 *       stdout, stderr = await proc.communicate()
 *       print(f'[{cmd!r} exited with {proc.returncode}]')
 *       if stdout:
 *           print(f'[stdout]\n{stdout.decode()}')
 *       if stderr:
 *           print(f'[stderr]\n{stderr.decode()}')
 *
 *   subprocess_shell CMD
 *
 * It prints exactly what Python prints, the command shown as Python's repr of a str
 * shows it (quotes chosen the same way, escapes for control characters, non-ASCII
 * printed as is, bytes that are not UTF-8 as Python's surrogate escapes '\udcXX').
 * The output is held once, as communicate must, and written straight out. Exits 0;
 * 1 when the command could not be run at all. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <tide.h>

/* Length of the UTF-8 sequence starting at s (of n bytes left) and its code point,
 * or 0 when it is not valid UTF-8 (then Python shows the byte as '\udcXX'). */
static size_t utf8_next(const unsigned char *s, size_t n, unsigned *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || len > n || s[0] >= 0xF8)
        return 0;
    unsigned v = s[0] & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8 either. */
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Python's str.isprintable for the characters a command line holds: control
 * characters, C1 controls, the no-break space and the soft hyphen are not. */
static bool printable(unsigned cp) {
    return !(cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD || cp == 0x2028 ||
             cp == 0x2029 || (cp >= 0x200B && cp <= 0x200F) || cp == 0xFEFF);
}

/* Prints repr(s) as Python does for a str. */
static void print_repr(const char *cmd) {
    const unsigned char *s = (const unsigned char *)cmd;
    size_t n = strlen(cmd);
    char quote = strchr(cmd, '\'') && !strchr(cmd, '"') ? '"' : '\'';
    putchar(quote);
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        if (len == 0) {
            printf("\\udc%02x", s[i]);
            i++;
            continue;
        }
        if (cp == (unsigned char)quote || cp == '\\')
            printf("\\%c", (char)cp);
        else if (cp == '\t')
            fputs("\\t", stdout);
        else if (cp == '\n')
            fputs("\\n", stdout);
        else if (cp == '\r')
            fputs("\\r", stdout);
        else if (!printable(cp))
            printf(cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
        else
            fwrite(s + i, 1, len, stdout);
        i += len;
    }
    putchar(quote);
}

static int run(void *arg) {
    const char *cmd = arg;
    tide_subprocess_options_t options;
    tide_subprocess_options_init(&options, TIDE_STDIO_INHERIT);
    options.stdio[1].mode = TIDE_STDIO_PIPE;
    options.stdio[2].mode = TIDE_STDIO_PIPE;
    tide_process_t *proc;
    int rc = tide_loop_create_subprocess_shell(tide_task_get_loop(tide_task_current()), cmd,
                                               &options, 0, &proc);
    if (rc != 0) {
        fprintf(stderr, "subprocess_shell: %s\n", tide_strerror(rc));
        return 1;
    }
    char *out = NULL, *err = NULL;
    size_t out_len = 0, err_len = 0;
    int returncode = 0;
    rc = tide_process_communicate_await(proc, NULL, 0, &returncode, &out, &out_len, &err, &err_len);
    tide_process_close(proc);
    if (rc != 0) {
        fprintf(stderr, "subprocess_shell: %s\n", tide_strerror(rc));
        return 1;
    }
    putchar('[');
    print_repr(cmd);
    printf(" exited with %d]\n", returncode);
    if (out_len > 0) {
        fputs("[stdout]\n", stdout);
        fwrite(out, 1, out_len, stdout);
        putchar('\n');
    }
    if (err_len > 0) {
        fputs("[stderr]\n", stdout);
        fwrite(err, 1, err_len, stdout);
        putchar('\n');
    }
    tide_free(out);
    tide_free(err);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: subprocess_shell CMD\n");
        return 2;
    }
    tide_loop_t *loop;
    if (tide_loop_new(&loop) != 0)
        return 1;
    int result = 1;
    int rc = tide_loop_run_until_complete(loop, run, argv[1], NULL, &result);
    /* The closed process is freed on the loop's next turns. */
    if (rc == 0)
        rc = tide_loop_run(loop, TIDE_RUN_DEFAULT);
    if (tide_loop_close(loop) != 0 || rc != 0)
        return 1;
    return result;
}
