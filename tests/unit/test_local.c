/*
 * test_local.c - the local runtime on real processes: a spawned process is
 * detached (not our child), found again by its marker, only its group
 * leader counts as the unit, rt_stop takes the whole group, and exec
 * failures come back as errors instead of silently dead units.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/runtime.h"
#include "util/util.h"

static char dir[256];
static runtime *rt;

static int setup(void **st) {
    snprintf(dir, sizeof(dir), "/tmp/stamp-test-local-%d", (int)getpid());
    mkdir_p(dir, 0700, NULL);
    char owner[64];
    snprintf(owner, sizeof(owner), "test-local-%d", (int)getpid());
    return runtime_open("local", owner, &rt, NULL);
}

static int teardown(void **st) {
    rt_proc p[16];
    int n = rt_scan(rt, "", true, p, 16, NULL);
    for (int i = 0; i < n && i < 16; i++) rt_stop(rt, p[i].pid, 100, NULL);
    remove_tree(dir, NULL);
    runtime_close(rt);
    return 0;
}

static pid_t spawn(const char *unit, const char *script) {
    char log[300];
    snprintf(log, sizeof(log), "%s/out.log", dir);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    const char *env[] = {"GREETING=hello", NULL};
    rt_spawn_spec sp = {.unit = unit, .argv = argv, .env = env, .log_path = log, .cwd = dir};
    pid_t pid = 0;
    serr e = {0};
    if (rt_spawn(rt, &sp, &pid, &e) != 0) fail_msg("spawn: %s", e.msg);
    return pid;
}

static int ppid_of(pid_t pid) {
    char path[64], *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (read_file(path, 65536, &text, NULL, NULL) != 0) return -1;
    char *p = strstr(text, "\nPPid:");
    int pp = p ? (int)strtol(p + 6, NULL, 10) : -1;
    free(text);
    return pp;
}

static void test_spawn_scan_stop(void **st) {
    pid_t pid = spawn("s1/p/app/0", "echo $GREETING $STAMP_UNIT; exec sleep 30");
    assert_true(pid > 0);
    assert_true(rt_alive(rt, pid));
    assert_int_not_equal(ppid_of(pid), (int)getpid()); /* detached */
    rt_proc p[8];
    int n = rt_scan(rt, "s1/", true, p, 8, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].pid, pid);
    assert_string_equal(p[0].unit, "s1/p/app/0");
    assert_true(p[0].start_ticks > 0);
    assert_int_equal(rt_scan(rt, "s2/", true, p, 8, NULL), 0);
    /* The shell may not have reached its echo yet: wait for the line (up
     * to 10 s) before stopping it, so the log check below is not a race. */
    char log[300], *text = NULL;
    snprintf(log, sizeof(log), "%s/out.log", dir);
    for (int i = 0; i < 1000; i++) {
        if (read_file(log, 4096, &text, NULL, NULL) == 0 && strstr(text, "hello s1/p/app/0")) break;
        free(text);
        text = NULL;
        usleep(10000);
    }
    assert_non_null(text);
    free(text);
    text = NULL;
    assert_int_equal(rt_stop(rt, pid, 2000, NULL), 0);
    assert_false(rt_alive(rt, pid));
    assert_int_equal(rt_scan(rt, "s1/", true, p, 8, NULL), 0);
    /* Stopping what is gone is success. */
    assert_int_equal(rt_stop(rt, pid, 100, NULL), 0);
    assert_int_equal(read_file(log, 4096, &text, NULL, NULL), 0);
    bool seen = strstr(text, "hello s1/p/app/0") != NULL;
    free(text);
    assert_true(seen);
}

/* Live (non-zombie) members of process group g; orphans may sit as zombies
 * under a PID 1 that does not reap, which is not our concern here. */
static int group_members(pid_t g) {
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)) != NULL) {
        char path[300], *text = NULL;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        if (read_file(path, 4096, &text, NULL, NULL) != 0) continue;
        char *p = strrchr(text, ')');
        char state = 0;
        int ppid = 0, pgrp = 0;
        if (p && sscanf(p + 2, "%c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == g &&
            state != 'Z')
            n++;
        free(text);
    }
    if (d) closedir(d);
    return n;
}

static void test_children_are_not_units(void **st) {
    /* The shell's children inherit the markers but are not leaders. */
    pid_t pid = spawn("s3/p/app/0", "sleep 30 & sleep 30 & wait");
    rt_proc p[8];
    for (int i = 0; i < 100 && group_members(pid) < 3; i++) sleep_ms(10);
    assert_int_equal(group_members(pid), 3);
    int n = rt_scan(rt, "s3/", true, p, 8, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].pid, pid);
    assert_int_equal(rt_stop(rt, pid, 2000, NULL), 0);
    /* The whole group went, children included: SIGKILL to the group is
     * delivered at once but the children finish dying on their own time. */
    for (int i = 0; i < 200 && group_members(pid) > 0; i++) sleep_ms(10);
    assert_int_equal(group_members(pid), 0);
}

static void test_sigterm_ignored_gets_killed(void **st) {
    pid_t pid = spawn("s4/p/app/0", "trap '' TERM; while :; do sleep 0.05; done");
    sleep_ms(100);
    int64_t t0 = mono_ms();
    assert_int_equal(rt_stop(rt, pid, 300, NULL), 0);
    assert_false(rt_alive(rt, pid));
    assert_true(mono_ms() - t0 >= 250); /* waited its grace first */
}

static void test_exec_failure(void **st) {
    char prog[300], log[300];
    snprintf(prog, sizeof(prog), "%s/not-a-program", dir);
    snprintf(log, sizeof(log), "%s/out.log", dir);
    assert_int_equal(write_file_atomic(prog, "\x01\x02garbage", 9, 0755, NULL), 0);
    const char *argv[] = {prog, NULL};
    rt_spawn_spec sp = {.unit = "s5/x/bad/run-1", .argv = argv, .log_path = log};
    pid_t pid = 0;
    serr e = {0};
    assert_int_equal(rt_spawn(rt, &sp, &pid, &e), SE_IO);
    assert_non_null(strstr(e.msg, "exec"));
    const char *rel[] = {"bin/sh", NULL};
    sp.argv = rel;
    assert_int_equal(rt_spawn(rt, &sp, &pid, &e), SE_INVAL);
    const char *ok[] = {"/bin/true", NULL};
    sp.argv = ok;
    sp.unit = "has space";
    assert_int_equal(rt_spawn(rt, &sp, &pid, &e), SE_INVAL);
    rt_proc p[4];
    assert_int_equal(rt_scan(rt, "s5/", true, p, 4, NULL), 0);
}

static void test_exited_not_alive(void **st) {
    pid_t pid = spawn("s6/x/quick/run-1", "exit 0");
    for (int i = 0; i < 100 && rt_alive(rt, pid); i++) sleep_ms(10);
    assert_false(rt_alive(rt, pid));
    rt_proc p[4];
    assert_int_equal(rt_scan(rt, "s6/", true, p, 4, NULL), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_scan_stop),
        cmocka_unit_test(test_children_are_not_units),
        cmocka_unit_test(test_sigterm_ignored_gets_killed),
        cmocka_unit_test(test_exec_failure),
        cmocka_unit_test(test_exited_not_alive),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
