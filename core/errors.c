/* Error codes: names, messages and conversions, all generated from the one table in
 * include/tide/errno.h. Pure functions; safe from any thread. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"

#define TIDE__TLS_MIN (TIDE_ETLS_BASE - 0x7FFF)

bool tide_err_is_tls(int err) { return err < TIDE_ETLS_BASE && err >= TIDE__TLS_MIN; }

int tide_err_tls_code(int err) { return tide_err_is_tls(err) ? err - TIDE_ETLS_BASE : 0; }

const char *tide_strerror(int err) {
    switch (err) {
#define TIDE__ERRNO_MSG(name, value, msg) \
    case TIDE_##name:                     \
        return msg;
        TIDE_ERRNO_MAP(TIDE__ERRNO_MSG)
#undef TIDE__ERRNO_MSG
    case 0:
        return "success";
    default:
        break;
    }
    if (tide_err_is_tls(err))
        return "TLS library error";
    return "unknown error";
}

const char *tide_err_name(int err) {
    switch (err) {
#define TIDE__ERRNO_NAME(name, value, msg) \
    case TIDE_##name:                      \
        return #name;
        TIDE_ERRNO_MAP(TIDE__ERRNO_NAME)
#undef TIDE__ERRNO_NAME
    case 0:
        return "OK";
    default:
        break;
    }
    if (tide_err_is_tls(err))
        return "ETLS";
    return "EUNKNOWN";
}

/* The TLS layer (built only with TLS support) fills in mbedTLS's own text; without it
 * the raw code is shown. Weak so that core/ does not depend on transports/. */
__attribute__((weak)) void tide__tls_describe(int mbedtls_code, char *buf, size_t len);
__attribute__((weak)) void tide__tls_describe(int mbedtls_code, char *buf, size_t len) {
    snprintf(buf, len, "mbedTLS error -0x%04X", (unsigned)-mbedtls_code);
}

char *tide_strerror_r(int err, char *buf, size_t len) {
    if (buf == NULL || len == 0)
        return buf;
    if (tide_err_is_tls(err)) {
        char detail[160];
        tide__tls_describe(tide_err_tls_code(err), detail, sizeof(detail));
        snprintf(buf, len, "TLS error: %s", detail);
    } else if (err < 0 && strcmp(tide_err_name(err), "EUNKNOWN") == 0 && -err < 4000) {
        /* An errno value outside the table: the C library still knows its text. */
        char sys[128];
        const char *text = strerror_r(-err, sys, sizeof(sys));
        snprintf(buf, len, "%s", text);
    } else {
        snprintf(buf, len, "%s", tide_strerror(err));
    }
    return buf;
}

int tide_err_from_errno(int errno_value) {
    if (errno_value <= 0)
        return TIDE_EIO;
    switch (errno_value) {
    case EWOULDBLOCK:
        return TIDE_EAGAIN;
    case ETIMEDOUT:
        return TIDE_ETIMEOUT; /* one code for every time-out (errno.h) */
    case ECANCELED:
        return TIDE_ECANCELLED;
    default:
        return -errno_value;
    }
}

int tide_err_from_gai(int gai_error) {
    switch (gai_error) {
    case 0:
        return 0;
    case EAI_AGAIN:
        return TIDE_EAI_AGAIN;
    case EAI_FAIL:
        return TIDE_EAI_FAIL;
    case EAI_NONAME:
        return TIDE_EAI_NONAME;
#ifdef EAI_NODATA
    case EAI_NODATA:
        return TIDE_EAI_NODATA;
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
        return TIDE_EAI_NODATA;
#endif
    case EAI_FAMILY:
        return TIDE_EAI_FAMILY;
    case EAI_SERVICE:
        return TIDE_EAI_SERVICE;
    case EAI_MEMORY:
        return TIDE_EAI_MEMORY;
    case EAI_SYSTEM:
        return tide_err_from_errno(errno);
    default:
        return TIDE_EAI_OTHER;
    }
}
