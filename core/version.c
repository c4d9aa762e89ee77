/* The linked library's version, so that callers can compare it with the headers. */
#include "tide/version.h"

unsigned tide_version(void) { return TIDE_VERSION_HEX; }

const char *tide_version_string(void) { return TIDE_VERSION_STRING; }
