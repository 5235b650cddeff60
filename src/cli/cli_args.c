/*
 * cli_args.c - the parser, help pages and completion of stampctl, all made
 * from the command tables (see cli_args.h).
 *
 * Parsing runs in two passes over argv.  The first finds the command's
 * words ("drain", or "ns" then "reap"), stepping over global flags and
 * their values; the second reads every other argument against that
 * command's flags and the global ones.  Both passes use the same rule for
 * "--flag value": the next argument is the value unless it looks like a
 * flag itself, so a forgotten value is reported, never swallowed.
 *
 * Nothing here allocates or prints except the help and completion writers;
 * ca_parsed points into argv and the tables.
 */
#include "cli/cli_args.h"

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

static const char *const default_outputs[] = {"json", "yaml", NULL};

/* Rows of ca_globals, in order. */
enum { G_SERVER, G_TOKEN, G_CONFIG, G_OUTPUT, G_HELP, G_COUNT };

const ca_flag ca_globals[] = {
    {"server", 0, CA_STRING, NULL, false, false, "URL", "stampd's API (default: the client config's endpoint)", NULL},
    {"token", 0, CA_STRING, NULL, false, false, "TOKEN",
     "bearer token (default: $STAMP_TOKEN, else the client config's operator token)", NULL},
    {"config", 0, CA_STRING, NULL, false, false, "FILE",
     "client config (default: $STAMP_CONFIG, else ~/.config/stamp/config)", NULL},
    {"output", 'o', CA_ENUM, NULL, false, false, "FORMAT", "output format", NULL},
    {"help", 'h', CA_BOOL, NULL, false, false, NULL, "show this help", NULL},
    {NULL, 0, CA_BOOL, NULL, false, false, NULL, NULL, NULL},
};

static bool looks_like_flag(const char *s) { return s[0] == '-' && s[1] != '\0'; }

static void errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* err is a message for the user: a cut one still says what is wrong. */
static void errf(char *err, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(err, len, fmt, ap);
    va_end(ap);
}

static const ca_flag *find_long(const ca_flag *fs, const char *name, size_t n) {
    for (; fs && fs->name; fs++)
        if (strlen(fs->name) == n && strncmp(fs->name, name, n) == 0) return fs;
    return NULL;
}

static const ca_flag *find_short(const ca_flag *fs, char c) {
    for (; fs && fs->name; fs++)
        if (fs->alias && fs->alias == c) return fs;
    return NULL;
}

/* The flag an argument names: its table row, where its inline value starts
 * (NULL: none) and how it was written, for messages. */
typedef struct flag_ref {
    const ca_flag *f;
    const char *inline_val;
    char shown[80];
} flag_ref;

/* Splits "--name[=v]", "-x", "-x=v" or "-xv" and finds the row in cmd's
 * flags, then the globals.  False when no row has that name. */
static bool lookup(const ca_flag *cmdflags, const char *a, flag_ref *r) {
    r->f = NULL;
    r->inline_val = NULL;
    if (a[1] == '-') {
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        /* shown: the flag as messages quote it, at most 60 bytes of it. */
        str_fmt_cut(r->shown, sizeof(r->shown), "--%.*s", (int)(n > 60 ? 60 : n), name);
        if (eq) r->inline_val = eq + 1;
        r->f = find_long(cmdflags, name, n);
        if (r->f == NULL) r->f = find_long(ca_globals, name, n);
        return r->f != NULL && n > 0;
    }
    str_fmt_cut(r->shown, sizeof(r->shown), "-%c", a[1]);
    r->f = find_short(cmdflags, a[1]);
    if (r->f == NULL) r->f = find_short(ca_globals, a[1]);
    if (r->f == NULL) return false;
    if (a[2] == '=') r->inline_val = a + 3;
    else if (a[2] != '\0') {
        if (r->f->type == CA_BOOL) { /* -Afoo: not -A */
            str_fmt_cut(r->shown, sizeof(r->shown), "%.60s", a);
            r->f = NULL;
            return false;
        }
        r->inline_val = a + 2;
    }
    return true;
}

static bool is_group(const ca_cmd *cmds, size_t n, const char *w) {
    size_t l = strlen(w);
    for (size_t i = 0; i < n; i++)
        if (strncmp(cmds[i].name, w, l) == 0 && cmds[i].name[l] == ' ') return true;
    return false;
}

static const ca_cmd *find_cmd(const ca_cmd *cmds, size_t n, const char *w1, const char *w2) {
    for (size_t i = 0; i < n; i++) {
        const char *nm = cmds[i].name;
        size_t l1 = strlen(w1);
        if (strncmp(nm, w1, l1) != 0) continue;
        if (w2 == NULL && nm[l1] == '\0') return &cmds[i];
        if (w2 && nm[l1] == ' ' && strcmp(nm + l1 + 1, w2) == 0) return &cmds[i];
    }
    return NULL;
}

static void list_subs(const ca_cmd *cmds, size_t n, const char *group, char *buf, size_t len) {
    size_t gl = strlen(group), used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strncmp(cmds[i].name, group, gl) != 0 || cmds[i].name[gl] != ' ') continue;
        int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", cmds[i].name + gl + 1);
        if (w < 0 || (size_t)w >= len - used) break;
        used += (size_t)w;
    }
}

/* Long: matching multi-word commands with their aliases in one scan. */
/* Pass one: the command's words.  widx gets their argv indexes. */
static int find_words(const ca_cmd *cmds, size_t n, int argc, char **argv, ca_parsed *p,
                      int widx[2], char *err, size_t len) {
    const char *w[2] = {NULL, NULL};
    widx[0] = widx[1] = -1;
    int nw = 0;
    for (int i = 1; i < argc && nw < 2; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) break;
        if (looks_like_flag(a)) {
            if (nw == 0 && strcmp(a, "--version") == 0) {
                p->version = true;
                continue;
            }
            const ca_flag *g;
            const char *inline_val;
            if (a[1] == '-') {
                const char *nm = a + 2, *eq = strchr(nm, '=');
                g = find_long(ca_globals, nm, eq ? (size_t)(eq - nm) : strlen(nm));
                inline_val = eq ? eq + 1 : NULL;
            } else {
                g = find_short(ca_globals, a[1]);
                inline_val = a[2] == '=' ? a + 3 : (a[2] ? a + 2 : NULL);
            }
            /* A group that is also a command (rollout, rollout status):
             * the group's word with a flag of its own is the command. */
            if (g == NULL && nw == 1 && find_cmd(cmds, n, w[0], NULL)) break;
            if (g == NULL) {
                if (nw == 0) {
                    errf(err, len, "unknown flag %s (see 'stampctl --help')", a);
                    return -1;
                }
                errf(err, len, "unknown flag %s for %s (see 'stampctl %s --help')", a, w[0], w[0]);
                return -1;
            }
            if (g->type == CA_BOOL) {
                if (strcmp(g->name, "help") == 0) p->help = true;
            } else if (inline_val == NULL && i + 1 < argc && !looks_like_flag(argv[i + 1])) {
                i++; /* its value */
            }
            continue;
        }
        w[nw] = a;
        widx[nw++] = i;
        if (nw == 1 && !is_group(cmds, n, a)) break;
    }
    if (w[0] == NULL) {
        if (p->version) {
            p->cmd = find_cmd(cmds, n, "version", NULL);
            return p->cmd ? 0 : (errf(err, len, "no version command"), -1);
        }
        if (p->help) return 0;
        errf(err, len, "no command given (see 'stampctl --help')");
        return -1;
    }
    if (p->version) {
        errf(err, len, "--version takes no command (see 'stampctl --help')");
        return -1;
    }
    if (is_group(cmds, n, w[0])) {
        char subs[400];
        list_subs(cmds, n, w[0], subs, sizeof(subs));
        if (w[1] == NULL && find_cmd(cmds, n, w[0], NULL)) {
            p->cmd = find_cmd(cmds, n, w[0], NULL);
            return 0;
        }
        if (w[1] == NULL) {
            if (p->help) {
                p->group = w[0];
                return 0;
            }
            errf(err, len, "%s needs a subcommand: %s (see 'stampctl %s --help')", w[0], subs, w[0]);
            return -1;
        }
        p->group = w[0];
        p->cmd = find_cmd(cmds, n, w[0], w[1]);
        if (p->cmd == NULL) {
            errf(err, len, "unknown command \"%s %s\": %s takes %s (see 'stampctl %s --help')", w[0],
                 w[1], w[0], subs, w[0]);
            return -1;
        }
        return 0;
    }
    p->cmd = find_cmd(cmds, n, w[0], NULL);
    if (p->cmd == NULL) {
        errf(err, len, "unknown command \"%s\" (see 'stampctl --help')", w[0]);
        return -1;
    }
    return 0;
}

static void join_values(const char *const *v, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; v && v[i]; i++) {
        const char *sep = i == 0 ? "" : (v[i + 1] ? ", " : " or ");
        int w = snprintf(buf + used, len - used, "%s%s", sep, v[i]);
        if (w < 0 || (size_t)w >= len - used) break;
        used += (size_t)w;
    }
}

/* Checks v against f's type; *canon gets the stored form. */
static int check_value(const ca_cmd *c, const flag_ref *r, const char *v, const char **canon,
                       char *err, size_t len) {
    const ca_flag *f = r->f;
    const char *const *values = f->values;
    char why[1024] = "";
    *canon = v;
    if (f == &ca_globals[G_OUTPUT])
        values = c->outputs ? c->outputs : default_outputs;
    switch (f->type) {
    case CA_BOOL:
        if (strcmp(v, "true") == 0) *canon = "true";
        else if (strcmp(v, "false") == 0) *canon = "false";
        else str_copy(why, sizeof(why), "expected true or false");
        break;
    case CA_STRING:
        break;
    case CA_DURATION: {
        int64_t ms;
        if (parse_duration_ms(v, &ms) != 0 || ms <= 0)
            str_copy(why, sizeof(why), "it is not a duration like 90s, 60m or 1h30m");
        break;
    }
    case CA_INT: {
        int64_t x;
        if (parse_i64(v, 0, INT64_MAX, &x) != 0) str_copy(why, sizeof(why), "it is not a whole number >= 0");
        break;
    }
    case CA_ENUM: {
        size_t i;
        for (i = 0; values && values[i]; i++)
            if (strcasecmp(values[i], v) == 0) break;
        if (values && values[i]) {
            *canon = values[i];
        } else {
            char list[300];
            join_values(values, list, sizeof(list));
            str_fmt_cut(why, sizeof(why), "expected %s", list); /* why: a message */
        }
        break;
    }
    case CA_KV: {
        const char *eq = strchr(v, '=');
        if (eq == NULL || eq == v) str_copy(why, sizeof(why), "expected KEY=VALUE");
        break;
    }
    }
    if (!why[0] && f->check) f->check(v, why, sizeof(why));
    if (why[0]) {
        errf(err, len, "invalid value \"%.100s\" for %s of %s: %s (see 'stampctl %s --help')", v,
             r->shown, c->name, why, c->name);
        return -1;
    }
    return 0;
}

/* Long: pass two of the strict parser, one branch per kind of token. */
int ca_parse(const ca_cmd *cmds, size_t ncmds, int argc, char **argv, ca_parsed *p, char *err,
             size_t errlen) {
    memset(p, 0, sizeof(*p));
    err[0] = '\0';
    int widx[2];
    if (find_words(cmds, ncmds, argc, argv, p, widx, err, errlen) != 0) return -1;
    const ca_cmd *c = p->cmd;
    if (c == NULL) return 0; /* help of everything or of a group */
    bool after = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i == widx[0] || i == widx[1]) continue;
        if (!after && strcmp(a, "--") == 0) {
            after = true;
            continue;
        }
        if (!after && looks_like_flag(a)) {
            if (p->version && strcmp(a, "--version") == 0) continue;
            flag_ref r;
            if (!lookup(c->flags, a, &r)) {
                errf(err, errlen, "unknown flag %s for %s (see 'stampctl %s --help')",
                     r.shown, c->name, c->name);
                return -1;
            }
            const char *v = r.inline_val;
            if (v == NULL) {
                if (r.f->type == CA_BOOL) v = "true";
                else if (i + 1 < argc && !looks_like_flag(argv[i + 1]) && i + 1 != widx[0] && i + 1 != widx[1])
                    v = argv[++i];
            }
            bool empty_ok = r.f == &ca_globals[G_TOKEN]; /* an empty token is reported with its source */
            if (v == NULL || (*v == '\0' && !empty_ok)) {
                errf(err, errlen, "flag %s needs a value for %s (see 'stampctl %s --help')", r.shown,
                     c->name, c->name);
                return -1;
            }
            const char *canon = v;
            if (!(empty_ok && *v == '\0') && check_value(c, &r, v, &canon, err, errlen) != 0) return -1;
            if (r.f >= ca_globals && r.f < ca_globals + G_COUNT) {
                switch (r.f - ca_globals) {
                case G_SERVER: p->server = canon; break;
                case G_TOKEN: p->token = canon, p->token_given = true; break;
                case G_CONFIG: p->config = canon; break;
                case G_OUTPUT: p->output = canon; break;
                case G_HELP: p->help = strcmp(canon, "true") == 0; break;
                }
                continue;
            }
            if (p->nset >= CA_MAX_SET) {
                errf(err, errlen, "more than %d flags for %s", CA_MAX_SET, c->name);
                return -1;
            }
            p->set[p->nset].flag = r.f;
            p->set[p->nset++].value = canon;
            continue;
        }
        if (after && c->passthrough) {
            if (p->nrest >= CA_MAX_POS) {
                errf(err, errlen, "more than %d arguments after -- for %s", CA_MAX_POS, c->name);
                return -1;
            }
            p->rest[p->nrest++] = a;
            continue;
        }
        if (c->max_args >= 0 && p->npos >= c->max_args) {
            if (p->help) continue;
            errf(err, errlen, "unexpected argument \"%.100s\" for %s (see 'stampctl %s --help')", a, c->name,
                 c->name);
            return -1;
        }
        if (p->npos >= CA_MAX_POS) {
            errf(err, errlen, "more than %d arguments for %s", CA_MAX_POS, c->name);
            return -1;
        }
        p->pos[p->npos++] = a;
    }
    if (p->help) return 0;
    if (p->npos < c->min_args) {
        errf(err, errlen, "%s needs %s (see 'stampctl %s --help')", c->name, c->args ? c->args : "arguments",
             c->name);
        return -1;
    }
    for (const ca_flag *f = c->flags; f && f->name; f++) {
        if (!f->required || ca_get(p, f->name)) continue;
        errf(err, errlen, "%s needs --%s %s (see 'stampctl %s --help')", c->name, f->name,
             f->metavar ? f->metavar : "VALUE", c->name);
        return -1;
    }
    return 0;
}

const char *ca_get(const ca_parsed *p, const char *name) {
    assert(p->nset >= 0 && p->nset <= CA_MAX_SET);
    for (int i = p->nset - 1; i >= 0; i--) {
        if (strcmp(p->set[i].flag->name, name) != 0) continue;
        if (p->set[i].flag->type == CA_BOOL && strcmp(p->set[i].value, "false") == 0) return NULL;
        return p->set[i].value;
    }
    return NULL;
}

int ca_getn(const ca_parsed *p, const char *name, const char **vals, int max) {
    int n = 0;
    assert(p->nset >= 0 && p->nset <= CA_MAX_SET);
    for (int i = 0; i < p->nset && n < max; i++)
        if (strcmp(p->set[i].flag->name, name) == 0) vals[n++] = p->set[i].value;
    return n;
}

/* ---- help ---- */

static void help_flag(const ca_flag *f, const char *const *values, FILE *out) {
    char left[96], list[300]; /* help text: a cut is harmless */
    str_fmt_cut(left, sizeof(left), "%s%c%s--%s%s%s", f->alias ? "-" : " ", f->alias ? f->alias : ' ',
             f->alias ? ", " : "  ", f->name, f->metavar ? " " : "", f->metavar ? f->metavar : "");
    fprintf(out, "  %-32s %s", left, f->help ? f->help : "");
    if (f->type == CA_ENUM && values) {
        join_values(values, list, sizeof(list));
        fprintf(out, " (%s)", list);
    }
    if (f->type == CA_DURATION) fprintf(out, " (a duration: 90s, 60m, 1h30m)");
    if (f->required) fprintf(out, " [required]");
    if (f->repeat) fprintf(out, " [repeatable]");
    fputc('\n', out);
}

/* "drain NAME", "deploy --region REGION ...": the words, the arguments
 * and the flags that must be given. */
static void usage_line(const ca_cmd *c, char *buf, size_t len) {
    size_t used = 0;
    int w = snprintf(buf, len, "%s%s%s", c->name, c->args ? " " : "", c->args ? c->args : "");
    if (w < 0 || (size_t)w >= len) return;
    used = (size_t)w;
    for (const ca_flag *x = c->flags; x && x->name; x++) {
        if (!x->required) continue;
        w = snprintf(buf + used, len - used, " --%s %s", x->name, x->metavar ? x->metavar : "VALUE");
        if (w < 0 || (size_t)w >= len - used) return;
        used += (size_t)w;
    }
}

void ca_help_cmd(const ca_cmd *c, FILE *f) {
    char u[256];
    usage_line(c, u, sizeof(u));
    fprintf(f, "Usage: stampctl %s [flags]%s\n\n%s\n", u, c->passthrough ? " [-- ARGS...]" : "",
            c->summary ? c->summary : "");
    if (c->notes) fprintf(f, "\n%s\n", c->notes);
    fprintf(f, "\nFlags:\n");
    for (const ca_flag *x = c->flags; x && x->name; x++) help_flag(x, x->values, f);
    help_flag(&ca_globals[G_OUTPUT], c->outputs ? c->outputs : default_outputs, f);
    help_flag(&ca_globals[G_HELP], NULL, f);
    fprintf(f, "\nGlobal flags (anywhere on the line):\n");
    for (int i = G_SERVER; i <= G_CONFIG; i++) help_flag(&ca_globals[i], NULL, f);
    if (c->examples) {
        fprintf(f, "\nExamples:\n");
        const char *s = c->examples;
        while (*s) {
            const char *nl = strchr(s, '\n');
            size_t n = nl ? (size_t)(nl - s) : strlen(s);
            fprintf(f, "  %.*s\n", (int)n, s);
            s += n + (nl ? 1 : 0);
        }
    }
    fprintf(f, "\nExit status: 0 done, 1 the request failed, 2 a usage error (nothing was sent).\n");
}

void ca_help_all(const ca_cmd *cmds, size_t n, const char *group, FILE *f) {
    if (group) fprintf(f, "Usage: stampctl %s COMMAND [flags]\n\nCommands:\n", group);
    else
        fprintf(f, "stampctl - the command-line client of stampd\n\n"
                   "Usage: stampctl [global flags] COMMAND [ARGS] [flags]\n\nCommands:\n");
    size_t gl = group ? strlen(group) : 0;
    for (size_t i = 0; i < n; i++) {
        if (group && (strncmp(cmds[i].name, group, gl) != 0 || cmds[i].name[gl] != ' ')) continue;
        char left[256];
        usage_line(&cmds[i], left, sizeof(left));
        if (strlen(left) > 34) fprintf(f, "  %s\n  %-34s %s\n", left, "", cmds[i].summary ? cmds[i].summary : "");
        else fprintf(f, "  %-34s %s\n", left, cmds[i].summary ? cmds[i].summary : "");
    }
    fprintf(f, "\nGlobal flags (anywhere on the line):\n");
    for (int i = G_SERVER; i <= G_CONFIG; i++) help_flag(&ca_globals[i], NULL, f);
    fprintf(f, "  -o, --output FORMAT              json or yaml; list, get and ns list also wide and name\n");
    fprintf(f, "      --version                    print the client's and the server's version\n");
    fprintf(f, "\n'stampctl COMMAND --help' shows a command's flags and examples.\n");
}

/* ---- completion ---- */

static void words_of(const ca_cmd *c, FILE *f) {
    for (const ca_flag *x = c->flags; x && x->name; x++) {
        fprintf(f, " --%s", x->name);
        if (x->alias) fprintf(f, " -%c", x->alias);
    }
    fprintf(f, " --output -o --help --server --token --config");
}

void ca_completion_bash(const ca_cmd *cmds, size_t n, FILE *f) {
    fprintf(f, "# bash completion for stampctl, generated from its command tables.\n"
               "# Load with: source <(stampctl completion bash)\n"
               "_stampctl() {\n"
               "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} w1= w2= i\n"
               "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
               "    case ${COMP_WORDS[i]} in --server|--token|--config|--output|-o) i=$((i + 1)) ;;\n"
               "    -*) ;; *) if [ -z \"$w1\" ]; then w1=${COMP_WORDS[i]};\n"
               "      elif [ -z \"$w2\" ]; then w2=${COMP_WORDS[i]}; fi ;; esac\n"
               "  done\n"
               "  local vals=\n"
               "  case \"$cur\" in --*=*) prev=${cur%%%%=*}; cur=${cur#*=} ;; esac\n"
               "  case \"$prev\" in\n");
    /* Values of enum flags, whichever command. */
    for (size_t i = 0; i < n; i++)
        for (const ca_flag *x = cmds[i].flags; x && x->name; x++) {
            if (x->type != CA_ENUM || x->values == NULL) continue;
            fprintf(f, "    --%s) [[ \"$w1 $w2\" == \"%s\"* ]] && vals=\"", x->name, cmds[i].name);
            for (size_t k = 0; x->values[k]; k++) fprintf(f, "%s%s", k ? " " : "", x->values[k]);
            fprintf(f, "\" ;;\n");
        }
    fprintf(f, "    -o|--output) vals=\"json yaml wide name\" ;;\n  esac\n"
               "  if [ -n \"$vals\" ]; then COMPREPLY=($(compgen -W \"$vals\" -- \"$cur\")); return; fi\n"
               "  case \"$w1\" in\n    '') vals=\"");
    const char *prev = "";
    size_t prev_len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *sp = strchr(cmds[i].name, ' ');
        size_t l = sp ? (size_t)(sp - cmds[i].name) : strlen(cmds[i].name);
        if (prev_len == l && strncmp(prev, cmds[i].name, l) == 0) continue; /* a group, once */
        fprintf(f, "%s%.*s", i ? " " : "", (int)l, cmds[i].name);
        prev = cmds[i].name;
        prev_len = l;
    }
    fprintf(f, " --version --server --token --config\" ;;\n");
    /* Groups: their subcommands, then each subcommand's flags. */
    for (size_t i = 0; i < n; i++) {
        const char *sp = strchr(cmds[i].name, ' ');
        if (sp == NULL) continue;
        size_t gl = (size_t)(sp - cmds[i].name);
        if (i > 0 && strncmp(cmds[i - 1].name, cmds[i].name, gl + 1) == 0) continue;
        fprintf(f, "    %.*s) case \"$w2\" in\n      '') vals=\"", (int)gl, cmds[i].name);
        for (size_t k = i; k < n && strncmp(cmds[k].name, cmds[i].name, gl + 1) == 0; k++)
            fprintf(f, "%s%s", k > i ? " " : "", cmds[k].name + gl + 1);
        fprintf(f, "\" ;;\n");
        for (size_t k = i; k < n && strncmp(cmds[k].name, cmds[i].name, gl + 1) == 0; k++) {
            fprintf(f, "      %s) vals=\"", cmds[k].name + gl + 1);
            words_of(&cmds[k], f);
            fprintf(f, "\" ;;\n");
        }
        fprintf(f, "      esac ;;\n");
    }
    for (size_t i = 0; i < n; i++) {
        if (strchr(cmds[i].name, ' ')) continue;
        fprintf(f, "    %s) vals=\"", cmds[i].name);
        if (strcmp(cmds[i].name, "get") == 0 || strcmp(cmds[i].name, "describe") == 0)
            fprintf(f, "stamps templates namespaces bundles runs healthchecks");
        else if (strcmp(cmds[i].name, "completion") == 0) fprintf(f, "bash zsh");
        words_of(&cmds[i], f);
        fprintf(f, "\" ;;\n");
    }
    fprintf(f, "  esac\n"
               "  COMPREPLY=($(compgen -W \"$vals\" -- \"$cur\"))\n"
               "}\n"
               "complete -F _stampctl stampctl\n");
}

void ca_completion_zsh(const ca_cmd *cmds, size_t n, FILE *f) {
    fprintf(f, "#compdef stampctl\n"
               "# zsh completion for stampctl: the bash one through zsh's bashcompinit.\n"
               "# Load with: source <(stampctl completion zsh)\n"
               "autoload -U +X bashcompinit && bashcompinit\n");
    ca_completion_bash(cmds, n, f);
}

/* ---- label selectors ---- */

int ca_selector_parse(const char *s, ca_selector *sel, char *err, size_t errlen) {
    memset(sel, 0, sizeof(*sel));
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (sel->n >= CA_SEL_MAX) {
            errf(err, errlen, "selector \"%.100s\": more than %d terms", s, CA_SEL_MAX);
            return -1;
        }
        char term[400];
        if (n == 0 || n >= sizeof(term)) {
            errf(err, errlen, "selector \"%.100s\": an empty or too long term", s);
            return -1;
        }
        memcpy(term, p, n);
        term[n] = '\0';
        int op;
        const char *k = term, *v = NULL;
        char *x;
        if ((x = strstr(term, "!=")) != NULL) {
            op = CA_SEL_NE;
            *x = '\0';
            v = x + 2;
        } else if ((x = strstr(term, "==")) != NULL) {
            op = CA_SEL_EQ;
            *x = '\0';
            v = x + 2;
        } else if ((x = strchr(term, '=')) != NULL) {
            op = CA_SEL_EQ;
            *x = '\0';
            v = x + 1;
        } else if (term[0] == '!') {
            op = CA_SEL_ABSENT;
            k = term + 1;
        } else {
            op = CA_SEL_EXISTS;
        }
        if (*k == '\0' || strpbrk(k, "=!, ") || (v && strpbrk(v, "=!,")) ||
            !str_copy(sel->term[sel->n].key, sizeof(sel->term[sel->n].key), k) ||
            !str_copy(sel->term[sel->n].value, sizeof(sel->term[sel->n].value), v ? v : "")) {
            errf(err, errlen, "selector \"%.100s\": expected key=value, key!=value, key or !key", s);
            return -1;
        }
        sel->term[sel->n++].op = op;
        p += n;
        if (*p == ',') {
            p++;
            if (*p == '\0') {
                errf(err, errlen, "selector \"%.100s\": ends with a comma", s);
                return -1;
            }
        }
    }
    if (sel->n == 0) {
        errf(err, errlen, "an empty selector");
        return -1;
    }
    return 0;
}

bool ca_selector_match(const ca_selector *sel, json_t *labels) {
    for (int i = 0; i < sel->n; i++) {
        json_t *v = json_object_get(labels, sel->term[i].key);
        const char *s = json_string_value(v);
        switch (sel->term[i].op) {
        case CA_SEL_EQ:
            if (s == NULL || strcmp(s, sel->term[i].value) != 0) return false;
            break;
        case CA_SEL_NE: /* kubectl: a missing label also satisfies != */
            if (s && strcmp(s, sel->term[i].value) == 0) return false;
            break;
        case CA_SEL_EXISTS:
            if (v == NULL) return false;
            break;
        case CA_SEL_ABSENT:
            if (v != NULL) return false;
            break;
        }
    }
    return true;
}

/* ---- tokens ---- */

static bool b64url(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

bool ca_token_wellformed(const char *t) {
    if (t == NULL) return false;
    int part = 0;
    size_t plen = 0;
    for (const char *p = t;; p++) {
        if (*p == '.' || *p == '\0') {
            if (plen == 0 && part < 2) return false; /* header and payload are never empty */
            if (*p == '\0') break;
            if (++part > 2) return false;
            plen = 0;
            continue;
        }
        if (!b64url(*p)) return false;
        plen++;
    }
    return part == 2;
}
