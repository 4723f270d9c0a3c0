/* nodes.c - the node registry: registration, heartbeats, READY/LOST. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "power.h"

enum controller_node_state controller_node_state_at(double last_heartbeat, double now,
                                                    double lost_after_s)
{
    if (last_heartbeat <= 0 || now - last_heartbeat > lost_after_s)
        return CONTROLLER_NODE_LOST;
    return CONTROLLER_NODE_READY;
}

const char *controller_node_state_name(enum controller_node_state s)
{
    return s == CONTROLLER_NODE_READY ? "READY" : "LOST";
}


static void node_fini(struct ctl_node *n)
{
    json_decref(n->labels);
    json_decref(n->report);
}

static struct ctl_node *node_add(struct controller *c)
{
    if (c->nnodes == c->capnodes) {
        size_t cap = c->capnodes ? 2 * c->capnodes : 16;
        struct ctl_node *p = realloc(c->nodes, cap * sizeof(*p));
        if (!p)
            return NULL;
        c->nodes = p;
        c->capnodes = cap;
    }
    struct ctl_node *n = &c->nodes[c->nnodes++];
    memset(n, 0, sizeof(*n));
    n->state = CONTROLLER_NODE_LOST;
    return n;
}

static int load_node(const json_t *doc, void *ud)
{
    struct controller *c = ud;
    struct ctl_node *n = node_add(c);
    if (!n)
        return -ENOMEM;
    wlm_strlcpy(n->name, json_string_value(json_object_get(doc, "name")) ?: "", sizeof(n->name));
    n->cores = (long long)json_number_value(json_object_get(doc, "cores"));
    n->mhz = json_number_value(json_object_get(doc, "mhz"));
    n->memory_mb = (long long)json_number_value(json_object_get(doc, "memory_mb"));
    wlm_strlcpy(n->arch, json_string_value(json_object_get(doc, "arch")) ?: "", sizeof(n->arch));
    const char *labels = json_string_value(json_object_get(doc, "labels"));
    n->labels = labels ? json_loads(labels, 0, NULL) : NULL;
    if (!n->labels)
        n->labels = json_object();
    wlm_strlcpy(n->agent_url, json_string_value(json_object_get(doc, "agent_url")) ?: "",
                sizeof(n->agent_url));
    n->registered_at = json_number_value(json_object_get(doc, "registered_at"));
    return 0;
}

int ctl_nodes_load(struct controller *c, struct wlm_error *err)
{
    int rc = wlm_store_scan(c->store, "nodes", "name", load_node, c, err);
    if (rc == -ENOMEM)
        return wlm_error_set(err, ENOMEM, "out of memory");
    return rc;
}

void ctl_nodes_free(struct controller *c)
{
    for (size_t i = 0; i < c->nnodes; i++)
        node_fini(&c->nodes[i]);
    free(c->nodes);
    c->nodes = NULL;
    c->nnodes = c->capnodes = 0;
    free(c->node_idx);
    c->node_idx = NULL;
    c->node_idx_cap = c->node_idx_n = 0;
}

static json_t *node_json(struct controller *c, const struct ctl_node *n, double now)
{
    enum controller_node_state s =
        controller_node_state_at(n->last_heartbeat, now, c->cfg.node_lost_after_ms / 1000.0);
    json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:I, s:s, s:O, s:s, s:f}", "name", n->name,
                          "state", controller_node_state_name(s), "cores", (json_int_t)n->cores,
                          "mhz", n->mhz, "memory_mb", (json_int_t)n->memory_mb, "arch", n->arch,
                          "labels", n->labels, "agent_url", n->agent_url, "registered_at",
                          n->registered_at);
    if (n->last_heartbeat > 0) {
        json_object_set_new(o, "last_heartbeat", json_real(n->last_heartbeat));
        json_object_set_new(o, "heartbeat_age_s", json_real(now - n->last_heartbeat));
    } else {
        json_object_set_new(o, "last_heartbeat", json_null());
    }
    /* What the agent said it cannot do (asked once, not again). */
    json_t *uns = json_object_get(c->unsupported, n->name);
    if (uns)
        json_object_set(o, "unsupported", uns);
    const char *k;
    json_t *v;
    if (n->report)
        json_object_foreach(n->report, k, v) {
            if (!json_object_get(o, k))
                json_object_set(o, k, v);
        }
    ctl_power_node_fields(c, n, o);
    return o;
}

static int valid_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 63)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
}

/* Registration body -> a validated node; nothing is changed on error. */
static int parse_node(const json_t *body, struct ctl_node *n, struct wlm_error *err)
{
    static const char *const keys[] = {"name", "cores", "mhz", "memory_mb", "arch",
                                       "labels", "agent_url", NULL};
    const char *name = NULL, *arch = "x86_64", *url = "";
    int rc;
    if ((rc = wlm_json_check_keys(body, keys, NULL, err)) ||
        (rc = wlm_json_get_str(body, "name", 1, &name, err)) ||
        (rc = wlm_json_get_int(body, "cores", 1, 1, 65536, &n->cores, err)) ||
        (rc = wlm_json_get_num(body, "mhz", 1, 1, 1e6, &n->mhz, err)) ||
        (rc = wlm_json_get_int(body, "memory_mb", 1, 1, 1LL << 40, &n->memory_mb, err)) ||
        (rc = wlm_json_get_str(body, "arch", 0, &arch, err)) ||
        (rc = wlm_json_get_str(body, "agent_url", 0, &url, err)))
        return rc;
    if (!valid_name(name))
        return wlm_error_setf(err, WLM_EINVAL, "name",
                              "name: '%s' must be 1-63 letters, digits, '-', '_' or '.'", name);
    if (strlen(arch) >= sizeof(n->arch) || !*arch)
        return wlm_error_setf(err, WLM_EINVAL, "arch", "arch: must be 1-31 characters");
    if (*url && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return wlm_error_setf(err, WLM_EINVAL, "agent_url",
                              "agent_url: must start with http:// or https://");
    if (strlen(url) >= sizeof(n->agent_url))
        return wlm_error_setf(err, WLM_EINVAL, "agent_url", "agent_url: too long");
    json_t *labels = json_object_get(body, "labels");
    if (labels && !json_is_null(labels)) {
        if (!json_is_object(labels))
            return wlm_error_setf(err, WLM_EINVAL, "labels", "labels: expected an object");
        const char *k;
        json_t *v;
        json_object_foreach(labels, k, v) {
            if (!json_is_string(v))
                return wlm_error_setf(err, WLM_EINVAL, "labels", "labels.%s: expected a string",
                                      k);
        }
    }
    wlm_strlcpy(n->name, name, sizeof(n->name));
    wlm_strlcpy(n->arch, arch, sizeof(n->arch));
    wlm_strlcpy(n->agent_url, url, sizeof(n->agent_url));
    n->labels = labels && json_is_object(labels) ? json_deep_copy(labels) : json_object();
    return 0;
}

static void handle_register(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct wlm_error err = {0};
    json_t *body = wlm_json_parse_object(req->body, req->body_len, &err);
    struct ctl_node in = {0};
    if (!body || parse_node(body, &in, &err)) {
        json_decref(body);
        json_decref(in.labels);
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_decref(body);
    double now = wlm_now_wall();
    struct ctl_node *old = ctl_node_find(c, in.name);
    in.registered_at = old ? old->registered_at : now;
    /* Commit before answering: a registration we acknowledged survives a crash. */
    char *labels = wlm_json_dumps(in.labels);
    json_t *doc = json_pack("{s:s,s:I,s:f,s:I,s:s,s:s,s:s,s:f}", "name", in.name, "cores",
                            (json_int_t)in.cores, "mhz", in.mhz, "memory_mb",
                            (json_int_t)in.memory_mb, "arch", in.arch, "labels",
                            labels ? labels : "{}", "agent_url", in.agent_url, "registered_at",
                            in.registered_at);
    free(labels);
    struct wlm_error serr;
    wlm_error_clear(&serr);
    int ok = doc && wlm_store_put(c->store, "nodes", "name", doc, &serr) == 0;
    json_decref(doc);
    if (!ok) {
        json_decref(in.labels);
        wlm_http_respond_error(req, wlm_error_http_status(serr.code), wlm_error_name(serr.code),
                               "store node: %s", serr.msg);
        return;
    }
    struct ctl_node *n = old ? old : node_add(c);
    if (!n) {
        json_decref(in.labels);
        wlm_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    if (old) {
        json_decref(old->labels);
        in.report = old->report;
        in.state = old->state;
    }
    in.last_heartbeat = now; /* registering counts as a sign of life */
    *n = in;
    wlm_info("controller", old ? "node re-registered" : "node registered",
             "name=%s cores=%lld mhz=%.0f memory_mb=%lld agent=%s", n->name, n->cores, n->mhz,
             n->memory_mb, n->agent_url[0] ? n->agent_url : "-");
    wlm_http_respond_json(req, old ? 200 : 201, node_json(c, n, now));
}

static void handle_heartbeat(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_node *n = ctl_node_find(c, req->params[0]);
    if (!n) {
        wlm_http_respond_error(req, 404, "not_found", "node '%s' is not registered",
                               req->params[0]);
        return;
    }
    struct wlm_error err = {0};
    json_t *body = wlm_json_parse_object(req->body, req->body_len, &err);
    if (!body) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    /* Agents may report more than usage and power (image pool, domains);
     * what we do not interpret is kept and shown as is. */
    json_t *usage = json_object_get(body, "usage"), *power = json_object_get(body, "power");
    if ((usage && !json_is_object(usage)) || (power && !json_is_object(power))) {
        json_decref(body);
        wlm_http_respond_error(req, 400, "invalid", "usage and power must be objects");
        return;
    }
    json_decref(n->report);
    n->report = body;
    double now = wlm_now_wall();
    double dt = n->last_heartbeat > 0 && now - n->last_heartbeat < 60 ? now - n->last_heartbeat : 0;
    n->last_heartbeat = now;
    ctl_cycle_heartbeat(c, n, now, dt);
    ctl_energy_heartbeat(c, n, now, dt);
    /* The answer tells the agent the power budget it must keep. */
    json_t *reply = json_pack("{s:s}", "state", "READY");
    ctl_power_heartbeat_reply(c, n, reply);
    wlm_http_respond_json(req, 200, reply);
}

static void handle_list(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    double now = wlm_now_wall();
    json_t *arr = json_array();
    for (size_t i = 0; i < c->nnodes; i++)
        json_array_append_new(arr, node_json(c, &c->nodes[i], now));
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "nodes", arr));
}

static void handle_get(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_node *n = ctl_node_find(c, req->params[0]);
    if (!n) {
        wlm_http_respond_error(req, 404, "not_found", "node '%s' is not registered",
                               req->params[0]);
        return;
    }
    wlm_http_respond_json(req, 200, node_json(c, n, wlm_now_wall()));
}

static void handle_delete(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_node *n = ctl_node_find(c, req->params[0]);
    if (!n) {
        wlm_http_respond_error(req, 404, "not_found", "node '%s' is not registered",
                               req->params[0]);
        return;
    }
    struct wlm_error serr;
    wlm_error_clear(&serr);
    if (wlm_store_del(c->store, "nodes", "name", n->name, &serr)) {
        wlm_http_respond_error(req, wlm_error_http_status(serr.code), wlm_error_name(serr.code),
                               "remove node: %s", serr.msg);
        return;
    }
    wlm_info("controller", "node removed", "name=%s", n->name);
    node_fini(n);
    size_t idx = (size_t)(n - c->nodes);
    memmove(n, n + 1, (c->nnodes - idx - 1) * sizeof(*n));
    c->nnodes--;
    ctl_nodes_reindex(c);
    wlm_http_respond(req, 204, NULL, NULL, NULL, 0);
}

void ctl_nodes_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "POST", "/v1/nodes", 1, handle_register, c);
    wlm_http_server_route(c->http, "GET", "/v1/nodes", 1, handle_list, c);
    wlm_http_server_route(c->http, "GET", "/v1/nodes/:name", 1, handle_get, c);
    wlm_http_server_route(c->http, "DELETE", "/v1/nodes/:name", 1, handle_delete, c);
    wlm_http_server_route(c->http, "POST", "/v1/nodes/:name/heartbeat", 1, handle_heartbeat, c);
}

/* Hand the READY nodes to the job scheduler for matchmaking and let it
 * re-evaluate dependencies. */
static void sync_jobsched(struct controller *c, double now)
{
    struct jobsched_node *jn = calloc(c->nnodes ? c->nnodes : 1, sizeof(*jn));
    size_t nlab = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        nlab += json_object_size(c->nodes[i].labels);
    struct jobsched_label *labs = calloc(nlab ? nlab : 1, sizeof(*labs));
    if (!jn || !labs) {
        free(jn);
        free(labs);
        return;
    }
    size_t k = 0, l = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct ctl_node *n = &c->nodes[i];
        if (n->state != CONTROLLER_NODE_READY)
            continue;
        jn[k] = (struct jobsched_node){.name = n->name, .cores = (int)n->cores, .mhz = n->mhz,
                                       .memory_mb = n->memory_mb, .arch = n->arch,
                                       .labels = labs + l};
        const char *key;
        json_t *v;
        json_object_foreach(n->labels, key, v) {
            labs[l].key = (char *)key;
            labs[l].value = (char *)json_string_value(v);
            l++;
            jn[k].nlabels++;
        }
        k++;
    }
    jobsched_set_nodes(c->js, jn, k);
    free(jn);
    free(labs);
    struct wlm_error err = {0};
    jobsched_export_metrics(c->js, c->metrics);
    if (jobsched_update(c->js, now, &err) < 0)
        wlm_errorlog("controller", "job scheduler update failed", "detail=\"%s\"", err.msg);
}

void ctl_nodes_sweep(struct controller *c, double now)
{
    size_t ready = 0;
    double lost_after = c->cfg.node_lost_after_ms / 1000.0;
    for (size_t i = 0; i < c->nnodes; i++) {
        struct ctl_node *n = &c->nodes[i];
        enum controller_node_state s = controller_node_state_at(n->last_heartbeat, now, lost_after);
        if (s != n->state) {
            if (s == CONTROLLER_NODE_LOST) {
                wlm_warn("controller", "node lost", "name=%s last_heartbeat_age_s=%.1f", n->name,
                         n->last_heartbeat > 0 ? now - n->last_heartbeat : -1.0);
                n->state = s;
                ctl_cycle_node_lost(c, n);
            } else
                wlm_info("controller", "node ready", "name=%s", n->name);
            n->state = s;
        }
        ready += s == CONTROLLER_NODE_READY;
    }
    wlm_gauge_set(wlm_metrics_gauge(c->metrics, "wlm_nodes", "Registered nodes by state.",
                                    "state=\"READY\""),
                  (double)ready);
    wlm_gauge_set(wlm_metrics_gauge(c->metrics, "wlm_nodes", "Registered nodes by state.",
                                    "state=\"LOST\""),
                  (double)(c->nnodes - ready));
    ctl_power_split(c);
    ctl_energy_flush(c, now);
    sync_jobsched(c, now);
}
