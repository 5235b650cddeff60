#!/usr/bin/env bash
# make lint: house rules the compiler does not check.  The C sources may not
# call the unbounded or error-blind functions curl's and OpenBSD's code
# styles ban: sprintf, vsprintf, strcpy, strcat, strncpy (silently drops the
# NUL), strtok and strtok_r (skip empty fields), atoi/atol (no errors), gets.
# Use snprintf, str_copy, sbuf, strchr-based splitting and parse_i64.
set -euo pipefail
cd "$(dirname "$0")/.."
banned='\b(sprintf|vsprintf|strcpy|strcat|strncpy|strtok|strtok_r|atoi|atol|atoll|gets)[[:space:]]*\('
# Comments are not code: drop /* ... */ on one line and // to end of line.
bad=$(git ls-files -- 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c' 2>/dev/null |
  xargs -r grep -nE "$banned" /dev/null |
  sed -E 's#/\*.*\*/##g; s#//.*$##' |
  grep -E "$banned" || true)
if [ -n "$bad" ]; then
  echo "lint: banned calls (see scripts/lint.sh for what to use instead):"
  echo "$bad"
  exit 1
fi
n=$(git ls-files -- 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c' | wc -l)
echo "lint: $n C files, no banned calls"
