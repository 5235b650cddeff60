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

# Long functions in src/.  Over LONG_FN lines a function should say why
# it is long, in a comment within the three lines above its definition
# that uses the word "long" ("Long: one pass over the table, ..."): those
# over it without one are listed (a report, not a failure).  Over MAX_FN
# lines is a failure: split it.  A function is a column-0 signature whose
# last line ends in "{" and whose body ends at a column-0 "}" (the
# clang-format layout), counted from the signature to the brace.
LONG_FN=80
MAX_FN=150
fns=$(git ls-files -- 'src/*.c' | xargs -r awk '
function flush_sig() { insig = 0 }
FNR == 1 { insig = 0; infn = 0; split("", line) }
{
    line[FNR] = $0
    code = $0 # without a trailing comment, for the "{" and ";" tests
    sub(/[ \t]*\/\*.*\*\/[ \t]*$/, "", code)
    sub(/[ \t]*\/\/.*$/, "", code)
}
infn {
    if ($0 ~ /^}/) {
        doc = 0
        for (k = start - 1; k >= start - 3 && k >= 1; k--)
            if (line[k] ~ /(\/\*|^ *\*|\/\/)/ && tolower(line[k]) ~ /(^|[^a-z])long([^a-z]|$)/) doc = 1
        printf "%d %d %s:%d %s\n", FNR - start + 1, doc, FILENAME, start, name
        infn = 0
    }
    next
}
# A signature continues on indented lines; a column-0 or blank line means
# the last line was no signature (a macro call such as LOG_FN(...)).
insig && ($0 ~ /^[^ \t]/ || $0 ~ /^[ \t]*$/) { flush_sig() }
insig {
    if (code ~ /;[ \t]*$/) { flush_sig(); next }
    if (code ~ /\{[ \t]*$/) { infn = 1; flush_sig() }
    next
}
/^[A-Za-z_][^;=#]*\(/ && $0 !~ /^typedef[ \t]/ {
    start = FNR
    s = $0; sub(/\(.*/, "", s); m = split(s, w, /[ \t*]+/); name = w[m]
    if (code ~ /\{[ \t]*$/) { infn = 1; next }
    if (code ~ /;[ \t]*$/ || code ~ /\}[ \t]*$/) next
    insig = 1
}' | sort -k1,1nr -k3)
nfn=$(printf '%s\n' "$fns" | grep -c . || true)
undoc=$(printf '%s\n' "$fns" | awk -v l="$LONG_FN" '$1 > l && $2 == 0 { printf "  %s %s (%d lines)\n", $3, $4, $1 }')
if [ -n "$undoc" ]; then
  echo "lint: functions over $LONG_FN lines with no comment above saying why they are long:"
  echo "$undoc"
else
  echo "lint: $nfn functions in src/, every one over $LONG_FN lines says why it is long"
fi
huge=$(printf '%s\n' "$fns" | awk -v m="$MAX_FN" '$1 > m { printf "  %s %s (%d lines)\n", $3, $4, $1 }')
if [ -n "$huge" ]; then
  echo "lint: functions over $MAX_FN lines (split them):"
  echo "$huge"
  exit 1
fi
