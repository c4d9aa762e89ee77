/* tide: asyncio's networking model in C.
 * version.h: the single source of the version, and the export macro every public
 * declaration carries. CMake reads the three numbers below. */
#ifndef TIDE_VERSION_H
#define TIDE_VERSION_H

/* The version of these headers: major, minor, patch, and as a string. */
#define TIDE_VERSION_MAJOR 0
#define TIDE_VERSION_MINOR 1
#define TIDE_VERSION_PATCH 0
#define TIDE_VERSION_STRING "0.1.0"

/* The version as one number, 0xMMmmpp, for comparisons. */
#define TIDE_VERSION_HEX \
    ((TIDE_VERSION_MAJOR << 16) | (TIDE_VERSION_MINOR << 8) | TIDE_VERSION_PATCH)

/* True when the headers in use are at least version major.minor.patch. */
#define TIDE_VERSION_AT_LEAST(major, minor, patch) \
    (TIDE_VERSION_HEX >= (((major) << 16) | ((minor) << 8) | (patch)))

/* Marks every public declaration: exported from the shared library; plain extern
 * when TIDE_STATIC is defined (set by the static library's CMake target). */
#if defined(TIDE_STATIC)
#define TIDE_EXTERN extern
#elif defined(__GNUC__) || defined(__clang__)
#define TIDE_EXTERN extern __attribute__((visibility("default")))
#else
#define TIDE_EXTERN extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library actually linked, as TIDE_VERSION_HEX; compare it with
 * the macro to check that headers and library match. */
TIDE_EXTERN unsigned tide_version(void);

/* The linked library's version as a static string such as "0.1.0". */
TIDE_EXTERN const char *tide_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
