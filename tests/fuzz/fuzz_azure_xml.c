/*
 * fuzz_azure_xml.c - the Azure Blob error reply parser (blob_az_error, the
 * <Code> of an <Error> document) over the input as a reply body, under the
 * statuses that map differently.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob/blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *body = malloc(size + 1);
    if (body == NULL) return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    static const long statuses[] = {400, 403, 404, 409, 500, 503};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        serr e = {0};
        (void)blob_az_error(statuses[i], body, "get blob", &e);
    }
    free(body);
    return 0;
}
