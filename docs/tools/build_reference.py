#!/usr/bin/env python3
"""Builds tide's reference with Doxygen and checks that it documents everything
exported (check_reference.py). Used by the `docs` target and by the docs.* tests.

  build_reference.py DOXYGEN DOXYFILE SOURCE_DIR OUTPUT_DIR
      Runs Doxygen with DOXYFILE (configured by CMake), writing OUTPUT_DIR/html and
      OUTPUT_DIR/warnings.log, then the check. Exit status 1 names what is missing.
  build_reference.py --self-test DOXYGEN DOXYFILE WORK_DIR
      Runs the same on a made-up header with one undocumented function, one
      undocumented macro and one undocumented typedef, and fails unless the check
      fails naming exactly those three (so the check itself cannot rot into a no-op).
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_reference  # noqa: E402
import doxygen_filter  # noqa: E402


def filter_headers(src, out):
    """Writes every header under src/include, read through doxygen_filter.py, to
    out/filtered/include (one process for all: Doxygen would start the filter, and
    Python with it, twice per header). Returns the filtered tree's root."""
    root = os.path.join(out, "filtered")
    shutil.rmtree(root, ignore_errors=True)
    base = os.path.join(src, "include")
    for path in glob.glob(os.path.join(base, "**", "*.h"), recursive=True):
        rel = os.path.relpath(path, src)
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(path, encoding="utf-8") as f:
            text = "".join(doxygen_filter.filter_header(f.readlines()))
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    return root


def run_doxygen(doxygen, doxyfile, src, out, guide=True):
    os.makedirs(out, exist_ok=True)
    filtered = filter_headers(src, out)
    config = open(doxyfile, encoding="utf-8").read()
    # Later assignments win: the output place, and the headers already filtered.
    inputs = f'"{filtered}/include"'
    if guide and os.path.isdir(os.path.join(src, "docs", "guide")):
        inputs += f' "{src}/docs/guide"'
    else:
        config += "\nUSE_MDFILE_AS_MAINPAGE =\n"
    config += (f'\nOUTPUT_DIRECTORY = "{out}"\nWARN_LOGFILE = "{out}/warnings.log"\n'
               f"INPUT = {inputs}\nFILTER_PATTERNS =\n"
               f'STRIP_FROM_PATH = "{filtered}/include" "{filtered}" "{src}"\n'
               f'STRIP_FROM_INC_PATH = "{filtered}/include"\n'
               f'INCLUDE_PATH = "{filtered}/include"\n')
    shutil.rmtree(os.path.join(out, "html"), ignore_errors=True)
    subprocess.run([doxygen, "-"], input=config, text=True, check=True, cwd=out)


def build(doxygen, doxyfile, src, out):
    run_doxygen(doxygen, doxyfile, src, out)
    return check_reference.check(src, out)


FIXTURE_UMBRELLA = """/* A made-up library for the self-test. */
#ifndef FIX_H
#define FIX_H
#include "tide/fix.h"
#endif
"""
FIXTURE_HEADER = """/* Made-up declarations: three of them lack a comment. */
#ifndef FIX_FIX_H
#define FIX_FIX_H

/* The export marker, documented. */
#define TIDE_EXTERN extern

/* Documented: returns 0. */
TIDE_EXTERN int fix_documented(void);

TIDE_EXTERN int fix_forgotten(int x);

#define FIX_FORGOTTEN_MACRO 1

#define FIX_TRAILING 2 /* Documented by a comment after it. */

typedef struct fix_thing fix_thing_t;

/* Documented, and so is its pair below (one comment for a block). */
TIDE_EXTERN int fix_get(void);
TIDE_EXTERN void fix_set(int v);

#endif
"""


def self_test(doxygen, doxyfile, work):
    src = os.path.join(work, "src")
    out = os.path.join(work, "out")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(src, "include", "tide"))
    with open(os.path.join(src, "include", "tide.h"), "w") as f:
        f.write(FIXTURE_UMBRELLA)
    with open(os.path.join(src, "include", "tide", "fix.h"), "w") as f:
        f.write(FIXTURE_HEADER)
    run_doxygen(doxygen, doxyfile, src, out, guide=False)
    status, problems = check_reference.check(src, out, quiet=True)
    named = set()
    for p in problems:
        m = re.search(r"\.h:\d+: (?:warning: Member )?(\w+)", p)
        named.add(m.group(1) if m else p)
    want = {"fix_forgotten", "FIX_FORGOTTEN_MACRO", "fix_thing_t"}
    if status == 0 or named != want:
        print(f"self-test FAILED: the check returned {status} naming {sorted(named)}, "
              f"expected a failure naming {sorted(want)}", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"self-test: the check fails on {sorted(want)} as it should")
    return 0


def main():
    if sys.argv[1] == "--self-test":
        return self_test(*sys.argv[2:5])
    status, _ = build(*sys.argv[1:5])
    return status


if __name__ == "__main__":
    sys.exit(main())
