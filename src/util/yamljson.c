/*
 * yamljson.c - YAML and JSON manifests into json_t, and json_t out as YAML.
 *
 * Reading walks libyaml's event stream with a recursive builder bounded by
 * MANIFEST_MAX_DEPTH.  We refuse what a manifest never needs and what makes
 * a document mean something other than it seems: aliases (billion laughs),
 * duplicate keys (the last one silently winning), non-scalar keys, and tags
 * outside the YAML core schema.
 *
 * Writing emits plain block YAML by hand: libyaml's emitter would work too,
 * but quoting decisions (a string "true" or "010" must stay a string when
 * read back) are easier to get right and to test in one small function.
 */
#include "util/yamljson.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/util.h"

#define TAG_CORE "tag:yaml.org,2002:"

typedef struct yreader {
    yaml_parser_t p;
    serr *e;
} yreader;

static int at(serr *e, const yaml_mark_t *m, int code, const char *what) {
    return serr_set(e, code, "line %zu, column %zu: %s", m->line + 1, m->column + 1, what);
}

static int next_event(yreader *r, yaml_event_t *ev) {
    if (!yaml_parser_parse(&r->p, ev)) {
        if (r->p.error == YAML_MEMORY_ERROR) return serr_set(r->e, SE_NOMEM, "yaml parser: out of memory");
        const char *prob = r->p.problem ? r->p.problem : "syntax error";
        char msg[256]; /* libyaml's own words; a cut is harmless */
        if (r->p.context)
            str_fmt_cut(msg, sizeof(msg), "%s %s", prob, r->p.context);
        else
            str_fmt_cut(msg, sizeof(msg), "%s", prob);
        return at(r->e, &r->p.problem_mark, SE_INVAL, msg);
    }
    return 0;
}

static bool is_null_word(const char *s) {
    return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int bool_word(const char *s) {
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return 0;
    return -1;
}

/* [-+]?[0-9]+ or 0x[0-9a-fA-F]+ or 0o[0-7]+ that fits in 64 bits. */
static bool int_word(const char *s, json_int_t *out) {
    const char *d = s;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        base = s[1] == 'x' ? 16 : 8;
        d = s + 2;
        if (*d == '\0') return false;
    } else {
        if (*d == '-' || *d == '+') d++;
        if (*d == '\0') return false;
    }
    for (const char *c = d; *c; c++) {
        if (base == 16 ? !isxdigit((unsigned char)*c)
                       : (*c < '0' || *c > (base == 8 ? '7' : '9')))
            return false;
    }
    errno = 0;
    char *end;
    long long v = strtoll(base == 10 ? s : d, &end, base);
    if (errno || *end) return false;
    *out = (json_int_t)v;
    return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? and .inf/.nan are
 * refused (JSON has no such values). */
static bool real_word(const char *s, double *out) {
    const char *c = s;
    bool digits = false, dot = false;
    if (*c == '-' || *c == '+') c++;
    while (isdigit((unsigned char)*c)) c++, digits = true;
    if (*c == '.') {
        dot = true;
        c++;
        while (isdigit((unsigned char)*c)) c++, digits = true;
    }
    if (!digits) return false;
    bool expo = false;
    if (*c == 'e' || *c == 'E') {
        expo = true;
        c++;
        if (*c == '-' || *c == '+') c++;
        if (!isdigit((unsigned char)*c)) return false;
        while (isdigit((unsigned char)*c)) c++;
    }
    if (*c != '\0' || (!dot && !expo)) return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static int scalar_value(yreader *r, yaml_event_t *ev, json_t **out) {
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (strlen(s) != n) return at(r->e, &ev->start_mark, SE_INVAL, "NUL byte in scalar");
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (tag && strcmp(tag, "!") != 0) {
        if (strcmp(tag, TAG_CORE "str") == 0) plain = false;
        else if (strncmp(tag, TAG_CORE, strlen(TAG_CORE)) != 0)
            return at(r->e, &ev->start_mark, SE_INVAL, "tags are not supported");
    }
    if (!plain) {
        *out = json_stringn(s, n);
    } else {
        json_int_t iv;
        double dv;
        int b;
        if (is_null_word(s)) *out = json_null();
        else if ((b = bool_word(s)) >= 0) *out = json_boolean(b);
        else if (int_word(s, &iv)) *out = json_integer(iv);
        else if (real_word(s, &dv)) *out = json_real(dv);
        else *out = json_stringn(s, n);
    }
    if (*out == NULL) {
        /* jansson says NULL for bytes that are not UTF-8 and for no memory:
         * tell them apart, or a server short of memory blames the user. */
        if (!utf8_valid(s, n)) return at(r->e, &ev->start_mark, SE_INVAL, "scalar is not valid UTF-8");
        return serr_set(r->e, SE_NOMEM, "out of memory");
    }
    return 0;
}

static int build(yreader *r, yaml_event_t *ev, int depth, json_t **out);

/* Long: mappings and sequences share the bounds and error paths. */
/* ev is a MAPPING_START or SEQUENCE_START already taken. */
static int build_collection(yreader *r, yaml_event_t *start, int depth, json_t **out) {
    bool map = start->type == YAML_MAPPING_START_EVENT;
    json_t *c = map ? json_object() : json_array();
    if (c == NULL) return serr_set(r->e, SE_NOMEM, "out of memory");
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(r, &ev);
        if (rc) {
            json_decref(c);
            return rc;
        }
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (!map) {
            json_t *v = NULL;
            rc = build(r, &ev, depth + 1, &v);
            yaml_event_delete(&ev);
            if (rc || json_array_append_new(c, v) != 0) {
                json_decref(c);
                return rc ? rc : serr_set(r->e, SE_NOMEM, "out of memory");
            }
            continue;
        }
        /* A key: scalars only. */
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = at(r->e, &ev.start_mark, SE_INVAL,
                    ev.type == YAML_ALIAS_EVENT ? "aliases are not supported"
                                                : "mapping keys must be scalars");
            yaml_event_delete(&ev);
            json_decref(c);
            return rc;
        }
        /* Keys as long as the document allows: whatever JSON can carry,
         * YAML must too. */
        if (ev.data.scalar.length >= MANIFEST_MAX_BYTES ||
            strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length) {
            rc = at(r->e, &ev.start_mark, SE_INVAL, "mapping key too long or not text");
            yaml_event_delete(&ev);
            json_decref(c);
            return rc;
        }
        char *key = malloc(ev.data.scalar.length + 1);
        if (key == NULL) {
            yaml_event_delete(&ev);
            json_decref(c);
            return serr_set(r->e, SE_NOMEM, "out of memory");
        }
        memcpy(key, ev.data.scalar.value, ev.data.scalar.length + 1);
        if (json_object_get(c, key) != NULL) {
            /* At most 200 bytes of the key, cut on a character (libyaml
             * gave valid UTF-8): the message fits msg whole. */
            char msg[300];
            str_fmt_cut(msg, sizeof(msg), "duplicate key \"%.*s\"",
                        (int)utf8_cut(key, strlen(key), 200), key);
            rc = at(r->e, &ev.start_mark, SE_INVAL, msg);
            yaml_event_delete(&ev);
            json_decref(c);
            free(key);
            return rc;
        }
        yaml_event_delete(&ev);
        if ((rc = next_event(r, &ev))) {
            json_decref(c);
            free(key);
            return rc;
        }
        json_t *v = NULL;
        rc = build(r, &ev, depth + 1, &v);
        yaml_event_delete(&ev);
        if (rc) {
            json_decref(c);
            free(key);
            return rc;
        }
        if (json_object_set_new(c, key, v) != 0) {
            json_decref(c);
            if (utf8_valid(key, strlen(key)))
                rc = serr_set(r->e, SE_NOMEM, "out of memory");
            else
                rc = serr_set(r->e, SE_INVAL, "mapping key \"%.200s\" is not valid UTF-8", key);
            free(key);
            return rc;
        }
        free(key);
    }
    *out = c;
    return 0;
}

static int build(yreader *r, yaml_event_t *ev, int depth, json_t **out) {
    if (depth > MANIFEST_MAX_DEPTH) {
        char msg[64];
        str_fmt_cut(msg, sizeof(msg), "nested deeper than %d levels", MANIFEST_MAX_DEPTH);
        return at(r->e, &ev->start_mark, SE_INVAL, msg);
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor)
            return at(r->e, &ev->start_mark, SE_INVAL, "anchors are not supported");
        return scalar_value(r, ev, out);
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        const yaml_char_t *anchor = ev->type == YAML_MAPPING_START_EVENT
                                        ? ev->data.mapping_start.anchor
                                        : ev->data.sequence_start.anchor;
        const char *tag = (const char *)(ev->type == YAML_MAPPING_START_EVENT
                                             ? ev->data.mapping_start.tag
                                             : ev->data.sequence_start.tag);
        if (anchor) return at(r->e, &ev->start_mark, SE_INVAL, "anchors are not supported");
        if (tag && strcmp(tag, "!") != 0 && strncmp(tag, TAG_CORE, strlen(TAG_CORE)) != 0)
            return at(r->e, &ev->start_mark, SE_INVAL, "tags are not supported");
        return build_collection(r, ev, depth, out);
    }
    case YAML_ALIAS_EVENT:
        return at(r->e, &ev->start_mark, SE_INVAL, "aliases are not supported");
    default:
        return at(r->e, &ev->start_mark, SE_INVAL, "unexpected YAML event");
    }
}

int yaml_to_json(const char *text, size_t len, json_t **out, int *multi, serr *e) {
    *out = NULL;
    if (multi) *multi = 0;
    if (len > MANIFEST_MAX_BYTES)
        return serr_set(e, SE_TOOBIG, "document is %zu bytes; the limit is %d", len,
                        MANIFEST_MAX_BYTES);
    yreader r = {.e = e};
    if (!yaml_parser_initialize(&r.p)) return serr_set(e, SE_NOMEM, "yaml parser: out of memory");
    yaml_parser_set_input_string(&r.p, (const unsigned char *)text, len);
    json_t *docs = json_array();
    int rc = docs ? 0 : serr_set(e, SE_NOMEM, "out of memory");
    bool done = false;
    while (rc == 0 && !done) {
        yaml_event_t ev;
        if ((rc = next_event(&r, &ev))) break;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_DOCUMENT_START_EVENT: {
            yaml_event_t root;
            if ((rc = next_event(&r, &root))) break;
            json_t *v = NULL;
            rc = build(&r, &root, 1, &v);
            yaml_event_delete(&root);
            /* A document that cannot be kept fails the whole stream: one
             * silently dropped would be applied as if never sent. */
            if (rc == 0 && json_array_append_new(docs, v) != 0)
                rc = serr_set(e, SE_NOMEM, "out of memory");
            break;
        }
        default:
            rc = at(e, &ev.start_mark, SE_INVAL, "unexpected YAML event");
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&r.p);
    if (rc) {
        json_decref(docs);
        return rc;
    }
    size_t n = json_array_size(docs);
    if (n == 0) {
        json_decref(docs);
        return serr_set(e, SE_INVAL, "empty document");
    }
    if (n == 1) {
        *out = json_incref(json_array_get(docs, 0));
        json_decref(docs);
        return 0;
    }
    if (multi == NULL) {
        json_decref(docs);
        return serr_set(e, SE_INVAL, "%zu documents where one was expected", n);
    }
    *multi = 1;
    *out = docs;
    return 0;
}

int json_depth(const json_t *v) {
    int max = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) {
            int d = json_depth(c);
            if (d > max) max = d;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) {
            int d = json_depth(c);
            if (d > max) max = d;
        }
        return max + 1;
    }
    return 1;
}

/* ---- jansson's allocations ----
 *
 * jansson 2.14 does not always say when it ran out of memory while
 * parsing: an object it cannot create ends the parse with no message at
 * all, and its lexer drops a byte when the token buffer cannot grow
 * (lex_save ignores strbuffer_append_byte's failure), so a document can
 * parse "successfully" into other values ("StampHealthChek").  Every
 * jansson allocation therefore goes through json_alloc, installed before
 * main, which counts failures per thread; json_load_text refuses a parse
 * during which one failed, whatever jansson answered. */
static _Thread_local unsigned long json_nomem;

static void *json_alloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) json_nomem++;
    return p;
}

static void json_release(void *p) { free(p); }

__attribute__((constructor)) static void json_alloc_install(void) {
    json_set_alloc_funcs(json_alloc, json_release);
}

unsigned long json_alloc_failures(void) { return json_nomem; }

int json_load_text(const char *text, size_t len, size_t flags, json_t **out, serr *e) {
    unsigned long before = json_nomem;
    json_error_t je;
    json_t *v = json_loadb(text, len, flags, &je);
    if (json_nomem != before || (v == NULL && json_error_code(&je) == json_error_out_of_memory)) {
        json_decref(v);
        *out = NULL;
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    *out = v;
    if (v == NULL)
        return serr_set(e, SE_INVAL, "line %d, column %d: %s", je.line, je.column, je.text);
    return 0;
}

char *json_text(const json_t *v, size_t flags) {
    /* jansson's dump ignores a failure to write an object's key and goes
     * on: the text would lack the key, or hold "" in its place. */
    unsigned long before = json_nomem;
    char *s = json_dumps(v, flags);
    if (s != NULL && json_nomem != before) {
        free(s);
        return NULL;
    }
    return s;
}

int json_parse_user(const char *text, size_t len, json_t **out, serr *e) {
    *out = NULL;
    if (len > MANIFEST_MAX_BYTES)
        return serr_set(e, SE_TOOBIG, "document is %zu bytes; the limit is %d", len,
                        MANIFEST_MAX_BYTES);
    json_t *v = NULL;
    int rc = json_load_text(text, len, JSON_REJECT_DUPLICATES, &v, e);
    if (rc) return rc;
    if (json_depth(v) > MANIFEST_MAX_DEPTH) {
        json_decref(v);
        return serr_set(e, SE_INVAL, "nested deeper than %d levels", MANIFEST_MAX_DEPTH);
    }
    *out = v;
    return 0;
}

/* ---- writing ---- */

/* Length of the UTF-8 character at s (valid UTF-8, as jansson keeps it)
 * and its code point. */
static size_t utf8_char(const unsigned char *s, uint32_t *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xe0) == 0xc0) {
        *cp = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
        return 2;
    }
    if ((s[0] & 0xf0) == 0xe0) {
        *cp = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        return 3;
    }
    *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
          ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
    return 4;
}

/* Characters a YAML reader does not take as they are: C0 and C1 controls
 * and DEL, the line breaks of YAML 1.1 (U+0085 NEL, U+2028, U+2029), the
 * byte order mark (dropped at the start of a stream) and the two
 * non-characters libyaml refuses.  Such a string is double-quoted, with
 * these escaped. */
static bool needs_escape(uint32_t cp) {
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

/* Can s be written as a plain scalar and read back as the same string? */
static bool plain_ok(const char *s) {
    if (*s == '\0' || is_null_word(s) || bool_word(s) >= 0) return false;
    json_int_t iv;
    double dv;
    if (int_word(s, &iv) || real_word(s, &dv)) return false;
    if (strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]) != NULL) return false;
    /* "..." at the start of a line ends a document. */
    if (strncmp(s, "...", 3) == 0) return false;
    size_t n = strlen(s);
    if (s[n - 1] == ' ' || s[n - 1] == ':') return false;
    for (const char *c = s; *c;) {
        uint32_t cp;
        size_t k = utf8_char((const unsigned char *)c, &cp);
        if (needs_escape(cp)) return false;
        if (*c == ':' && c[1] == ' ') return false;
        if (*c == ' ' && c[1] == '#') return false;
        c += k;
    }
    /* Values like "yes"/"no"/"on"/"off" mean booleans to YAML 1.1 readers. */
    static const char *const yaml11[] = {"yes", "no", "on", "off", "y", "n", "Yes", "No",
                                         "On", "Off", "YES", "NO", "ON", "OFF", NULL};
    for (int i = 0; yaml11[i]; i++)
        if (strcmp(s, yaml11[i]) == 0) return false;
    return true;
}

/* A YAML double-quoted scalar: YAML's own escapes for what needs one,
 * every other character as it is (JSON's \u escapes would not do: libyaml
 * refuses the surrogate pairs JSON writes for characters past U+FFFF). */
static int put_quoted(sbuf *b, const char *s) {
    int rc = sbuf_add(b, "\"", 1);
    for (const char *c = s; *c && rc == 0;) {
        uint32_t cp;
        size_t k = utf8_char((const unsigned char *)c, &cp);
        if (cp == '"') rc = sbuf_add(b, "\\\"", 2);
        else if (cp == '\\') rc = sbuf_add(b, "\\\\", 2);
        else if (cp == '\n') rc = sbuf_add(b, "\\n", 2);
        else if (cp == '\t') rc = sbuf_add(b, "\\t", 2);
        else if (cp == '\r') rc = sbuf_add(b, "\\r", 2);
        else if (cp == 0x85) rc = sbuf_add(b, "\\N", 2);
        else if (cp == 0x2028) rc = sbuf_add(b, "\\L", 2);
        else if (cp == 0x2029) rc = sbuf_add(b, "\\P", 2);
        else if (cp <= 0xff && needs_escape(cp)) rc = sbuf_addf(b, "\\x%02X", (unsigned)cp);
        else if (needs_escape(cp)) rc = sbuf_addf(b, "\\u%04X", (unsigned)cp);
        else rc = sbuf_add(b, c, k);
        c += k;
    }
    return rc ? rc : sbuf_add(b, "\"", 1);
}

static int put_string(sbuf *b, const char *s) {
    return plain_ok(s) ? sbuf_adds(b, s) : put_quoted(b, s);
}

/* libyaml takes an implicit ("key: value") key of at most 1024 characters;
 * a longer one is written as an explicit "? key" entry. */
#define YAML_SIMPLE_KEY_MAX 1000

/* How long s is once written; an error when it cannot be measured (no
 * memory), rather than a length that would pick the other key form. */
static int written_len(const char *s, size_t *n) {
    sbuf t;
    sbuf_init(&t, 64 * 1024 * 1024);
    int rc = put_string(&t, s);
    *n = t.len;
    sbuf_free(&t);
    return rc;
}

/* The shortest decimal that reads back as the same double: 0.073, not
 * 0.072999999999999995. */
static void shortest_real(double d, char *num, size_t len) {
    for (int prec = 15; prec <= 17; prec++) {
        /* Read back by a parser, so never cut: %.17g is at most 24
         * characters ("-1.2345678901234567e-308"), and callers pass 32+. */
        int n = snprintf(num, len, "%.*g", prec, d);
        assert(n > 0 && (size_t)n < len);
        (void)n;
        if (strtod(num, NULL) == d) return;
    }
}

static int put_scalar(sbuf *b, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_STRING: return put_string(b, json_string_value(v));
    case JSON_INTEGER: return sbuf_addf(b, "%lld", (long long)json_integer_value(v));
    case JSON_REAL: {
        char num[64];
        shortest_real(json_real_value(v), num, sizeof(num));
        /* Keep it a real when read back. */
        if (strpbrk(num, ".eE") == NULL) return sbuf_addf(b, "%s.0", num);
        return sbuf_adds(b, num);
    }
    case JSON_TRUE: return sbuf_adds(b, "true");
    case JSON_FALSE: return sbuf_adds(b, "false");
    case JSON_NULL: return sbuf_adds(b, "null");
    default: return SE_INTERNAL;
    }
}

static bool is_collection(const json_t *v) {
    return (json_is_object(v) && json_object_size(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

static int indent(sbuf *b, int n) {
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) rc = sbuf_add(b, "  ", 2);
    return rc;
}

/* Writes v, whose first line continues the current line (after "key:" or
 * "- "); lvl is the indentation of v's own children. */
static int emit(sbuf *b, const json_t *v, int lvl, bool inline_first);

static int emit_value_after_key(sbuf *b, const json_t *v, int lvl) {
    if (!is_collection(v)) {
        int rc = sbuf_add(b, " ", 1);
        if (rc == 0) {
            if (json_is_object(v)) rc = sbuf_adds(b, "{}");
            else if (json_is_array(v)) rc = sbuf_adds(b, "[]");
            else rc = put_scalar(b, v);
        }
        return rc ? rc : sbuf_add(b, "\n", 1);
    }
    int rc = sbuf_add(b, "\n", 1);
    /* Sequences under a key sit at the key's own indentation (kubectl's
     * style); mappings one level deeper. */
    return rc ? rc : emit(b, v, json_is_array(v) ? lvl - 1 : lvl, false);
}

static int emit(sbuf *b, const json_t *v, int lvl, bool inline_first) {
    int rc = 0;
    bool first = true;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) {
            if (!(first && inline_first)) rc = indent(b, lvl);
            first = false;
            size_t klen = 0;
            if (rc == 0) rc = written_len(k, &klen);
            if (rc) return rc;
            if (klen > YAML_SIMPLE_KEY_MAX) {
                /* "? key" then ": value" on a line of its own; a collection
                 * value starts on the next line, one level deeper. */
                rc = sbuf_add(b, "? ", 2);
                if (rc == 0) rc = put_string(b, k);
                if (rc == 0) rc = sbuf_add(b, "\n", 1);
                if (rc == 0) rc = indent(b, lvl);
                if (rc == 0) rc = sbuf_add(b, ":", 1);
                if (rc == 0 && is_collection(c)) {
                    rc = sbuf_add(b, "\n", 1);
                    if (rc == 0) rc = emit(b, c, lvl + 1, false);
                } else if (rc == 0) {
                    rc = emit_value_after_key(b, c, lvl + 1);
                }
                if (rc) return rc;
                continue;
            }
            if (rc == 0) rc = put_string(b, k);
            if (rc == 0) rc = sbuf_add(b, ":", 1);
            if (rc == 0) rc = emit_value_after_key(b, c, lvl + 1);
            if (rc) return rc;
        }
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) {
            if (!(first && inline_first)) rc = indent(b, lvl);
            first = false;
            if (rc == 0) rc = sbuf_add(b, "-", 1);
            if (rc) return rc;
            if (is_collection(c)) {
                if ((rc = sbuf_add(b, " ", 1))) return rc;
                rc = emit(b, c, lvl + 1, true);
            } else {
                rc = emit_value_after_key(b, c, lvl + 1);
            }
            if (rc) return rc;
        }
        return 0;
    }
    rc = put_scalar(b, v);
    return rc ? rc : sbuf_add(b, "\n", 1);
}

int json_to_yaml(const json_t *v, char **out, serr *e) {
    sbuf b;
    sbuf_init(&b, 64 * 1024 * 1024);
    int rc;
    if (json_is_object(v) && json_object_size(v) == 0) rc = sbuf_adds(&b, "{}\n");
    else if (json_is_array(v) && json_array_size(v) == 0) rc = sbuf_adds(&b, "[]\n");
    else rc = emit(&b, v, 0, false);
    if (rc == 0) rc = sbuf_add(&b, "", 1);
    if (rc) {
        sbuf_free(&b);
        return serr_set(e, rc, "yaml output: %s", se_text(rc));
    }
    *out = b.data;
    return 0;
}

const char *jstr(const json_t *o, const char *k, const char *d) {
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : d;
}

int64_t jint(const json_t *o, const char *k, int64_t d) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : d;
}

json_t *jchild(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_object(v)) {
        v = json_object();
        json_object_set_new(o, k, v);
    }
    return v;
}
