/* admin.c - admin endpoints (/healthz, /metrics, /admin/stats, /admin/config)
 * and the stats/metrics renderers. */
#include <strings.h>

#include "gw.h"

/* ------------------------------------------------------------ stats */

static json_t *rt_hist_json(const struct rt_hist *h)
{
    json_t *b = json_array(), *c = json_array();
    for (size_t i = 0; i < RT_NB; i++)
        json_array_append_new(b, json_real(rt_hist_ms[i]));
    for (size_t i = 0; i <= RT_NB; i++)
        json_array_append_new(c, json_integer((json_int_t)h->c[i]));
    return json_pack("{s:o,s:o,s:I,s:f,s:f,s:f,s:f}", "le_ms", b, "counts", c, "count",
                     (json_int_t)h->n, "sum_ms", h->sum, "mean_ms", h->n ? h->sum / h->n : 0.0,
                     "p50_ms", rt_hist_q(h, 0.5), "p99_ms", rt_hist_q(h, 0.99));
}

char *router_stats_json(struct router *r)
{
    json_t *flows = json_array(), *insts = json_array();
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    for (size_t f = 0; f < s->cfg->nflows; f++) {
        const struct rt_flowstat *st = s->st[f];
        const struct router_flow_ref *fr = &s->cfg->flows[f];
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:f,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:f,s:I}", "flow",
            st->name, "app", s->cfg->apps[fr->app].name, "class",
            s->cfg->apps[fr->app].classes[fr->cls].name, "weight", st->weight, "cost", st->cost,
            "arrivals", (json_int_t)st->arrivals, "admitted", (json_int_t)st->admitted,
            "rejected", (json_int_t)st->rejected, "expired", (json_int_t)st->expired,
            "completed", (json_int_t)st->completed, "errors", (json_int_t)st->errors,
            "cancelled", (json_int_t)st->cancelled, "in_flight", (json_int_t)st->inflight,
            "queue_len", (json_int_t)st->qlen, "queue_wait", rt_hist_json(&st->qwait), "response",
            rt_hist_json(&st->resp), "service_time_ms_mean",
            st->svc_n ? st->svc_sum * 1e3 / st->svc_n : 0.0, "service_count",
            (json_int_t)st->svc_n);
        json_object_set_new(o, "tunnels_open", json_integer((json_int_t)st->tunnels));
        json_object_set_new(o, "tunnels_total", json_integer((json_int_t)st->tunnels_total));
        json_object_set_new(o, "tunnel_bytes_in", json_integer((json_int_t)st->tunnel_bytes_in));
        json_object_set_new(o, "tunnel_bytes_out", json_integer((json_int_t)st->tunnel_bytes_out));
        json_array_append_new(flows, o);
    }
    double now = rt_mono();
    for (size_t i = 0; i < r->ninsts; i++) {
        const struct rt_inst *in = r->insts[i];
        if (!in->active)
            continue;
        json_array_append_new(
            insts, json_pack("{s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:b}", "id", in->id, "url", in->url,
                             "cpu_mhz", in->cpu_mhz, "max_concurrency", (json_int_t)in->max_conc,
                             "outstanding", (json_int_t)in->outstanding, "requests",
                             (json_int_t)in->requests, "failures", (json_int_t)in->failures,
                             "ejected", in->ejected_until > now));
    }
    json_t *root = json_pack("{s:I,s:I,s:I,s:o,s:o}", "limit", (json_int_t)s->cfg->limit,
                             "in_flight", (json_int_t)r->inflight, "workers", (json_int_t)r->nw,
                             "flows", flows, "instances", insts);
    pthread_mutex_unlock(&r->mu);
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

static void prom_hist(char **b, size_t *l, size_t *c, const char *name, const char *flow,
                      const struct rt_hist *h)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < RT_NB; i++) {
        acc += h->c[i];
        rt_buf_printf(b, l, c, "%s_bucket{flow=\"%s\",le=\"%g\"} %llu\n", name, flow,
                   rt_hist_ms[i] / 1e3, (unsigned long long)acc);
    }
    acc += h->c[RT_NB];
    rt_buf_printf(b, l, c, "%s_bucket{flow=\"%s\",le=\"+Inf\"} %llu\n", name, flow,
               (unsigned long long)acc);
    rt_buf_printf(b, l, c, "%s_sum{flow=\"%s\"} %g\n%s_count{flow=\"%s\"} %llu\n", name, flow,
               h->sum / 1e3, name, flow, (unsigned long long)h->n);
}

char *router_metrics_text(struct router *r)
{
    char *b = NULL;
    size_t l = 0, c = 0;
    static const char *const counters[] = {"arrivals", "admitted", "rejected", "expired",
                                           "completed", "errors", "cancelled"};
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    rt_buf_printf(&b, &l, &c,
               "# HELP wlm_router_limit System-wide concurrency limit.\n"
               "# TYPE wlm_router_limit gauge\nwlm_router_limit %u\n"
               "# HELP wlm_router_in_flight Requests being served upstream.\n"
               "# TYPE wlm_router_in_flight gauge\nwlm_router_in_flight %u\n",
               s->cfg->limit, r->inflight);
    for (size_t k = 0; k < WLM_ARRAY_LEN(counters); k++) {
        rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_%s_total Requests %s per flow.\n",
                   counters[k], counters[k]);
        rt_buf_printf(&b, &l, &c, "# TYPE wlm_router_flow_%s_total counter\n", counters[k]);
        for (size_t f = 0; f < s->cfg->nflows; f++) {
            const struct rt_flowstat *st = s->st[f];
            const uint64_t v[] = {st->arrivals,  st->admitted, st->rejected, st->expired,
                                  st->completed, st->errors,   st->cancelled};
            rt_buf_printf(&b, &l, &c, "wlm_router_flow_%s_total{flow=\"%s\"} %llu\n", counters[k],
                       st->name, (unsigned long long)v[k]);
        }
    }
    rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_in_flight Requests upstream per flow.\n"
                           "# TYPE wlm_router_flow_in_flight gauge\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        rt_buf_printf(&b, &l, &c, "wlm_router_flow_in_flight{flow=\"%s\"} %ld\n", s->st[f]->name,
                   s->st[f]->inflight);
    rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_tunnels Open Upgrade tunnels per flow.\n"
                              "# TYPE wlm_router_flow_tunnels gauge\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        rt_buf_printf(&b, &l, &c, "wlm_router_flow_tunnels{flow=\"%s\"} %ld\n", s->st[f]->name,
                      s->st[f]->tunnels);
    rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_tunnel_bytes_total Bytes through tunnels.\n"
                              "# TYPE wlm_router_flow_tunnel_bytes_total counter\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        rt_buf_printf(&b, &l, &c,
                      "wlm_router_flow_tunnel_bytes_total{flow=\"%s\",dir=\"in\"} %llu\n"
                      "wlm_router_flow_tunnel_bytes_total{flow=\"%s\",dir=\"out\"} %llu\n",
                      s->st[f]->name, (unsigned long long)s->st[f]->tunnel_bytes_in,
                      s->st[f]->name, (unsigned long long)s->st[f]->tunnel_bytes_out);
    rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_queue_length Queued requests per flow.\n"
                           "# TYPE wlm_router_flow_queue_length gauge\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        rt_buf_printf(&b, &l, &c, "wlm_router_flow_queue_length{flow=\"%s\"} %zu\n",
                   s->st[f]->name, s->st[f]->qlen);
    rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_service_seconds Upstream service time.\n"
                           "# TYPE wlm_router_flow_service_seconds summary\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        rt_buf_printf(&b, &l, &c,
                   "wlm_router_flow_service_seconds_sum{flow=\"%s\"} %g\n"
                   "wlm_router_flow_service_seconds_count{flow=\"%s\"} %llu\n",
                   s->st[f]->name, s->st[f]->svc_sum, s->st[f]->name,
                   (unsigned long long)s->st[f]->svc_n);
    rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_queue_wait_seconds Time queued.\n"
                           "# TYPE wlm_router_flow_queue_wait_seconds histogram\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        prom_hist(&b, &l, &c, "wlm_router_flow_queue_wait_seconds", s->st[f]->name,
                  &s->st[f]->qwait);
    rt_buf_printf(&b, &l, &c, "# HELP wlm_router_flow_response_seconds Time to response.\n"
                           "# TYPE wlm_router_flow_response_seconds histogram\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        prom_hist(&b, &l, &c, "wlm_router_flow_response_seconds", s->st[f]->name,
                  &s->st[f]->resp);
    pthread_mutex_unlock(&r->mu);
    return b;
}

/* ------------------------------------------------------------ admin */

static int token_ok(struct router *r, const struct router_hdr *h, size_t nh)
{
    if (!r->token[0])
        return 1;
    const struct router_hdr *a = router_hdr_find(h, nh, "authorization");
    if (!a || a->value_len < 7 || strncasecmp(a->value, "Bearer ", 7) != 0)
        return 0;
    /* Constant time in the secret's length. */
    const char *v = a->value + 7;
    size_t vl = a->value_len - 7, tl = strlen(r->token);
    unsigned char diff = (unsigned char)(vl != tl);
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)(r->token[i] ^ (i < vl ? v[i] : 0));
    return diff == 0;
}

static void admin_reply(struct rt_req *q, int status, const char *ctype, char *body)
{
    rt_resp_reset(&q->resp);
    q->resp.status = status;
    rt_buf_printf(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, "Content-Type: %s\r\n", ctype);
    q->resp.body = body;
    q->resp.blen = body ? strlen(body) : 0;
    q->resp.bcap = q->resp.blen + 1;
    req_complete(q);
}

static int path_is(const char *p, size_t pl, const char *want)
{
    return pl == strlen(want) && memcmp(p, want, pl) == 0;
}

void admin_handle(struct rt_req *q, const char *method, const char *path, size_t pl,
                         const struct router_hdr *h, size_t nh, const char *body, size_t blen)
{
    struct router *r = q->w->r;
    q->head = strcmp(method, "HEAD") == 0;
    if (path_is(path, pl, "/healthz")) {
        admin_reply(q, 200, "application/json", rt_dup("{\"status\":\"ok\"}\n"));
        return;
    }
    if (path_is(path, pl, "/metrics")) {
        admin_reply(q, 200, "text/plain; version=0.0.4", router_metrics_text(r));
        return;
    }
    int known = path_is(path, pl, "/admin/stats") || path_is(path, pl, "/admin/config");
    if (!known) {
        rt_resp_local(q, 404, NULL, "no such endpoint");
        req_complete(q);
        return;
    }
    if (!token_ok(r, h, nh)) {
        rt_resp_local(q, 401, "WWW-Authenticate: Bearer\r\n", "missing or wrong bearer token");
        req_complete(q);
        return;
    }
    if (path_is(path, pl, "/admin/stats") && strcmp(method, "GET") == 0) {
        admin_reply(q, 200, "application/json", router_stats_json(r));
        return;
    }
    if (path_is(path, pl, "/admin/config") && strcmp(method, "GET") == 0) {
        pthread_mutex_lock(&r->mu);
        char *j = rt_dup(r->cur->json ? r->cur->json : "{}");
        pthread_mutex_unlock(&r->mu);
        admin_reply(q, 200, "application/json", j);
        return;
    }
    if (path_is(path, pl, "/admin/config") && strcmp(method, "PUT") == 0) {
        struct wlm_error err = {0};
        struct router_config *cfg = NULL;
        if (router_config_parse(body, blen, &cfg, &err) == 0) {
            char *j = rt_strndup(body, blen);
            if (router_set_config(r, cfg, &err) == 0) {
                pthread_mutex_lock(&r->mu);
                free(r->cur->json);
                r->cur->json = j;
                pthread_mutex_unlock(&r->mu);
                admin_reply(q, 200, "application/json", rt_dup("{\"ok\":true}\n"));
                return;
            }
            free(j);
            router_config_free(cfg);
        }
        json_t *e = json_pack("{s:s,s:s,s:s}", "error", "invalid", "field", err.field, "detail",
                              err.msg);
        char *t = json_dumps(e, JSON_COMPACT);
        json_decref(e);
        rt_resp_reset(&q->resp);
        admin_reply(q, 400, "application/json", t);
        return;
    }
    rt_resp_local(q, 405, NULL, "method not allowed");
    req_complete(q);
}
