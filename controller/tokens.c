/*
 * tokens.c - per-principal API tokens: the store and /v1/tokens.
 *
 * A token reads "wlm_<id>_<secret>": <id> is 16 hex digits, public (it
 * names the token in lists, revocations and the audit log), <secret> is 64
 * hex digits (256 random bits). The store keeps the id, a random 16-byte
 * salt and SHA-256(salt || secret), never the secret: the secret is shown
 * once, in the answer to POST /v1/tokens. A secret of 256 random bits needs no
 * slow hash (there is nothing to guess from a dictionary); the salt keeps
 * equal secrets (there are none) and precomputed tables useless anyway.
 *
 * Every request looks its token up again (one indexed row on SQLite, one
 * key range on etcd): a revocation takes effect on the very next request,
 * on every controller sharing the store.
 *
 * The table goes through the controller's store (common/store.h): a row is
 * a flat document, salt and hash in hex.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth.h"
#include "internal.h"

#define TOKEN_ID_HEX 16
#define TOKEN_SECRET_HEX 64

#define TOKENS "api_tokens"

static const char tokens_schema[] =
    "CREATE TABLE IF NOT EXISTS " TOKENS " ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, node TEXT NOT NULL,"
    " salt TEXT NOT NULL, hash TEXT NOT NULL, created_at REAL NOT NULL,"
    " created_by TEXT NOT NULL, revoked_at REAL)";

int ctl_tokens_init(struct controller *c, struct wlm_error *err)
{
    /* SQLite: the store's table must exist (etcd needs none). */
    return wlm_store_is_etcd(c->store)
               ? 0
               : wlm_db_exec(wlm_store_sqlite(c->store), tokens_schema, err);
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int digest(const unsigned char *salt, size_t slen, const char *secret, unsigned char out[32])
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned len = 0;
    int ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(m, salt, slen) == 1 &&
             EVP_DigestUpdate(m, secret, strlen(secret)) == 1 &&
             EVP_DigestFinal_ex(m, out, &len) == 1 && len == 32;
    EVP_MD_CTX_free(m);
    return ok ? 0 : -1;
}

/* Every row, oldest first; on etcd, only those whose id starts with
 * `id_prefix` when given. Caller decrefs the array. */
struct rows_ctx {
    json_t *arr;
};

static int collect(const json_t *doc, void *ud)
{
    struct rows_ctx *r = ud;
    json_array_append(r->arr, (json_t *)doc);
    return 0;
}

static json_t *token_rows(struct controller *c, const char *id_prefix, struct wlm_error *err)
{
    struct rows_ctx r = {json_array()};
    int rc = id_prefix && wlm_store_is_etcd(c->store)
                 ? wlm_store_scan_prefix(c->store, TOKENS, id_prefix, collect, &r, err)
                 : wlm_store_scan(c->store, TOKENS, "created_at, id", collect, &r, err);
    if (rc) {
        json_decref(r.arr);
        return NULL;
    }
    return r.arr;
}

/* The row of token `id` (caller decrefs), NULL when there is none; *failed
 * set on a store error. */
static json_t *token_by_id(struct controller *c, const char *id, int *failed)
{
    *failed = 0;
    if (!wlm_store_is_etcd(c->store)) {
        /* SQLite: one indexed row, not a scan. */
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(wlm_store_sqlite(c->store),
                               "SELECT id, name, role, node, salt, hash, created_at, created_by,"
                               " revoked_at FROM " TOKENS " WHERE id = ?",
                               -1, &st, NULL) != SQLITE_OK) {
            *failed = 1;
            return NULL;
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        json_t *o = NULL;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            o = json_object();
            for (int k = 0; k < 8; k++)
                json_object_set_new(o, sqlite3_column_name(st, k),
                                    k == 6 ? json_real(sqlite3_column_double(st, k))
                                           : json_string((const char *)sqlite3_column_text(st, k)));
            json_object_set_new(o, "revoked_at",
                                sqlite3_column_type(st, 8) == SQLITE_NULL
                                    ? json_null()
                                    : json_real(sqlite3_column_double(st, 8)));
        } else if (rc != SQLITE_DONE) {
            *failed = 1;
        }
        sqlite3_finalize(st);
        return o;
    }
    json_t *arr = token_rows(c, id, NULL);
    if (!arr) {
        *failed = 1;
        return NULL;
    }
    json_t *o = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *x = json_string_value(json_object_get(v, "id"));
        if (x && !strcmp(x, id))
            o = json_incref(v);
    }
    json_decref(arr);
    return o;
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
    if (!s || strlen(s) != 2 * n || !is_hex(s, 2 * n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        char b[3] = {s[2 * i], s[2 * i + 1], 0};
        out[i] = (unsigned char)strtoul(b, NULL, 16);
    }
    return 0;
}

int ctl_tokens_lookup(struct controller *c, const char *bearer, struct wlm_principal *p)
{
    /* "wlm_" + id + "_" + secret */
    if (strlen(bearer) != 4 + TOKEN_ID_HEX + 1 + TOKEN_SECRET_HEX || strncmp(bearer, "wlm_", 4) ||
        bearer[4 + TOKEN_ID_HEX] != '_' || !is_hex(bearer + 4, TOKEN_ID_HEX) ||
        !is_hex(bearer + 5 + TOKEN_ID_HEX, TOKEN_SECRET_HEX))
        return 0;
    char id[TOKEN_ID_HEX + 1];
    memcpy(id, bearer + 4, TOKEN_ID_HEX);
    id[TOKEN_ID_HEX] = '\0';
    const char *secret = bearer + 5 + TOKEN_ID_HEX;
    int failed = 0;
    json_t *row = token_by_id(c, id, &failed);
    if (failed)
        return -1;
    int found = 0;
    unsigned char salt[16], hash[32], want[32];
    if (row && json_is_null(json_object_get(row, "revoked_at")) &&
        unhex(json_string_value(json_object_get(row, "salt")), salt, sizeof salt) == 0 &&
        unhex(json_string_value(json_object_get(row, "hash")), hash, sizeof hash) == 0 &&
        digest(salt, sizeof salt, secret, want) == 0 && CRYPTO_memcmp(want, hash, 32) == 0) {
        found = 1;
        memset(p, 0, sizeof *p);
        wlm_strlcpy(p->name, json_string_value(json_object_get(row, "name")), sizeof p->name);
        wlm_strlcpy(p->role, json_string_value(json_object_get(row, "role")), sizeof p->role);
        wlm_strlcpy(p->node, json_string_value(json_object_get(row, "node")), sizeof p->node);
        p->id = 1;
    }
    json_decref(row);
    return found;
}

/* ------------------------------------------------------------ API */

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == '@'))
            return 0;
    }
    return 1;
}

/* A row as shown: never the salt or hash. */
static json_t *row_json(const json_t *row)
{
    json_t *o = json_object();
    static const char *const keys[] = {"id", "name", "role", "created_at", "created_by"};
    for (size_t k = 0; k < WLM_ARRAY_LEN(keys); k++)
        json_object_set(o, keys[k], json_object_get(row, keys[k]));
    const char *node = json_string_value(json_object_get(row, "node"));
    json_object_set_new(o, "node", node && node[0] ? json_string(node) : json_null());
    json_t *rv = json_object_get(row, "revoked_at");
    json_object_set_new(o, "revoked_at",
                        json_is_number(rv) ? json_real(json_number_value(rv)) : json_null());
    return o;
}

/* POST /v1/tokens {"role": R, "node": N, "name": X} -> 201 with the secret. */
static void handle_create(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    static const char *const keys[] = {"role", "node", "name", NULL};
    struct wlm_error err = {0};
    const char *role = NULL, *node = "", *name = NULL;
    json_t *b = wlm_json_parse_object(req->body, req->body_len, &err);
    if (!b || wlm_json_check_keys(b, keys, "token", &err) ||
        wlm_json_get_str(b, "role", 1, &role, &err) ||
        wlm_json_get_str(b, "node", 0, &node, &err) ||
        wlm_json_get_str(b, "name", 0, &name, &err)) {
        json_decref(b);
        wlm_http_respond_werr(req, &err);
        return;
    }
    int r = ctl_role_parse(role);
    if (!r) {
        wlm_http_respond_error(req, 400, "invalid",
                               "field 'role': unknown role '%s' (admin, operator, submitter, "
                               "agent, router)",
                               role);
        json_decref(b);
        return;
    }
    if (r == CTL_ROLE_AGENT && !node[0]) {
        wlm_http_respond_error(req, 400, "invalid",
                               "field 'node': an agent token speaks for one node: give its name");
        json_decref(b);
        return;
    }
    if (r != CTL_ROLE_AGENT && node[0]) {
        wlm_http_respond_error(req, 400, "invalid",
                               "field 'node': only agent tokens are tied to a node");
        json_decref(b);
        return;
    }
    if (node[0] && !valid_name(node)) {
        wlm_http_respond_error(req, 400, "invalid", "field 'node': not a node name: '%s'", node);
        json_decref(b);
        return;
    }
    if (name && !valid_name(name)) {
        wlm_http_respond_error(req, 400, "invalid",
                               "field 'name': 1..63 letters, digits, '-', '_', '.' or '@'");
        json_decref(b);
        return;
    }
    unsigned char rid[TOKEN_ID_HEX / 2], rsec[TOKEN_SECRET_HEX / 2], salt[16], hash[32];
    char id[TOKEN_ID_HEX + 1], secret[TOKEN_SECRET_HEX + 1];
    if (RAND_bytes(rid, sizeof rid) != 1 || RAND_bytes(rsec, sizeof rsec) != 1 ||
        RAND_bytes(salt, sizeof salt) != 1) {
        wlm_http_respond_error(req, 500, "internal", "no random bytes from OpenSSL");
        json_decref(b);
        return;
    }
    hex(rid, sizeof rid, id);
    hex(rsec, sizeof rsec, secret);
    char defname[64];
    snprintf(defname, sizeof defname, "%s-%.8s", node[0] ? node : role, id);
    if (!name)
        name = defname;
    double now = wlm_now_wall();
    char salt_hex[2 * sizeof salt + 1], hash_hex[2 * sizeof hash + 1];
    struct wlm_error serr = {0};
    int ok = digest(salt, sizeof salt, secret, hash) == 0;
    if (ok) {
        hex(salt, sizeof salt, salt_hex);
        hex(hash, sizeof hash, hash_hex);
        json_t *doc =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:f,s:s,s:n}", "id", id, "name", name, "role",
                      ctl_role_name(r), "node", node, "salt", salt_hex, "hash", hash_hex,
                      "created_at", now, "created_by", req->principal.name, "revoked_at");
        ok = doc && wlm_store_put(c->store, TOKENS, "id", doc, &serr) == 0;
        json_decref(doc);
    }
    if (!ok) {
        wlm_http_respond_error(req, 500, "io_error", "token store: %s",
                               serr.msg[0] ? serr.msg : "cannot hash the secret");
        json_decref(b);
        return;
    }
    snprintf(req->audit, sizeof req->audit, "token=%s name=%s role=%s%s%s", id, name,
             ctl_role_name(r), node[0] ? " node=" : "", node);
    char token[4 + TOKEN_ID_HEX + 1 + TOKEN_SECRET_HEX + 1];
    snprintf(token, sizeof token, "wlm_%s_%s", id, secret);
    wlm_info("controller", "token created", "id=%s name=%s role=%s node=%s by=%s", id, name,
             ctl_role_name(r), node[0] ? node : "-", req->principal.name);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:f}", "id", id, "name", name, "role", ctl_role_name(r),
                          "token", token, "created_at", now);
    json_object_set_new(o, "node", node[0] ? json_string(node) : json_null());
    json_decref(b);
    wlm_http_respond_json(req, 201, o);
}

static void handle_list(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct wlm_error err = {0};
    json_t *rows = token_rows(c, NULL, &err);
    if (!rows) {
        wlm_http_respond_error(req, 500, "io_error", "token store: %s", err.msg);
        return;
    }
    json_t *arr = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(rows, i, v) json_array_append_new(arr, row_json(v));
    json_decref(rows);
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "tokens", arr));
}

/* DELETE /v1/tokens/:id - by id, or by name when exactly one live token has
 * it. */
static void handle_revoke(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    const char *key = req->params[0];
    struct wlm_error err = {0};
    json_t *rows = token_rows(c, NULL, &err);
    if (!rows) {
        wlm_http_respond_error(req, 500, "io_error", "token store: %s", err.msg);
        return;
    }
    json_t *hit = NULL;
    int n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(rows, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *name = json_string_value(json_object_get(v, "name"));
        int live = json_is_null(json_object_get(v, "revoked_at"));
        if ((id && !strcmp(id, key)) || (live && name && !strcmp(name, key))) {
            n++;
            hit = v;
        }
    }
    if (n == 0) {
        json_decref(rows);
        wlm_http_respond_error(req, 404, "not_found", "no token with id or name '%s'", key);
        return;
    }
    if (n > 1) {
        json_decref(rows);
        wlm_http_respond_error(req, 409, "conflict",
                               "%d live tokens are named '%s': revoke by id (wlm token list)", n,
                               key);
        return;
    }
    json_t *doc = json_deep_copy(hit);
    json_decref(rows);
    if (json_is_null(json_object_get(doc, "revoked_at")))
        json_object_set_new(doc, "revoked_at", json_real(wlm_now_wall()));
    if (wlm_store_put(c->store, TOKENS, "id", doc, &err)) {
        json_decref(doc);
        wlm_http_respond_error(req, 500, "io_error", "token store: %s", err.msg);
        return;
    }
    wlm_info("controller", "token revoked", "id=%s by=%s",
             json_string_value(json_object_get(doc, "id")), req->principal.name);
    snprintf(req->audit, sizeof req->audit, "token=%s name=%s revoked",
             json_string_value(json_object_get(doc, "id")),
             json_string_value(json_object_get(doc, "name")));
    json_t *o = row_json(doc);
    json_decref(doc);
    wlm_http_respond_json(req, 200, o);
}

/* Who am I: the principal the controller sees for this token. */
static void handle_whoami(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    const struct wlm_principal *p = &req->principal;
    json_t *o = json_pack("{s:s,s:s}", "name", p->name, "role", p->role);
    json_object_set_new(o, "node", p->node[0] ? json_string(p->node) : json_null());
    json_object_set_new(o, "tls", json_boolean(req->tls));
    wlm_http_respond_json(req, 200, o);
}

/* The configuration the controller pushes to the router, for a router that
 * pulls it (role router). */
static void handle_router_config(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    json_t *cfg = ctl_router_config_json(c);
    if (!cfg) {
        wlm_http_respond_error(req, 500, "internal", "could not build the router configuration");
        return;
    }
    wlm_http_respond_json(req, 200, cfg);
}

void ctl_tokens_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "POST", "/v1/tokens", 1, handle_create, c);
    wlm_http_server_route(c->http, "GET", "/v1/tokens", 1, handle_list, c);
    wlm_http_server_route(c->http, "DELETE", "/v1/tokens/:id", 1, handle_revoke, c);
    wlm_http_server_route(c->http, "GET", "/v1/whoami", 1, handle_whoami, c);
    wlm_http_server_route(c->http, "GET", "/v1/router/config", 1, handle_router_config, c);
}
