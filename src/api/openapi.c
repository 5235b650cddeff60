/*
 * openapi.c - the OpenAPI 3.1 document of the API, built from the route
 * table (api_routes()), so that what it describes is what the door
 * enforces: paths and their parameters, query parameters with their types,
 * the request body kind, who may call, the success status, and the one
 * error shape every error has.
 *
 * Pure: no server, no I/O; the unit test builds it from rows of its own.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "util/util.h"

static json_t *error_schema(void) {
    return json_pack("{s:s,s:[s,s],s:{s:{s:s,s:[s,s],s:{s:{s:s},s:{s:s}}},s:{s:s}}}", "type",
                     "object", "required", "error", "status", "properties", "error", "type",
                     "object", "required", "code", "message", "properties", "code", "type",
                     "string", "message", "type", "string", "status", "type", "integer");
}

static const char *status_text(int st) {
    switch (st) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    default: return "Success";
    }
}

/* "/v1/stamps/{name}/{action}" -> [{name: name, in: path}, ...]; an
 * operationId from the method and the path's words.
 *
 * Everything here comes from the route table, the program's own: an
 * operationId or a parameter name that does not fit is a mistake in the
 * table (the asserts), and cut it would be a wrong name in the spec, so a
 * release build leaves the rest of it out rather than write past a buffer. */
static json_t *path_params(const char *pattern, char *opid, size_t opsz, const char *method) {
    json_t *arr = json_array();
    int rc = str_fmt(opid, opsz, NULL, "operationId", "%s", method);
    assert(rc == 0);
    size_t o = strlen(opid);
    const char *p = pattern;
    for (; *p && o + 1 < opsz; p++) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            if (end == NULL) break;
            char name[64];
            rc = str_fmt(name, sizeof(name), NULL, "path parameter", "%.*s", (int)(end - p - 1), p + 1);
            assert(rc == 0);
            json_array_append_new(arr, json_pack("{s:s,s:s,s:b,s:{s:s}}", "name", name, "in",
                                                 "path", "required", 1, "schema", "type", "string"));
            rc = str_fmt(opid + o, opsz - o, NULL, "operationId", "_by_%s", name);
            assert(rc == 0);
            o += strlen(opid + o);
            p = end;
            continue;
        }
        char ch = *p;
        if (ch == '/' || ch == '.' || ch == '-') ch = '_';
        if (o + 1 < opsz) opid[o++] = ch;
        opid[o] = '\0';
    }
    assert(*p == '\0'); /* the whole pattern made it into the operationId */
    (void)rc;
    return arr;
}

static void query_params(const api_route *rt, json_t *params) {
    for (const char *p = rt->query; p && *p;) {
        while (*p == ' ') p++;
        size_t wl = strcspn(p, " ");
        const char *colon = memchr(p, ':', wl);
        if (colon == NULL) break;
        /* From the route table, like path_params: a name cut would be wrong. */
        char name[64], type[32];
        int rc = str_fmt(name, sizeof(name), NULL, "query parameter", "%.*s", (int)(colon - p), p);
        rc |= str_fmt(type, sizeof(type), NULL, "query parameter type", "%.*s",
                      (int)(wl - (size_t)(colon - p) - 1), colon + 1);
        assert(rc == 0);
        (void)rc;
        json_t *schema;
        if (strcmp(type, "duration") == 0)
            schema = json_pack("{s:s,s:s}", "type", "string", "description",
                               "a duration like 90s, 60m, 1h or 7d");
        else if (strcmp(type, "boolean") == 0)
            schema = json_pack("{s:s,s:[s,s,s,s]}", "type", "string", "enum", "true", "false", "1",
                               "0");
        else
            schema = json_pack("{s:s}", "type", type);
        json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:o}", "name", name, "in", "query",
                                                "required", 0, "schema", schema));
        p += wl;
    }
    if (rt->dry_run)
        json_array_append_new(
            params, json_pack("{s:s,s:s,s:b,s:s,s:{s:s,s:[s,s]}}", "name", "dryRun", "in", "query",
                              "required", 0, "description",
                              "validate fully and answer what would happen; change nothing",
                              "schema", "type", "string", "enum", "All", "true"));
}

static json_t *operation(const api_route *rt) {
    char opid[256];
    json_t *params = path_params(rt->pattern, opid, sizeof(opid), rt->method);
    query_params(rt, params);
    json_t *op = json_pack("{s:s,s:s}", "operationId", opid, "summary", rt->summary ? rt->summary : "");
    if (json_array_size(params)) json_object_set_new(op, "parameters", params);
    else json_decref(params);
    if (rt->body == API_BODY_JSON)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b,s:{s:{s:{s:s}}}}", "required", 0, "content",
                                      "application/json", "schema", "type", "object"));
    else if (rt->body == API_BODY_RAW)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b,s:{s:{s:{s:s,s:s}}}}", "required", 1, "content",
                                      "application/octet-stream", "schema", "type", "string",
                                      "contentMediaType", "application/octet-stream"));
    const char *prod = rt->produces ? rt->produces : "json";
    json_t *content;
    if (strcmp(prod, "text") == 0)
        content = json_pack("{s:{s:{s:s}}}", "text/plain", "schema", "type", "string");
    else if (strcmp(prod, "ndjson") == 0)
        content = json_pack("{s:{s:{s:s}}}", "application/x-ndjson", "schema", "type", "string");
    else
        content = json_pack("{s:{s:{s:s}}}", "application/json", "schema", "type", "object");
    char st[16]; /* an HTTP status, three digits */
    int rc = str_fmt(st, sizeof(st), NULL, "status", "%d", rt->status ? rt->status : 200);
    assert(rc == 0);
    (void)rc;
    json_t *responses = json_object();
    json_object_set_new(responses, st,
                        json_pack("{s:s,s:o}", "description", status_text(rt->status), "content",
                                  content));
    json_object_set_new(responses, "default", json_pack("{s:s}", "$ref", "#/components/responses/Error"));
    json_object_set_new(op, "responses", responses);
    if (rt->auth == API_AUTH_NONE) json_object_set_new(op, "security", json_array());
    else if (rt->auth == API_AUTH_OPERATOR)
        json_object_set_new(op, "x-stamp-role", json_string("operator"));
    return op;
}

json_t *api_openapi(const api_route *rows, size_t n, const char *version) {
    json_t *paths = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_object_get(paths, rows[i].pattern);
        if (item == NULL) {
            item = json_object();
            json_object_set_new(paths, rows[i].pattern, item);
        }
        char m[8];
        size_t k = 0;
        for (; rows[i].method[k] && k + 1 < sizeof(m); k++)
            m[k] = (char)(rows[i].method[k] | 0x20); /* ASCII lower case */
        m[k] = '\0';
        json_object_set_new(item, m, operation(&rows[i]));
    }
    json_t *components = json_pack(
        "{s:{s:o},s:{s:{s:s,s:{s:{s:{s:s}}}}},s:{s:{s:s,s:s,s:s}}}", "schemas", "Error",
        error_schema(), "responses", "Error", "description",
        "every error: {\"error\": {\"code\", \"message\"}, \"status\"}", "content",
        "application/json", "schema", "$ref", "#/components/schemas/Error", "securitySchemes",
        "bearer", "type", "http", "scheme", "bearer", "bearerFormat", "JWT");
    json_t *doc = json_pack("{s:s,s:{s:s,s:s,s:s},s:[{s:s}],s:[{s:[]}],s:o,s:o}", "openapi",
                            "3.1.0", "info", "title", "stamp API", "version", version,
                            "description",
                            "stampd's HTTP/JSON API. Every error has one JSON shape; unknown query "
                            "parameters are refused with 400.",
                            "servers", "url", "/", "security", "bearer", "paths", paths,
                            "components", components);
    return doc;
}
