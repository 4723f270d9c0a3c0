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
 * Every request looks its token up again (one indexed row): a revocation takes
 * effect on the very next request.
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth.h"
#include "internal.h"

#define TOKEN_ID_HEX 16
#define TOKEN_SECRET_HEX 64

static const char tokens_schema[] =
    "CREATE TABLE IF NOT EXISTS auth_tokens ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, node TEXT NOT NULL,"
    " salt BLOB NOT NULL, hash BLOB NOT NULL, created_at REAL NOT NULL,"
    " created_by TEXT NOT NULL, revoked_at REAL)";

int ctl_tokens_init(struct controller *c, struct wlm_error *err)
{
    return wlm_db_exec(c->db, tokens_schema, err);
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

static int digest(const unsigned char *salt, size_t slen, const char *secret,
                  unsigned char out[32])
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
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT name, role, node, salt, hash FROM auth_tokens"
                           " WHERE id = ? AND revoked_at IS NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        unsigned char want[32];
        const void *salt = sqlite3_column_blob(st, 3);
        int slen = sqlite3_column_bytes(st, 3);
        const void *hash = sqlite3_column_blob(st, 4);
        int hlen = sqlite3_column_bytes(st, 4);
        if (salt && hash && hlen == 32 && digest(salt, (size_t)slen, secret, want) == 0 &&
            CRYPTO_memcmp(want, hash, 32) == 0) {
            found = 1;
            memset(p, 0, sizeof *p);
            wlm_strlcpy(p->name, (const char *)sqlite3_column_text(st, 0), sizeof p->name);
            wlm_strlcpy(p->role, (const char *)sqlite3_column_text(st, 1), sizeof p->role);
            wlm_strlcpy(p->node, (const char *)sqlite3_column_text(st, 2), sizeof p->node);
            p->id = 1;
        }
    } else if (rc != SQLITE_DONE) {
        found = -1;
    }
    sqlite3_finalize(st);
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

static json_t *row_json(sqlite3_stmt *st)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:f,s:s}", "id", sqlite3_column_text(st, 0), "name",
                          sqlite3_column_text(st, 1), "role", sqlite3_column_text(st, 2),
                          "created_at", sqlite3_column_double(st, 4), "created_by",
                          sqlite3_column_text(st, 5));
    const char *node = (const char *)sqlite3_column_text(st, 3);
    json_object_set_new(o, "node", node && node[0] ? json_string(node) : json_null());
    json_object_set_new(o, "revoked_at", sqlite3_column_type(st, 6) == SQLITE_NULL
                                             ? json_null()
                                             : json_real(sqlite3_column_double(st, 6)));
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
                               "agent, router)", role);
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
    sqlite3_stmt *st = NULL;
    double now = wlm_now_wall();
    int ok = digest(salt, sizeof salt, secret, hash) == 0 &&
             sqlite3_prepare_v2(c->db,
                                "INSERT INTO auth_tokens (id, name, role, node, salt, hash,"
                                " created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, ctl_role_name(r), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, node, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 5, salt, sizeof salt, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, hash, sizeof hash, SQLITE_STATIC);
        sqlite3_bind_double(st, 7, now);
        sqlite3_bind_text(st, 8, req->principal.name, -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    if (!ok) {
        wlm_http_respond_error(req, 500, "io_error", "token store: %s", sqlite3_errmsg(c->db));
        json_decref(b);
        return;
    }
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
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, name, role, node, created_at, created_by, revoked_at"
                           " FROM auth_tokens ORDER BY created_at, id",
                           -1, &st, NULL) != SQLITE_OK) {
        wlm_http_respond_error(req, 500, "io_error", "token store: %s", sqlite3_errmsg(c->db));
        return;
    }
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, row_json(st));
    sqlite3_finalize(st);
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "tokens", arr));
}

/* DELETE /v1/tokens/:id - by id, or by name when exactly one live token has
 * it. */
static void handle_revoke(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    const char *key = req->params[0];
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, name, role, node, created_at, created_by, revoked_at"
                           " FROM auth_tokens WHERE id = ?1 OR (name = ?1 AND revoked_at IS NULL)",
                           -1, &st, NULL) != SQLITE_OK) {
        wlm_http_respond_error(req, 500, "io_error", "token store: %s", sqlite3_errmsg(c->db));
        return;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    char id[TOKEN_ID_HEX + 1] = "";
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        n++;
        wlm_strlcpy(id, (const char *)sqlite3_column_text(st, 0), sizeof id);
    }
    sqlite3_finalize(st);
    if (n == 0) {
        wlm_http_respond_error(req, 404, "not_found", "no token with id or name '%s'", key);
        return;
    }
    if (n > 1) {
        wlm_http_respond_error(req, 409, "conflict",
                               "%d live tokens are named '%s': revoke by id (wlm token list)", n,
                               key);
        return;
    }
    int ok = sqlite3_prepare_v2(c->db,
                                "UPDATE auth_tokens SET revoked_at = ? WHERE id = ?"
                                " AND revoked_at IS NULL",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_double(st, 1, wlm_now_wall());
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    if (!ok) {
        wlm_http_respond_error(req, 500, "io_error", "token store: %s", sqlite3_errmsg(c->db));
        return;
    }
    wlm_info("controller", "token revoked", "id=%s by=%s", id, req->principal.name);
    json_t *o = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, name, role, node, created_at, created_by, revoked_at"
                           " FROM auth_tokens WHERE id = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            o = row_json(st);
        sqlite3_finalize(st);
    }
    wlm_http_respond_json(req, 200, o ? o : json_pack("{s:s}", "id", id));
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
