/*
 * web.c - the web workload profiler: per-flow CPU cost per request by
 * recursive least squares over per-instance sampling windows (profilers.h).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profilers.h"

#define K_MAX (PROF_MAX_FLOWS + 1) /* flows + the idle-rate term */

struct pw_instance {
    char name[PROF_NAME_MAX];
    int started;
    double t0, cpu0;
    double count[PROF_MAX_FLOWS];  /* last cumulative count seen */
    double count0[PROF_MAX_FLOWS]; /* count at the start of the window */
};

struct prof_web {
    struct prof_web_config cfg;
    char flows[PROF_MAX_FLOWS][PROF_NAME_MAX];
    size_t nflows;
    struct pw_instance *inst;
    size_t ninst;
    /* Parameters: theta[0..nflows-1] = costs, theta[PROF_MAX_FLOWS] = idle rate.
     * Kept at fixed positions so adding a flow never moves the others. */
    double theta[K_MAX];
    double P[K_MAX][K_MAX];
    double sum_e2, n_eff;
    size_t rows;
};

static int pw_err(struct wlm_error *err, int code, const char *field, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = -code;
        snprintf(err->field, sizeof err->field, "%s", field ? field : "");
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -code;
}

void prof_web_config_default(struct prof_web_config *cfg)
{
    cfg->window_s = 5;
    cfg->forgetting = 0.95;
    cfg->init_var = 1e4;
    cfg->baseline = 1;
}

struct prof_web *prof_web_new(const struct prof_web_config *cfg, struct wlm_error *err)
{
    struct prof_web_config c;
    if (cfg)
        c = *cfg;
    else
        prof_web_config_default(&c);
    if (!(c.window_s > 0)) {
        pw_err(err, WLM_EINVAL, "window_s", "must be > 0");
        return NULL;
    }
    if (!(c.forgetting > 0 && c.forgetting <= 1)) {
        pw_err(err, WLM_EINVAL, "forgetting", "must be in (0, 1]");
        return NULL;
    }
    if (!(c.init_var > 0)) {
        pw_err(err, WLM_EINVAL, "init_var", "must be > 0");
        return NULL;
    }
    struct prof_web *p = calloc(1, sizeof *p);
    if (!p) {
        pw_err(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    p->inst = calloc(PROF_MAX_INSTANCES, sizeof *p->inst);
    if (!p->inst) {
        free(p);
        pw_err(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    p->cfg = c;
    if (c.baseline)
        p->P[PROF_MAX_FLOWS][PROF_MAX_FLOWS] = c.init_var;
    return p;
}

void prof_web_free(struct prof_web *p)
{
    if (!p)
        return;
    free(p->inst);
    free(p);
}

static long pw_flow(struct prof_web *p, const char *name, int create)
{
    for (size_t i = 0; i < p->nflows; i++)
        if (!strcmp(p->flows[i], name))
            return (long)i;
    if (!create || p->nflows == PROF_MAX_FLOWS)
        return -1;
    size_t i = p->nflows++;
    strcpy(p->flows[i], name);
    p->theta[i] = 0;
    p->P[i][i] = p->cfg.init_var;
    return (long)i;
}

/* Indices of the active parameters (flows seen, then the idle rate). */
static size_t pw_active(const struct prof_web *p, size_t *idx)
{
    size_t k = 0;
    for (size_t i = 0; i < p->nflows; i++)
        idx[k++] = i;
    if (p->cfg.baseline)
        idx[k++] = PROF_MAX_FLOWS;
    return k;
}

/* One RLS step with row x (indexed like theta) and observation y. */
static void pw_update(struct prof_web *p, const double *x, double y)
{
    size_t idx[K_MAX];
    size_t k = pw_active(p, idx);
    double beta = p->cfg.forgetting;
    double Px[K_MAX], denom = beta, pred = 0;
    for (size_t a = 0; a < k; a++) {
        double s = 0;
        for (size_t b = 0; b < k; b++)
            s += p->P[idx[a]][idx[b]] * x[idx[b]];
        Px[a] = s;
        denom += x[idx[a]] * s;
        pred += x[idx[a]] * p->theta[idx[a]];
    }
    double e = y - pred;
    for (size_t a = 0; a < k; a++)
        p->theta[idx[a]] += Px[a] / denom * e;
    for (size_t a = 0; a < k; a++)
        for (size_t b = 0; b < k; b++)
            p->P[idx[a]][idx[b]] = (p->P[idx[a]][idx[b]] - Px[a] * Px[b] / denom) / beta;
    /* Forgetting inflates the variance of directions no row excites (a flow
     * that stopped); cap it at the prior so a later row is not overweighted
     * and nothing overflows. Scaling a row and column keeps P symmetric
     * positive definite. */
    for (size_t a = 0; a < k; a++) {
        double v = p->P[idx[a]][idx[a]];
        if (v > p->cfg.init_var) {
            double s = sqrt(p->cfg.init_var / v);
            for (size_t b = 0; b < k; b++) {
                p->P[idx[a]][idx[b]] *= s;
                p->P[idx[b]][idx[a]] *= s;
            }
        }
    }
    /* Residual variance from a-posteriori errors, with the same forgetting. */
    double post = y;
    for (size_t a = 0; a < k; a++)
        post -= x[idx[a]] * p->theta[idx[a]];
    p->sum_e2 = beta * p->sum_e2 + post * post;
    p->n_eff = beta * p->n_eff + 1;
    p->rows++;
}

int prof_web_sample(struct prof_web *p, const char *instance, double now, double cpu_total,
                    const struct prof_flow_count *flows, size_t n, struct wlm_error *err)
{
    if (!instance || !*instance || strlen(instance) >= PROF_NAME_MAX)
        return pw_err(err, WLM_EINVAL, "instance", "must be 1..%d characters", PROF_NAME_MAX - 1);
    if (!isfinite(now))
        return pw_err(err, WLM_EINVAL, "now", "must be finite");
    if (!isfinite(cpu_total) || cpu_total < 0)
        return pw_err(err, WLM_EINVAL, "cpu_total", "must be a finite number >= 0");
    long fi[PROF_MAX_FLOWS];
    if (n > PROF_MAX_FLOWS)
        return pw_err(err, WLM_ELIMIT, "flows", "at most %d flows", PROF_MAX_FLOWS);
    for (size_t i = 0; i < n; i++) {
        if (!flows[i].flow || !*flows[i].flow || strlen(flows[i].flow) >= PROF_NAME_MAX)
            return pw_err(err, WLM_EINVAL, "flow", "flow %zu: name must be 1..%d characters", i,
                          PROF_NAME_MAX - 1);
        if (!isfinite(flows[i].completions) || flows[i].completions < 0)
            return pw_err(err, WLM_EINVAL, "completions",
                          "flow %s: completions must be a finite number >= 0", flows[i].flow);
    }
    struct pw_instance *in = NULL;
    for (size_t i = 0; i < p->ninst; i++)
        if (!strcmp(p->inst[i].name, instance))
            in = &p->inst[i];
    if (!in) {
        if (p->ninst == PROF_MAX_INSTANCES)
            return pw_err(err, WLM_ELIMIT, "instance", "at most %d instances", PROF_MAX_INSTANCES);
        in = &p->inst[p->ninst++];
        memset(in, 0, sizeof *in);
        strcpy(in->name, instance);
    }
    for (size_t i = 0; i < n; i++) {
        fi[i] = pw_flow(p, flows[i].flow, 1);
        if (fi[i] < 0)
            return pw_err(err, WLM_ELIMIT, "flows", "at most %d flows", PROF_MAX_FLOWS);
    }
    int restart = !in->started || now < in->t0 || cpu_total < in->cpu0;
    for (size_t i = 0; i < n && !restart; i++)
        if (flows[i].completions < in->count0[fi[i]])
            restart = 1;
    for (size_t i = 0; i < n; i++)
        in->count[fi[i]] = flows[i].completions;
    if (restart) {
        in->started = 1;
        in->t0 = now;
        in->cpu0 = cpu_total;
        memcpy(in->count0, in->count, sizeof in->count);
        return 0;
    }
    if (now - in->t0 < p->cfg.window_s)
        return 0;
    double x[K_MAX] = {0};
    for (size_t f = 0; f < p->nflows; f++)
        x[f] = in->count[f] - in->count0[f];
    if (p->cfg.baseline)
        x[PROF_MAX_FLOWS] = now - in->t0;
    pw_update(p, x, cpu_total - in->cpu0);
    in->t0 = now;
    in->cpu0 = cpu_total;
    memcpy(in->count0, in->count, sizeof in->count);
    return 0;
}

int prof_web_cost(const struct prof_web *p, const char *flow, double *cost, double *stderr_out)
{
    long i = flow ? pw_flow((struct prof_web *)p, flow, 0) : -1;
    if (i < 0)
        return -WLM_ENOTFOUND;
    if (cost)
        *cost = fmax(0, p->theta[i]);
    if (stderr_out) {
        size_t idx[K_MAX];
        double k = (double)pw_active(p, idx);
        if (p->n_eff <= k + 0.5)
            *stderr_out = INFINITY;
        else
            *stderr_out = sqrt(fmax(0, p->P[i][i]) * p->sum_e2 / (p->n_eff - k));
    }
    return 0;
}

double prof_web_baseline(const struct prof_web *p)
{
    return p->cfg.baseline ? fmax(0, p->theta[PROF_MAX_FLOWS]) : 0;
}

size_t prof_web_rows(const struct prof_web *p)
{
    return p->rows;
}
