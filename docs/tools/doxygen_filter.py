#!/usr/bin/env python3
"""Doxygen INPUT_FILTER for tide's public headers: turns their plain comments into
documentation comments, so the headers stay as they are (plain C comments, one
contract per declaration) and Doxygen still reads them.

  - The comment opening a header, before its include guard, becomes the file's
    documentation (@file).
  - A comment on a line of its own, directly followed by code, documents that code.
    When the code under it is several declarations in a row (a getter and its setter,
    two macros), the comment documents each of them: the block is made a Doxygen
    member group, whose first member's documentation is shared (DISTRIBUTE_GROUP_DOC).
  - A comment after code on the same line documents that code (Doxygen's /**<).

The output keeps every line where it was, so Doxygen's line numbers match the header.
Usage: doxygen_filter.py HEADER (writes the filtered text to standard output).
"""
import re
import sys


def code_part(line):
    """The line without comments and string contents (for counting braces and ';')."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"/\*.*?\*/", "", line)
    return line.split("//")[0]


def filter_header(lines):
    out = list(lines)
    n = len(lines)
    openers = {}  # line -> text put before it (opening a member group)
    closers = {}  # line -> text put before it (closing one)
    seen_code = False  # anything but comments and blank lines seen yet
    i = 0
    while i < n:
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("/*") and not stripped.startswith("/**"):
            # A comment on its own line: find where it ends.
            j = i
            while "*/" not in lines[j][(len(line) - len(stripped)) if j == i else 0:]:
                j += 1
                if j >= n:
                    break
            if not seen_code:
                # The header's opening comment, before its include guard: the file's
                # documentation (@file without a name means this file).
                out[i] = line.replace("/*", "/**", 1)
                out[j] = out[j].replace("*/", "@file */", 1)
                seen_code = True
                i = j + 1
                continue
            nxt = lines[j + 1] if j + 1 < n else ""
            if nxt.strip() and not nxt.lstrip().startswith(("/*", "#endif", "#else", "}")):
                out[i] = line.replace("/*", "/**", 1)
                members, last = count_members(lines, j + 1)
                if members > 1:
                    # The group closes at the start of the line after the block (a
                    # blank or comment line), never inside a macro's definition.
                    openers[i] = "/**@{*/"
                    if last + 1 < n:
                        closers[last + 1] = "/**@}*/"
                    else:
                        out[last] = out[last].rstrip("\n") + "\n/**@}*/\n"
            i = j + 1
            continue
        if stripped.strip():
            seen_code = True
            # A trailing comment documents the code before it on the same line.
            m = re.search(r"(;|,|\{|[A-Za-z0-9_)\]])(\s*)/\*(?![*!])", line)
            # Not after other preprocessor lines (#endif /* GUARD */), but after a
            # macro's definition, which it documents.
            if m and (stripped.startswith("#define") or not stripped.startswith(("/*", "#"))):
                out[i] = line[: m.end(2)] + "/**<" + line[m.end():]
        i += 1
    return [closers.get(k, "") + openers.get(k, "") + out[k] for k in range(n)]


def count_members(lines, start):
    """Counts the declarations in the block of code starting at `start` (up to a blank
    line, a comment line or a preprocessor conditional) and returns (count, index of
    the block's last line)."""
    count = 0
    depth = 0
    last = start
    i = start
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s or (depth == 0 and s.startswith(("/*", "#if", "#endif", "#else", "#elif", "#include"))):
            break
        if depth == 0 and s.startswith("#define"):
            count += 1
            while lines[i].rstrip("\n").endswith("\\") and i + 1 < len(lines):
                i += 1
            last = i
            i += 1
            continue
        code = code_part(line)
        for ch in code:
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
            elif ch == ";" and depth == 0:
                count += 1
        last = i
        i += 1
    return count, last


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        lines = f.readlines()
    sys.stdout.write("".join(filter_header(lines)))


if __name__ == "__main__":
    main()
