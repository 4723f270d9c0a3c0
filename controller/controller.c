/* controller.c - lifecycle of the controller: database, API, timers. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "dashboard.h"
#include "ha.h"
#include "internal.h"
#include "power.h"
#include "settle.h"

const struct wlm_cfg_field controller_cfg_fields[] = {
    {"listen_host", WLM_CFG_STR, offsetof(struct controller_config, listen_host), 64,
     "WLM_CONTROLLER_HOST", "127.0.0.1", 0, -1, "address of the REST API"},
    {"listen_port", WLM_CFG_INT, offsetof(struct controller_config, listen_port), 0,
     "WLM_CONTROLLER_PORT", "7700", 0, 65535, "port of the REST API (0 = pick a free one)"},
    {"db", WLM_CFG_STR, offsetof(struct controller_config, db), 512, "WLM_CONTROLLER_DB",
     "wlm-controller.db", 0, -1, "SQLite database file"},
    {"token", WLM_CFG_STR, offsetof(struct controller_config, token), 256, "WLM_TOKEN", "", 0, -1,
     "bearer token required on control endpoints"},
    {"token_file", WLM_CFG_STR, offsetof(struct controller_config, token_file), 512,
     "WLM_TOKEN_FILE", "", 0, -1,
     "file holding the token; generated (mode 0600) when no token is given (default DB.token)"},
    {"node_lost_after_ms", WLM_CFG_INT, offsetof(struct controller_config, node_lost_after_ms), 0,
     NULL, "6000", 100, 86400000, "a node without heartbeat for this long is LOST"},
    {"jobs_db", WLM_CFG_STR, offsetof(struct controller_config, jobs_db), 512,
     "WLM_CONTROLLER_JOBS_DB", "", 0, -1, "SQLite file of the job store (default DB-jobs.db)"},
    {"router_url", WLM_CFG_STR, offsetof(struct controller_config, router_url), 256,
     "WLM_ROUTER_URL", "", 0, -1, "admin URL of wlm-router, e.g. http://127.0.0.1:7702"},
    {"router_token", WLM_CFG_STR, offsetof(struct controller_config, router_token), 256,
     "WLM_ROUTER_TOKEN", "", 0, -1, "token of the router's admin API (default: the token)"},
    {"flow_period_ms", WLM_CFG_INT, offsetof(struct controller_config, flow_period_ms), 0, NULL,
     "2000", 100, 3600000, "period of the flow controller (router limit, weights, utilities)"},
    {"placement_period_ms", WLM_CFG_INT, offsetof(struct controller_config, placement_period_ms),
     0, NULL, "15000", 200, 86400000, "period of the placement controller"},
    {"action_timeout_ms", WLM_CFG_INT, offsetof(struct controller_config, action_timeout_ms), 0,
     NULL, "120000", 100, 86400000, "an action without completion after this long has failed"},
    {"app_port_base", WLM_CFG_INT, offsetof(struct controller_config, app_port_base), 0, NULL,
     "19000", 1024, 65000, "first port given to web application instances"},
    {"simulate_jobs", WLM_CFG_BOOL, offsetof(struct controller_config, simulate_jobs), 0, NULL,
     "false", 0, -1, "advance jobs by their CPU allocation (for test-driver nodes)"},
    {"power_saving", WLM_CFG_BOOL, offsetof(struct controller_config, power_saving), 0, NULL,
     "true", 0, -1, "consolidate and power off nodes that are not needed"},
    {"headroom", WLM_CFG_NUM, offsetof(struct controller_config, headroom), 0, NULL, "0.1", 0,
     0.9, "CPU fraction kept free on powered-on nodes when consolidating"},
    {"solver", WLM_CFG_STR, offsetof(struct controller_config, solver), 16, NULL, "auto", 0, -1,
     "placement solver: auto, exact or heuristic"},
    {"tls_cert", WLM_CFG_STR, offsetof(struct controller_config, tls_cert), 512,
     "WLM_TLS_CERT", "", 0, -1, "serve the API over HTTPS with this certificate chain (PEM)"},
    {"tls_key", WLM_CFG_STR, offsetof(struct controller_config, tls_key), 512, "WLM_TLS_KEY", "",
     0, -1, "private key (PEM) of --tls-cert"},
    {"ca", WLM_CFG_STR, offsetof(struct controller_config, ca), 512, "WLM_CA", "", 0, -1,
     "CA certificates (PEM) that agents' and the router's https:// certificates are checked "
     "against (default: the system's)"},
    {"agent_token", WLM_CFG_STR, offsetof(struct controller_config, agent_token), 256,
     "WLM_AGENT_API_TOKEN", "", 0, -1,
     "token presented to node agents' APIs (their --api-token; default: the token)"},
    {"store", WLM_CFG_STR, offsetof(struct controller_config, store), 512, "WLM_CONTROLLER_STORE",
     "", 0, -1,
     "where state lives: empty = the SQLite files (db, jobs_db); etcd://HOST:PORT[,HOST:PORT...]"
     " = an etcd cluster shared by several controllers (one leader, see docs/ha.md)"},
    {"store_prefix", WLM_CFG_STR, offsetof(struct controller_config, store_prefix), 128,
     "WLM_CONTROLLER_STORE_PREFIX", "/wlm/", 0, -1, "key prefix of this cluster on etcd"},
    {"advertise_url", WLM_CFG_STR, offsetof(struct controller_config, advertise_url), 256,
     "WLM_CONTROLLER_ADVERTISE_URL", "", 0, -1,
     "URL the other controllers redirect clients to when this one leads"
     " (default http://LISTEN_HOST:LISTEN_PORT)"},
    {"lease_ttl_s", WLM_CFG_INT, offsetof(struct controller_config, lease_ttl_s), 0, NULL, "3", 1,
     60, "etcd: seconds a leader that stopped renewing keeps the lead (failover time)"},
    {"power_budget_w", WLM_CFG_NUM, offsetof(struct controller_config, power_budget_w), 0, NULL,
     "0", 0, 1e9, "cluster power budget in watts, split among the nodes by planned CPU (0 = none)"},
    {"power_violation_k", WLM_CFG_INT, offsetof(struct controller_config, power_violation_k), 0,
     NULL, "3", 1, 16, "a node over its power budget in k of the last n placement periods is "
     "flagged and work moves away"},
    {"power_violation_n", WLM_CFG_INT, offsetof(struct controller_config, power_violation_n), 0,
     NULL, "5", 1, 16, "the n of power_violation_k"},
};
const size_t controller_cfg_nfields = WLM_ARRAY_LEN(controller_cfg_fields);

static const char *const migrations[] = {
    /* 1: the node registry */
    "CREATE TABLE nodes ("
    " name TEXT PRIMARY KEY, cores INTEGER NOT NULL, mhz REAL NOT NULL,"
    " memory_mb INTEGER NOT NULL, arch TEXT NOT NULL, labels TEXT NOT NULL,"
    " agent_url TEXT NOT NULL, registered_at REAL NOT NULL)",
    /* 2: deployed web applications */
    "CREATE TABLE apps (name TEXT PRIMARY KEY, spec TEXT NOT NULL, created_at REAL NOT NULL)",
    /* 3: web application instances, so a restart neither forgets nor doubles them */
    "CREATE TABLE instances (id TEXT PRIMARY KEY, app TEXT NOT NULL, node TEXT NOT NULL,"
    " host TEXT NOT NULL, port INTEGER NOT NULL, cpu_mhz REAL NOT NULL, state INTEGER NOT NULL)",
};

/* Read the token file, or create it with a fresh random token. Tokens are
 * never logged: only the file's path is. */
static int load_or_make_token(struct controller *c, struct wlm_error *err)
{
    if (c->cfg.token[0]) {
        wlm_strlcpy(c->token, c->cfg.token, sizeof(c->token));
        return 0;
    }
    char path[600];
    if (c->cfg.token_file[0])
        wlm_strlcpy(path, c->cfg.token_file, sizeof(path));
    else
        snprintf(path, sizeof(path), "%s.token", c->cfg.db);
    FILE *f = fopen(path, "r");
    if (f) {
        char *ok = fgets(c->token, sizeof(c->token), f);
        fclose(f);
        c->token[strcspn(c->token, "\r\n")] = '\0';
        if (ok && c->token[0])
            return 0;
        return wlm_error_setf(err, WLM_EINVAL, "token_file", "token file %s is empty", path);
    }
    unsigned char raw[24];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof(raw)) != (ssize_t)sizeof(raw)) {
        if (fd >= 0)
            close(fd);
        return wlm_error_set(err, WLM_EIO, "read /dev/urandom: %s", strerror(errno));
    }
    close(fd);
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(c->token + 2 * i, 3, "%02x", raw[i]);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return wlm_error_set(err, WLM_EIO, "create token file %s: %s", path, strerror(errno));
    int bad = write(fd, c->token, strlen(c->token)) < 0 || write(fd, "\n", 1) < 0;
    if (close(fd) || bad)
        return wlm_error_set(err, WLM_EIO, "write token file %s: %s", path, strerror(errno));
    wlm_info("controller", "generated an API token", "file=%s", path);
    return 0;
}

static void handle_healthz(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    wlm_http_respond_json(req, 200,
                          json_pack("{s:s, s:s, s:I, s:s, s:s}", "status", "ok", "version",
                                    WLM_VERSION, "nodes", (json_int_t)c->nnodes, "role",
                                    ctl_ha_role(), "leader", ctl_ha_leader_url()));
}

/* The dashboard's files are public: they hold no data. The page asks for the
 * token (from the URL fragment, which browsers never send) and uses it on
 * the API. */
static void handle_dashboard(struct wlm_http_req *req, void *ud)
{
    const char *rel = req->path + strlen("/dashboard");
    while (*rel == '/')
        rel++;
    const struct dashboard_asset *a = dashboard_find(rel);
    if (!a) {
        wlm_http_respond_error(req, 404, "not_found", "no dashboard file '%s'", rel);
        return;
    }
    wlm_http_respond(req, 200, a->content_type, "Cache-Control: no-cache", a->data, a->len);
}

static void handle_root(struct wlm_http_req *req, void *ud)
{
    wlm_http_respond(req, 302, "text/plain", "Location: /dashboard/", "see /dashboard/\n", 16);
}

int controller_new(uv_loop_t *loop, const struct controller_config *cfg, struct controller **out,
                   struct wlm_error *err)
{
    if (cfg->store[0])
        return wlm_error_setf(err, WLM_EINVAL, "store",
                              "field 'store': '%s' needs the HA start-up (wlm-controller main)",
                              cfg->store);
    return controller_new_on(loop, cfg, NULL, out, err);
}

/* ------------------------------------------------------------ follower (HA standby) */

/* A standby answers reads of what the store holds (jobs, apps, tokens,
 * audit) from its copy, and sends everything else to the leader: writes,
 * and reads of what only the leader knows (node liveness, placement,
 * utilities, flows, power and energy being accumulated, the router). */
static const char *const leader_only_reads[] = {
    "/v1/nodes",   "/v1/nodes/*", "/v1/placement", "/v1/placement/*", "/v1/utilities",
    "/v1/events",  "/v1/flows",   "/v1/power",     "/v1/power/*",     "/v1/energy",
    "/v1/energy/*", "/v1/router/config", "/v1/summary", "/v1/jobqueue/hypothetical",
};

static void follower_redirect(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    const char *leader = ctl_ha_leader_url();
    if (!leader[0]) {
        wlm_http_respond_error(req, 503, "unavailable",
                               "this controller is a standby and no leader is elected yet; retry");
        return;
    }
    char *hdr = wlm_asprintf("Location: %s%s", leader, req->url);
    wlm_http_respond(req, 307, "text/plain", hdr, "see the leader\n", 15);
    free(hdr);
}

static int controller_new_impl(uv_loop_t *loop, const struct controller_config *cfg,
                               struct wlm_store *store, int follower, struct controller **out,
                               struct wlm_error *err);

int controller_new_on(uv_loop_t *loop, const struct controller_config *cfg,
                      struct wlm_store *store, struct controller **out, struct wlm_error *err)
{
    return controller_new_impl(loop, cfg, store, 0, out, err);
}

int controller_new_follower(uv_loop_t *loop, const struct controller_config *cfg,
                            struct wlm_store *store, struct controller **out,
                            struct wlm_error *err)
{
    return controller_new_impl(loop, cfg, store, 1, out, err);
}

int controller_stale(struct controller *c) { return c && jobsched_stale(c->js); }

int controller_listen_only(struct controller *c, struct wlm_error *err)
{
    return wlm_http_server_listen(c->http, err);
}

int controller_reload(struct controller *c, struct wlm_error *err)
{
    int rc = jobsched_reload(c->js, err);
    if (rc)
        return rc;
    ctl_apps_free(c);
    if ((rc = ctl_apps_load(c, err)))
        return rc;
    return ctl_instances_reload(c, err);
}

static int controller_new_impl(uv_loop_t *loop, const struct controller_config *cfg,
                               struct wlm_store *store, int follower, struct controller **out,
                               struct wlm_error *err)
{
    int rc;
    struct controller *c = calloc(1, sizeof(*c));
    if (!c)
        return wlm_error_set(err, ENOMEM, "out of memory");
    c->loop = loop;
    c->cfg = *cfg;
    /* The SQLite file is opened on etcd too (schema versions, and nothing
     * else: tokens, the audit log and actions in flight go through the store
     * like every other table). */
    if ((rc = wlm_db_open(cfg->db, migrations, WLM_ARRAY_LEN(migrations), &c->db, err)))
        goto fail;
    if (store) {
        c->store = store;
    } else {
        if ((rc = wlm_store_new_sqlite(c->db, &c->store, err)))
            goto fail;
        c->own_store = 1;
    }
    if ((rc = load_or_make_token(c, err)))
        goto fail;
    if ((rc = ctl_nodes_load(c, err)) || (rc = ctl_apps_load(c, err)) ||
        (rc = ctl_energy_init(c, err)))
        goto fail;
    char jobs_db[600];
    if (store) {
        if ((rc = jobsched_store_open_kv(store, &c->jstore, err)))
            goto fail;
    } else if (cfg->jobs_db[0]) {
        wlm_strlcpy(jobs_db, cfg->jobs_db, sizeof(jobs_db));
    } else {
        const char *dot = strrchr(cfg->db, '.');
        const char *slash = strrchr(cfg->db, '/');
        if (dot && (!slash || dot > slash))
            snprintf(jobs_db, sizeof(jobs_db), "%.*s-jobs%s", (int)(dot - cfg->db), cfg->db, dot);
        else
            snprintf(jobs_db, sizeof(jobs_db), "%s-jobs", cfg->db);
    }
    if ((!store && (rc = jobsched_store_open(jobs_db, &c->jstore, err))) ||
        (rc = jobsched_new(NULL, c->jstore, &c->js, err)))
        goto fail;
    if ((rc = ctl_cycle_init(c, err)) || (rc = ctl_instances_load(c, err)))
        goto fail;
    if (cfg->ca[0] && (rc = wlm_http_client_set_ca(c->client, cfg->ca, err)))
        goto fail;
    if ((rc = ctl_settle_load(c, err)))
        goto fail;
    c->started_at = wlm_now_wall();
    c->metrics = wlm_metrics_new();
    struct wlm_http_server_opts o = {
        .host = cfg->listen_host,
        .port = (int)cfg->listen_port,
        .token = c->token,
        .tls_cert = cfg->tls_cert,
        .tls_key = cfg->tls_key,
    };
    c->http = wlm_http_server_new(loop, &o);
    if (!c->metrics || !c->http) {
        rc = wlm_error_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    if (follower) { /* routes match in the order added: these come first */
        for (size_t i = 0; i < WLM_ARRAY_LEN(leader_only_reads); i++)
            wlm_http_server_route(c->http, "GET", leader_only_reads[i], 0, follower_redirect, c);
        static const char *const writes[] = {"POST", "PUT", "DELETE", "PATCH"};
        for (size_t i = 0; i < WLM_ARRAY_LEN(writes); i++)
            wlm_http_server_route(c->http, writes[i], "/*", 0, follower_redirect, c);
    }
    if ((rc = ctl_auth_init(c, err)))
        goto fail;
    wlm_http_server_set_metrics(c->http, c->metrics);
    wlm_http_server_route(c->http, "GET", "/healthz", 0, handle_healthz, c);
    wlm_http_server_route(c->http, "GET", "/", 0, handle_root, c);
    wlm_http_server_route(c->http, "GET", "/dashboard", 0, handle_dashboard, c);
    wlm_http_server_route(c->http, "GET", "/dashboard/*", 0, handle_dashboard, c);
    ctl_nodes_routes(c);
    ctl_apps_routes(c);
    jobsched_api_register(c->http, c->js);
    jobsched_api_set_loop(c->js, loop);
    ctl_cycle_routes(c);
    ctl_energy_routes(c);
    ctl_power_routes(c);
    *out = c;
    return 0;
fail:
    controller_free(c);
    *out = NULL;
    return rc;
}

static void on_sweep(uv_timer_t *t)
{
    struct controller *c = t->data;
    ctl_nodes_sweep(c, wlm_now_wall());
}

int controller_start(struct controller *c, struct wlm_error *err)
{
    int rc = wlm_http_server_listen(c->http, err);
    if (rc)
        return rc;
    uv_timer_init(c->loop, &c->sweep);
    c->sweep.data = c;
    uv_timer_start(&c->sweep, on_sweep, 500, 500);
    ctl_cycle_start(c);
    c->started = 1;
    int tls = wlm_http_server_is_tls(c->http);
    wlm_info("controller", "listening", "addr=%s:%d scheme=%s db=%s nodes=%zu",
             c->cfg.listen_host, wlm_http_server_port(c->http), tls ? "https" : "http", c->cfg.db,
             c->nnodes);
    if (!tls && wlm_host_is_loopback(c->cfg.listen_host))
        wlm_info("controller", "plain HTTP on loopback only: tokens never leave this machine",
                 "addr=%s", c->cfg.listen_host);
    else if (!tls)
        wlm_warn("controller",
                 "plain HTTP on a non-loopback address: tokens cross the network in clear text; "
                 "give --tls-cert and --tls-key",
                 "addr=%s", c->cfg.listen_host);
    return 0;
}

int controller_port(const struct controller *c) { return wlm_http_server_port(c->http); }
const char *controller_token(const struct controller *c) { return c->token; }
struct wlm_http_server *controller_http(struct controller *c) { return c->http; }
struct wlm_metrics *controller_metrics(struct controller *c) { return c->metrics; }
sqlite3 *controller_db(struct controller *c) { return c->db; }
struct wlm_store *controller_store(struct controller *c) { return c->store; }

static void stop_step(struct controller *c)
{
    if (--c->pending_closes == 0 && c->stop_done)
        c->stop_done(c->stop_ud);
}

static void on_timer_closed(uv_handle_t *h) { stop_step(h->data); }
static void on_http_closed(void *ud)
{
    struct controller *c = ud;
    c->http = NULL; /* released by the server itself */
    stop_step(c);
}

void controller_stop(struct controller *c, void (*done)(void *ud), void *ud)
{
    c->stop_done = done;
    c->stop_ud = ud;
    c->pending_closes = 1; /* the http server */
    if (c->started) {
        c->pending_closes++;
        uv_timer_stop(&c->sweep);
        uv_close((uv_handle_t *)&c->sweep, on_timer_closed);
        ctl_cycle_stop(c);
    }
    c->started = 0;
    if (ctl_audit_close(c, on_timer_closed))
        c->pending_closes++;
    wlm_http_server_close(c->http, on_http_closed, c);
}

void controller_free(struct controller *c)
{
    if (!c)
        return;
    ctl_cycle_free(c);
    ctl_energy_free(c);
    ctl_nodes_free(c);
    ctl_apps_free(c);
    ctl_settle_free(c);
    ctl_audit_free(c);
    jobsched_free(c->js);
    jobsched_store_close(c->jstore);
    wlm_metrics_free(c->metrics);
    json_decref(c->inst_saved);
    if (c->own_store)
        wlm_store_free(c->store);
    wlm_db_close(c->db);
    free(c);
}
