/*
 * fuzz_config.c - the configuration file parser (config_load_file) over the
 * input as a file's contents, on a fresh stamp_config from config_defaults
 * each time; a file that loads is then validated and printed (to
 * /dev/null), as stampd does at start-up.  The bytes go through a file in
 * TMPDIR because the parser's entry point reads a path.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static char path[256];
static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (path[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(path, sizeof(path), "%s/fuzz_config.%ld.conf", tmp ? tmp : "/tmp",
                         (long)getpid());
        if (n < 0 || (size_t)n >= sizeof(path)) abort();
        devnull = fopen("/dev/null", "w");
        if (devnull == NULL) abort();
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    stamp_config *c = malloc(sizeof(*c));
    if (c == NULL) abort();
    config_defaults(c);
    serr e = {0};
    if (config_load_file(c, path, &e) == 0) {
        serr ve = {0};
        (void)config_validate(c, &ve);
        config_print(c, devnull);
    }
    free(c);
    unlink(path);
    return 0;
}
