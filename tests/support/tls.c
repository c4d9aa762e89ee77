/* TLS test support; see tls.h.
 *
 * Child processes are started with fork + exec (after PR_SET_PDEATHSIG, so a crashed
 * or failed test never leaves peers behind that would hold CTest's pipes) and their
 * descriptors are close-on-exec except the three standard ones. Everything here runs
 * on the test's thread; the process registry is not thread-safe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/tls.h"
#include "tide/ev.h"

/* ---- small helpers -------------------------------------------------------------------- */

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Searches PATH for an executable called name (name with a slash: itself). */
static bool find_program(const char *name, char *out, size_t size) {
    if (strchr(name, '/')) {
        snprintf(out, size, "%s", name);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n > 0 && n + strlen(name) + 2 <= size) {
            snprintf(out, size, "%.*s/%s", (int)n, path, name);
            struct stat st;
            if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
                return true;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

bool tt_have_openssl(void) {
    char buf[TT_PATH];
    return find_program("openssl", buf, sizeof(buf));
}

/* Forks and executes argv with stdin from in_fd (or /dev/null when -1) and
 * stdout+stderr into out_fd. The child dies with us. Returns the pid, or -1. */
static pid_t spawn(const char *prog, const char *const *argv, int in_fd, int out_fd) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The child: only async-signal-safe calls until exec. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int devnull = open("/dev/null", O_RDONLY);
    if (dup2(in_fd >= 0 ? in_fd : devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    execv(prog, (char *const *)argv);
    _exit(127);
}

/* Exit code of a wait status: the code, or 128 + signal. */
static int exit_code(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

/* Runs a tool to completion within `seconds` (scaled), failing the test on a timeout
 * or a non-zero exit, with its output. */
static void run_tool(const char *const *argv, double seconds) {
    char prog[TT_PATH];
    if (!find_program(argv[0], prog, sizeof(prog)))
        fail_msg("%s: not found on PATH", argv[0]);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = spawn(prog, argv, -1, p[1]);
    close(p[1]);
    assert_true(pid > 0);
    char out[8192];
    size_t len = 0;
    double deadline = now_mono() + ts_scaled(seconds);
    bool eof = false;
    while (!eof) {
        double left = deadline - now_mono();
        if (left <= 0)
            break;
        struct pollfd pfd = {p[0], POLLIN, 0};
        int n = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue;
        char tmp[1024];
        ssize_t r = read(p[0], tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            eof = true;
            break;
        }
        size_t take = (size_t)r < sizeof(out) - 1 - len ? (size_t)r : sizeof(out) - 1 - len;
        memcpy(out + len, tmp, take);
        len += take;
    }
    out[len] = '\0';
    close(p[0]);
    int status = 0;
    if (!eof)
        kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!eof)
        fail_msg("%s %s: still running after %.1f s:\n%s", argv[0], argv[1] ? argv[1] : "",
                 ts_scaled(seconds), out);
    if (exit_code(status) != 0)
        fail_msg("%s %s: exit %d:\n%s", argv[0], argv[1] ? argv[1] : "", exit_code(status), out);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* ---- certificates ------------------------------------------------------------------- */

static tt_certs certs;
static int certs_state; /* 0: not made, 1: made, -1: failed */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static tide_tls_config_t *shared_client, *shared_server;
static tide_connect_options_t shared_connect;
static tide_server_options_t shared_server_opts;

static bool exiting;

static void at_exit(void) {
    /* Loops may be gone by now: processes still listed are reaped without touching
     * the loop that watched them. */
    exiting = true;
    tt_proc_free_all();
    tide_tls_config_unref(shared_client);
    tide_tls_config_unref(shared_server);
    shared_client = shared_server = NULL;
    if (certs_state != 0 && certs.dir[0])
        nftw(certs.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void register_exit(void) {
    static bool done;
    if (!done) {
        done = true;
        atexit(at_exit);
    }
}

static void fmt_date(char *buf, size_t size, long offset_days) {
    time_t t = time(NULL) + (time_t)offset_days * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y%m%d%H%M%SZ", &tm);
}

static char cert_dir[TT_PATH]; /* certs.dir, kept apart so paths never alias it */

static void path_of(char *out, const char *name) {
    int n = snprintf(out, TT_PATH, "%s/%s", cert_dir, name);
    assert_true(n > 0 && n < TT_PATH);
}

/* A self-signed CA. */
static void make_ca(const char *cnf, const char *cert, const char *key, const char *cn) {
    char subj[128];
    snprintf(subj, sizeof(subj), "/CN=%s/O=tide tests", cn);
    const char *argv[] = {"openssl", "req",     "-x509",    "-new",
                          "-newkey", "ec",      "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes",  "-keyout", key,        "-out",
                          cert,      "-days",   "3650",     "-subj",
                          subj,      "-config", cnf,        "-extensions",
                          "v3_ca",   "-sha256", NULL};
    run_tool(argv, 30);
}

/* How a leaf is made: its key (EC P-256, or the weak RSA-1024) and the hash that signs
 * it (sha256, or the weak sha1). */
typedef struct leaf_kind {
    bool rsa1024;
    const char *md;
} leaf_kind;

/* A leaf: key and request, then `openssl ca` signs it for [start, end] days from now
 * with the extensions section ext. */
static void make_leaf(const char *cnf, const char *ca, const char *ca_key, const char *cert,
                      const char *key, const char *cn, const char *ext, long start_days,
                      long end_days, leaf_kind kind) {
    char csr[TT_PATH], subj[128], start[32], end[32];
    snprintf(csr, sizeof(csr), "%s.csr", cert);
    snprintf(subj, sizeof(subj), "/CN=%s/O=tide tests", cn);
    const char *ec_req[] = {
        "openssl", "req",     "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes",  "-keyout", key,    "-out",    csr,  "-subj",    subj,
        "-config", cnf,       NULL};
    const char *rsa_req[] = {"openssl", "req", "-new",   "-newkey", "rsa:1024", "-nodes",
                             "-keyout", key,   "-out",   csr,       "-subj",    subj,
                             "-config", cnf,   NULL};
    run_tool(kind.rsa1024 ? rsa_req : ec_req, 30);
    fmt_date(start, sizeof(start), start_days);
    fmt_date(end, sizeof(end), end_days);
    const char *sign[] = {"openssl",     "ca", "-batch",     "-notext", "-config",  cnf,
                          "-cert",       ca,   "-keyfile",   ca_key,    "-in",      csr,
                          "-out",        cert, "-startdate", start,     "-enddate", end,
                          "-extensions", ext,  "-md",        kind.md,   NULL};
    run_tool(sign, 30);
    unlink(csr);
}

static void make_certs(void) {
    snprintf(cert_dir, sizeof(cert_dir), "/tmp/tide-tls-XXXXXX");
    assert_non_null(mkdtemp(cert_dir));
    memcpy(certs.dir, cert_dir, sizeof(certs.dir));
    register_exit();
    char cnf[TT_PATH], db[TT_PATH], serial[TT_PATH], newcerts[TT_PATH], text[4096];
    path_of(cnf, "openssl.cnf");
    path_of(db, "index.txt");
    path_of(serial, "serial");
    path_of(newcerts, "newcerts");
    assert_int_equal(mkdir(newcerts, 0700), 0);
    write_file(db, "");
    write_file(serial, "1000\n");
    snprintf(text, sizeof(text),
             "[req]\n"
             "distinguished_name = dn\n"
             "prompt = no\n"
             "[dn]\n"
             "CN = unused\n"
             "[v3_ca]\n"
             "basicConstraints = critical, CA:TRUE\n"
             "keyUsage = critical, keyCertSign, cRLSign\n"
             "subjectKeyIdentifier = hash\n"
             "[ca]\n"
             "default_ca = tide_ca\n"
             "[tide_ca]\n"
             "database = %s\n"
             "serial = %s\n"
             "new_certs_dir = %s\n"
             "default_md = sha256\n"
             "policy = any\n"
             "unique_subject = no\n"
             "email_in_dn = no\n"
             "copy_extensions = none\n"
             "[any]\n"
             "commonName = supplied\n"
             "organizationName = optional\n"
             "[server_ext]\n"
             "basicConstraints = CA:FALSE\n"
             "keyUsage = critical, digitalSignature\n"
             "extendedKeyUsage = serverAuth\n"
             "subjectAltName = DNS:localhost, DNS:server.test, IP:127.0.0.1\n"
             "authorityKeyIdentifier = keyid\n"
             "[other_ext]\n"
             "basicConstraints = CA:FALSE\n"
             "keyUsage = critical, digitalSignature\n"
             "extendedKeyUsage = serverAuth\n"
             "subjectAltName = DNS:other.test\n"
             "authorityKeyIdentifier = keyid\n"
             "[usage_ext]\n"
             "basicConstraints = CA:FALSE\n"
             "keyUsage = critical, digitalSignature\n"
             "extendedKeyUsage = clientAuth\n"
             "subjectAltName = DNS:localhost\n"
             "authorityKeyIdentifier = keyid\n"
             "[client_ext]\n"
             "basicConstraints = CA:FALSE\n"
             "keyUsage = critical, digitalSignature\n"
             "extendedKeyUsage = clientAuth\n"
             "subjectAltName = DNS:client.test\n"
             "authorityKeyIdentifier = keyid\n",
             db, serial, newcerts);
    write_file(cnf, text);

    path_of(certs.ca, "ca.pem");
    path_of(certs.ca_key, "ca.key");
    path_of(certs.unknown_ca, "unknown-ca.pem");
    char unknown_ca_key[TT_PATH];
    path_of(unknown_ca_key, "unknown-ca.key");
    make_ca(cnf, certs.ca, certs.ca_key, "tide test CA");
    make_ca(cnf, certs.unknown_ca, unknown_ca_key, "tide unknown CA");

    static const struct {
        size_t cert, key; /* offsets into tt_certs */
        const char *name, *cn, *ext;
        bool unknown;
        long start, end;
        leaf_kind kind;
    } leaves[] = {
        {offsetof(tt_certs, server), offsetof(tt_certs, server_key), "server", "localhost",
         "server_ext", false, -1, 30, {false, "sha256"}},
        {offsetof(tt_certs, expired), offsetof(tt_certs, expired_key), "expired", "localhost",
         "server_ext", false, -30, -1, {false, "sha256"}},
        {offsetof(tt_certs, future), offsetof(tt_certs, future_key), "future", "localhost",
         "server_ext", false, 1, 30, {false, "sha256"}},
        {offsetof(tt_certs, other), offsetof(tt_certs, other_key), "other", "other.test",
         "other_ext", false, -1, 30, {false, "sha256"}},
        {offsetof(tt_certs, unknown), offsetof(tt_certs, unknown_key), "unknown", "localhost",
         "server_ext", true, -1, 30, {false, "sha256"}},
        {offsetof(tt_certs, client), offsetof(tt_certs, client_key), "client", "client.test",
         "client_ext", false, -1, 30, {false, "sha256"}},
        {offsetof(tt_certs, weak_key), offsetof(tt_certs, weak_key_key), "weak-key", "localhost",
         "server_ext", false, -1, 30, {true, "sha256"}},
        {offsetof(tt_certs, weak_hash), offsetof(tt_certs, weak_hash_key), "weak-hash",
         "localhost", "server_ext", false, -1, 30, {false, "sha1"}},
        {offsetof(tt_certs, client_only), offsetof(tt_certs, client_only_key), "client-only",
         "localhost", "usage_ext", false, -1, 30, {false, "sha256"}},
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        char *cert = (char *)&certs + leaves[i].cert;
        char *key = (char *)&certs + leaves[i].key;
        char name[64];
        snprintf(name, sizeof(name), "%s.pem", leaves[i].name);
        path_of(cert, name);
        snprintf(name, sizeof(name), "%s.key", leaves[i].name);
        path_of(key, name);
        make_leaf(cnf, leaves[i].unknown ? certs.unknown_ca : certs.ca,
                  leaves[i].unknown ? unknown_ca_key : certs.ca_key, cert, key, leaves[i].cn,
                  leaves[i].ext, leaves[i].start, leaves[i].end, leaves[i].kind);
    }

    /* The server certificate followed by the CA, for peers that send a chain. */
    path_of(certs.chain, "chain.pem");
    FILE *out = fopen(certs.chain, "w");
    assert_non_null(out);
    const char *parts[] = {certs.server, certs.ca};
    for (int i = 0; i < 2; i++) {
        FILE *in = fopen(parts[i], "r");
        assert_non_null(in);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
    }
    assert_int_equal(fclose(out), 0);
}

const tt_certs *tt_certs_get(void) {
    if (certs_state == 1)
        return &certs;
    if (!tide_tls_available() || !tt_have_openssl())
        skip();
    if (certs_state == -1)
        fail_msg("the test certificates could not be made (see the first failure)");
    certs_state = -1; /* until make_certs returns: a failure inside it longjmps out */
    make_certs();
    certs_state = 1;
    return &certs;
}

const char *tt_err(int code) {
    static char buf[512];
    char text[400];
    snprintf(buf, sizeof(buf), "%d %s (%s)", code, tide_err_name(code),
             tide_strerror_r(code, text, sizeof(text)));
    return buf;
}

static void check_rc(int rc, const char *what) {
    if (rc != 0)
        fail_msg("%s: %s", what, tt_err(rc));
}

tide_tls_config_t *tt_client_config(const char *ca_file, double handshake_timeout) {
    const tt_certs *c = tt_certs_get();
    tide_tls_config_t *cfg = NULL;
    check_rc(tide_tls_config_new_client(&cfg), "tide_tls_config_new_client");
    check_rc(tide_tls_config_load_ca_file(cfg, ca_file ? ca_file : c->ca), "load_ca_file");
    if (handshake_timeout > 0)
        check_rc(tide_tls_config_set_timeouts(cfg, handshake_timeout, 0), "set_timeouts");
    return cfg;
}

tide_tls_config_t *tt_server_config(const char *cert, const char *key, double handshake_timeout) {
    const tt_certs *c = tt_certs_get();
    tide_tls_config_t *cfg = NULL;
    check_rc(tide_tls_config_new_server(&cfg), "tide_tls_config_new_server");
    check_rc(tide_tls_config_set_cert_file(cfg, cert ? cert : c->server, key ? key : c->server_key,
                                           NULL),
             "set_cert_file");
    if (handshake_timeout > 0)
        check_rc(tide_tls_config_set_timeouts(cfg, handshake_timeout, 0), "set_timeouts");
    return cfg;
}

/* ---- TLS kinds for conformance suites ------------------------------------------------ */

static void shared_configs(void) {
    if (shared_client)
        return;
    register_exit();
    shared_client = tt_client_config(NULL, 10);
    shared_server = tt_server_config(NULL, NULL, 10);
    shared_connect = (tide_connect_options_t){.tls = shared_client, .server_hostname = "localhost"};
    shared_server_opts = (tide_server_options_t){.tls = shared_server};
}

const tide_connect_options_t *tt_tls_connect_options(void) {
    shared_configs();
    return &shared_connect;
}

const tide_server_options_t *tt_tls_server_options(void) {
    shared_configs();
    return &shared_server_opts;
}

/* ---- peer processes ------------------------------------------------------------------ */

struct tt_proc {
    pid_t pid;
    int in_fd, out_fd; /* -1 once closed */
    char *out;
    size_t len, cap;
    bool eof, reaped;
    int status; /* exit code once reaped */
    tide_loop_t *loop;
    ev_io watcher;
    bool watching;
    char name[64];
    tt_proc *next;
};

static tt_proc *procs;

/* Reads what is available (the descriptor is non-blocking). */
static void proc_read(tt_proc *p) {
    for (;;) {
        if (p->out_fd < 0 || p->eof)
            return;
        if (p->cap - p->len < 4097) {
            size_t cap = p->cap ? p->cap * 2 : 16384;
            char *n = realloc(p->out, cap);
            assert_non_null(n);
            p->out = n;
            p->cap = cap;
        }
        ssize_t r = read(p->out_fd, p->out + p->len, p->cap - p->len - 1);
        if (r > 0) {
            p->len += (size_t)r;
            p->out[p->len] = '\0';
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        p->eof = true;
        if (p->watching) {
            ev_io_stop(tide_loop_get_ev(p->loop), &p->watcher);
            p->watching = false;
        }
        return;
    }
}

static void on_output(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev;
    (void)revents;
    proc_read(w->data);
}

tt_proc *tt_proc_start(tide_loop_t *loop, const char *const *argv) {
    char prog[TT_PATH];
    if (!find_program(argv[0], prog, sizeof(prog)))
        fail_msg("%s: not found on PATH", argv[0]);
    register_exit();
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = spawn(prog, argv, in[0], out[1]);
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        fail_msg("fork: %s", strerror(errno));
    }
    tt_proc *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->pid = pid;
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->status = -1;
    fcntl(p->out_fd, F_SETFL, fcntl(p->out_fd, F_GETFL) | O_NONBLOCK);
    /* The program and its first arguments, for messages. */
    size_t used = 0;
    for (int i = 0; argv[i] && i < 4 && used < sizeof(p->name); i++)
        used +=
            (size_t)snprintf(p->name + used, sizeof(p->name) - used, "%s%s", i ? " " : "", argv[i]);
    p->next = procs;
    procs = p;
    if (loop) {
        p->loop = loop;
        ev_io_init(&p->watcher, on_output, p->out_fd, EV_READ);
        p->watcher.data = p;
        ev_io_start(tide_loop_get_ev(loop), &p->watcher);
        p->watching = true;
    }
    return p;
}

const char *tt_proc_output(const tt_proc *p, size_t *len) {
    if (len)
        *len = p->len;
    return p->out ? p->out : "";
}

static void deadline_hit(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg = 1;
}

/* Waits until pred(p, arg) holds or the output ended or the time passed: through the
 * loop when the process is attached to one, else with poll(). */
static bool wait_cond(tt_proc *p, bool (*pred)(tt_proc *, const void *), const void *arg,
                      double seconds) {
    double limit = ts_scaled(seconds);
    proc_read(p);
    if (pred(p, arg))
        return true;
    if (p->loop) {
        int expired = 0;
        tide_handle_t *h = tide_loop_call_later(p->loop, limit, deadline_hit, &expired);
        assert_non_null(h);
        while (!pred(p, arg) && !expired && !p->eof)
            tide_loop_run(p->loop, TIDE_RUN_ONCE);
        if (!expired)
            tide_handle_cancel(h);
        return pred(p, arg);
    }
    double deadline = now_mono() + limit;
    while (!pred(p, arg) && !p->eof) {
        double left = deadline - now_mono();
        if (left <= 0)
            break;
        struct pollfd pfd = {p->out_fd, POLLIN, 0};
        int n = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (n > 0)
            proc_read(p);
    }
    return pred(p, arg);
}

static bool has_needle(tt_proc *p, const void *needle) {
    return p->out && strstr(p->out, needle) != NULL;
}

bool tt_proc_wait_for(tt_proc *p, const char *needle, double seconds) {
    return wait_cond(p, has_needle, needle, seconds);
}

void tt_proc_expect(tt_proc *p, const char *needle, double seconds) {
    if (!tt_proc_wait_for(p, needle, seconds))
        fail_msg("%s: \"%s\" not seen within %.1f s%s; output:\n%s", p->name, needle,
                 ts_scaled(seconds), p->eof ? " (output ended)" : "", tt_proc_output(p, NULL));
}

/* The line starting with prefix, complete (newline seen). */
static const char *find_line(const tt_proc *p, const char *prefix) {
    const char *s = p->out;
    size_t plen = strlen(prefix);
    while (s && *s) {
        if (strncmp(s, prefix, plen) == 0 && strchr(s, '\n'))
            return s;
        s = strchr(s, '\n');
        if (s)
            s++;
    }
    return NULL;
}

static bool has_line(tt_proc *p, const void *prefix) { return find_line(p, prefix) != NULL; }

long tt_proc_expect_number(tt_proc *p, const char *prefix, double seconds) {
    if (!wait_cond(p, has_line, prefix, seconds))
        fail_msg("%s: no line \"%s...\" within %.1f s; output:\n%s", p->name, prefix,
                 ts_scaled(seconds), tt_proc_output(p, NULL));
    const char *line = find_line(p, prefix);
    const char *end = strchr(line, '\n');
    while (end > line && (end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *digits = end;
    while (digits > line && digits[-1] >= '0' && digits[-1] <= '9')
        digits--;
    if (digits == end)
        fail_msg("%s: no number at the end of \"%.*s\"", p->name, (int)(end - line), line);
    return strtol(digits, NULL, 10);
}

static bool try_reap(tt_proc *p, bool block) {
    if (p->reaped)
        return true;
    int status = 0;
    pid_t r;
    while ((r = waitpid(p->pid, &status, block ? 0 : WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r == p->pid) {
        p->reaped = true;
        p->status = exit_code(status);
    }
    return p->reaped;
}

static bool output_ended(tt_proc *p, const void *arg) {
    (void)arg;
    return p->eof;
}

int tt_proc_wait_exit(tt_proc *p, double seconds) {
    /* The output ends when the process (and anything it started) exits; the exit
     * itself follows at once. */
    if (!wait_cond(p, output_ended, NULL, seconds))
        return -1;
    if (try_reap(p, false))
        return p->status;
    /* A pidfd becomes readable when the process exits: a bounded wait, no polling. */
    int pfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (pfd >= 0) {
        struct pollfd w = {pfd, POLLIN, 0};
        while (poll(&w, 1, (int)(ts_scaled(5) * 1000)) < 0 && errno == EINTR)
            ;
        close(pfd);
    }
    return try_reap(p, pfd < 0) ? p->status : -1;
}

void tt_proc_write(tt_proc *p, const void *data, size_t len) {
    assert_true(p->in_fd >= 0);
    const char *s = data;
    double deadline = now_mono() + ts_scaled(10);
    while (len > 0) {
        struct pollfd pfd = {p->in_fd, POLLOUT, 0};
        double left = deadline - now_mono();
        if (left <= 0)
            fail_msg("%s: stdin write blocked for %.1f s", p->name, ts_scaled(10));
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        ssize_t n = write(p->in_fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail_msg("%s: stdin write: %s; output:\n%s", p->name, strerror(errno),
                     tt_proc_output(p, NULL));
        s += n;
        len -= (size_t)n;
    }
}

void tt_proc_close_stdin(tt_proc *p) {
    if (p->in_fd >= 0)
        close(p->in_fd);
    p->in_fd = -1;
}

void tt_proc_free(tt_proc *p) {
    if (p == NULL)
        return;
    for (tt_proc **pp = &procs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (!try_reap(p, false)) {
        kill(p->pid, SIGKILL);
        try_reap(p, true);
    }
    if (p->watching && !exiting)
        ev_io_stop(tide_loop_get_ev(p->loop), &p->watcher);
    tt_proc_close_stdin(p);
    if (p->out_fd >= 0)
        close(p->out_fd);
    free(p->out);
    free(p);
}

void tt_proc_free_all(void) {
    while (procs)
        tt_proc_free(procs);
}

int tt_teardown_procs(void **state) {
    (void)state;
    tt_proc_free_all();
    return 0;
}

const char *tt_python(void) {
    static char path[TT_PATH];
    if (path[0] == '\0') {
        if (access("/usr/bin/python3", X_OK) == 0)
            snprintf(path, sizeof(path), "/usr/bin/python3");
        else if (!find_program("python3", path, sizeof(path)))
            path[0] = '\0';
    }
    if (path[0] == '\0')
        skip();
    return path;
}

const char *tt_peer_script(void) {
    static char path[TT_PATH * 2];
    if (path[0] == '\0') {
        const char *src = getenv("TIDE_SOURCE_DIR");
        if (src && src[0])
            snprintf(path, sizeof(path), "%s/tests/interop/tls_peer.py", src);
        else {
            /* Not run by CTest: this file's own (absolute) path leads there. */
            const char *self = __FILE__;
            const char *slash = strrchr(self, '/');
            snprintf(path, sizeof(path), "%.*s/../interop/tls_peer.py",
                     slash ? (int)(slash - self) : 1, slash ? self : ".");
        }
    }
    return path;
}

#define MAX_ARGS 48

static void append_args(const char **argv, int *n, const char *const *extra) {
    for (; extra && *extra; extra++) {
        assert_true(*n < MAX_ARGS - 1);
        argv[(*n)++] = *extra;
    }
}

tt_proc *tt_s_server(tide_loop_t *loop, const char *cert, const char *key, const char *const *extra,
                     uint16_t *port) {
    const tt_certs *c = tt_certs_get();
    const char *argv[MAX_ARGS] = {"openssl",  "s_server",
                                  "-accept",  "0",
                                  "-naccept", "1",
                                  "-cert",    cert ? cert : c->server,
                                  "-key",     key ? key : c->server_key};
    int n = 10;
    append_args(argv, &n, extra);
    argv[n] = NULL;
    tt_proc *p = tt_proc_start(loop, argv);
    long v = tt_proc_expect_number(p, "ACCEPT", 15);
    assert_true(v > 0 && v < 65536);
    *port = (uint16_t)v;
    return p;
}

tt_proc *tt_s_client(tide_loop_t *loop, uint16_t port, const char *const *extra) {
    const tt_certs *c = tt_certs_get();
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)port);
    const char *argv[MAX_ARGS] = {"openssl", "s_client",    "-connect",
                                  target,    "-servername", "localhost",
                                  "-CAfile", c->ca,         "-verify_return_error"};
    int n = 9;
    append_args(argv, &n, extra);
    argv[n] = NULL;
    return tt_proc_start(loop, argv);
}

tt_proc *tt_py_peer(tide_loop_t *loop, const char *const *args) {
    const char *argv[MAX_ARGS] = {tt_python(), "-u", tt_peer_script()};
    int n = 3;
    append_args(argv, &n, args);
    argv[n] = NULL;
    return tt_proc_start(loop, argv);
}
