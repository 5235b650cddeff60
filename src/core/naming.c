/*
 * naming.c - see naming.h.  The region table is data; add a row for a new
 * region.
 */
#include "core/naming.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

static const struct {
    const char *region;
    const char *code;
} regions[] = {
    {"westeurope", "weu"},      {"northeurope", "neu"},        {"eastus", "eus"},
    {"eastus2", "eus2"},        {"westus", "wus"},             {"westus2", "wus2"},
    {"westus3", "wus3"},        {"centralus", "cus"},          {"northcentralus", "ncus"},
    {"southcentralus", "scus"}, {"westcentralus", "wcus"},     {"canadacentral", "cac"},
    {"canadaeast", "cae"},      {"brazilsouth", "brs"},        {"uksouth", "uks"},
    {"ukwest", "ukw"},          {"francecentral", "frc"},      {"germanywestcentral", "gwc"},
    {"switzerlandnorth", "szn"}, {"norwayeast", "noe"},        {"swedencentral", "sdc"},
    {"polandcentral", "plc"},   {"italynorth", "itn"},         {"southeastasia", "sea"},
    {"eastasia", "ea"},         {"japaneast", "jpe"},          {"japanwest", "jpw"},
    {"koreacentral", "krc"},    {"australiaeast", "aue"},      {"australiasoutheast", "ause"},
    {"centralindia", "inc"},    {"southindia", "ins"},         {"uaenorth", "uan"},
    {"southafricanorth", "san"}, {"qatarcentral", "qac"},
};

#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

const char *region_code(const char *region) {
    if (region == NULL) return NULL;
    for (size_t i = 0; i < NREGIONS; i++)
        if (strcmp(regions[i].region, region) == 0) return regions[i].code;
    return NULL;
}

const char *region_from_code(const char *code) {
    if (code == NULL) return NULL;
    for (size_t i = 0; i < NREGIONS; i++)
        if (strcmp(regions[i].code, code) == 0) return regions[i].region;
    return NULL;
}

/* For error messages: a list cut by a short buffer still reads. */
void region_list(char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NREGIONS; i++)
        n += str_fmt_cut(buf + n, len - n, "%s%s", i ? ", " : "", regions[i].region);
}

int stamp_id_normalize(const char *id, char *out, size_t len, serr *e) {
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 16)
        return serr_set(e, SE_INVAL, "stamp id must be 1 to 16 characters");
    bool digits = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isdigit(c)) digits = false;
        if (!(isdigit(c) || (c >= 'a' && c <= 'z')))
            return serr_set(e, SE_INVAL,
                            "stamp id \"%s\": only lowercase letters and digits are allowed", id);
    }
    if (digits && n < 3) {
        char pad[4] = "000";
        memcpy(pad + 3 - n, id, n);
        if (!str_copy(out, len, pad)) return serr_set(e, SE_INVAL, "stamp id too long");
        return 0;
    }
    if (!str_copy(out, len, id)) return serr_set(e, SE_INVAL, "stamp id too long");
    return 0;
}

int stamp_name_build(const char *prefix, const char *region, const char *id, char *out,
                     size_t len, serr *e) {
    if (prefix == NULL || *prefix == '\0') prefix = STAMP_PREFIX_DEFAULT;
    if (!name_valid(prefix, 24))
        return serr_set(e, SE_INVAL,
                        "name prefix \"%s\" must be lowercase letters, digits and '-'", prefix);
    const char *code = region_code(region);
    if (code == NULL) {
        char known[1024];
        region_list(known, sizeof(known));
        return serr_set(e, SE_INVAL, "unknown region \"%s\" (known: %s)", region ? region : "",
                        known);
    }
    char nid[32];
    int rc = stamp_id_normalize(id, nid, sizeof(nid), e);
    if (rc) return rc;
    if (str_fmt(out, len, e, "stamp name", "%s-%s-%s", prefix, code, nid) != 0 ||
        strlen(out) > STAMP_NAME_MAX)
        return serr_set(e, SE_INVAL, "stamp name \"%s-%s-%s\" too long (at most %d characters)",
                        prefix, code, nid, STAMP_NAME_MAX);
    return 0;
}
