/* The SMTP and FTP client modules (tide/smtp.h, tide/ftp.h) against a scripted server
 * written with tide's own streams and tasks on loopback: what the examples do not
 * reach (per-recipient results, a failing message source, the checks made before
 * anything is sent, transfers to and from memory with progress, MLSD, REST to resume
 * a .part file, PASV naming another host). The real servers (aiosmtpd, pyftpdlib) are
 * in tests/apps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/net.h"
#include "support/support.h"

#define CONTENT_LEN (100 * 1024)

typedef struct script {
    tide_loop_t *loop;
    const char *greeting;
    const char *ehlo;
    bool no_epsv;
    tide_server_t *server, *data_server;
    uint16_t port;
    tide_reader_t *r, *dr;
    tide_writer_t *w, *dw;
    tide_event_t *data_ready;
    char got[8192]; /* every command line received */
    size_t got_len;
    unsigned char data[CONTENT_LEN * 2]; /* DATA or STOR content received */
    size_t data_len;
    unsigned char content[CONTENT_LEN]; /* what RETR and MLSD send */
    uint64_t rest;
    int done;
    char notes[1024];
} script;

static void on_data(tide_reader_t *r, tide_writer_t *w, void *arg) {
    script *s = arg;
    s->dr = r;
    s->dw = w;
    tide_event_set(s->data_ready);
}

static int reply(script *s, const char *text) {
    return tide_writer_write(s->w, text, strlen(text));
}

/* A passive listener; the reply names 10.9.8.7 for PASV (the client must ignore it). */
static void passive(script *s, bool pasv) {
    tide_event_clear(s->data_ready);
    assert_int_equal(
        tide_loop_start_server(s->loop, "127.0.0.1", 0, 65536, NULL, on_data, s, &s->data_server),
        0);
    uint16_t port = nt_server_port(s->data_server, 0);
    char text[128];
    if (pasv)
        snprintf(text, sizeof text, "227 Entering Passive Mode (10,9,8,7,%u,%u)\r\n", port / 256,
                 port % 256);
    else
        snprintf(text, sizeof text, "229 Entering Extended Passive Mode (|||%u|)\r\n", port);
    reply(s, text);
}

/* RETR, MLSD or STOR on the data connection, then the final reply. */
static void transfer(script *s, bool upload) {
    reply(s, "150 here\r\n");
    tide_event_wait_await(s->data_ready);
    tide_server_close(s->data_server);
    if (upload) {
        size_t n;
        while (tide_reader_read_await(s->dr, s->data + s->data_len, sizeof s->data - s->data_len,
                                      &n) == 0)
            s->data_len += n;
    } else {
        tide_writer_write(s->dw, s->content + s->rest, CONTENT_LEN - s->rest);
        s->rest = 0;
    }
    tide_writer_close(s->dw);
    tide_writer_wait_closed_await(s->dw);
    reply(s, "226 done\r\n");
}

static int serve(void *arg) {
    script *s = arg;
    char line[1024];
    size_t len;
    reply(s, s->greeting);
    while (tide_reader_readline_await(s->r, line, sizeof line, &len) == 0 && len > 0) {
        assert_true(s->got_len + len < sizeof s->got);
        memcpy(s->got + s->got_len, line, len);
        s->got_len += len;
        line[len] = '\0';
        char verb[8] = "";
        sscanf(line, "%7[A-Z]", verb);
        if (strcmp(verb, "EHLO") == 0) {
            reply(s, s->ehlo);
        } else if (strcmp(verb, "RCPT") == 0) {
            reply(s, strstr(line, "bad") != NULL ? "550 no such user\r\n" : "250 ok\r\n");
        } else if (strcmp(verb, "DATA") == 0) {
            reply(s, "354 go on\r\n");
            /* A cut message is not recorded (a server drops it): read aside first. */
            static unsigned char aside[sizeof s->data];
            size_t n;
            if (tide_reader_readuntil_await(s->r, "\r\n.\r\n", 5, aside, sizeof aside, &n) != 0)
                break;
            memcpy(s->data, aside, n);
            s->data_len = n;
            reply(s, "250 stored\r\n");
        } else if (strcmp(verb, "EPSV") == 0 && s->no_epsv) {
            reply(s, "502 no EPSV here\r\n");
        } else if (strcmp(verb, "EPSV") == 0 || strcmp(verb, "PASV") == 0) {
            passive(s, verb[0] == 'P');
        } else if (strcmp(verb, "REST") == 0) {
            s->rest = strtoull(line + 5, NULL, 10);
            reply(s, "350 from there\r\n");
        } else if (strcmp(verb, "RETR") == 0 || strcmp(verb, "MLSD") == 0 ||
                   strcmp(verb, "STOR") == 0) {
            transfer(s, verb[0] == 'S');
        } else if (strcmp(verb, "SIZE") == 0) {
            reply(s, "213 102400\r\n");
        } else if (strcmp(verb, "USER") == 0) {
            reply(s, "230 in\r\n");
        } else if (strcmp(verb, "QUIT") == 0) {
            reply(s, "221 bye\r\n");
            break;
        } else {
            reply(s, "250 ok\r\n");
        }
    }
    tide_writer_close(s->w);
    tide_writer_wait_closed_await(s->w);
    s->done = 1;
    return 0;
}

static void on_client(tide_reader_t *r, tide_writer_t *w, void *arg) {
    script *s = arg;
    s->r = r;
    s->w = w;
    assert_int_equal(tide_task_spawn(s->loop, serve, s, NULL, NULL), 0);
}

static script *script_new(const char *greeting) {
    script *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->loop = ts_loop_new();
    s->greeting = greeting;
    s->ehlo = "250-mx\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n";
    for (size_t i = 0; i < CONTENT_LEN; i++)
        s->content[i] = (unsigned char)(i * 7 + i / 251);
    assert_int_equal(tide_event_new(s->loop, &s->data_ready), 0);
    assert_int_equal(
        tide_loop_start_server(s->loop, "127.0.0.1", 0, 65536, NULL, on_client, s, &s->server), 0);
    s->port = nt_server_port(s->server, 0);
    return s;
}

/* Runs the client task, waits for the server's session to end, closes everything. */
static void script_run(script *s, tide_task_fn client) {
    assert_int_equal(ts_run_task(s->loop, client, s), 0);
    ts_run_until_flag(s->loop, &s->done, 10);
    tide_server_close(s->server);
    tide_event_free(s->data_ready);
    ts_spin(s->loop, 5); /* the servers' closes */
    ts_loop_close(s->loop);
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void note(char who, const char *line, void *arg) {
    script *s = arg;
    size_t n = strlen(s->notes);
    snprintf(s->notes + n, sizeof s->notes - n, "%c %s\n", who, line);
}

/* ---- SMTP ----------------------------------------------------------------------------- */

typedef struct source {
    const char *text;
    size_t at, piece;
    int fail_at; /* fail on the call with this number (0: never) */
    int calls;
} source;

static int read_source(void *buf, size_t cap, size_t *len, void *arg) {
    source *src = arg;
    if (++src->calls == src->fail_at)
        return TIDE_EIO;
    size_t left = strlen(src->text) - src->at;
    *len = left < src->piece ? left : src->piece;
    *len = *len < cap ? *len : cap;
    memcpy(buf, src->text + src->at, *len);
    src->at += *len;
    return 0;
}

static int smtp_recipients(void *arg) {
    script *s = arg;
    tide_smtp_t *smtp;
    tide_smtp_options_t opt = {.timeout = 5};
    TS_CHECK(tide_smtp_connect_await(s->loop, "127.0.0.1", s->port, &opt, &smtp) == 0);
    TS_CHECK(tide_smtp_greeting_await(smtp) == 0);
    TS_CHECK(tide_smtp_hello_await(smtp, false) == 0);
    TS_CHECK(tide_smtp_extensions(smtp)->size_max == 1000000);
    /* Checked before anything is sent. */
    TS_CHECK(tide_smtp_mail_await(smtp, "a@x>\r\nRCPT TO:<evil@x", 0) == TIDE_ECOMMAND_CHARS);
    TS_CHECK(tide_smtp_mail_await(smtp, "a@x", 2000000) == TIDE_EMESSAGE_SIZE);
    TS_CHECK(tide_smtp_auth_await(smtp, "u", "p", 0) == TIDE_EAUTH_CLEARTEXT);
    TS_CHECK(tide_smtp_starttls_await(smtp) == TIDE_EINVAL); /* no TLS configuration */
    /* Per-recipient results: the refused one is skipped, the message goes to the others. */
    const char *to[] = {"one@x", "bad@x", "two@x"};
    int codes[3];
    source src = {.text = ".dot\nline\r\n.\n", .piece = 3};
    TS_CHECK(tide_smtp_send_message_await(smtp, "a@x", to, 3, codes, 13, read_source, &src) == 0);
    TS_CHECK(codes[0] == 250 && codes[1] == 550 && codes[2] == 250);
    TS_CHECK(tide_smtp_last_reply(smtp)->code == 250);
    /* An address with CR LF among the recipients: nothing is sent. */
    const char *injected[] = {"one@x", "two@x>\r\nDATA"};
    TS_CHECK(tide_smtp_send_message_await(smtp, "a@x", injected, 2, codes, 0, read_source, &src) ==
             TIDE_ECOMMAND_CHARS);
    /* Every recipient refused: no DATA. */
    const char *bad[] = {"bad1@x", "bad2@x"};
    TS_CHECK(tide_smtp_send_message_await(smtp, "a@x", bad, 2, codes, 0, read_source, &src) ==
             TIDE_EREPLY);
    TS_CHECK(codes[0] == 550 && codes[1] == 550);
    /* A source that fails: the connection is aborted, the message never terminated. */
    source failing = {.text = "first part\nsecond part\n", .piece = 4, .fail_at = 3};
    TS_CHECK(tide_smtp_send_message_await(smtp, "a@x", to, 1, NULL, 0, read_source, &failing) ==
             TIDE_EIO);
    tide_smtp_close_await(smtp, false);
    return 0;
}

/* STARTTLS asked for but not done: no address or credential goes out in clear. */
static int smtp_forgot_starttls(void *arg) {
    script *s = arg;
    tide_smtp_t *smtp;
    tide_tls_config_t *tls;
    TS_CHECK(tide_tls_config_new_client(&tls) == 0);
    tide_smtp_options_t opt = {.security = TIDE_SMTP_STARTTLS, .tls = tls, .timeout = 5};
    int rc = tide_smtp_connect_await(s->loop, "127.0.0.1", s->port, &opt, &smtp);
    tide_tls_config_unref(tls); /* the session holds its own reference */
    TS_CHECK(rc == 0);
    TS_CHECK(tide_smtp_greeting_await(smtp) == 0);
    TS_CHECK(tide_smtp_hello_await(smtp, false) == 0);
    TS_CHECK(tide_smtp_mail_await(smtp, "a@x", 0) == TIDE_ESTATE);
    TS_CHECK(tide_smtp_auth_await(smtp, "u", "p", 0) == TIDE_ESTATE);
    TS_CHECK(tide_smtp_starttls_await(smtp) == TIDE_ENO_STARTTLS);
    TS_CHECK(tide_smtp_quit_await(smtp) == 0);
    tide_smtp_close_await(smtp, true);
    return 0;
}

static void test_smtp_forgot_starttls(void **state) {
    (void)state;
    script *s = script_new("220 mx\r\n");
    script_run(s, smtp_forgot_starttls);
    s->got[s->got_len] = '\0';
    assert_string_equal(s->got, "EHLO localhost\r\nQUIT\r\n");
    free(s);
}

static void test_smtp(void **state) {
    (void)state;
    script *s = script_new("220 mx\r\n");
    script_run(s, smtp_recipients);
    /* One DATA went through, dot-stuffed, with CRLF line ends; the last got nothing. */
    assert_int_equal(s->data_len, strlen("..dot\r\nline\r\n..\r\n.\r\n"));
    assert_memory_equal(s->data, "..dot\r\nline\r\n..\r\n.\r\n", s->data_len);
    s->got[s->got_len] = '\0';
    assert_non_null(strstr(s->got, "MAIL FROM:<a@x> SIZE=13 BODY=8BITMIME\r\n"));
    assert_null(strstr(s->got, "evil"));
    assert_null(strstr(s->got, "SIZE=2000000"));
    assert_null(strstr(s->got, "AUTH"));
    /* DATA for the first message and the failing one, none when all were refused. */
    assert_int_equal(count(s->got, "DATA\r\n"), 2);
    free(s);
}

/* ---- FTP ------------------------------------------------------------------------------ */

typedef struct memory {
    unsigned char buf[CONTENT_LEN * 2];
    size_t len, at;
    uint64_t progress, total;
    int progress_calls;
} memory;

static int to_memory(const void *data, size_t len, void *arg) {
    memory *m = arg;
    if (m->len + len > sizeof m->buf)
        return TIDE_ENOSPC;
    memcpy(m->buf + m->len, data, len);
    m->len += len;
    return 0;
}

static int from_memory(void *buf, size_t cap, size_t *len, void *arg) {
    memory *m = arg;
    *len = m->len - m->at < cap ? m->len - m->at : cap;
    memcpy(buf, m->buf + m->at, *len);
    m->at += *len;
    return 0;
}

static void on_progress(uint64_t done, uint64_t total, void *arg) {
    memory *m = arg;
    assert_true(done > m->progress);
    m->progress = done;
    m->total = total;
    m->progress_calls++;
}

static char local_path[64];

static int ftp_session(void *arg) {
    script *s = arg;
    tide_ftp_t *ftp;
    tide_ftp_options_t opt = {.timeout = 5, .dialogue = note, .dialogue_arg = s};
    static memory m;
    memset(&m, 0, sizeof m);
    TS_CHECK(tide_ftp_connect_await(s->loop, "127.0.0.1", s->port, &opt, &ftp) == 0);
    TS_CHECK(tide_ftp_greeting_await(ftp) == 0);
    TS_CHECK(tide_ftp_login_await(ftp, NULL, NULL) == 0);
    TS_CHECK(tide_ftp_protect_await(ftp) == TIDE_ESTATE); /* no AUTH TLS */
    TS_CHECK(tide_ftp_command_await(ftp, "CWD", "a\r\nDELE x", 250) == TIDE_ECOMMAND_CHARS);
    /* Into memory, with progress and the size for the total. */
    tide_ftp_io_t io = {.sink = to_memory,
                        .arg = &m,
                        .progress = on_progress,
                        .progress_arg = &m,
                        .total = CONTENT_LEN};
    TS_CHECK(tide_ftp_retrieve_await(ftp, "f.bin", 0, &io) == 0);
    TS_CHECK(m.len == CONTENT_LEN && memcmp(m.buf, s->content, CONTENT_LEN) == 0);
    TS_CHECK(m.progress == CONTENT_LEN && m.total == CONTENT_LEN && m.progress_calls > 0);
    /* Back up from memory. */
    io = (tide_ftp_io_t){.source = from_memory, .arg = &m};
    TS_CHECK(tide_ftp_store_await(ftp, "g.bin", &io) == 0);
    TS_CHECK(tide_ftp_list_await(ftp, "MLSD", NULL,
                                 &(tide_ftp_io_t){.sink = to_memory, .arg = &m}) == 0);
    TS_CHECK(m.len == 2 * CONTENT_LEN);
    TS_CHECK(tide_ftp_list_await(ftp, "DELE", "x", &io) == TIDE_EINVAL);
    /* A .part file from an earlier attempt: REST resumes it, then the rename. */
    char part[80];
    snprintf(part, sizeof part, "%s.part", local_path);
    FILE *f = fopen(part, "wb");
    TS_CHECK(f != NULL && fwrite(s->content, 1, 1000, f) == 1000 && fclose(f) == 0);
    memset(&m, 0, sizeof m);
    TS_CHECK(tide_ftp_retrieve_file_await(ftp, "f.bin", local_path, true, on_progress, &m) == 0);
    TS_CHECK(m.total == CONTENT_LEN && m.progress == CONTENT_LEN - 1000);
    TS_CHECK(access(part, F_OK) != 0);
    TS_CHECK(tide_ftp_quit_await(ftp) == 0);
    tide_ftp_close_await(ftp, true);
    return 0;
}

static void test_ftp(void **state) {
    (void)state;
    snprintf(local_path, sizeof local_path, "tide-reply-clients-%d.bin", (int)getpid());
    for (int pasv = 0; pasv < 2; pasv++) {
        script *s = script_new("220 ftp\r\n");
        s->no_epsv = pasv;
        script_run(s, ftp_session);
        /* The uploaded copy is the content; the local file is whole. */
        assert_int_equal(s->data_len, CONTENT_LEN);
        assert_memory_equal(s->data, s->content, CONTENT_LEN);
        FILE *f = fopen(local_path, "rb");
        assert_non_null(f);
        static unsigned char back[CONTENT_LEN + 1];
        assert_int_equal(fread(back, 1, sizeof back, f), CONTENT_LEN);
        fclose(f);
        unlink(local_path);
        assert_memory_equal(back, s->content, CONTENT_LEN);
        s->got[s->got_len] = '\0';
        assert_non_null(strstr(s->got, "REST 1000\r\nRETR f.bin\r\n"));
        if (pasv) {
            /* PASV named another host; the data went to the control peer. */
            assert_non_null(strstr(s->notes, "PASV named 10.9.8.7; connecting to the control "
                                             "peer 127.0.0.1 instead"));
            assert_int_equal(count(s->got, "EPSV\r\n"), 1); /* refused once: not asked again */
            assert_int_equal(count(s->got, "PASV\r\n"), 4);
        }
        free(s);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smtp),
        cmocka_unit_test(test_smtp_forgot_starttls),
        cmocka_unit_test(test_ftp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
