/*
 * test_cli_args.c - stampctl's parser against a small command table: every
 * refusal and its exact message, both value forms, globals anywhere, "--",
 * groups, help; label selectors; the token shape check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_args.h"

static const char *const phases[] = {"active", "ready", NULL};
static const char *const outs[] = {"json", "yaml", "wide", "name", NULL};

static int only_abc(const char *v, char *why, size_t len) {
    if (strcmp(v, "abc") == 0) return 0;
    snprintf(why, len, "only abc");
    return -1;
}

static const ca_flag f_drain[] = {
    {"force", 0, CA_BOOL, NULL, false, false, NULL, "now", NULL},
    {"grace-period", 0, CA_DURATION, NULL, false, false, "DURATION", "limit", NULL},
    {"for", 0, CA_ENUM, phases, false, false, "PHASE", "phase", NULL},
    {"limit", 0, CA_INT, NULL, false, false, "N", "n", NULL},
    {"param", 0, CA_KV, NULL, false, true, "K=V", "p", NULL},
    {"filename", 'f', CA_STRING, NULL, false, false, "FILE", "file", NULL},
    {"all", 'A', CA_BOOL, NULL, false, false, NULL, "all", NULL},
    {"abc", 0, CA_STRING, NULL, false, false, "X", "checked", only_abc},
    {NULL, 0, CA_BOOL, NULL, false, false, NULL, NULL, NULL},
};
static const ca_flag f_deploy[] = {
    {"region", 0, CA_STRING, NULL, true, false, "REGION", "region", NULL},
    {NULL, 0, CA_BOOL, NULL, false, false, NULL, NULL, NULL},
};

static const ca_cmd cmds[] = {
    {NULL, "drain", "NAME", 1, 1, false, f_drain, NULL, "Drain", "stampctl drain x", NULL},
    {NULL, "deploy", NULL, 0, 0, false, f_deploy, NULL, "Deploy", NULL, NULL},
    {NULL, "list", NULL, 0, 0, false, NULL, outs, "List", NULL, NULL},
    {NULL, "version", NULL, 0, 0, false, NULL, NULL, "Version", NULL, NULL},
    {NULL, "ns reap", "[NS]", 0, 1, false, f_drain, NULL, "Reap", NULL, NULL},
    {NULL, "ns run-pod", "NS POD", 2, 2, true, f_drain, NULL, "Run", NULL, NULL},
};
#define N (sizeof(cmds) / sizeof(cmds[0]))

static ca_parsed P;
static char E[CA_ERR_MAX];

/* Parses a NULL-terminated list of words; returns ca_parse's result. */
static int parse(const char *first, ...) {
    char *argv[40] = {"stampctl"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 39; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    return ca_parse(cmds, N, argc, argv, &P, E, sizeof(E));
}

static void test_refusals(void **state) {
    assert_int_equal(parse("drain", "x", "--grace-perod=60m", NULL), -1);
    assert_string_equal(E, "unknown flag --grace-perod for drain (see 'stampctl drain --help')");
    assert_int_equal(parse("drain", "x", "-z", NULL), -1);
    assert_string_equal(E, "unknown flag -z for drain (see 'stampctl drain --help')");
    assert_int_equal(parse("drain", "x", "--grace-period", NULL), -1);
    assert_string_equal(E, "flag --grace-period needs a value for drain (see 'stampctl drain --help')");
    /* A flag where the value should be is a forgotten value, not the value. */
    assert_int_equal(parse("drain", "x", "--grace-period", "--force", NULL), -1);
    assert_string_equal(E, "flag --grace-period needs a value for drain (see 'stampctl drain --help')");
    assert_int_equal(parse("drain", "x", "--grace-period=", NULL), -1);
    assert_int_equal(parse("drain", "x", "y", NULL), -1);
    assert_string_equal(E, "unexpected argument \"y\" for drain (see 'stampctl drain --help')");
    assert_int_equal(parse("drain", NULL), -1);
    assert_string_equal(E, "drain needs NAME (see 'stampctl drain --help')");
    assert_int_equal(parse("drain", "x", "--for=activ", NULL), -1);
    assert_string_equal(E, "invalid value \"activ\" for --for of drain: expected active or ready "
                           "(see 'stampctl drain --help')");
    assert_int_equal(parse("drain", "x", "--grace-period=soon", NULL), -1);
    assert_non_null(strstr(E, "not a duration"));
    assert_int_equal(parse("drain", "x", "--limit=-1", NULL), -1);
    assert_int_equal(parse("drain", "x", "--param", "novalue", NULL), -1);
    assert_non_null(strstr(E, "expected KEY=VALUE"));
    assert_int_equal(parse("drain", "x", "--param==v", NULL), -1);
    assert_int_equal(parse("drain", "x", "--force=yes", NULL), -1);
    assert_int_equal(parse("drain", "x", "--abc=abd", NULL), -1);
    assert_non_null(strstr(E, "only abc"));
    assert_int_equal(parse("deploy", NULL), -1);
    assert_string_equal(E, "deploy needs --region REGION (see 'stampctl deploy --help')");
    assert_int_equal(parse("list", "-o", "xml", NULL), -1);
    assert_non_null(strstr(E, "expected json, yaml, wide or name"));
    assert_int_equal(parse("drain", "x", "-o", "wide", NULL), -1); /* drain has json, yaml */
    assert_int_equal(parse("list", "-o", NULL), -1);
    assert_string_equal(E, "flag -o needs a value for list (see 'stampctl list --help')");
    assert_int_equal(parse("bogus", NULL), -1);
    assert_string_equal(E, "unknown command \"bogus\" (see 'stampctl --help')");
    assert_int_equal(parse("--force", "drain", "x", NULL), -1);
    assert_int_equal(parse(NULL), -1);
    assert_int_equal(parse("ns", NULL), -1);
    assert_non_null(strstr(E, "ns needs a subcommand: reap, run-pod"));
    assert_int_equal(parse("ns", "nope", NULL), -1);
    assert_int_equal(parse("drain", "x", "-Afoo", NULL), -1);
}

static void test_accepts(void **state) {
    assert_int_equal(parse("drain", "x", "--grace-period", "60m", "--force", NULL), 0);
    assert_string_equal(P.cmd->name, "drain");
    assert_string_equal(P.pos[0], "x");
    assert_string_equal(ca_get(&P, "grace-period"), "60m");
    assert_string_equal(ca_get(&P, "force"), "true");
    assert_int_equal(parse("drain", "--grace-period=60m", "x", "--force=false", NULL), 0);
    assert_string_equal(ca_get(&P, "grace-period"), "60m");
    assert_null(ca_get(&P, "force"));
    /* Enums: any case in, the table's spelling out. */
    assert_int_equal(parse("drain", "x", "--for=Active", NULL), 0);
    assert_string_equal(ca_get(&P, "for"), "active");
    const char *v[4];
    assert_int_equal(parse("drain", "x", "--param", "a=1", "--param=b=2", NULL), 0);
    assert_int_equal(ca_getn(&P, "param", v, 4), 2);
    assert_string_equal(v[1], "b=2");
    /* Short forms, "-" as a value, globals anywhere. */
    assert_int_equal(parse("--server", "http://h:1", "drain", "-f", "-", "x", "-ojson", "-A", NULL), 0);
    assert_string_equal(P.server, "http://h:1");
    assert_string_equal(ca_get(&P, "filename"), "-");
    assert_string_equal(P.output, "json");
    assert_string_equal(ca_get(&P, "all"), "true");
    assert_int_equal(parse("list", "--token=a.b.c", "-o=name", "--config", "/c", NULL), 0);
    assert_string_equal(P.token, "a.b.c");
    assert_true(P.token_given);
    assert_string_equal(P.output, "name");
    assert_int_equal(parse("list", "--token=", NULL), 0); /* reported later, with its source */
    assert_true(P.token_given);
    assert_string_equal(P.token, "");
    /* "--" ends flags: for run-pod the rest goes to the pod. */
    assert_int_equal(parse("ns", "run-pod", "n", "p", "--param", "k=v", "--", "--steps", "2", "-c", NULL), 0);
    assert_string_equal(P.cmd->name, "ns run-pod");
    assert_int_equal(P.npos, 2);
    assert_int_equal(P.nrest, 3);
    assert_string_equal(P.rest[0], "--steps");
    assert_int_equal(parse("ns", "run-pod", "n", "--", "p", NULL), -1); /* POD is not after -- */
    assert_int_equal(parse("drain", "--", "-odd-name", NULL), 0);
    assert_string_equal(P.pos[0], "-odd-name");
    assert_int_equal(parse("ns", "reap", "--force", NULL), 0);
    assert_int_equal(P.npos, 0);
}

static void test_help_version(void **state) {
    assert_int_equal(parse("drain", "--help", NULL), 0); /* NAME missing is fine for help */
    assert_true(P.help);
    assert_string_equal(P.cmd->name, "drain");
    assert_int_equal(parse("--help", NULL), 0);
    assert_true(P.help);
    assert_null(P.cmd);
    assert_int_equal(parse("ns", "-h", NULL), 0);
    assert_string_equal(P.group, "ns");
    assert_null(P.cmd);
    assert_int_equal(parse("--version", NULL), 0);
    assert_string_equal(P.cmd->name, "version");
    assert_int_equal(parse("drain", "x", "--grace-perod", "--help", NULL), -1);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ca_help_cmd(&cmds[0], f);
    fclose(f);
    assert_non_null(strstr(buf, "Usage: stampctl drain NAME [flags]"));
    assert_non_null(strstr(buf, "--grace-period DURATION"));
    assert_non_null(strstr(buf, "(active or ready)"));
    assert_non_null(strstr(buf, "stampctl drain x"));
    free(buf);
    f = open_memstream(&buf, &len);
    ca_completion_bash(cmds, N, f);
    fclose(f);
    assert_non_null(strstr(buf, "complete -F _stampctl stampctl"));
    assert_non_null(strstr(buf, "--grace-period"));
    assert_non_null(strstr(buf, "reap run-pod"));
    free(buf);
}

static void test_selectors(void **state) {
    ca_selector s;
    json_t *l = json_pack("{s:s,s:s}", "region", "westeurope", "template", "t1");
    assert_int_equal(ca_selector_parse("region=westeurope", &s, E, sizeof(E)), 0);
    assert_true(ca_selector_match(&s, l));
    assert_int_equal(ca_selector_parse("region==eastus", &s, E, sizeof(E)), 0);
    assert_false(ca_selector_match(&s, l));
    assert_int_equal(ca_selector_parse("region=westeurope,template!=t1", &s, E, sizeof(E)), 0);
    assert_false(ca_selector_match(&s, l));
    assert_int_equal(ca_selector_parse("template,!owner", &s, E, sizeof(E)), 0);
    assert_true(ca_selector_match(&s, l));
    assert_int_equal(ca_selector_parse("owner!=x", &s, E, sizeof(E)), 0);
    assert_true(ca_selector_match(&s, l)); /* a missing label is not x */
    assert_false(ca_selector_match(&(ca_selector){.n = 1, .term = {{"k", "v", CA_SEL_EQ}}}, NULL));
    assert_int_equal(ca_selector_parse("", &s, E, sizeof(E)), -1);
    assert_int_equal(ca_selector_parse("a=b,", &s, E, sizeof(E)), -1);
    assert_int_equal(ca_selector_parse("=b", &s, E, sizeof(E)), -1);
    assert_int_equal(ca_selector_parse("a=b=c", &s, E, sizeof(E)), -1);
    json_decref(l);
}

static void test_tokens(void **state) {
    assert_true(ca_token_wellformed("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl_-"));
    assert_true(ca_token_wellformed("a.b.c"));
    assert_false(ca_token_wellformed(""));
    assert_false(ca_token_wellformed(" a.b.c"));
    assert_false(ca_token_wellformed("a.b.c\n"));
    assert_false(ca_token_wellformed("a.b"));
    assert_false(ca_token_wellformed("a.b.c.d"));
    assert_false(ca_token_wellformed(".b.c"));
    assert_false(ca_token_wellformed("a..c"));
    assert_false(ca_token_wellformed("a.b+.c"));
    assert_false(ca_token_wellformed("a.b.c="));
    assert_false(ca_token_wellformed(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),   cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_help_version), cmocka_unit_test(test_selectors),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
