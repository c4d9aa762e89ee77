/* tide_protocol_feed: bytes reach a plain protocol in one call and a buffered one
 * piecewise, whatever buffer sizes it hands out; an empty buffer is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "support/support.h"

typedef struct sink {
    tide_protocol_t base;
    unsigned char got[256];
    size_t len;
    size_t calls;
    size_t window; /* how much get_buffer offers each time */
} sink;

static sink *as_sink(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, sink, base); }

static void plain_data(tide_protocol_t *p, const void *data, size_t len) {
    sink *s = as_sink(p);
    assert_true(s->len + len <= sizeof(s->got));
    memcpy(s->got + s->len, data, len);
    s->len += len;
    s->calls++;
}

static void *give(tide_protocol_t *p, size_t hint, size_t *len) {
    sink *s = as_sink(p);
    assert_true(hint > 0); /* feed always knows how much is waiting */
    *len = s->window;
    return s->window ? s->got + s->len : NULL;
}

static void updated(tide_protocol_t *p, size_t n) {
    sink *s = as_sink(p);
    assert_true(n > 0 && n <= s->window);
    s->len += n;
    s->calls++;
}

static const tide_protocol_ops_t plain_ops = {.size = TIDE_PROTOCOL_OPS_SIZE,
                                              .data_received = plain_data};
static const tide_protocol_ops_t buffered_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE, .get_buffer = give, .buffer_updated = updated};

static const char text[] = "the quick brown fox jumps over the lazy dog";

static void test_plain_one_call(void **state) {
    (void)state;
    sink s = {.base.ops = &plain_ops};
    assert_false(tide_protocol_is_buffered(&s.base));
    assert_int_equal(tide_protocol_feed(&s.base, text, sizeof(text) - 1), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.len, sizeof(text) - 1);
    assert_memory_equal(s.got, text, s.len);
    assert_int_equal(tide_protocol_feed(&s.base, text, 0), 0);
    assert_int_equal(s.calls, 1); /* an empty feed calls nothing */
}

static void test_buffered_piecewise(void **state) {
    (void)state;
    const size_t windows[] = {1, 3, 7, 43, 200};
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
        sink s = {.base.ops = &buffered_ops, .window = windows[i]};
        assert_true(tide_protocol_is_buffered(&s.base));
        assert_int_equal(tide_protocol_feed(&s.base, text, sizeof(text) - 1), 0);
        size_t expect_calls = (sizeof(text) - 1 + windows[i] - 1) / windows[i];
        assert_int_equal(s.calls, expect_calls);
        assert_int_equal(s.len, sizeof(text) - 1);
        assert_memory_equal(s.got, text, s.len);
    }
}

static void test_empty_buffer_refused(void **state) {
    (void)state;
    sink s = {.base.ops = &buffered_ops, .window = 0};
    assert_int_equal(tide_protocol_feed(&s.base, text, 4), TIDE_ENOBUFS);
    assert_int_equal(s.len, 0);
    assert_int_equal(tide_protocol_feed(NULL, text, 4), TIDE_EINVAL);
    assert_int_equal(tide_protocol_feed(&s.base, NULL, 4), TIDE_EINVAL);
}

/* A protocol compiled against an older, shorter ops table: ops beyond its size are
 * never read, so it counts as a plain protocol. */
static void test_short_ops_table(void **state) {
    (void)state;
    tide_protocol_ops_t old = buffered_ops;
    old.size = offsetof(tide_protocol_ops_t, get_buffer);
    old.data_received = plain_data;
    sink s = {.base.ops = &old, .window = 5};
    assert_false(tide_protocol_is_buffered(&s.base));
    assert_int_equal(tide_protocol_feed(&s.base, text, 10), 0);
    assert_int_equal(s.calls, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_one_call),
        cmocka_unit_test(test_buffered_piecewise),
        cmocka_unit_test(test_empty_buffer_refused),
        cmocka_unit_test(test_short_ops_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
