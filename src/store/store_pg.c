/*
 * store_pg.c - the PostgreSQL backend (being written): refuses until then.
 */
#include "store/store.h"

int store_open_pg(const char *url, store **out, serr *e) {
    (void)url;
    *out = NULL;
    return serr_set(e, SE_INVAL, "store: the PostgreSQL backend is not built yet");
}
