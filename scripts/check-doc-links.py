#!/usr/bin/env python3
"""Checks the relative links of README.md and docs/*.md (or of the files named).

Each `[text](target)` outside code must name a file or directory that exists, relative to the
page, and a `#anchor` must name a heading of its page as GitHub makes anchors (lowercase,
spaces to `-`, punctuation dropped, `-1`, `-2`... for repeats). Links to other sites are not
followed. Prints one line per broken link and exits 1 if there is any; needs only python3.

    scripts/check-doc-links.py                 # README.md and docs/*.md
    scripts/check-doc-links.py docs/mount.md
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`+[^`]*`+")


def prose_lines(path):
    """(number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith("```") or stripped.startswith("~~~"):
            fence = stripped[:3]
            continue
        yield number, line


def anchors(path, cache={}):
    """The anchors GitHub gives the headings of a markdown file."""
    if path not in cache:
        seen = {}
        found = set()
        for _, line in prose_lines(path):
            m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link: its text
            text = text.replace("`", "").lower()
            slug = "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
        cache[path] = found
    return cache[path]


def check(page):
    broken = []
    for number, line in prose_lines(page):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(ROOT)}:{number}: {target}"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no heading with this anchor in {dest.name}")
    return broken


def main(args):
    pages = [pathlib.Path(a).resolve() for a in args] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [line for page in pages for line in check(page)]
    for line in broken:
        print(line)
    print(f"check-doc-links: {len(pages)} pages, {len(broken)} broken links")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
