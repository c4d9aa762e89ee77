#!/usr/bin/env python3
"""Fails when anything a user of tide can call or name is missing from the reference.

Reads every public header (include/tide.h and include/tide/*.h) for what they export:
functions declared TIDE_EXTERN, typedefs, struct/enum tags, macros (not include guards,
not TIDE__ internals). Each must have a documentation comment, which is checked twice:
  - Doxygen's own warnings (WARN_LOGFILE): "... is not documented" for a function,
    type, enum or macro fails; for a struct member it is reported as a note;
  - the generated index (html/globals_*.html, annotated.html): Doxygen lists only what
    is documented, so an exported name missing there is undocumented (or written in a
    way Doxygen could not read).
Each one is named as FILE:LINE: NAME (kind).

  check_reference.py SOURCE_DIR DOXYGEN_OUTPUT_DIR
"""
import glob
import html
import os
import re
import sys


def strip_comments(text):
    # Keep line numbers: a comment becomes as many newlines as it had.
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def exported(path):
    """(name, kind, line) for each exported thing of one header."""
    text = strip_comments(open(path, encoding="utf-8").read())
    found = []
    guard = re.search(r"#ifndef\s+(\w+)\s*\n#define\s+\1\b", text)
    guard = guard.group(1) if guard else None
    code = []  # the text without preprocessor lines, same line count
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*#\s*define\s+(\w+)", line)
        if m and m.group(1) != guard and not m.group(1).startswith("TIDE__"):
            found.append((m.group(1), "macro", i + 1))
        if line.lstrip().startswith("#"):
            while lines[i].rstrip().endswith("\\") and i + 1 < len(lines):
                code.append("")
                i += 1
            code.append("")
        else:
            code.append(line)
        i += 1
    text = "\n".join(code)
    text = re.sub(r'extern\s+"C"\s*\{', "", text)
    # Top-level statements: split at ';' outside braces.
    depth, start = 0, 0
    for pos, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        elif ch == ";" and depth == 0:
            stmt = text[start:pos]
            line = text.count("\n", 0, start + len(stmt) - len(stmt.lstrip("\n}\t "))) + 1
            start = pos + 1
            stmt = stmt.strip().lstrip("}").strip()
            if stmt.startswith("TIDE_EXTERN"):
                m = re.search(r"(\w+)\s*\(", stmt)
                if m:
                    found.append((m.group(1), "function", line))
            elif stmt.startswith("typedef"):
                tag = re.match(r"typedef\s+(struct|enum|union)\s+(\w+)\s*\{", stmt)
                if tag:
                    found.append((stmt[stmt.rindex("}") + 1:].strip(), "type", line))
                    continue
                m = re.search(r"\(\s*\*\s*(\w+)\s*\)", stmt)
                name = m.group(1) if m else re.findall(r"\w+", stmt)[-1]
                found.append((name, "type", line))
            elif re.match(r"(struct|enum|union)\s+\w+\s*\{", stmt):
                found.append((re.match(r"\w+\s+(\w+)", stmt).group(1), "type", line))
    return found


def index_names(out):
    """Every name the HTML reference lists as documented."""
    names = set()
    pages = glob.glob(os.path.join(out, "html", "globals*.html"))
    pages += glob.glob(os.path.join(out, "html", "annotated.html"))
    for page in pages:
        text = html.unescape(open(page, encoding="utf-8").read())
        names.update(re.findall(r">([A-Za-z_]\w*)(?:\(\))?\s*<", text))
        names.update(re.findall(r"<li>([A-Za-z_]\w*)(?:\(\))?\s*:", text))
    return names


def check(src, out, quiet=False):
    """Returns (exit status, the problems found) for the headers under src/include and
    the Doxygen output in out; prints them unless quiet."""
    headers = sorted(glob.glob(os.path.join(src, "include", "*.h")))
    headers += sorted(glob.glob(os.path.join(src, "include", "tide", "*.h")))
    problems, notes = [], []

    log = os.path.join(out, "warnings.log")
    if os.path.exists(log):
        for line in open(log, encoding="utf-8"):
            line = line.rstrip("\n").replace(os.path.join(out, "filtered") + "/", "")
            line = line.replace(src.rstrip("/") + "/", "")
            if "is not documented" not in line:
                if "warning" in line:
                    notes.append(line)
                continue
            if re.search(r"\(variable\) of (struct|union)", line):
                notes.append(line)
            else:
                problems.append(line)

    names = index_names(out)
    if not names:
        problems.append(f"{out}/html: no index of documented names (did Doxygen run?)")
    else:
        for header in headers:
            rel = os.path.relpath(header, src)
            for name, kind, line in exported(header):
                # A struct whose typedef hides it is listed under the typedef's name.
                if name not in names and not (kind == "type" and name + "_t" in names):
                    problems.append(f"{rel}:{line}: {name} ({kind}) has no documentation "
                                    "comment (or Doxygen could not read it)")
    problems = list(dict.fromkeys(problems))
    if quiet:
        return (1 if problems else 0), problems
    for note in notes:
        print(f"note: {note}")
    if problems:
        print(f"The reference is incomplete: {len(problems)} exported name(s) without "
              "documentation:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        print("Give each a comment before its declaration (see the headers' style).",
              file=sys.stderr)
        return 1, problems
    count = sum(len(exported(h)) for h in headers)
    print(f"reference: all {count} exported functions, types and macros are documented")
    return 0, problems


def main():
    return check(sys.argv[1], sys.argv[2])[0]


if __name__ == "__main__":
    sys.exit(main())
