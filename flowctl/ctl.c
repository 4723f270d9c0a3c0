/*
 * ctl.c - the flow controller's state: online calibration of each flow,
 * the per-cycle choice of limit and weights with damping, the router
 * configuration fragment and per-application utility functions.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flowctl.h"
#include "flowctl_int.h"

struct fc_flow {
    char app[FLOWCTL_NAME_MAX];
    char cls[FLOWCTL_NAME_MAX];
    double goal, importance;
    double lambda, cost, d0; /* calibrated (EWMA) */
    int have_lambda, have_cost, have_d0;
    double last_obs;  /* now of the last observation */
    double slots;     /* damped share applied last cycle; 0 = none yet */
    double last_step; /* signed change applied last cycle */
    int last_dir;     /* sign of the last change that happened (0 = none yet) */
    double gain;      /* current damping gain */
    double floor;     /* capacity floor of its slots in force (fc_capacity_floor), 0 = none */
};

struct fc_app {
    char name[FLOWCTL_NAME_MAX];
    double omega;
    /* Measured share of the CPU the app got while it had work (EWMA; 0 =
     * never measured, taken as 1): its CPU runs at omega * share. */
    double cpu_share;
};

/* The CPU an app really runs at: its allocation, slowed by contention the
 * agent measured. */
static double fc_app_speed(const struct fc_app *a)
{
    return a->omega * (a->cpu_share > 0 ? a->cpu_share : 1);
}

struct flowctl {
    struct flowctl_config cfg;
    struct fc_flow flows[FLOWCTL_MAX_FLOWS];
    size_t nflows;
    struct fc_app apps[FLOWCTL_MAX_FLOWS];
    size_t napps;
};

void flowctl_config_default(struct flowctl_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->util_floor = -1;
    cfg->max_limit = 1000;
    cfg->min_limit = 1;
    cfg->gain = 0.5;
    cfg->max_step_frac = 1.0;
    cfg->deadband = 0.1;
    cfg->ewma = 0.3;
    cfg->queue_cap = 0;
    cfg->default_d0 = 0;
    cfg->stale_after = 30;
}

struct flowctl *flowctl_new(const struct flowctl_config *cfg, struct wlm_error *err)
{
    struct flowctl_config c;
    if (cfg)
        c = *cfg;
    else
        flowctl_config_default(&c);
    if (!(c.util_floor < 0)) {
        fc__err(err, WLM_EINVAL, "util_floor", "must be < 0");
        return NULL;
    }
    if (c.min_limit < 1 || c.max_limit < c.min_limit) {
        fc__err(err, WLM_EINVAL, "max_limit", "need 1 <= min_limit <= max_limit");
        return NULL;
    }
    if (!(c.gain > 0 && c.gain <= 1)) {
        fc__err(err, WLM_EINVAL, "gain", "must be in (0, 1]");
        return NULL;
    }
    if (!(c.max_step_frac > 0)) {
        fc__err(err, WLM_EINVAL, "max_step_frac", "must be > 0");
        return NULL;
    }
    if (!(c.deadband >= 0 && c.deadband < 1)) {
        fc__err(err, WLM_EINVAL, "deadband", "must be in [0, 1)");
        return NULL;
    }
    if (!(c.ewma > 0 && c.ewma <= 1)) {
        fc__err(err, WLM_EINVAL, "ewma", "must be in (0, 1]");
        return NULL;
    }
    if (!(c.queue_cap >= 0) || !(c.default_d0 >= 0) || !(c.stale_after > 0)) {
        fc__err(err, WLM_EINVAL, "queue_cap",
                "queue_cap, default_d0 must be >= 0, stale_after > 0");
        return NULL;
    }
    struct flowctl *fc = calloc(1, sizeof *fc);
    if (!fc) {
        fc__err(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    fc->cfg = c;
    return fc;
}

void flowctl_free(struct flowctl *fc)
{
    free(fc);
}

static int fc_name_ok(const char *s, const char *field, struct wlm_error *err)
{
    if (!s || !*s)
        return fc__err(err, WLM_EINVAL, field, "must be a non-empty string");
    if (strlen(s) >= FLOWCTL_NAME_MAX)
        return fc__err(err, WLM_EINVAL, field, "longer than %d characters", FLOWCTL_NAME_MAX - 1);
    return 0;
}

static struct fc_app *fc_app_find(const struct flowctl *fc, const char *name)
{
    for (size_t i = 0; i < fc->napps; i++)
        if (!strcmp(fc->apps[i].name, name))
            return (struct fc_app *)&fc->apps[i];
    return NULL;
}

static struct fc_flow *fc_flow_find(const struct flowctl *fc, const char *app, const char *cls)
{
    for (size_t i = 0; i < fc->nflows; i++)
        if (!strcmp(fc->flows[i].app, app) && !strcmp(fc->flows[i].cls, cls))
            return (struct fc_flow *)&fc->flows[i];
    return NULL;
}

static struct fc_flow *fc_flow_add(struct flowctl *fc, const char *app, const char *cls,
                                   struct wlm_error *err)
{
    struct fc_flow *f = fc_flow_find(fc, app, cls);
    if (f)
        return f;
    if (fc->nflows == FLOWCTL_MAX_FLOWS) {
        fc__err(err, WLM_ELIMIT, "flows", "at most %d flows", FLOWCTL_MAX_FLOWS);
        return NULL;
    }
    f = &fc->flows[fc->nflows++];
    memset(f, 0, sizeof *f);
    strcpy(f->app, app);
    strcpy(f->cls, cls);
    f->goal = 1;
    f->importance = 1;
    f->d0 = fc->cfg.default_d0;
    f->gain = fc->cfg.gain;
    f->last_obs = -INFINITY;
    return f;
}

double flowctl_app_cpu_share(const struct flowctl *fc, const char *app)
{
    for (size_t i = 0; i < fc->napps; i++)
        if (!strcmp(fc->apps[i].name, app))
            return fc->apps[i].cpu_share > 0 ? fc->apps[i].cpu_share : 1;
    return 1;
}

int flowctl_set_allocation(struct flowctl *fc, const char *app, double omega, struct wlm_error *err)
{
    int rc = fc_name_ok(app, "app", err);
    if (rc)
        return rc;
    if (!(omega > 0) || !isfinite(omega))
        return fc__err(err, WLM_EINVAL, "omega", "allocation must be > 0 MHz");
    struct fc_app *a = fc_app_find(fc, app);
    if (!a) {
        if (fc->napps == FLOWCTL_MAX_FLOWS)
            return fc__err(err, WLM_ELIMIT, "app", "at most %d applications", FLOWCTL_MAX_FLOWS);
        a = &fc->apps[fc->napps++];
        strcpy(a->name, app);
    }
    a->omega = omega;
    return 0;
}

int flowctl_set_goal(struct flowctl *fc, const char *app, const char *cls, double goal,
                     double importance, struct wlm_error *err)
{
    int rc = fc_name_ok(app, "app", err);
    if (!rc)
        rc = fc_name_ok(cls, "class", err);
    if (rc)
        return rc;
    if (!(goal > 0) || !isfinite(goal))
        return fc__err(err, WLM_EINVAL, "goal", "response-time goal must be > 0 s");
    if (!(importance > 0) || !isfinite(importance))
        return fc__err(err, WLM_EINVAL, "importance", "must be > 0");
    struct fc_flow *f = fc_flow_add(fc, app, cls, err);
    if (!f)
        return err ? err->code : -WLM_ELIMIT;
    f->goal = goal;
    f->importance = importance;
    return 0;
}

static double fc_ewma(double old, int have, double x, double a)
{
    return have ? old + a * (x - old) : x;
}

/* Total slots of an application's flows as applied last cycle (0 = none). */
static double fc_app_slots(const struct flowctl *fc, const char *app)
{
    double m = 0;
    for (size_t i = 0; i < fc->nflows; i++)
        if (!strcmp(fc->flows[i].app, app))
            m += fc->flows[i].slots;
    return m;
}

int flowctl_observe(struct flowctl *fc, const struct flowctl_obs *o, double now,
                    struct wlm_error *err)
{
    int rc = fc_name_ok(o->app, "app", err);
    if (!rc)
        rc = fc_name_ok(o->cls, "class", err);
    if (rc)
        return rc;
    if (!isfinite(now))
        return fc__err(err, WLM_EINVAL, "now", "must be finite");
    const double *vals[] = {&o->arrival_rate, &o->completion_rate, &o->mean_rt, &o->mean_service,
                            &o->cost,         &o->cpu_time,        &o->cpu_wait};
    const char *names[] = {"arrival_rate", "completion_rate", "mean_rt", "mean_service",
                           "cost",         "cpu_time",        "cpu_wait"};
    for (size_t i = 0; i < 7; i++)
        if (isnan(*vals[i]) || isinf(*vals[i]))
            return fc__err(err, WLM_EINVAL, names[i], "must be a finite number");
    struct fc_flow *f = fc_flow_add(fc, o->app, o->cls, err);
    if (!f)
        return err ? err->code : -WLM_ELIMIT;
    double a = fc->cfg.ewma;
    double lam = o->arrival_rate >= 0 ? o->arrival_rate : o->completion_rate;
    if (lam >= 0) {
        f->lambda = fc_ewma(f->lambda, f->have_lambda, lam, a);
        f->have_lambda = 1;
    }
    if (o->cost >= 0) {
        f->cost = fc_ewma(f->cost, f->have_cost, o->cost, a);
        f->have_cost = 1;
    }
    /* d0 is what remains of the time spent in the application once the
     * model's CPU part is taken out. Without the in-app time, the router's
     * response time stands in (it overstates d0 while requests queue). */
    double svc = o->mean_service >= 0 ? o->mean_service : o->mean_rt;
    double done = o->completion_rate >= 0 ? o->completion_rate : lam;
    struct fc_app *app = fc_app_find(fc, o->app);
    if (svc >= 0 && done > 0) {
        double cpu = 0;
        if (app && f->have_cost && f->cost > 0) {
            double U = 0;
            for (size_t i = 0; i < fc->nflows; i++)
                if (!strcmp(fc->flows[i].app, o->app))
                    U += fc->flows[i].lambda * fc->flows[i].cost / app->omega;
            /* Measured CPU wait: the app got only this share of the CPU
             * while it had work, so its CPU runs that much slower than the
             * allocation says (a hog beside it, a saturated machine). */
            double share = 1;
            if (o->cpu_time > 0 && o->cpu_wait >= 0) {
                share = fmax(0.02, o->cpu_time / (o->cpu_time + o->cpu_wait));
                app->cpu_share = fc_ewma(app->cpu_share, app->cpu_share > 0, share, a);
            }
            U = fmin(U / share, 0.95);
            double M = fc_app_slots(fc, o->app);
            double kappa = M >= 1 ? (M - 1) / M : 1;
            cpu = f->cost / (app->omega * share) / (1 - kappa * U);
        }
        double d0 = fmax(0, svc - cpu);
        f->d0 = fc_ewma(f->d0, f->have_d0, d0, a);
        f->have_d0 = 1;
    }
    f->last_obs = now;
    return 0;
}

int flowctl_flow_get(const struct flowctl *fc, const char *app, const char *cls,
                     struct flowctl_flow_model *out, struct wlm_error *err)
{
    const struct fc_flow *f = app && cls ? fc_flow_find(fc, app, cls) : NULL;
    if (!f)
        return fc__err(err, WLM_ENOTFOUND, "flow", "no flow %s/%s", app ? app : "?",
                       cls ? cls : "?");
    out->lambda = f->lambda;
    out->cost = f->cost;
    out->d0 = f->d0;
    out->goal = f->goal;
    out->queue_cap = fc->cfg.queue_cap;
    return 0;
}

static void fc_model_of(const struct flowctl *fc, const struct fc_flow *f, double now,
                        struct flowctl_flow_model *m)
{
    m->lambda = now - f->last_obs > fc->cfg.stale_after ? 0 : f->lambda;
    m->cost = f->cost;
    m->d0 = f->d0;
    m->goal = f->goal;
    m->queue_cap = fc->cfg.queue_cap;
}

/* Move `cur` toward `target` by the damping rules; returns the new value. */
static double fc_damp(const struct flowctl_config *c, struct fc_flow *f, double target)
{
    double cur = f->slots;
    if (cur <= 0) {
        f->last_step = 0;
        return target;
    }
    double gap = target - cur;
    if (fabs(gap) <= c->deadband * cur || fabs(gap) < 0.5) {
        f->last_step = 0;
        return cur;
    }
    /* Hysteresis: a reversal by about one slot is what calibration noise and
     * integer rounding produce; following it is what makes limits flap. */
    int dir = gap > 0 ? 1 : -1;
    if (f->last_dir && dir != f->last_dir && fabs(gap) <= 1 + c->deadband * cur) {
        f->last_step = 0;
        return cur;
    }
    if (f->last_step != 0 && (gap > 0) != (f->last_step > 0))
        f->gain = fmax(f->gain / 2, 0.05); /* direction reversed: calm down */
    else
        f->gain = fmin(f->gain * 1.25, c->gain);
    double step = f->gain * gap;
    double maxstep = fmax(1, c->max_step_frac * cur);
    if (fabs(step) < 1)
        step = gap > 0 ? fmin(1, gap) : fmax(-1, gap);
    if (step > maxstep)
        step = maxstep;
    if (step < -maxstep)
        step = -maxstep;
    f->last_step = step;
    f->last_dir = dir;
    return fmax(1, cur + step);
}

/* The concurrency an application's allocation can serve: the knee
 * ω·(d0 + c/ω)/c = 1 + ω·d0/c, the number of requests in it at which its CPU
 * is busy all the time (c and d0 weighted by traffic, or equally when all
 * flows are idle). Below it the app's CPU idles while requests wait in the
 * router. It is the floor of the app's slots, split over its flows by
 * traffic (equally when idle), so an idle period does not leave a limit of
 * 1 that a load step then has to climb out of. Flows whose cost is not
 * known yet get no floor (0). */
static void fc_capacity_floor(const struct flowctl *fc, struct fc_flow *const *fl, size_t n,
                              double omega, double *flr)
{
    double wsum = 0, csum = 0, dsum = 0, lsum = 0;
    for (size_t i = 0; i < n; i++) {
        flr[i] = 0;
        lsum += fl[i]->lambda > 0 ? fl[i]->lambda : 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(fl[i]->cost > 0))
            continue;
        double w = lsum > 0 ? (fl[i]->lambda > 0 ? fl[i]->lambda : 0) : 1;
        wsum += w;
        csum += w * fl[i]->cost;
        dsum += w * (fl[i]->d0 > 0 ? fl[i]->d0 : 0);
    }
    if (!(wsum > 0) || !(omega > 0) || !(csum > 0))
        return;
    double c = csum / wsum, d0 = dsum / wsum;
    double knee = ceil(1 + omega * d0 / c);
    if (knee > fc->cfg.max_limit)
        knee = fc->cfg.max_limit;
    size_t known = 0;
    for (size_t i = 0; i < n; i++)
        known += fl[i]->cost > 0;
    for (size_t i = 0; i < n; i++) {
        if (!(fl[i]->cost > 0))
            continue;
        double share = lsum > 0 ? (fl[i]->lambda > 0 ? fl[i]->lambda : 0) / lsum
                                : 1.0 / (double)known;
        double f = fmax(1, floor(knee * share));
        /* The allocation and the calibration move a little every cycle: the
         * floor follows only a change of more than a quarter, so it does not
         * make the limit flap. */
        if (!(fl[i]->floor > 0) || fabs(f - fl[i]->floor) > 0.25 * fl[i]->floor)
            fl[i]->floor = f;
        flr[i] = fl[i]->floor;
    }
}

int flowctl_cycle(struct flowctl *fc, double now, struct flowctl_decision *out,
                  struct wlm_error *err)
{
    if (!isfinite(now))
        return fc__err(err, WLM_EINVAL, "now", "must be finite");
    memset(out, 0, sizeof *out);
    double total = 0;
    for (size_t a = 0; a < fc->napps; a++) {
        const struct fc_app *app = &fc->apps[a];
        struct flowctl_flow_model m[FLOWCTL_MAX_FLOWS];
        struct fc_flow *fl[FLOWCTL_MAX_FLOWS];
        size_t n = 0;
        for (size_t i = 0; i < fc->nflows; i++)
            if (!strcmp(fc->flows[i].app, app->name)) {
                fl[n] = &fc->flows[i];
                fc_model_of(fc, fl[n], now, &m[n]);
                n++;
            }
        if (n == 0)
            continue;
        unsigned target[FLOWCTL_MAX_FLOWS];
        int rc = flowctl_optimize_slots(m, n, fc_app_speed(app), fc->cfg.max_limit,
                                        fc->cfg.util_floor, target, NULL, err);
        if (rc)
            return rc;
        double flr[FLOWCTL_MAX_FLOWS];
        fc_capacity_floor(fc, fl, n, app->omega, flr);
        double applied[FLOWCTL_MAX_FLOWS];
        for (size_t i = 0; i < n; i++) {
            /* Damping starts from the floor, never from an idle low. */
            if (fl[i]->slots > 0 && fl[i]->slots < flr[i])
                fl[i]->slots = flr[i];
            double t = target[i] > flr[i] ? target[i] : flr[i];
            applied[i] = fc_damp(&fc->cfg, fl[i], t);
            if (applied[i] < flr[i])
                applied[i] = flr[i];
            fl[i]->slots = applied[i];
        }
        struct flowctl_prediction p[FLOWCTL_MAX_FLOWS];
        rc = flowctl_predict(m, n, fc_app_speed(app), applied, fc->cfg.util_floor, p, err);
        if (rc)
            return rc;
        for (size_t i = 0; i < n; i++) {
            struct flowctl_flow_decision *d = &out->flows[out->nflows++];
            strcpy(d->app, fl[i]->app);
            strcpy(d->cls, fl[i]->cls);
            d->slots = applied[i];
            d->target_slots = target[i];
            d->cost = fl[i]->cost;
            d->pred_rt = p[i].rt;
            d->in_app = p[i].in_app;
            d->utility = p[i].utility;
            total += applied[i];
        }
    }
    double lim = round(total);
    if (lim < fc->cfg.min_limit)
        lim = fc->cfg.min_limit;
    if (lim > fc->cfg.max_limit)
        lim = fc->cfg.max_limit;
    out->limit = (unsigned)lim;
    /* The router's scheduler (start-time fair queuing with costs) divides
     * CPU, not slots: a backlogged flow is dispatched at a rate proportional
     * to weight/cost. Our model gives flow f a dispatch rate of slots/T_f, so
     * its weight is the CPU rate that implies, slots·c_f/T_f. */
    double cbar = 0, wsum = 0;
    size_t ncost = 0;
    for (size_t i = 0; i < out->nflows; i++)
        if (out->flows[i].cost > 0) {
            cbar += out->flows[i].cost;
            ncost++;
        }
    cbar = ncost ? cbar / ncost : 1;
    for (size_t i = 0; i < out->nflows; i++) {
        struct flowctl_flow_decision *d = &out->flows[i];
        double T = d->in_app > 0 && isfinite(d->in_app) ? d->in_app : 1;
        d->weight = d->slots / T * (d->cost > 0 ? d->cost : cbar);
        wsum += d->weight;
    }
    for (size_t i = 0; i < out->nflows; i++)
        out->flows[i].weight = wsum > 0 ? out->flows[i].weight / wsum : 1.0 / out->nflows;
    return 0;
}

json_t *flowctl_decision_json(const struct flowctl_decision *d)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    if (!root || !arr) {
        json_decref(root);
        json_decref(arr);
        return NULL;
    }
    json_object_set_new(root, "concurrency_limit", json_integer(d->limit));
    for (size_t i = 0; i < d->nflows; i++) {
        const struct flowctl_flow_decision *f = &d->flows[i];
        json_t *o = json_object();
        long long w = llround(f->weight * 1000);
        if (w < 1)
            w = 1;
        json_object_set_new(o, "app", json_string(f->app));
        json_object_set_new(o, "class", json_string(f->cls));
        json_object_set_new(o, "weight", json_integer(w));
        json_object_set_new(o, "cost", json_real(f->cost));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "flows", arr);
    return root;
}

struct fc_cum {
    double arrivals, completed, resp_n, resp_sum, svc_n, svc_sum;
};

static int fc_cum_of(const json_t *f, struct fc_cum *c, struct wlm_error *err)
{
    static const char *const keys[] = {"arrivals", "completed", "service_count"};
    double *dst[] = {&c->arrivals, &c->completed, &c->svc_n};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(f, keys[i]);
        if (!json_is_number(v) || json_number_value(v) < 0)
            return fc__err(err, WLM_EINVAL, keys[i], "flows[].%s: must be a number >= 0", keys[i]);
        *dst[i] = json_number_value(v);
    }
    json_t *resp = json_object_get(f, "response");
    c->resp_n = json_number_value(json_object_get(resp, "count"));
    c->resp_sum = json_number_value(json_object_get(resp, "sum_ms"));
    c->svc_sum = c->svc_n * json_number_value(json_object_get(f, "service_time_ms_mean"));
    return 0;
}

int flowctl_obs_from_router_stats(const json_t *prev, const json_t *cur, double dt,
                                  struct flowctl_obs *out, size_t max, size_t *n,
                                  struct wlm_error *err)
{
    *n = 0;
    json_t *flows = json_object_get(cur, "flows");
    if (!json_is_array(flows))
        return fc__err(err, WLM_EINVAL, "flows", "router stats have no 'flows' array");
    if (prev && !(dt > 0))
        return fc__err(err, WLM_EINVAL, "dt", "interval must be > 0 s");
    json_t *pflows = prev ? json_object_get(prev, "flows") : NULL;
    size_t i;
    json_t *f;
    json_array_foreach(flows, i, f)
    {
        if (*n == max)
            return fc__err(err, WLM_ELIMIT, "flows", "more than %zu flows", max);
        const char *app = json_string_value(json_object_get(f, "app"));
        const char *cls = json_string_value(json_object_get(f, "class"));
        if (!app || !cls)
            return fc__err(err, WLM_EINVAL, "app", "flows[%zu]: needs 'app' and 'class'", i);
        struct fc_cum c, pc;
        int rc = fc_cum_of(f, &c, err);
        if (rc)
            return rc;
        const json_t *pf = NULL;
        size_t k;
        json_t *q;
        json_array_foreach(pflows, k, q)
        {
            const char *pa = json_string_value(json_object_get(q, "app"));
            const char *pcl = json_string_value(json_object_get(q, "class"));
            if (pa && pcl && !strcmp(pa, app) && !strcmp(pcl, cls))
                pf = q;
        }
        struct flowctl_obs *o = &out[(*n)++];
        *o = (struct flowctl_obs){app, cls, -1, -1, -1, -1, -1, -1, -1};
        if (!pf || fc_cum_of(pf, &pc, NULL) || c.arrivals < pc.arrivals ||
            c.completed < pc.completed)
            continue;
        o->arrival_rate = (c.arrivals - pc.arrivals) / dt;
        o->completion_rate = (c.completed - pc.completed) / dt;
        if (c.resp_n > pc.resp_n)
            o->mean_rt = (c.resp_sum - pc.resp_sum) / (c.resp_n - pc.resp_n) / 1000;
        if (c.svc_n > pc.svc_n)
            o->mean_service = fmax(0, (c.svc_sum - pc.svc_sum) / (c.svc_n - pc.svc_n) / 1000);
    }
    return 0;
}

int flowctl_router_config_apply(json_t *cfg, const struct flowctl_decision *d,
                                struct wlm_error *err)
{
    json_t *apps = json_is_object(cfg) ? json_object_get(cfg, "apps") : NULL;
    if (!json_is_array(apps))
        return fc__err(err, WLM_EINVAL, "apps", "router configuration has no 'apps' array");
    json_object_set_new(cfg, "limit", json_integer(d->limit));
    /* Per-application budgets: the router's limit is global and its fair
     * queuing orders dispatch but cannot take a slot back, so an overloaded
     * application whose requests linger would soon hold every slot. Each
     * instance's max_concurrency gets its application's slots, split by the
     * instances' cpu_mhz. */
    size_t ai;
    json_t *ja;
    json_array_foreach(apps, ai, ja)
    {
        const char *name = json_string_value(json_object_get(ja, "name"));
        double slots = 0;
        int found = 0;
        for (size_t i = 0; name && i < d->nflows; i++)
            if (!strcmp(d->flows[i].app, name)) {
                slots += d->flows[i].slots;
                found = 1;
            }
        json_t *insts = json_object_get(ja, "instances");
        if (!found || !json_is_array(insts) || json_array_size(insts) == 0)
            continue;
        double mhz = 0;
        size_t k;
        json_t *in;
        json_array_foreach(insts, k, in)
        {
            json_t *m = json_object_get(in, "cpu_mhz");
            mhz += json_is_number(m) ? json_number_value(m) : 1000;
        }
        json_array_foreach(insts, k, in)
        {
            json_t *m = json_object_get(in, "cpu_mhz");
            double share = (json_is_number(m) ? json_number_value(m) : 1000) / mhz;
            json_object_set_new(in, "max_concurrency",
                                json_integer((json_int_t)fmax(1, ceil(slots * share))));
        }
    }
    for (size_t i = 0; i < d->nflows; i++) {
        const struct flowctl_flow_decision *f = &d->flows[i];
        size_t k;
        json_t *app;
        json_array_foreach(apps, k, app)
        {
            const char *name = json_string_value(json_object_get(app, "name"));
            if (!name || strcmp(name, f->app))
                continue;
            json_t *classes = json_object_get(app, "classes");
            if (!classes || (json_is_array(classes) && json_array_size(classes) == 0)) {
                if (strcmp(f->cls, "default"))
                    continue;
                classes = json_array();
                json_t *c = json_object();
                json_object_set_new(c, "name", json_string("default"));
                json_array_append_new(classes, c);
                json_object_set_new(app, "classes", classes);
            }
            if (!json_is_array(classes))
                return fc__err(err, WLM_EINVAL, "classes", "app %s: 'classes' is not an array",
                               name);
            size_t m;
            json_t *c;
            json_array_foreach(classes, m, c)
            {
                const char *cn = json_string_value(json_object_get(c, "name"));
                if (!cn || strcmp(cn, f->cls))
                    continue;
                json_object_set_new(c, "weight", json_real(fmax(0.001, f->weight * 1000)));
                if (f->cost > 0)
                    json_object_set_new(c, "cost", json_real(f->cost));
            }
        }
    }
    return 0;
}

/* The models and importances of one application's flows; returns how many. */
static size_t app_models(const struct flowctl *fc, const char *app, struct flowctl_flow_model *m,
                         double *imp)
{
    size_t n = 0;
    double latest = -INFINITY;
    for (size_t i = 0; i < fc->nflows; i++)
        if (app && !strcmp(fc->flows[i].app, app))
            latest = fmax(latest, fc->flows[i].last_obs);
    for (size_t i = 0; i < fc->nflows; i++)
        if (app && !strcmp(fc->flows[i].app, app)) {
            fc_model_of(fc, &fc->flows[i], latest, &m[n]);
            m[n].queue_cap = 0;
            imp[n++] = fc->flows[i].importance;
        }
    return n;
}

int flowctl_placement_curve_of(const struct flowctl *fc, const char *app, double omega_max,
                               size_t npts, struct flowctl_utility *out, struct wlm_error *err)
{
    struct flowctl_flow_model m[FLOWCTL_MAX_FLOWS];
    double imp[FLOWCTL_MAX_FLOWS];
    size_t n = app_models(fc, app, m, imp);
    if (n == 0 || omega_max <= 0) {
        flowctl_indifferent_curve(out);
        return 0;
    }
    if (flowctl_placement_curve(m, imp, n, omega_max, npts, fc->cfg.util_floor, out, err)) {
        flowctl_indifferent_curve(out);
        return 0;
    }
    return 0;
}

int flowctl_utility_of(const struct flowctl *fc, const char *app, double omega_max, size_t npts,
                       struct flowctl_utility *out, struct wlm_error *err)
{
    struct flowctl_flow_model m[FLOWCTL_MAX_FLOWS];
    double imp[FLOWCTL_MAX_FLOWS];
    size_t n = app_models(fc, app, m, imp);
    if (n == 0)
        return fc__err(err, WLM_ENOTFOUND, "app", "no flows for application %s", app ? app : "?");
    return flowctl_app_utility(m, imp, n, omega_max, npts, fc->cfg.util_floor, out, err);
}
