/*
 * fuzz_names.c - every name checker over the input as one NUL-terminated
 * string: stamp names and region codes (core/naming.h), namespace, bucket,
 * tenant, pod, env and annotation names (ns/ns.h), blob containers and
 * paths, template parameter names and JWKS URLs.  The input split at its
 * first NUL also feeds the two-argument ones.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwks.h"
#include "blob/blob.h"
#include "core/naming.h"
#include "core/template.h"
#include "ns/ns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (s == NULL) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    /* the part after the first NUL, if any: a second argument */
    size_t n1 = strlen(s);
    const char *s2 = n1 < size ? s + n1 + 1 : "";
    serr e = {0};
    char out[STAMP_NAME_MAX + 1];
    char small[4];

    (void)region_code(s);
    (void)region_from_code(s);
    (void)stamp_id_normalize(s, out, sizeof(out), &e);
    (void)stamp_id_normalize(s, small, sizeof(small), &e);
    (void)stamp_name_build(s, "westeurope", "001", out, sizeof(out), &e);
    (void)stamp_name_build(STAMP_PREFIX_DEFAULT, s, "001", out, sizeof(out), &e);
    (void)stamp_name_build(STAMP_PREFIX_DEFAULT, "westeurope", s, out, sizeof(out), &e);
    (void)stamp_name_build(s, s2, s2, out, sizeof(out), &e);
    (void)ns_bucket_check(s, &e);
    (void)ns_name_check(s, &e);
    (void)ns_tenant_check(s, &e);
    (void)ns_pod_check(s, &e);
    (void)ns_hash_valid(s);
    (void)nsrt_env_check(s, &e);
    (void)nsrt_annotate_check(s, s2, &e);
    (void)blob_container_valid(s);
    (void)blob_path_valid(s);
    (void)tpl_param_name_ok(s);
    (void)jwks_url_check(s, &e);
    free(s);
    return 0;
}
