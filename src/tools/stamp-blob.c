/*
 * stamp-blob - read and write stampd's blob store from a shell: fetch a
 * namespace's archived diagnostics, or check a bundle, with the same code
 * and the same name rules stampd uses.
 *
 *   stamp-blob [--dir DIR] get CONTAINER PATH     the blob's bytes on stdout
 *   stamp-blob [--dir DIR] sha CONTAINER PATH     "SHA256 SIZE"
 *   stamp-blob [--dir DIR] put CONTAINER PATH     stdin into the blob
 *
 * Without --dir, AZURE_BLOB_CONNECTION_STRING names the Azure account.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob/blob.h"
#include "util/httpc.h"
#include "util/util.h"

static int usage(void) {
    fputs("usage: stamp-blob [--dir DIR] get|sha|put CONTAINER PATH\n", stderr);
    return 2;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--dir") == 0) {
        dir = argv[2];
        i = 3;
    }
    if (argc - i != 3) return usage();
    const char *verb = argv[i], *container = argv[i + 1], *path = argv[i + 2];
    const char *conn = getenv("AZURE_BLOB_CONNECTION_STRING");
    if (dir == NULL && (conn == NULL || *conn == '\0')) {
        fputs("stamp-blob: give --dir DIR or set AZURE_BLOB_CONNECTION_STRING\n", stderr);
        return 2;
    }
    httpc_global_init();
    blob_store *b = NULL;
    serr e = {0};
    if (blob_open(dir ? "dir" : "azure", dir, conn, 30000, &b, &e)) {
        fprintf(stderr, "stamp-blob: %s\n", e.msg);
        return 1;
    }
    int rc = 0;
    char *data = NULL;
    size_t len = 0;
    if (strcmp(verb, "get") == 0 || strcmp(verb, "sha") == 0) {
        rc = blob_get(b, container, path, BLOB_MAX_SIZE, &data, &len, &e);
        if (rc == 0 && verb[0] == 'g') {
            if (fwrite(data, 1, len, stdout) != len) rc = serr_set(&e, SE_IO, "write failed");
        } else if (rc == 0) {
            char sha[65];
            sha256_hex(data, len, sha);
            printf("%s %zu\n", sha, len);
        }
    } else if (strcmp(verb, "put") == 0) {
        sbuf in;
        sbuf_init(&in, BLOB_MAX_SIZE);
        char buf[65536];
        size_t n;
        while (rc == 0 && (n = fread(buf, 1, sizeof(buf), stdin)) > 0)
            if (sbuf_add(&in, buf, n) != 0) rc = serr_set(&e, SE_TOOBIG, "input too large");
        if (rc == 0) rc = blob_put_verified(b, container, path, in.data ? in.data : "", in.len, NULL, &e);
        sbuf_free(&in);
    } else {
        blob_close(b);
        return usage();
    }
    free(data);
    blob_close(b);
    if (rc) fprintf(stderr, "stamp-blob: %s\n", e.msg);
    return rc ? 1 : 0;
}
