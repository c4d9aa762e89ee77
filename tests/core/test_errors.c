/* Error codes (tide/errno.h) and the version check (tide/version.h): names and
 * messages for errno codes and tide's own, conversions from errno and getaddrinfo,
 * the packing of mbedTLS codes into TLS codes, unknown codes, and tide_strerror_r's
 * truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "support/support.h"

static void test_errno_codes(void **state) {
    (void)state;
    assert_int_equal(TIDE_ECONNRESET, -ECONNRESET);
    assert_int_equal(TIDE_EPIPE, -EPIPE);
    assert_int_equal(TIDE_EAGAIN, -EAGAIN);
    assert_string_equal(tide_err_name(TIDE_ECONNRESET), "ECONNRESET");
    assert_string_equal(tide_strerror(TIDE_ECONNRESET), "connection reset by peer");
    assert_string_equal(tide_err_name(-ECONNREFUSED), "ECONNREFUSED");
    assert_string_equal(tide_strerror(TIDE_ENOMEM), "not enough memory");
    assert_string_equal(tide_err_name(TIDE_ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(tide_err_name(0), "OK");
    assert_string_equal(tide_strerror(0), "success");
}

static void test_own_codes(void **state) {
    (void)state;
    assert_int_equal(TIDE_EOF, -4001);
    assert_string_equal(tide_err_name(TIDE_EOF), "EOF");
    assert_string_equal(tide_strerror(TIDE_EOF), "end of file");
    assert_string_equal(tide_err_name(TIDE_ELIMIT), "ELIMIT");
    assert_string_equal(tide_err_name(TIDE_EINCOMPLETE), "EINCOMPLETE");
    assert_string_equal(tide_err_name(TIDE_ECLOSED), "ECLOSED");
    assert_string_equal(tide_strerror(TIDE_ECLOSED), "transport or server is closing or closed");
    assert_string_equal(tide_err_name(TIDE_ETIMEOUT), "ETIMEOUT");
    assert_string_equal(tide_err_name(TIDE_EAI_NONAME), "EAI_NONAME");
    assert_string_equal(tide_err_name(TIDE_ETLS), "ETLS");
    /* asyncio's cancellation and errno's ECANCELED are distinct codes. */
    assert_int_not_equal(TIDE_ECANCELLED, TIDE_ECANCELED);
}

/* One code per meaning: the errno spellings of "timed out" and "cancelled" come back
 * as tide's own codes, which every deadline and cancellation returns. */
static void test_one_code_per_meaning(void **state) {
    (void)state;
    assert_int_equal(tide_err_from_errno(ETIMEDOUT), TIDE_ETIMEOUT);
    assert_int_equal(tide_err_from_errno(ECANCELED), TIDE_ECANCELLED);
    assert_int_equal(tide_err_from_errno(EWOULDBLOCK), TIDE_EAGAIN);
    assert_int_equal(tide_err_from_errno(ECONNRESET), TIDE_ECONNRESET);
}

/* Every code of the table: negative, unique, named and described; tide's own block
 * stays clear of errno values. */
static void test_table_is_consistent(void **state) {
    (void)state;
    static const struct {
        int code;
        const char *name;
        const char *msg;
    } table[] = {
#define ROW(name, value, msg) {value, #name, msg},
        TIDE_ERRNO_MAP(ROW)
#undef ROW
    };
    size_t n = sizeof(table) / sizeof(table[0]);
    assert_true(n > 50);
    for (size_t i = 0; i < n; i++) {
        assert_true(table[i].code < 0);
        assert_string_equal(tide_err_name(table[i].code), table[i].name);
        assert_string_equal(tide_strerror(table[i].code), table[i].msg);
        assert_false(tide_err_is_tls(table[i].code));
        if (strncmp(table[i].name, "E", 1) != 0)
            fail_msg("name %s does not start with E", table[i].name);
        for (size_t j = i + 1; j < n; j++) {
            if (table[i].code == table[j].code)
                fail_msg("%s and %s share code %d", table[i].name, table[j].name, table[i].code);
            assert_string_not_equal(table[i].name, table[j].name);
        }
        if (table[i].code <= -4000)
            assert_true(table[i].code > -5000);
    }
}

static void test_unknown_codes(void **state) {
    (void)state;
    assert_string_equal(tide_strerror(-3999), "unknown error");
    assert_string_equal(tide_err_name(-3999), "EUNKNOWN");
    assert_string_equal(tide_strerror(42), "unknown error");
    assert_string_equal(tide_err_name(-4999), "EUNKNOWN");
    /* An errno value the table leaves out still gets the C library's text. */
    char buf[128];
    assert_ptr_equal(tide_strerror_r(-EDOM, buf, sizeof(buf)), buf);
    assert_string_equal(buf, strerror(EDOM));
}

static void test_from_errno(void **state) {
    (void)state;
    assert_int_equal(tide_err_from_errno(ECONNRESET), TIDE_ECONNRESET);
    assert_int_equal(tide_err_from_errno(EPIPE), TIDE_EPIPE);
    assert_int_equal(tide_err_from_errno(EWOULDBLOCK), TIDE_EAGAIN);
    assert_int_equal(tide_err_from_errno(EAGAIN), TIDE_EAGAIN);
    assert_int_equal(tide_err_from_errno(EDOM), -EDOM);
    /* Not a positive errno: still an error, never success. */
    assert_true(tide_err_from_errno(0) < 0);
}

static void test_from_gai(void **state) {
    (void)state;
    assert_int_equal(tide_err_from_gai(0), 0);
    assert_int_equal(tide_err_from_gai(EAI_NONAME), TIDE_EAI_NONAME);
    assert_int_equal(tide_err_from_gai(EAI_AGAIN), TIDE_EAI_AGAIN);
    assert_int_equal(tide_err_from_gai(EAI_FAIL), TIDE_EAI_FAIL);
    assert_int_equal(tide_err_from_gai(EAI_FAMILY), TIDE_EAI_FAMILY);
    assert_int_equal(tide_err_from_gai(EAI_SERVICE), TIDE_EAI_SERVICE);
    assert_int_equal(tide_err_from_gai(EAI_MEMORY), TIDE_EAI_MEMORY);
    assert_int_equal(tide_err_from_gai(-123456), TIDE_EAI_OTHER);
    /* EAI_SYSTEM means "look at errno". */
    errno = ECONNREFUSED;
    assert_int_equal(tide_err_from_gai(EAI_SYSTEM), TIDE_ECONNREFUSED);
}

static void test_tls_packing(void **state) {
    (void)state;
    int x509_failed = -0x2700; /* MBEDTLS_ERR_X509_CERT_VERIFY_FAILED */
    int code = TIDE_ETLS_BASE + x509_failed;
    assert_true(code < 0);
    assert_true(tide_err_is_tls(code));
    assert_int_equal(tide_err_tls_code(code), x509_failed);
    /* The ends of mbedTLS's range, and just outside them. */
    assert_true(tide_err_is_tls(TIDE_ETLS_BASE - 1));
    assert_int_equal(tide_err_tls_code(TIDE_ETLS_BASE - 1), -1);
    assert_true(tide_err_is_tls(TIDE_ETLS_BASE - 0x7FFF));
    assert_int_equal(tide_err_tls_code(TIDE_ETLS_BASE - 0x7FFF), -0x7FFF);
    assert_false(tide_err_is_tls(TIDE_ETLS_BASE));
    assert_false(tide_err_is_tls(TIDE_ETLS_BASE - 0x8000));
    /* Other codes are not TLS codes, including tide's generic TLS code. */
    assert_false(tide_err_is_tls(TIDE_ETLS));
    assert_false(tide_err_is_tls(TIDE_ECONNRESET));
    assert_false(tide_err_is_tls(0));
    assert_int_equal(tide_err_tls_code(TIDE_ECONNRESET), 0);
    assert_int_equal(tide_err_tls_code(TIDE_ETLS), 0);
    assert_string_equal(tide_err_name(code), "ETLS");
    assert_string_equal(tide_strerror(code), "TLS library error");
    /* strerror_r adds the mbedTLS detail (its text, or the raw code without TLS). */
    char buf[256];
    tide_strerror_r(code, buf, sizeof(buf));
    assert_int_equal(strncmp(buf, "TLS error: ", 11), 0);
    assert_true(strlen(buf) > 11);
}

static void test_strerror_r_truncates(void **state) {
    (void)state;
    char buf[64];
    assert_ptr_equal(tide_strerror_r(TIDE_ECONNRESET, buf, sizeof(buf)), buf);
    assert_string_equal(buf, "connection reset by peer");
    char small[8];
    memset(small, 'X', sizeof(small));
    tide_strerror_r(TIDE_ECONNRESET, small, sizeof(small));
    assert_string_equal(small, "connect");
    char one[1] = {'X'};
    tide_strerror_r(TIDE_ECONNRESET, one, 1);
    assert_int_equal(one[0], '\0');
    /* len 0 writes nothing at all. */
    char none[2] = {'A', 'B'};
    assert_ptr_equal(tide_strerror_r(TIDE_ECONNRESET, none, 0), none);
    assert_int_equal(none[0], 'A');
    assert_null(tide_strerror_r(TIDE_ECONNRESET, NULL, 10));
    /* Truncated TLS text stays terminated too. */
    char tls[12];
    tide_strerror_r(TIDE_ETLS_BASE - 0x2700, tls, sizeof(tls));
    assert_int_equal(strlen(tls), sizeof(tls) - 1);
    tide_strerror_r(TIDE_EOF, buf, sizeof(buf));
    assert_string_equal(buf, "end of file");
}

static void test_version(void **state) {
    (void)state;
    assert_int_equal(tide_version(), TIDE_VERSION_HEX);
    assert_string_equal(tide_version_string(), TIDE_VERSION_STRING);
    assert_int_equal(TIDE_VERSION_HEX, (TIDE_VERSION_MAJOR << 16) | (TIDE_VERSION_MINOR << 8) |
                                           TIDE_VERSION_PATCH);
    assert_true(TIDE_VERSION_AT_LEAST(0, 0, 0));
    assert_true(TIDE_VERSION_AT_LEAST(TIDE_VERSION_MAJOR, TIDE_VERSION_MINOR, TIDE_VERSION_PATCH));
    assert_false(TIDE_VERSION_AT_LEAST(TIDE_VERSION_MAJOR + 1, 0, 0));
    char text[32];
    snprintf(text, sizeof(text), "%d.%d.%d", TIDE_VERSION_MAJOR, TIDE_VERSION_MINOR,
             TIDE_VERSION_PATCH);
    assert_string_equal(text, TIDE_VERSION_STRING);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_codes),
        cmocka_unit_test(test_own_codes),
        cmocka_unit_test(test_one_code_per_meaning),
        cmocka_unit_test(test_table_is_consistent),
        cmocka_unit_test(test_unknown_codes),
        cmocka_unit_test(test_from_errno),
        cmocka_unit_test(test_from_gai),
        cmocka_unit_test(test_tls_packing),
        cmocka_unit_test(test_strerror_r_truncates),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
