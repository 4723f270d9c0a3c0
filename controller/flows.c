/* flows.c - the short cycle: router statistics in, flow controller and web
 * profiler calibrated, the router's limit, weights, costs and instances out,
 * utilities recorded and streamed to the dashboard. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CTL_COMP "controller"

/* ------------------------------------------------------------ utilities */

int ctl_app_utility(struct controller *c, const struct ctl_app *a, struct placement_utility *out)
{
    double cap = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        cap += (double)c->nodes[i].cores * c->nodes[i].mhz;
    if (a->max_cpu_mhz > 0 && a->max_cpu_mhz * (double)a->max_instances < cap)
        cap = a->max_cpu_mhz * (double)a->max_instances;
    /* The curve itself (the cliff below CPU demand, the fallbacks when the
     * model knows nothing or is unsure) is flowctl's: wlm-sim and `wlm plan`
     * get the same one. */
    struct flowctl_utility u;
    if (flowctl_placement_curve_of(c->fc, a->name, cap, 16, &u, NULL))
        flowctl_indifferent_curve(&u);
    size_t n = u.n < PLACEMENT_UTILITY_MAX_POINTS ? u.n : PLACEMENT_UTILITY_MAX_POINTS;
    out->npoints = n;
    for (size_t k = 0; k < n; k++) {
        out->cpu_mhz[k] = u.pts[k].x;
        out->util[k] = u.pts[k].y;
    }
    return 0;
}

static void history_add(struct controller *c, double now, json_t *workloads, const char *min_name,
                        double min)
{
    struct ctl_util_point *p = &c->history[c->hist_head];
    if (c->hist_len == CTL_HISTORY)
        json_decref(p->workloads);
    else
        c->hist_len++;
    p->t = now;
    p->workloads = workloads;
    wlm_strlcpy(p->min_name, min_name, sizeof(p->min_name));
    p->min = min;
    c->hist_head = (c->hist_head + 1) % CTL_HISTORY;
}

/* Utility of every application (at its current allocation, from the learned
 * model) and every placeable job (at its allocation, from the estimator). */
static json_t *current_utilities(struct controller *c, double now, json_t **map,
                                 char *min_name, size_t min_size, double *min_out)
{
    json_t *arr = json_array();
    *map = json_object();
    double min = INFINITY;
    min_name[0] = '\0';
    for (size_t i = 0; i < c->napps; i++) {
        const struct ctl_app *a = &c->apps[i];
        struct placement_utility u;
        if (a->deleting)
            continue;
        if (ctl_app_utility(c, a, &u))
            continue;
        double alloc = ctl_app_allocation(c, a->name);
        /* Shown on the utility scale: below the floor is just "missing". */
        double v = a->ninstances ? placement_utility_eval(&u, alloc) : -1.0;
        if (v < -1.0)
            v = -1.0;
        json_array_append_new(arr, json_pack("{s:s, s:s, s:f, s:f}", "name", a->name, "kind",
                                             "app", "utility", v, "cpu_mhz", alloc));
        json_object_set_new(*map, a->name, json_real(v));
        if (v < min) {
            min = v;
            wlm_strlcpy(min_name, a->name, min_size);
        }
    }
    size_t n;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &n);
    for (size_t i = 0; i < n; i++) {
        const struct jobsched_job *j = jobs[i];
        if (j->state == JOBSCHED_PENDING || jobsched_state_terminal(j->state))
            continue;
        double alloc = j->state == JOBSCHED_RUNNING ? j->alloc_mhz : 0;
        /* The same valuation the placement used, so the minimum shown is the
         * minimum the controller works on. */
        struct placement_utility ju;
        ctl_job_curve(c, j, now, &ju);
        double v = placement_utility_eval(&ju, alloc);
        if (v < -1.0)
            v = -1.0;
        char name[96];
        snprintf(name, sizeof(name), "job-%lld%s%s", (long long)j->id, j->name ? " " : "",
                 j->name ? j->name : "");
        json_array_append_new(arr, json_pack("{s:s, s:s, s:f, s:f, s:s}", "name", name, "kind",
                                             "job", "utility", v, "cpu_mhz", alloc, "state",
                                             jobsched_state_name(j->state)));
        json_object_set_new(*map, name, json_real(v));
        if (v < min) {
            min = v;
            wlm_strlcpy(min_name, name, min_size);
        }
    }
    *min_out = isfinite(min) ? min : 0;
    return arr;
}

static json_t *utilities_now(struct controller *c, double now)
{
    json_t *map;
    char min_name[96];
    double min;
    json_t *arr = current_utilities(c, now, &map, min_name, sizeof(min_name), &min);
    json_decref(map);
    json_t *o = json_pack("{s:f, s:o}", "now", now, "workloads", arr);
    if (min_name[0])
        json_object_set_new(o, "min", json_pack("{s:s, s:f}", "name", min_name, "utility", min));
    return o;
}

static void record_utilities(struct controller *c, double now)
{
    json_t *map;
    char min_name[96];
    double min;
    json_t *arr = current_utilities(c, now, &map, min_name, sizeof(min_name), &min);
    history_add(c, now, map, min_name, min);
    if (min_name[0])
        wlm_gauge_set(wlm_metrics_gauge(c->metrics, "wlm_min_utility",
                                        "Current minimum utility over apps and jobs.", NULL),
                      min);
    json_t *u = json_pack("{s:f, s:o}", "now", now, "workloads", arr);
    if (min_name[0])
        json_object_set_new(u, "min", json_pack("{s:s, s:f}", "name", min_name, "utility", min));
    ctl_events_broadcast(c, "cycle", json_pack("{s:o}", "utilities", u));
}

static void handle_utilities(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    double now = wlm_now_wall();
    char *since_s = wlm_http_req_query(req, "since");
    double since = since_s ? atof(since_s) : now - 900;
    free(since_s);
    json_t *o = utilities_now(c, now);
    json_t *hist = json_array();
    for (size_t k = 0; k < c->hist_len; k++) {
        const struct ctl_util_point *p =
            &c->history[(c->hist_head + CTL_HISTORY - c->hist_len + k) % CTL_HISTORY];
        if (p->t < since)
            continue;
        json_t *h = json_pack("{s:f, s:O}", "t", p->t, "workloads", p->workloads);
        if (p->min_name[0])
            json_object_set_new(h, "min", json_pack("{s:s, s:f}", "name", p->min_name,
                                                    "utility", p->min));
        json_array_append_new(hist, h);
    }
    json_object_set_new(o, "history", hist);
    wlm_http_respond_json(req, 200, o);
}

/* ------------------------------------------------------------ SSE */

static void sse_abort(struct wlm_http_req *req)
{
    struct controller *c = req->user;
    for (size_t i = 0; i < c->nsse; i++)
        if (c->sse[i] == req) {
            c->sse[i] = c->sse[--c->nsse];
            break;
        }
}

static void handle_events(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct wlm_http_req **p = realloc(c->sse, (c->nsse + 1) * sizeof(*p));
    if (!p) {
        wlm_http_respond_error(req, 503, "unavailable", "out of memory");
        return;
    }
    c->sse = p;
    req->user = c;
    req->on_abort = sse_abort;
    if (wlm_http_stream_begin(req, 200, "text/event-stream",
                              "Cache-Control: no-cache\r\nX-Accel-Buffering: no"))
        return;
    c->sse[c->nsse++] = req;
    static const char hello[] = ": wlm events\n\n";
    wlm_http_stream_write(req, hello, sizeof(hello) - 1);
}

void ctl_events_broadcast(struct controller *c, const char *event, json_t *data)
{
    if (c->nsse) {
        char *text = wlm_json_dumps(data);
        char *msg = wlm_asprintf("event: %s\ndata: %s\n\n", event, text ? text : "{}");
        for (size_t i = 0; msg && i < c->nsse;) {
            struct wlm_http_req *r = c->sse[i];
            if (wlm_http_stream_write(r, msg, strlen(msg)) < 0)
                c->sse[i] = c->sse[--c->nsse]; /* gone; the server frees it */
            else
                i++;
        }
        free(msg);
        free(text);
    }
    json_decref(data);
}

/* ------------------------------------------------------------ router */

static struct ctl_flowstat *fstat_find(struct controller *c, const char *app, const char *cls)
{
    for (size_t i = 0; i < c->nfstats; i++)
        if (!strcmp(c->fstats[i].app, app) && !strcmp(c->fstats[i].cls, cls))
            return &c->fstats[i];
    struct ctl_flowstat *p = realloc(c->fstats, (c->nfstats + 1) * sizeof(*p));
    if (!p)
        return NULL;
    c->fstats = p;
    struct ctl_flowstat *f = &c->fstats[c->nfstats++];
    memset(f, 0, sizeof(*f));
    wlm_strlcpy(f->app, app, sizeof(f->app));
    wlm_strlcpy(f->cls, cls, sizeof(f->cls));
    return f;
}

static void run_flow_controller(struct controller *c, double now);

static void on_stats(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct controller *c = ud;
    c->stats_busy = 0;
    if (err->code || resp->status != 200) {
        wlm_debug(CTL_COMP, "router stats unavailable", "detail=\"%s\" status=%d", err->msg,
                  resp->status);
        ctl_router_failed(c, resp, err, "statistics");
        return;
    }
    json_t *v = json_loadb(resp->body, resp->body_len, 0, NULL);
    json_t *flows = v ? json_object_get(v, "flows") : NULL;
    double now = wlm_now_wall();
    double dt = c->fstats_at > 0 ? now - c->fstats_at : 0;
    c->fstats_at = now;
    /* Measured CPU time and CPU wait per completed request of each app over
     * this period (its instances' agent reports against the completions of
     * all its flows); -1 when not measured. */
    json_t *per_req = json_object();
    for (size_t a = 0; a < c->napps; a++) {
        const char *an = c->apps[a].name;
        double done = 0;
        size_t fi;
        json_t *fv;
        json_array_foreach(flows, fi, fv)
        {
            const char *fa = json_string_value(json_object_get(fv, "app"));
            if (fa && !strcmp(fa, an))
                done += json_number_value(json_object_get(fv, "completed"));
        }
        json_t *m = json_object_get(c->app_cpu_meas, an);
        if (!m)
            continue;
        double cpu = json_number_value(json_array_get(m, 0));
        double wait = json_number_value(json_array_get(m, 1));
        json_t *pv = json_object_get(c->app_cpu_prev, an);
        if (pv) {
            double dn = done - json_number_value(json_array_get(pv, 2));
            double dc = cpu - json_number_value(json_array_get(pv, 0));
            double dw = wait - json_number_value(json_array_get(pv, 1));
            if (dn > 0 && dc > 0 && dw >= 0)
                json_object_set_new(per_req, an, json_pack("[f,f]", dc / dn, dw / dn));
        }
        json_object_set_new(c->app_cpu_prev, an, json_pack("[f,f,f]", cpu, wait, done));
    }
    size_t i;
    json_t *f;
    json_array_foreach(flows, i, f) {
        const char *app = json_string_value(json_object_get(f, "app"));
        const char *cls = json_string_value(json_object_get(f, "class"));
        if (!app || !cls)
            continue;
        struct ctl_flowstat *s = fstat_find(c, app, cls);
        if (!s)
            continue;
        json_t *resp_h = json_object_get(f, "response");
        double arr = json_number_value(json_object_get(f, "arrivals"));
        double comp = json_number_value(json_object_get(f, "completed"));
        double rej = json_number_value(json_object_get(f, "rejected")) +
                     json_number_value(json_object_get(f, "expired"));
        double rc = json_number_value(json_object_get(resp_h, "count"));
        double rs = json_number_value(json_object_get(resp_h, "sum_ms"));
        /* Time in the application (dispatch to response), as a cumulative sum. */
        double sc = json_number_value(json_object_get(f, "service_count"));
        double ss = json_number_value(json_object_get(f, "service_time_ms_mean")) * sc;
        /* Counters restart with the router: a drop means a new baseline. */
        if (dt > 0 && arr >= s->arrivals && comp >= s->completed && rc >= s->resp_count) {
            s->rate = (arr - s->arrivals) / dt;
            s->reject_rate = (rej - s->rejected) / dt;
            double n = rc - s->resp_count;
            s->rt_ms = n > 0 ? (rs - s->resp_sum_ms) / n : s->rt_ms;
            struct flowctl_obs o = {.app = app,
                                    .cls = cls,
                                    .arrival_rate = s->rate,
                                    .completion_rate = (comp - s->completed) / dt,
                                    .mean_rt = n > 0 ? s->rt_ms / 1000.0 : -1,
                                    .mean_service = sc > s->svc_count
                                                        ? (ss - s->svc_sum_ms) /
                                                              (sc - s->svc_count) / 1000.0
                                                        : -1,
                                    .cost = -1,
                                    .cpu_time = -1,
                                    .cpu_wait = -1};
            json_t *pr = json_object_get(per_req, app);
            if (pr) {
                o.cpu_time = json_number_value(json_array_get(pr, 0));
                o.cpu_wait = json_number_value(json_array_get(pr, 1));
            }
            char flow[128];
            snprintf(flow, sizeof(flow), "%s/%s", app, cls);
            double cost, se;
            if (prof_web_cost(c->prof, flow, &cost, &se) == 0 && isfinite(se) && cost > 0)
                o.cost = cost;
            flowctl_observe(c->fc, &o, now, NULL);
        }
        s->arrivals = arr;
        s->completed = comp;
        s->rejected = rej;
        s->resp_count = rc;
        s->resp_sum_ms = rs;
        s->svc_count = sc;
        s->svc_sum_ms = ss;
    }
    /* The web profiler: per application, its instances' CPU against the
     * completions of its flows. */
    for (size_t a = 0; a < c->napps; a++) {
        json_t *cpu = json_object_get(c->app_cpu_mcycles, c->apps[a].name);
        if (!cpu)
            continue;
        struct prof_flow_count counts[CTL_APP_MAX_CLASSES];
        char names[CTL_APP_MAX_CLASSES][128];
        size_t nc = 0;
        for (size_t k = 0; k < c->nfstats && nc < CTL_APP_MAX_CLASSES; k++) {
            if (strcmp(c->fstats[k].app, c->apps[a].name))
                continue;
            snprintf(names[nc], sizeof(names[nc]), "%s/%s", c->fstats[k].app, c->fstats[k].cls);
            counts[nc].flow = names[nc];
            counts[nc].completions = c->fstats[k].completed;
            nc++;
        }
        prof_web_sample(c->prof, c->apps[a].name, now, json_number_value(cpu), counts, nc, NULL);
    }
    json_decref(per_req);
    json_decref(v);
    run_flow_controller(c, now);
}

static json_t *router_config(struct controller *c, const struct flowctl_decision *d)
{
    json_t *apps = json_array();
    for (size_t i = 0; i < c->napps; i++) {
        const struct ctl_app *a = &c->apps[i];
        if (a->deleting)
            continue; /* drained first: its instances stop once the router forgets them */
        json_t *classes = json_array();
        json_t *spec_classes = json_object_get(a->spec, "classes");
        for (size_t k = 0; k < a->nclasses; k++) {
            const struct ctl_app_class *cl = &a->classes[k];
            double weight = cl->weight, cost = 1;
            for (size_t f = 0; d && f < d->nflows; f++)
                if (!strcmp(d->flows[f].app, a->name) && !strcmp(d->flows[f].cls, cl->name)) {
                    weight = d->flows[f].weight * 1000 > 0.001 ? d->flows[f].weight * 1000
                                                               : 0.001;
                    if (d->flows[f].cost > 0)
                        cost = d->flows[f].cost;
                }
            json_t *o = json_pack("{s:s, s:f, s:f, s:I, s:I}", "name", cl->name, "weight",
                                  weight, "cost", cost, "max_queue", (json_int_t)cl->max_queue,
                                  "max_wait_ms", (json_int_t)cl->max_wait_ms);
            json_t *m = json_object_get(json_array_get(spec_classes, k), "match");
            if (m)
                json_object_set(o, "match", m);
            json_array_append_new(classes, o);
        }
        json_t *insts = json_array();
        for (size_t k = 0; k < c->ninsts; k++) {
            const struct ctl_instance *in = &c->insts[k];
            if (strcmp(in->app, a->name) || in->state != CTL_INST_RUNNING)
                continue;
            char url[128];
            snprintf(url, sizeof(url), "http://%s:%d", in->host, in->port);
            json_array_append_new(insts, json_pack("{s:s, s:s, s:f}", "id", in->id, "url", url,
                                                   "cpu_mhz", in->cpu_mhz > 1 ? in->cpu_mhz
                                                                              : 1.0));
        }
        json_t *app = json_pack("{s:s, s:s, s:o, s:s, s:o}", "name", a->name, "prefix",
                                json_string_value(json_object_get(a->spec, "prefix"))
                                    ? json_string_value(json_object_get(a->spec, "prefix"))
                                    : "/",
                                "classes", classes, "default_class",
                                a->classes[a->default_class].name, "instances", insts);
        json_t *hosts = json_object_get(a->spec, "hosts");
        if (hosts)
            json_object_set(app, "hosts", hosts);
        json_array_append_new(apps, app);
    }
    unsigned limit = d && d->limit ? d->limit : 64;
    return json_pack("{s:I, s:o}", "limit", (json_int_t)limit, "apps", apps);
}

static void on_pushed(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct controller *c = ud;
    c->router_busy = 0;
    if (err->code || resp->status != 200) {
        wlm_warn(CTL_COMP, "router configuration not applied", "status=%d detail=\"%s%s\"",
                 resp->status, err->msg, resp->body ? resp->body : "");
        ctl_router_failed(c, resp, err, "configuration");
        free(c->router_pushed);
        c->router_pushed = NULL; /* try again next cycle */
        return;
    }
    free(c->router_acked);
    c->router_acked = c->router_pushed ? strdup(c->router_pushed) : NULL;
    ctl_router_ok(c);
}

/* What `wlm status` and the dashboard say of the router: a router that the
 * controller cannot configure or read leaves apps unreachable however
 * happy their utility looks. */
void ctl_router_failed(struct controller *c, const struct wlm_http_response *resp,
                       const struct wlm_error *err, const char *what)
{
    char msg[sizeof(c->router_error)];
    if (err && err->code)
        snprintf(msg, sizeof(msg), "router %s failed: %s", what, err->msg);
    else if (resp && resp->status == 401)
        snprintf(msg, sizeof(msg), "router %s refused: the router rejects the controller's token "
                 "(set --router-token to the router's --token)", what);
    else
        snprintf(msg, sizeof(msg), "router %s failed: HTTP %d", what, resp ? resp->status : 0);
    if (!c->router_error[0])
        c->router_error_since = wlm_now_wall();
    if (strcmp(msg, c->router_error))
        wlm_errorlog(CTL_COMP, "router unusable", "url=%s detail=\"%s\"", c->cfg.router_url, msg);
    wlm_strlcpy(c->router_error, msg, sizeof(c->router_error));
}

void ctl_router_ok(struct controller *c)
{
    if (c->router_error[0])
        wlm_info(CTL_COMP, "router reachable again", "url=%s", c->cfg.router_url);
    c->router_error[0] = '\0';
    c->router_error_since = 0;
}

json_t *ctl_router_config_json(struct controller *c)
{
    return router_config(c, (c->have_fd ? &c->fd : NULL));
}

void ctl_router_push(struct controller *c, int force)
{
    if (!c->cfg.router_url[0] || c->router_busy)
        return;
    json_t *cfg = router_config(c, (c->have_fd ? &c->fd : NULL));
    char *text = wlm_json_dumps(cfg);
    json_decref(cfg);
    /* Re-send now and then even when nothing changed: a restarted router
     * gets its configuration back within a few cycles. */
    if (!force && c->router_pushed && !strcmp(text, c->router_pushed) &&
        c->router_pushes++ % 10 != 0) {
        free(text);
        return;
    }
    free(c->router_pushed);
    c->router_pushed = text;
    char *url = wlm_asprintf("%s/admin/config", c->cfg.router_url);
    c->router_busy = 1;
    if (wlm_http_client_request(c->client, "PUT", url,
                                c->cfg.router_token[0] ? c->cfg.router_token : c->token,
                                "application/json", text, strlen(text), 5000, on_pushed, c) < 0)
        c->router_busy = 0;
    free(url);
}

static void run_flow_controller(struct controller *c, double now)
{
    struct wlm_error err = {0};
    int have = 0;
    for (size_t i = 0; i < c->napps; i++)
        if (ctl_app_allocation(c, c->apps[i].name) > 0)
            have = 1;
    if (have && flowctl_cycle(c->fc, now, &c->fd, &err) == 0)
        c->have_fd = 1;
    else if (have)
        wlm_warn(CTL_COMP, "flow controller cycle failed", "detail=\"%s\"", err.msg);
    ctl_router_push(c, 0);
}

void ctl_flows_tick(struct controller *c, double now)
{
    for (size_t i = 0; i < c->napps; i++) {
        const struct ctl_app *a = &c->apps[i];
        for (size_t k = 0; k < a->nclasses; k++)
            flowctl_set_goal(c->fc, a->name, a->classes[k].name, a->classes[k].goal_ms / 1000.0,
                             a->classes[k].weight, NULL);
        double alloc = ctl_app_allocation(c, a->name);
        if (alloc > 0)
            flowctl_set_allocation(c->fc, a->name, alloc, NULL);
    }
    if (c->cfg.router_url[0] && !c->stats_busy) {
        char *url = wlm_asprintf("%s/admin/stats", c->cfg.router_url);
        c->stats_busy = 1;
        if (wlm_http_client_request(c->client, "GET", url,
                                    c->cfg.router_token[0] ? c->cfg.router_token : c->token, NULL,
                                    NULL, 0, 3000, on_stats, c) < 0)
            c->stats_busy = 0;
        free(url);
    }
    record_utilities(c, now);
}

static void handle_flows(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    json_t *arr = json_array();
    for (size_t i = 0; i < c->nfstats; i++) {
        const struct ctl_flowstat *s = &c->fstats[i];
        const struct ctl_app *a = ctl_app_find(c, s->app);
        double goal = 0;
        for (size_t k = 0; a && k < a->nclasses; k++)
            if (!strcmp(a->classes[k].name, s->cls))
                goal = a->classes[k].goal_ms;
        struct flowctl_flow_model m;
        json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:I}", "app", s->app, "class",
                              s->cls, "rate", s->rate, "rt_ms", s->rt_ms, "goal_ms", goal,
                              "reject_rate", s->reject_rate, "rejected", (json_int_t)s->rejected);
        if (flowctl_flow_get(c->fc, s->app, s->cls, &m, NULL) == 0)
            json_object_set_new(o, "model",
                                json_pack("{s:f, s:f, s:f, s:f}", "lambda", m.lambda,
                                          "cost_mcycles", m.cost, "d0_s", m.d0, "cpu_share",
                                          flowctl_app_cpu_share(c->fc, s->app)));
        json_array_append_new(arr, o);
    }
    json_t *o = json_pack("{s:o}", "flows", arr);
    if (c->have_fd)
        json_object_set_new(o, "limit", json_integer(c->fd.limit));
    wlm_http_respond_json(req, 200, o);
}

void ctl_flows_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "GET", "/v1/utilities", 1, handle_utilities, c);
    wlm_http_server_route(c->http, "GET", "/v1/events", 1, handle_events, c);
    wlm_http_server_route(c->http, "GET", "/v1/flows", 1, handle_flows, c);
}

void ctl_flows_free(struct controller *c)
{
    for (size_t i = 0; i < c->hist_len; i++)
        json_decref(c->history[(c->hist_head + CTL_HISTORY - c->hist_len + i) % CTL_HISTORY]
                        .workloads);
    c->hist_len = 0;
    free(c->fstats);
    free(c->router_pushed);
    free(c->router_acked);
    free(c->sse);
    c->router_acked = NULL;
    c->fstats = NULL;
    c->router_pushed = NULL;
    c->sse = NULL;
}
