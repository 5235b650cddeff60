/*
 * cli_output.c - stampctl's tables and ages, rendered the way kubectl shows
 * them so that operators read them without thinking.
 *
 * A table owns copies of its header and cell texts.  Cells are sanitised on
 * the way in: control characters (newline, tab, escape, ...) become spaces,
 * so one row is one line and a cell cannot move the cursor or break the
 * alignment.  Widths are counted in UTF-8 characters, not bytes.  Lines never
 * end in spaces.  Bounded by TABLE_MAX_COLS, TABLE_MAX_ROWS and a total text
 * size; the output is bounded by the caller's sbuf.
 *
 * Threading: a table belongs to one thread; fmt_age is pure.
 */
#include "cli/cli_output.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_GAP 3
#define TABLE_TEXT_MAX (64u * 1024 * 1024)

struct table {
    int ncols;
    char *headers[TABLE_MAX_COLS];
    char **cells; /* nrows * ncols, row major */
    int nrows;
    int caprows;
    size_t text; /* bytes held, against TABLE_TEXT_MAX */
};

/* A copy of s with control characters turned into spaces; headers are also
 * upper-cased (ASCII only: "NAME", "AGE"). */
static char *clean_copy(const char *s, bool upper) {
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (c == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) ch = ' ';
        else if (upper && ch >= 'a' && ch <= 'z') ch = (unsigned char)(ch - 'a' + 'A');
        c[i] = (char)ch;
    }
    c[n] = '\0';
    return c;
}

/* Characters, not bytes: continuation bytes of UTF-8 do not count. */
static size_t text_width(const char *s) {
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

table *table_new(int ncols, const char *const *headers) {
    if (ncols < 1 || ncols > TABLE_MAX_COLS || headers == NULL) return NULL;
    table *t = calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->ncols = ncols;
    for (int i = 0; i < ncols; i++) {
        t->headers[i] = clean_copy(headers[i] ? headers[i] : "", true);
        if (t->headers[i] == NULL) goto fail;
    }
    return t;
fail:
    table_free(t);
    return NULL;
}

void table_free(table *t) {
    if (t == NULL) return;
    for (int i = 0; i < t->ncols; i++) free(t->headers[i]);
    if (t->cells) {
        for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++) free(t->cells[i]);
        free(t->cells);
    }
    free(t);
}

int table_add(table *t, const char *const *cells) {
    if (t == NULL || cells == NULL) return SE_INVAL;
    assert(t->ncols >= 1 && t->ncols <= TABLE_MAX_COLS && t->nrows <= t->caprows);
    if (t->nrows >= TABLE_MAX_ROWS) return SE_LIMIT;
    size_t bytes = 0;
    for (int i = 0; i < t->ncols; i++) bytes += strlen(cells[i] ? cells[i] : "<none>") + 1;
    if (bytes > TABLE_TEXT_MAX - t->text) return SE_LIMIT;
    if (t->nrows == t->caprows) {
        int ncap = t->caprows ? t->caprows * 2 : 16;
        if (ncap > TABLE_MAX_ROWS) ncap = TABLE_MAX_ROWS;
        char **n = realloc(t->cells, (size_t)ncap * (size_t)t->ncols * sizeof(*n));
        if (n == NULL) return SE_NOMEM;
        t->cells = n;
        t->caprows = ncap;
    }
    char **row = t->cells + (size_t)t->nrows * (size_t)t->ncols;
    for (int i = 0; i < t->ncols; i++) {
        row[i] = clean_copy(cells[i] ? cells[i] : "<none>", false);
        if (row[i] == NULL) {
            while (i-- > 0) free(row[i]);
            return SE_NOMEM;
        }
    }
    t->nrows++;
    t->text += bytes;
    return 0;
}

static int render_line(char *const *cells, int ncols, const size_t *width, sbuf *out) {
    size_t start = out->len;
    int rc = 0;
    for (int i = 0; i < ncols && rc == 0; i++) {
        rc = sbuf_adds(out, cells[i]);
        if (i == ncols - 1) break;
        for (size_t pad = text_width(cells[i]); rc == 0 && pad < width[i] + TABLE_GAP; pad++)
            rc = sbuf_add(out, " ", 1);
    }
    if (rc) return rc;
    /* An empty last cell (or one ending in blanks) would leave trailing
     * spaces that make diffs and copy-paste noisy. */
    while (out->len > start && out->data[out->len - 1] == ' ') out->len--;
    return sbuf_add(out, "\n", 1);
}

int table_render(const table *t, sbuf *out) {
    if (t == NULL || out == NULL) return SE_INVAL;
    assert(t->ncols >= 1 && t->ncols <= TABLE_MAX_COLS); /* width[] below */
    size_t width[TABLE_MAX_COLS];
    for (int c = 0; c < t->ncols; c++) width[c] = text_width(t->headers[c]);
    for (int r = 0; r < t->nrows; r++) {
        char *const *row = t->cells + (size_t)r * (size_t)t->ncols;
        for (int c = 0; c < t->ncols; c++) {
            size_t w = text_width(row[c]);
            if (w > width[c]) width[c] = w;
        }
    }
    int rc = render_line(t->headers, t->ncols, width, out);
    for (int r = 0; r < t->nrows && rc == 0; r++)
        rc = render_line(t->cells + (size_t)r * (size_t)t->ncols, t->ncols, width, out);
    return rc;
}

/* Whole units, truncated, switching unit at two of the next one so a number
 * never reads as a bare 1 ("90s", "119m", "47h", "2d").  A table cell for
 * people: a buffer too short for it gets a cut text. */
char *fmt_age(int64_t ms, char *buf, size_t len) {
    if (buf == NULL || len == 0) return buf;
    int64_t s = ms < 0 ? 0 : ms / 1000;
    if (s < 120) str_fmt_cut(buf, len, "%llds", (long long)s);
    else if (s < 120 * 60) str_fmt_cut(buf, len, "%lldm", (long long)(s / 60));
    else if (s < 48 * 3600) str_fmt_cut(buf, len, "%lldh", (long long)(s / 3600));
    else str_fmt_cut(buf, len, "%lldd", (long long)(s / 86400));
    return buf;
}
