/*
 * cli_args.h - stampctl's one command-line parser.  Every command is a row
 * of a table (its words, positional arguments, flags with their types and
 * help); the parser, the help pages and the shell completion are all made
 * from those rows, so they cannot disagree.
 *
 * The parser is pure: it reads argv and the tables, writes a ca_parsed and,
 * on a usage error, one message into a caller's buffer.  The caller prints
 * "stampctl: <message>" and exits 2 before any request is sent.
 *
 * Also here, because they are pure and unit-tested: label selectors
 * (-l key=value,key!=value,key,!key) and the shape check of a bearer token.
 */
#ifndef STAMP_CLI_ARGS_H
#define STAMP_CLI_ARGS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CA_MAX_POS 64
#define CA_MAX_SET 64
#define CA_ERR_MAX 2048

typedef enum ca_type {
    CA_BOOL,     /* --force, --force=true|false */
    CA_STRING,   /* any non-empty text */
    CA_DURATION, /* 90s, 60m, 1h30m: more than zero */
    CA_INT,      /* a whole number >= 0 */
    CA_ENUM,     /* one of values (case-insensitive; stored as written in the table) */
    CA_KV,       /* KEY=VALUE, KEY not empty */
} ca_type;

typedef struct ca_flag {
    const char *name;           /* long name, without "--" */
    char alias;                 /* one-letter "-x" form, or 0 */
    ca_type type;
    const char *const *values;  /* CA_ENUM: the values, NULL-terminated */
    bool required;
    bool repeat;                /* may be given more than once; every value kept */
    const char *metavar;        /* shown in help: --region REGION */
    const char *help;
    /* Extra check of a value: 0 ok, else a reason in why. */
    int (*check)(const char *v, char *why, size_t len);
} ca_flag;

struct ca_parsed;

typedef struct ca_cmd {
    int (*run)(struct ca_parsed *p); /* the command itself */
    const char *name;           /* "drain", or "ns reap" for a subcommand */
    const char *args;           /* positional arguments as shown in usage: "NAME" */
    int min_args, max_args;     /* max_args -1: no limit */
    bool passthrough;           /* after "--" the rest goes to rest[] (ns run-pod) */
    const ca_flag *flags;       /* ends with a row whose name is NULL; may be NULL */
    const char *const *outputs; /* -o values; NULL means json, yaml */
    const char *summary;
    const char *examples;       /* one example a line */
    const char *notes;          /* a paragraph for --help, or NULL */
} ca_cmd;

typedef struct ca_set {
    const ca_flag *flag;
    const char *value;
} ca_set;

typedef struct ca_parsed {
    const ca_cmd *cmd;   /* NULL when only a group was named (ns --help) */
    const char *group;   /* "ns" when the command is a subcommand of a group */
    const char *pos[CA_MAX_POS];
    int npos;
    const char *rest[CA_MAX_POS]; /* after "--" for passthrough commands */
    int nrest;
    ca_set set[CA_MAX_SET];
    int nset;
    /* global flags */
    const char *server, *token, *config, *output;
    bool token_given;
    bool help;
    bool version; /* --version before any command */
} ca_parsed;

/* The global flags every command takes. */
extern const ca_flag ca_globals[];

/* Parses argv against the commands: 0, or -1 with a message in err. */
int ca_parse(const ca_cmd *cmds, size_t ncmds, int argc, char **argv, ca_parsed *p, char *err,
             size_t errlen);

/* The last value of a flag, or NULL; a bool given as false reads as NULL. */
const char *ca_get(const ca_parsed *p, const char *name);
/* Every value of a repeatable flag, in order; returns how many. */
int ca_getn(const ca_parsed *p, const char *name, const char **vals, int max);

/* "--help" of one command, and the list of all commands (or one group's). */
void ca_help_cmd(const ca_cmd *c, FILE *f);
void ca_help_all(const ca_cmd *cmds, size_t ncmds, const char *group, FILE *f);
/* Shell completion scripts made from the tables. */
void ca_completion_bash(const ca_cmd *cmds, size_t ncmds, FILE *f);
void ca_completion_zsh(const ca_cmd *cmds, size_t ncmds, FILE *f);

/* Label selectors: comma-separated key=value, key==value, key!=value, key,
 * !key.  All terms must hold (AND), as in kubectl. */
#define CA_SEL_MAX 16
typedef struct ca_selector {
    struct {
        char key[128];
        char value[256];
        enum { CA_SEL_EQ, CA_SEL_NE, CA_SEL_EXISTS, CA_SEL_ABSENT } op;
    } term[CA_SEL_MAX];
    int n;
} ca_selector;

int ca_selector_parse(const char *s, ca_selector *sel, char *err, size_t errlen);
bool ca_selector_match(const ca_selector *sel, json_t *labels);

/* A JWT in compact form: three dot-separated base64url parts, the first two
 * not empty, no whitespace.  Shape only; stampd verifies it. */
bool ca_token_wellformed(const char *t);

#endif
