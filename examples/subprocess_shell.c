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

#include "pyrepr.h"

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
    py_print_repr(stdout, cmd, strlen(cmd), false);
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
