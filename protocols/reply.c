/* SMTP and FTP command/reply parsing with no I/O (tide/reply.h): the reply parser, the
 * command formatter, PASV/EPSV, EHLO keywords and the DATA encoder.
 *
 * Where it sits: protocols/, on core only (errno.h): nothing here knows a transport,
 * a stream or a task, so the client modules, the unit tests and the fuzzer drive the
 * same code. Nothing is allocated; every function works on caller memory only and
 * keeps no global state, so any thread may use its own parser. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tide/reply.h"

int tide_reply_parser_init(tide_reply_parser_t *p, tide_reply_dialect_t dialect, size_t line_max,
                           size_t lines_max) {
    if (p == NULL || (dialect != TIDE_REPLY_SMTP && dialect != TIDE_REPLY_FTP))
        return TIDE_EINVAL;
    bool smtp = dialect == TIDE_REPLY_SMTP;
    if (line_max == 0)
        line_max = smtp ? TIDE_REPLY_SMTP_LINE_MAX : TIDE_REPLY_FTP_LINE_MAX;
    if (lines_max == 0)
        lines_max = smtp ? TIDE_REPLY_SMTP_LINES_MAX : TIDE_REPLY_FTP_LINES_MAX;
    /* "NNN" and a line end is the shortest reply line there is. */
    if (line_max < 5 || line_max > TIDE_REPLY_LINE_CAP)
        return TIDE_EINVAL;
    p->dialect = dialect;
    p->line_max = line_max;
    p->lines_max = lines_max;
    p->code = 0;
    p->nlines = 0;
    p->line_len = 0;
    p->error = 0;
    p->done = false;
    p->complete = false;
    p->line[0] = '\0';
    p->text[0] = '\0';
    return 0;
}

bool tide_reply_parser_idle(const tide_reply_parser_t *p) {
    return p->error == 0 && (p->line_len == 0 || p->complete) && (p->nlines == 0 || p->done);
}

/* The code of a line that starts "NNN" followed by the end, a space or a dash (the
 * first digit lo-5); 0 otherwise. */
static int line_code(const char *line, size_t len, char lo) {
    if (len < 3 || line[0] < lo || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
        line[2] < '0' || line[2] > '9')
        return 0;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return 0;
    return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

static bool is_last(const char *line, size_t len) { return len == 3 || line[3] == ' '; }

/* A complete line (line_len octets, CR LF removed) is in p->line. */
static int on_line(tide_reply_parser_t *p) {
    const char *line = p->line;
    size_t len = p->line_len;
    p->complete = true; /* the next byte starts a new line */
    if (p->nlines == p->lines_max)
        return p->error = TIDE_EREPLY_LINES;
    p->nlines++;
    bool first = p->nlines == 1;
    int code = line_code(line, len, p->dialect == TIDE_REPLY_SMTP ? '2' : '1');
    if (first) {
        if (code == 0)
            return p->error = TIDE_EREPLY_SYNTAX;
        p->code = code;
        /* Both hold at most TIDE_REPLY_LINE_CAP octets and a NUL. */
        memcpy(p->text, len > 4 ? line + 4 : "", len > 4 ? len - 4 + 1 : 1);
    } else if (p->dialect == TIDE_REPLY_SMTP) {
        if (code == 0)
            return p->error = TIDE_EREPLY_SYNTAX;
        if (code != p->code)
            return p->error = TIDE_EREPLY_CODE;
    } else if (code != p->code || !is_last(line, len)) {
        /* FTP: anything in between, even a line that looks like another code. */
        return TIDE_REPLY_LINE;
    }
    if (!is_last(line, len))
        return TIDE_REPLY_LINE;
    p->done = true;
    return TIDE_REPLY_DONE;
}

int tide_reply_parser_feed(tide_reply_parser_t *p, const void *data, size_t len, size_t *used) {
    if (p == NULL || used == NULL || (data == NULL && len > 0))
        return TIDE_EINVAL;
    *used = 0;
    if (p->error != 0)
        return p->error;
    if (len == 0)
        return TIDE_REPLY_MORE;
    if (p->complete) {
        p->complete = false;
        p->line_len = 0;
    }
    if (p->done) { /* a new reply begins */
        p->done = false;
        p->nlines = 0;
        p->code = 0;
        p->text[0] = '\0';
    }
    const char *in = data;
    /* Octets before the LF may be at most line_max - 1: the LF is the last one. */
    size_t room = p->line_max - 1;
    const char *lf = memchr(in, '\n', len);
    size_t take = lf != NULL ? (size_t)(lf - in) : len;
    if (take > room - p->line_len) {
        /* Keep what fits, so the error can show the line's start. */
        size_t keep = room - p->line_len;
        memcpy(p->line + p->line_len, in, keep);
        p->line_len += keep;
        p->line[p->line_len] = '\0';
        *used = keep;
        return p->error = TIDE_EREPLY_LINE;
    }
    memcpy(p->line + p->line_len, in, take);
    p->line_len += take;
    p->line[p->line_len] = '\0';
    if (lf == NULL) {
        *used = len;
        return TIDE_REPLY_MORE;
    }
    *used = take + 1;
    if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
        p->line[--p->line_len] = '\0';
    return on_line(p);
}

bool tide_command_arg_is_safe(const void *s, size_t len) {
    const char *c = s;
    for (size_t i = 0; i < len; i++)
        if (c[i] == '\r' || c[i] == '\n' || c[i] == '\0')
            return false;
    return true;
}

int tide_command_format(char *buf, size_t cap, const char *verb, const void *arg, size_t arglen) {
    if (buf == NULL || verb == NULL || verb[0] == '\0' || (arg == NULL && arglen > 0))
        return TIDE_EINVAL;
    size_t vlen = strlen(verb);
    if (!tide_command_arg_is_safe(verb, vlen) || !tide_command_arg_is_safe(arg, arglen))
        return TIDE_ECOMMAND_CHARS;
    size_t need = vlen + (arg != NULL ? 1 + arglen : 0) + 2;
    if (need >= cap || need > (size_t)INT32_MAX)
        return TIDE_EMSGSIZE;
    memcpy(buf, verb, vlen);
    size_t n = vlen;
    if (arg != NULL) {
        buf[n++] = ' ';
        memcpy(buf + n, arg, arglen);
        n += arglen;
    }
    memcpy(buf + n, "\r\n", 3);
    return (int)(n + 2);
}

/* Reads 1-max_digits decimal digits at *s into *v (at most max); advances *s. */
static bool read_number(const char **s, unsigned max_digits, unsigned long max, unsigned long *v) {
    const char *p = *s;
    unsigned long n = 0;
    unsigned digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > max_digits)
            return false;
        n = n * 10 + (unsigned long)(*p++ - '0');
    }
    if (digits == 0 || n > max)
        return false;
    *s = p;
    *v = n;
    return true;
}

int tide_reply_parse_pasv(const char *text, uint8_t addr[4], uint16_t *port) {
    if (text == NULL || port == NULL)
        return TIDE_EINVAL;
    /* The six numbers start at the first digit; servers differ in the words before. */
    const char *p = text + strcspn(text, "0123456789");
    unsigned long v[6];
    for (int i = 0; i < 6; i++) {
        if (!read_number(&p, 3, 255, &v[i]))
            return TIDE_EREPLY_PASV;
        if (i < 5 && *p++ != ',')
            return TIDE_EREPLY_PASV;
    }
    /* A seventh number would mean the reply is not what it seems. */
    if (*p == ',' || (*p >= '0' && *p <= '9'))
        return TIDE_EREPLY_PASV;
    unsigned long n = v[4] * 256 + v[5];
    if (n == 0)
        return TIDE_EREPLY_PASV;
    if (addr != NULL)
        for (int i = 0; i < 4; i++)
            addr[i] = (uint8_t)v[i];
    *port = (uint16_t)n;
    return 0;
}

int tide_reply_parse_epsv(const char *text, uint16_t *port) {
    if (text == NULL || port == NULL)
        return TIDE_EINVAL;
    const char *p = strchr(text, '(');
    if (p == NULL || p[1] < 33 || p[1] > 126 || p[2] != p[1] || p[3] != p[1])
        return TIDE_EREPLY_PASV;
    char delim = p[1];
    p += 4;
    unsigned long v;
    if (!read_number(&p, 5, 65535, &v) || v == 0 || p[0] != delim || p[1] != ')')
        return TIDE_EREPLY_PASV;
    *port = (uint16_t)v;
    return 0;
}

/* The word at *s (up to a space or '='), its length in *n; advances past it. */
static const char *next_word(const char **s, size_t *n) {
    const char *p = *s + strspn(*s, " =");
    *n = strcspn(p, " =");
    *s = p + *n;
    return p;
}

static bool word_is(const char *w, size_t n, const char *name) {
    return n == strlen(name) && strncasecmp(w, name, n) == 0;
}

void tide_ehlo_parse_line(tide_ehlo_t *e, const char *line) {
    if (e == NULL || line == NULL)
        return;
    size_t n;
    const char *kw = next_word(&line, &n);
    if (word_is(kw, n, "STARTTLS")) {
        e->flags |= TIDE_EHLO_STARTTLS;
    } else if (word_is(kw, n, "8BITMIME")) {
        e->flags |= TIDE_EHLO_8BITMIME;
    } else if (word_is(kw, n, "PIPELINING")) {
        e->flags |= TIDE_EHLO_PIPELINING;
    } else if (word_is(kw, n, "SMTPUTF8")) {
        e->flags |= TIDE_EHLO_SMTPUTF8;
    } else if (word_is(kw, n, "SIZE")) {
        e->flags |= TIDE_EHLO_SIZE;
        e->size_max = 0;
        const char *w = next_word(&line, &n);
        uint64_t v = 0;
        size_t i = 0;
        /* 20 digits could pass UINT64_MAX: a limit that large is no limit. */
        for (; i < n && i < 19 && w[i] >= '0' && w[i] <= '9'; i++)
            v = v * 10 + (uint64_t)(w[i] - '0');
        if (i == n && n > 0)
            e->size_max = v;
    } else if (word_is(kw, n, "AUTH")) {
        e->flags |= TIDE_EHLO_AUTH;
        for (const char *w = next_word(&line, &n); n > 0; w = next_word(&line, &n)) {
            if (word_is(w, n, "PLAIN"))
                e->auth |= TIDE_AUTH_PLAIN;
            else if (word_is(w, n, "LOGIN"))
                e->auth |= TIDE_AUTH_LOGIN;
            else if (word_is(w, n, "CRAM-MD5"))
                e->auth |= TIDE_AUTH_CRAM_MD5;
            else if (word_is(w, n, "XOAUTH2"))
                e->auth |= TIDE_AUTH_XOAUTH2;
        }
    }
}

size_t tide_data_encode(tide_data_encoder_t *e, const void *in, size_t len, void *out) {
    const unsigned char *c = in;
    unsigned char *o = out;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = c[i];
        e->started = true;
        if (e->after_cr) {
            e->after_cr = false;
            if (b == '\n')
                continue; /* the CRLF went out with the CR */
        }
        if (b == '\r' || b == '\n') {
            o[n++] = '\r';
            o[n++] = '\n';
            e->after_cr = b == '\r';
            e->mid_line = false;
            continue;
        }
        if (!e->mid_line && b == '.')
            o[n++] = '.';
        if (b > 127)
            e->eight_bit = true;
        o[n++] = b;
        e->mid_line = true;
    }
    e->octets += n;
    return n;
}

size_t tide_data_encode_end(tide_data_encoder_t *e, void *out) {
    static const char end[] = "\r\n.\r\n";
    const char *tail = e->mid_line ? end : end + 2;
    size_t n = strlen(tail);
    memcpy(out, tail, n);
    e->octets += n;
    e->mid_line = false;
    return n;
}

int tide_host_port_parse(const char *arg, char *host, size_t cap, uint16_t default_port,
                         uint16_t *port) {
    if (arg == NULL || host == NULL || port == NULL || cap == 0)
        return TIDE_EINVAL;
    const char *start = arg, *colon = strrchr(arg, ':');
    size_t hlen = strlen(arg);
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return TIDE_EINVAL;
        start = arg + 1;
        hlen = (size_t)(close - start);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else if (colon != NULL && strchr(arg, ':') != colon) {
        colon = NULL; /* several colons: an IPv6 address without a port */
    } else if (colon != NULL) {
        hlen = (size_t)(colon - arg);
    }
    *port = default_port;
    if (colon != NULL) {
        unsigned long v;
        const char *p = colon + 1;
        if (!read_number(&p, 5, 65535, &v) || *p != '\0' || v == 0)
            return TIDE_EINVAL;
        *port = (uint16_t)v;
    }
    if (hlen == 0 || hlen >= cap)
        return TIDE_EINVAL;
    memcpy(host, start, hlen);
    host[hlen] = '\0';
    return 0;
}

void tide_dialogue_print(char who, const char *line, void *file) {
    if (who == '-')
        fprintf(file, "-- %s\n", line);
    else
        fprintf(file, "%c: %s\n", who, line);
}
