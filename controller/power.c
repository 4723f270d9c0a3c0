/* power.c - power budgets: the cluster budget split among the nodes,
 * per-node overrides, what each agent is told to keep, what the placement
 * sees, and nodes flagged for violating their budget again and again. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"
#include "store.h"
#include "power.h"

double ctl_power_default_idle(void) { return 100; }
double ctl_power_default_max(void) { return 250; }

static void node_model(const struct ctl_power_node *p, double *idle, double *max)
{
    *idle = p && p->max_w > 0 ? p->idle_w : ctl_power_default_idle();
    *max = p && p->max_w > 0 ? p->max_w : ctl_power_default_max();
}

/* CPU planned on each node (its instances' allocations and its jobs'),
 * into the nodes' planned_mhz: one pass over instances and jobs. */
static void planned_all(struct controller *c)
{
    struct ctl_energy *e = c->energy;
    for (size_t i = 0; i < e->npn; i++)
        e->pn[i].planned_mhz = 0;
    for (size_t i = 0; i < c->ninsts; i++) {
        struct ctl_power_node *p = ctl_power_node(c, c->insts[i].node, 0);
        if (p && c->insts[i].state != CTL_INST_STOPPING)
            p->planned_mhz += c->insts[i].cpu_mhz;
    }
    size_t nj;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &nj);
    for (size_t i = 0; i < nj; i++) {
        if (jobsched_state_terminal(jobs[i]->state) || jobs[i]->state == JOBSCHED_SUSPENDED ||
            !jobs[i]->node[0])
            continue;
        struct ctl_power_node *p = ctl_power_node(c, jobs[i]->node, 0);
        if (p)
            p->planned_mhz += jobs[i]->alloc_mhz;
    }
}

void ctl_power_split(struct controller *c)
{
    struct ctl_energy *e = c->energy;
    if (!e)
        return;
    size_t n = c->nnodes;
    double *idle = calloc(n + 1, sizeof(double)), *max = calloc(n + 1, sizeof(double));
    double *w = calloc(n + 1, sizeof(double)), *fixed = calloc(n + 1, sizeof(double));
    double *out = calloc(n + 1, sizeof(double));
    struct ctl_power_node **pn = calloc(n + 1, sizeof(*pn));
    if (!idle || !max || !w || !fixed || !out || !pn)
        goto done;
    size_t k = 0;
    double sum_idle = 0;
    if (e->cluster_budget_w <= 0) {
        /* No cluster budget: overrides only (cheap, every sweep). */
        for (size_t i = 0; i < e->npn; i++)
            e->pn[i].budget_w = e->pn[i].override_w >= 0 ? e->pn[i].override_w : 0;
        e->split_note[0] = '\0';
        goto done;
    }
    /* Create the rows first: creating one may move the others. */
    for (size_t i = 0; i < n; i++)
        ctl_power_node(c, c->nodes[i].name, 1);
    planned_all(c);
    for (size_t i = 0; i < n; i++) {
        const struct ctl_node *nd = &c->nodes[i];
        struct ctl_power_node *p = ctl_power_node(c, nd->name, 0);
        if (!p)
            continue;
        /* A node switched off takes part too: the placement may switch it
         * on, and must not load it beyond the cluster budget (off, it draws
         * less than it is given). */
        int on = nd->state == CONTROLLER_NODE_READY;
        if (!on) {
            p->budget_w = p->override_w >= 0 ? p->override_w : 0;
            continue;
        }
        pn[k] = p;
        node_model(p, &idle[k], &max[k]);

        /* Watts its planned CPU needs above idle (the linear model). */
        double cap = (double)nd->cores * nd->mhz;
        w[k] = cap > 0 ? (max[k] - idle[k]) * p->planned_mhz / cap : 0;
        fixed[k] = p->override_w;
        if (fixed[k] < 0)
            sum_idle += idle[k];
        k++;
    }
    e->split_note[0] = '\0';
    if (e->cluster_budget_w > 0) {
        int low = ctl_power_split_pure(e->cluster_budget_w, k, idle, max, w, fixed, out);
        if (low)
            snprintf(e->split_note, sizeof(e->split_note),
                     "cluster budget %.0f W is below the idle power of the nodes "
                     "without an override (%.0f W)",
                     e->cluster_budget_w, sum_idle);
    } else {
        for (size_t i = 0; i < k; i++)
            out[i] = fixed[i] >= 0 ? fixed[i] : 0;
    }
    /* The last decision's split (by its plan without budgets) while it is
     * fresh and covers every node: what the placement assumed is what the
     * agents are told. */
    double now = wlm_now_wall(), fresh = 3.0 * (double)c->cfg.placement_period_ms / 1000.0;
    int use_plan = e->cluster_budget_w > 0 && k > 0;
    for (size_t i = 0; use_plan && i < k; i++)
        use_plan = pn[i]->plan_t > 0 && now - pn[i]->plan_t <= fresh;
    for (size_t i = 0; i < k; i++)
        pn[i]->budget_w = use_plan && fixed[i] < 0 ? pn[i]->plan_budget_w : out[i];
done:
    free(idle);
    free(max);
    free(w);
    free(fixed);
    free(out);
    free(pn);
}

/* ------------------------------------------------------------ agents */

struct thr {
    char id[128];
    double utility;
};

static int thr_cmp(const void *a, const void *b)
{
    const struct thr *x = a, *y = b;
    /* Most slack first: the cheapest to take CPU from. */
    return x->utility < y->utility ? 1 : x->utility > y->utility ? -1 : strcmp(x->id, y->id);
}

void ctl_power_heartbeat_reply(struct controller *c, const struct ctl_node *n, json_t *reply)
{
    struct ctl_power_node *p = ctl_power_node(c, n->name, 0);
    if (!p || p->budget_w <= 0) {
        json_object_set_new(reply, "power_budget_w", json_real(0));
        return;
    }
    json_object_set_new(reply, "power_budget_w", json_real(p->budget_w));
    size_t nj;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &nj);
    struct thr *t = calloc(nj + c->ninsts + 1, sizeof(*t));
    if (!t)
        return;
    size_t k = 0;
    double now = wlm_now_wall();
    for (size_t i = 0; i < nj; i++) {
        const struct jobsched_job *j = jobs[i];
        if (j->state != JOBSCHED_RUNNING || strcmp(j->node, n->name))
            continue;
        struct placement_utility u;
        ctl_job_curve(c, j, now, &u);
        snprintf(t[k].id, sizeof(t[k].id), "j%lld", (long long)j->id);
        t[k++].utility = placement_utility_eval(&u, j->alloc_mhz);
    }
    for (size_t i = 0; i < c->ninsts; i++) {
        const struct ctl_instance *in = &c->insts[i];
        if (strcmp(in->node, n->name) || in->state != CTL_INST_RUNNING)
            continue;
        const struct ctl_app *a = ctl_app_find(c, in->app);
        struct placement_utility u;
        double v = 0;
        if (a && !ctl_app_utility(c, a, &u))
            v = placement_utility_eval(&u, ctl_app_allocation(c, a->name));
        wlm_strlcpy(t[k].id, in->id, sizeof(t[k].id));
        t[k++].utility = v;
    }
    qsort(t, k, sizeof(*t), thr_cmp);
    json_t *order = json_array();
    for (size_t i = 0; i < k; i++)
        json_array_append_new(order, json_string(t[i].id));
    json_object_set_new(reply, "throttle_order", order);
    free(t);
}

void ctl_power_violation(struct controller *c, struct ctl_power_node *p, int violating, double now)
{
    double period_s = c->cfg.placement_period_ms / 1000.0;
    long long period = (long long)floor(now / (period_s > 0 ? period_s : 15));
    if (p->period < 0)
        p->period = period;
    if (period != p->period) {
        /* Close the slot being filled (and any silent periods between). */
        long long gap = period - p->period;
        for (long long g = 0; g < gap && g < CTL_POWER_WINDOW; g++) {
            if (p->vlen == CTL_POWER_WINDOW)
                memmove(p->viol, p->viol + 1, CTL_POWER_WINDOW - 1), p->vlen--;
            p->viol[p->vlen++] = g == 0 ? (unsigned char)p->viol_now : 0;
        }
        p->viol_now = 0;
        p->period = period;
        long long wn = c->cfg.power_violation_n, wk = c->cfg.power_violation_k;
        size_t bad = 0;
        for (size_t i = 0; i < p->vlen && (long long)i < wn; i++)
            bad += p->viol[p->vlen - 1 - i];
        int flagged = (long long)bad >= wk;
        if (flagged != p->flagged)
            wlm_warn(CTL_COMP, flagged ? "node flagged: repeated power budget violations" :
                                         "node no longer flagged for power budget violations",
                     "name=%s violating_periods=%zu k=%lld n=%lld overshoot_w=%.1f", p->name, bad,
                     wk, wn, p->overshoot_w);
        p->flagged = flagged;
        if (!flagged && !bad)
            p->overshoot_w = 0;
    }
    if (violating) {
        p->viol_now = 1;
        double over = p->watts - p->budget_w;
        if (p->budget_w > 0 && over > p->overshoot_w)
            p->overshoot_w = over;
    }
}

void ctl_power_placement_node(struct controller *c, const struct ctl_node *n, double *idle_w,
                              double *max_w, double *budget_w)
{
    struct ctl_power_node *p = ctl_power_node(c, n->name, 0);
    node_model(p, idle_w, max_w);
    *budget_w = p ? p->budget_w : 0;
    if (p && p->flagged && *budget_w > 0) {
        /* It keeps going over: plan as if it had less, so work moves away. */
        double cut = p->overshoot_w;
        double floor_cut = 0.1 * (*budget_w - *idle_w);
        if (cut < floor_cut)
            cut = floor_cut;
        *budget_w -= cut;
        if (*budget_w < *idle_w)
            *budget_w = *idle_w;
    }
}

/* ------------------------------------------------------------ placement */

void ctl_power_budget_check(struct solve_work *sw)
{
    struct placement_problem *p = sw->p;
    struct placement_decision *d = sw->d;
    if (!d || d->min_utility >= 0)
        return;
    double cut = 0;
    double *saved = calloc(p->nnodes + 1, sizeof(double));
    if (!saved)
        return;
    for (size_t n = 0; n < p->nnodes; n++) {
        struct placement_node *nd = &p->nodes[n];
        saved[n] = nd->power_budget_w;
        if (nd->power_budget_w > 0 && nd->power_max_w > nd->power_idle_w &&
            nd->power_budget_w < nd->power_max_w) {
            double f = (nd->power_budget_w - nd->power_idle_w) /
                       (nd->power_max_w - nd->power_idle_w);
            cut += (1 - (f < 0 ? 0 : f)) * nd->cores * nd->mhz_per_core;
        }
    }
    if (cut <= 0) {
        free(saved);
        return;
    }
    enum placement_solver solver = p->opts.solver;
    for (size_t n = 0; n < p->nnodes; n++)
        p->nodes[n].power_budget_w = 0;
    p->opts.solver = PLACEMENT_SOLVER_HEURISTIC;
    struct placement_decision *free_d = NULL;
    struct wlm_error err = {0};
    int rc = placement_solve(p, &free_d, &err);
    p->opts.solver = solver;
    for (size_t n = 0; n < p->nnodes; n++)
        p->nodes[n].power_budget_w = saved[n];
    free(saved);
    if (!rc && free_d && free_d->min_utility > d->min_utility + 0.01) {
        size_t len = strlen(d->note);
        snprintf(d->note + len, sizeof(d->note) - len,
                 "%spower budget: makes goals unreachable (minimum utility %.2f with budgets, "
                 "%.2f without; %.0f MHz of CPU cut)",
                 len ? "; " : "", d->min_utility, free_d->min_utility, cut);
    }
    placement_decision_free(free_d);
}

/* ------------------------------------------------------------ plan */

struct ctl_power_plan {
    double total_w;
    size_t n;
    double *fixed, *cut, *out;
    int done;
};

void ctl_power_prepare(struct controller *c, struct solve_work *sw)
{
    struct ctl_energy *e = c->energy;
    if (!e || e->cluster_budget_w <= 0 || !sw->p->nnodes)
        return;
    struct ctl_power_plan *pl = calloc(1, sizeof(*pl));
    size_t n = sw->p->nnodes;
    if (!pl || !(pl->fixed = calloc(n, sizeof(double))) || !(pl->cut = calloc(n, sizeof(double))) ||
        !(pl->out = calloc(n, sizeof(double)))) {
        if (pl) {
            free(pl->fixed);
            free(pl->cut);
            free(pl->out);
        }
        free(pl);
        return;
    }
    pl->total_w = e->cluster_budget_w;
    pl->n = n;
    for (size_t i = 0; i < n; i++) {
        const struct placement_node *nd = &sw->p->nodes[i];
        struct ctl_power_node *p = ctl_power_node(c, sw->node_names[i], 0);
        pl->fixed[i] = p && p->override_w >= 0 ? p->override_w : -1;
        if (p && p->flagged) {
            double cut = 0.1 * (nd->power_max_w - nd->power_idle_w);
            pl->cut[i] = p->overshoot_w > cut ? p->overshoot_w : cut;
        }
    }
    sw->power = pl;
}

void ctl_power_plan_run(struct solve_work *sw)
{
    struct ctl_power_plan *pl = sw->power;
    struct placement_problem *p = sw->p;
    if (!pl || pl->n != p->nnodes)
        return;
    size_t n = pl->n;
    double *saved = calloc(n, sizeof(double)), *planned = calloc(n, sizeof(double));
    double *idle = calloc(n, sizeof(double)), *max = calloc(n, sizeof(double));
    double *w = calloc(n, sizeof(double));
    struct placement_decision *d0 = NULL;
    if (!saved || !planned || !idle || !max || !w)
        goto out;
    for (size_t i = 0; i < n; i++) {
        saved[i] = p->nodes[i].power_budget_w;
        p->nodes[i].power_budget_w = pl->fixed[i] >= 0 ? pl->fixed[i] : 0;
    }
    enum placement_solver solver = p->opts.solver;
    p->opts.solver = PLACEMENT_SOLVER_HEURISTIC;
    struct wlm_error err = {0};
    int rc = placement_solve(p, &d0, &err);
    p->opts.solver = solver;
    if (rc || !d0) {
        for (size_t i = 0; i < n; i++)
            p->nodes[i].power_budget_w = saved[i]; /* the split by what runs now */
        goto out;
    }
    for (size_t k = 0; k < d0->nassign; k++)
        if (d0->assign[k].node < n)
            planned[d0->assign[k].node] += d0->assign[k].cpu_mhz;
    for (size_t i = 0; i < n; i++) {
        const struct placement_node *nd = &p->nodes[i];
        double cap = nd->cores * nd->mhz_per_core;
        idle[i] = nd->power_idle_w;
        max[i] = nd->power_max_w;
        w[i] = cap > 0 ? (max[i] - idle[i]) * planned[i] / cap : 0;
    }
    ctl_power_split_pure(pl->total_w, n, idle, max, w, pl->fixed, pl->out);
    for (size_t i = 0; i < n; i++) {
        double b = pl->out[i];
        if (pl->cut[i] > 0 && b > 0) {
            b -= pl->cut[i];
            if (b < idle[i])
                b = idle[i];
        }
        p->nodes[i].power_budget_w = b > 0 ? b : 1e-3;
    }
    pl->done = 1;
out:
    placement_decision_free(d0);
    free(saved);
    free(planned);
    free(idle);
    free(max);
    free(w);
}

void ctl_power_adopt(struct solve_work *sw)
{
    struct ctl_power_plan *pl = sw->power;
    if (!pl)
        return;
    sw->power = NULL;
    struct controller *c = sw->c;
    if (pl->done && !sw->rc && sw->d && c->started && c->energy &&
        c->energy->cluster_budget_w == pl->total_w) {
        double now = wlm_now_wall();
        for (size_t i = 0; i < pl->n; i++) {
            struct ctl_power_node *p = ctl_power_node(c, sw->node_names[i], 0);
            if (p) {
                p->plan_budget_w = pl->out[i];
                p->plan_t = now;
            }
        }
        ctl_power_split(c);
    }
    free(pl->fixed);
    free(pl->cut);
    free(pl->out);
    free(pl);
}

/* ------------------------------------------------------------ API */

static double cluster_max_w(struct controller *c)
{
    double s = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        double idle, max;
        node_model(ctl_power_node(c, c->nodes[i].name, 0), &idle, &max);
        s += max;
    }
    return s;
}

static json_t *power_json(struct controller *c)
{
    struct ctl_energy *e = c->energy;
    json_t *nodes = json_array();
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct ctl_node *nd = &c->nodes[i];
        struct ctl_power_node *p = ctl_power_node(c, nd->name, 1);
        if (!p)
            continue;
        double idle, max;
        node_model(p, &idle, &max);
        size_t bad = 0;
        for (size_t k = 0; k < p->vlen; k++)
            bad += p->viol[k];
        json_t *o = json_pack("{s:s, s:b, s:f, s:f, s:f, s:f, s:f, s:b, s:I, s:I}", "name",
                              nd->name, "on",
                              nd->state == CONTROLLER_NODE_READY && ctl_node_powered_on(nd),
                              "watts", p->watts, "budget_w", p->budget_w, "idle_w", idle, "max_w",
                              max, "planned_mhz", p->planned_mhz, "flagged", p->flagged,
                              "violating_periods", (json_int_t)bad, "violations",
                              (json_int_t)p->violations);
        json_object_set_new(o, "override_w",
                            p->override_w >= 0 ? json_real(p->override_w) : json_null());
        if (p->agent)
            json_object_set(o, "agent", p->agent);
        json_array_append_new(nodes, o);
    }
    json_t *o = json_pack("{s:f, s:f, s:s, s:I, s:I, s:o}", "cluster_budget_w",
                          e->cluster_budget_w, "cluster_max_w", cluster_max_w(c), "split_note",
                          e->split_note, "violation_k", (json_int_t)c->cfg.power_violation_k,
                          "violation_n", (json_int_t)c->cfg.power_violation_n, "nodes", nodes);
    /* What the last decision said about the budgets. */
    const char *note = c->last_decision ?
                           json_string_value(json_object_get(c->last_decision, "note")) :
                           NULL;
    const char *pb = note ? strstr(note, "power budget:") : NULL;
    json_object_set_new(o, "budget_note", json_string(pb ? pb : ""));
    return o;
}

static void handle_power_get(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    ctl_power_split(c);
    planned_all(c);
    wlm_http_respond_json(req, 200, power_json(c));
}

/* {"budget_w": W | null}; null or 0 = no budget. */
static int parse_budget(struct wlm_http_req *req, double limit, const char *what, double *out,
                        struct wlm_error *err)
{
    json_t *body = wlm_json_parse_object(req->body, req->body_len, err);
    if (!body)
        return -WLM_EINVAL;
    static const char *const keys[] = {"budget_w", NULL};
    int rc = wlm_json_check_keys(body, keys, NULL, err);
    json_t *b = json_object_get(body, "budget_w");
    if (!rc && !b)
        rc = wlm_error_setf(err, WLM_EINVAL, "budget_w",
                            "budget_w: required (watts, or null for no budget)");
    if (!rc && json_is_null(b)) {
        *out = 0;
    } else if (!rc) {
        if (!json_is_number(b))
            rc = wlm_error_setf(err, WLM_EINVAL, "budget_w", "budget_w: expected a number of watts");
        else if (json_number_value(b) < 0 || !isfinite(json_number_value(b)))
            rc = wlm_error_setf(err, WLM_EINVAL, "budget_w",
                                "budget_w: %g W is negative (use null for no budget)",
                                json_number_value(b));
        else if (json_number_value(b) > limit)
            rc = wlm_error_setf(err, WLM_EINVAL, "budget_w",
                                "budget_w: %g W is above the physical maximum of %s (%g W)",
                                json_number_value(b), what, limit);
        else
            *out = json_number_value(b);
    }
    json_decref(body);
    return rc;
}

static int store_cluster_budget(struct controller *c, double v, struct wlm_error *err)
{
    json_t *d = json_pack("{s:s,s:f}", "key", "cluster_budget_w", "value", v);
    int rc = wlm_store_put(c->store, "power_settings", "key", d, err);
    json_decref(d);
    return rc;
}

static void handle_power_put(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct wlm_error err = {0};
    double max = cluster_max_w(c), v = 0;
    if (parse_budget(req, max, "the cluster (the sum of its nodes' max_w)", &v, &err)) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    if (store_cluster_budget(c, v, &err)) {
        wlm_http_respond_error(req, wlm_error_http_status(err.code), wlm_error_name(err.code),
                               "store budget: %s", err.msg);
        return;
    }
    c->energy->cluster_budget_w = v;
    for (size_t i = 0; i < c->energy->npn; i++)
        c->energy->pn[i].plan_t = 0; /* split anew until the next decision */
    wlm_info(CTL_COMP, "cluster power budget set", "budget_w=%.1f", v);
    ctl_power_split(c);
    wlm_http_respond_json(req, 200, power_json(c));
}

static void handle_node_power_put(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    const struct ctl_node *nd = ctl_node_find(c, req->params[0]);
    if (!nd) {
        wlm_http_respond_error(req, 404, "not_found", "node '%s' is not registered",
                               req->params[0]);
        return;
    }
    struct ctl_power_node *p = ctl_power_node(c, nd->name, 1);
    if (!p) {
        wlm_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    double idle, max, v = 0;
    node_model(p, &idle, &max);
    char what[128];
    snprintf(what, sizeof(what), "node %s (its max_w)", nd->name);
    struct wlm_error err = {0};
    if (parse_budget(req, max, what, &v, &err)) {
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
    int clear = json_is_null(json_object_get(body, "budget_w"));
    json_decref(body);
    double override = clear ? -1 : v, was = p->override_w;
    p->override_w = override;
    if (ctl_power_node_store(c, p, &err)) {
        p->override_w = was;
        wlm_http_respond_error(req, wlm_error_http_status(err.code), wlm_error_name(err.code),
                               "store budget: %s", err.msg);
        return;
    }
    wlm_info(CTL_COMP, "node power budget set", "name=%s budget_w=%.1f", nd->name, override);
    ctl_power_split(c);
    json_t *o = power_json(c);
    if (!clear && v < idle)
        json_object_set_new(o, "warning",
                            json_sprintf("budget %g W is below node %s's idle power (%g W): the "
                                         "agent cannot keep it",
                                         v, nd->name, idle));
    wlm_http_respond_json(req, 200, o);
}

void ctl_power_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "GET", "/v1/power", 1, handle_power_get, c);
    wlm_http_server_route(c->http, "PUT", "/v1/power", 1, handle_power_put, c);
    wlm_http_server_route(c->http, "PUT", "/v1/nodes/:name/power", 1, handle_node_power_put, c);
}
