/*
 * snapshot.c - snapshot JSON -> struct placement_problem, decision -> JSON.
 *
 * The schema is documented in docs/snapshot.md. Every error names the field
 * the way a person finds it in the file: "nodes[2].memory_mb: must be > 0".
 * Unknown members are errors too: a misspelt option silently ignored is a
 * what-if answer to a different question.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int fail(struct wlm_error *err, const char *field, const char *fmt, ...) WLM_PRINTF(3, 4);

static int fail(struct wlm_error *err, const char *field, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return wlm_error_setf(err, WLM_EINVAL, field, "%s: %s", field, msg);
}

static int check_keys(const json_t *o, const char *path, const char *const *allowed,
                      struct wlm_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) {
            char f[160];
            snprintf(f, sizeof(f), "%s%s%s", path, path[0] ? "." : "", key);
            return fail(err, f, "unknown field");
        }
    }
    return 0;
}

/* Number member: missing keeps *out (or fails when required). `gt0` demands
 * > 0, `ge0` >= 0. */
enum { ANY, GE0, GT0 };

static int get_num(const json_t *o, const char *path, const char *key, int required, int range,
                   double *out, struct wlm_error *err)
{
    char f[160];
    snprintf(f, sizeof(f), "%s%s%s", path, path[0] ? "." : "", key);
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            return fail(err, f, "missing");
        return 0;
    }
    if (!json_is_number(v))
        return fail(err, f, "expected a number");
    double x = json_number_value(v);
    if (!isfinite(x))
        return fail(err, f, "must be finite");
    if (range == GT0 && !(x > 0))
        return fail(err, f, "must be > 0");
    if (range == GE0 && !(x >= 0))
        return fail(err, f, "must be >= 0");
    *out = x;
    return 0;
}

static int get_int(const json_t *o, const char *path, const char *key, int required, int range,
                   int *out, struct wlm_error *err)
{
    char f[160];
    snprintf(f, sizeof(f), "%s%s%s", path, path[0] ? "." : "", key);
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            return fail(err, f, "missing");
        return 0;
    }
    if (!json_is_integer(v))
        return fail(err, f, "expected an integer");
    json_int_t x = json_integer_value(v);
    if (range == GT0 && x <= 0)
        return fail(err, f, "must be > 0");
    if (range == GE0 && x < 0)
        return fail(err, f, "must be >= 0");
    if (x > 1000000)
        return fail(err, f, "too large");
    *out = (int)x;
    return 0;
}

static int get_bool(const json_t *o, const char *path, const char *key, int *out,
                    struct wlm_error *err)
{
    char f[160];
    snprintf(f, sizeof(f), "%s%s%s", path, path[0] ? "." : "", key);
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return fail(err, f, "expected true or false");
    *out = json_is_true(v);
    return 0;
}

static int get_name(const json_t *o, const char *path, const char *key, int required, char *out,
                    size_t size, struct wlm_error *err)
{
    char f[160];
    snprintf(f, sizeof(f), "%s%s%s", path, path[0] ? "." : "", key);
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            return fail(err, f, "missing");
        return 0;
    }
    if (!json_is_string(v))
        return fail(err, f, "expected a string");
    const char *s = json_string_value(v);
    if (!s[0])
        return fail(err, f, "must not be empty");
    if (strlen(s) >= size)
        return fail(err, f, "longer than %zu characters", size - 1);
    wlm_strlcpy(out, s, size);
    return 0;
}

/* Labels: an array of strings, stored comma-separated. */
static int get_labels(const json_t *o, const char *path, const char *key, char *out, size_t size,
                      struct wlm_error *err)
{
    char f[160];
    snprintf(f, sizeof(f), "%s.%s", path, key);
    json_t *v = json_object_get(o, key);
    out[0] = 0;
    if (!v)
        return 0;
    if (!json_is_array(v))
        return fail(err, f, "expected an array of strings");
    size_t i;
    json_t *e;
    size_t len = 0;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || !json_string_value(e)[0] || strchr(json_string_value(e), ','))
            return fail(err, f, "[%zu]: expected a non-empty label without commas", i);
        size_t l = strlen(json_string_value(e));
        if (len + l + 2 > size)
            return fail(err, f, "labels too long (max %zu characters)", size - 1);
        if (len)
            out[len++] = ',';
        memcpy(out + len, json_string_value(e), l + 1);
        len += l;
    }
    return 0;
}

static int get_utility(const json_t *o, const char *path, struct placement_utility *u,
                       struct wlm_error *err)
{
    char f[160];
    snprintf(f, sizeof(f), "%s.utility", path);
    json_t *v = json_object_get(o, "utility");
    if (!v)
        return fail(err, f, "missing");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return fail(err, f, "expected an array of [cpu_mhz, utility] points");
    if (json_array_size(v) > PLACEMENT_UTILITY_MAX_POINTS)
        return fail(err, f, "at most %d points", PLACEMENT_UTILITY_MAX_POINTS);
    size_t i;
    json_t *e;
    memset(u, 0, sizeof(*u));
    json_array_foreach(v, i, e)
    {
        char g[200];
        snprintf(g, sizeof(g), "%s[%zu]", f, i);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_number(json_array_get(e, 0)) ||
            !json_is_number(json_array_get(e, 1)))
            return fail(err, g, "expected [cpu_mhz, utility]");
        u->cpu_mhz[i] = json_number_value(json_array_get(e, 0));
        u->util[i] = json_number_value(json_array_get(e, 1));
    }
    u->npoints = json_array_size(v);
    return placement_utility_check(u, f, err);
}

/* Names are looked up through a jansson object used as a hash table, so
 * snapshots of 10,000 nodes and 30,000 workloads load in linear time. */
static int find_node(json_t *index, const char *name)
{
    json_t *v = json_object_get(index, name);
    return v ? (int)json_integer_value(v) : -1;
}

static const char *const action_keys[] = {"duration_s", "cpu_mhz", "utility", NULL};

static int parse_options(const json_t *o, struct placement_options *opt, struct wlm_error *err)
{
    static const char *const keys[] = {"solver",        "exact_max_pairs", "time_limit_s",
                                       "mip_gap",       "hysteresis",      "goal_utility",
                                       "headroom",      "power_off_margin", "power_saving",    "balance_band",
                                       "max_balance_moves", "costs",      "no_moves",        "work_limit",
                                       NULL};
    if (!json_is_object(o))
        return fail(err, "options", "expected an object");
    int rc;
    if ((rc = check_keys(o, "options", keys, err)))
        return rc;
    json_t *s = json_object_get(o, "solver");
    if (s) {
        const char *v = json_is_string(s) ? json_string_value(s) : "";
        if (!strcmp(v, "auto"))
            opt->solver = PLACEMENT_SOLVER_AUTO;
        else if (!strcmp(v, "exact"))
            opt->solver = PLACEMENT_SOLVER_EXACT;
        else if (!strcmp(v, "heuristic"))
            opt->solver = PLACEMENT_SOLVER_HEURISTIC;
        else
            return fail(err, "options.solver", "expected \"auto\", \"exact\" or \"heuristic\"");
    }
    int pairs = (int)opt->exact_max_pairs;
    if ((rc = get_int(o, "options", "exact_max_pairs", 0, GE0, &pairs, err)) ||
        (rc = get_num(o, "options", "time_limit_s", 0, GT0, &opt->time_limit_s, err)) ||
        (rc = get_num(o, "options", "mip_gap", 0, GE0, &opt->mip_gap, err)) ||
        (rc = get_num(o, "options", "hysteresis", 0, GE0, &opt->hysteresis, err)) ||
        (rc = get_num(o, "options", "goal_utility", 0, ANY, &opt->goal_utility, err)) ||
        (rc = get_num(o, "options", "headroom", 0, GE0, &opt->headroom, err)) ||
        (rc = get_num(o, "options", "power_off_margin", 0, GE0, &opt->power_off_margin, err)) ||
        (rc = get_bool(o, "options", "power_saving", &opt->power_saving, err)) ||
        (rc = get_num(o, "options", "balance_band", 0, GE0, &opt->balance_band, err)) ||
        (rc = get_int(o, "options", "max_balance_moves", 0, GE0, &opt->max_balance_moves, err)) ||
        (rc = get_bool(o, "options", "no_moves", &opt->no_moves, err)))
        return rc;
    int work = (int)opt->work_limit;
    if ((rc = get_int(o, "options", "work_limit", 0, GE0, &work, err)))
        return rc;
    opt->work_limit = work;
    opt->exact_max_pairs = (size_t)pairs;
    if (opt->headroom >= 1)
        return fail(err, "options.headroom", "must be < 1");
    if (opt->headroom + opt->power_off_margin >= 1)
        return fail(err, "options.power_off_margin", "headroom + power_off_margin must be < 1");
    json_t *costs = json_object_get(o, "costs");
    if (costs) {
        if (!json_is_object(costs))
            return fail(err, "options.costs", "expected an object");
        const char *key;
        json_t *v;
        json_object_foreach(costs, key, v)
        {
            int k;
            for (k = 0; k < PLACEMENT_ACT__COUNT && strcmp(placement_action_name(k), key); k++)
                ;
            char path[96];
            snprintf(path, sizeof(path), "options.costs.%s", key);
            if (k == PLACEMENT_ACT__COUNT)
                return fail(err, path, "unknown action");
            if (!json_is_object(v))
                return fail(err, path, "expected an object");
            if ((rc = check_keys(v, path, action_keys, err)) ||
                (rc = get_num(v, path, "duration_s", 0, GE0, &opt->cost[k].duration_s, err)) ||
                (rc = get_num(v, path, "cpu_mhz", 0, GE0, &opt->cost[k].cpu_mhz, err)) ||
                (rc = get_num(v, path, "utility", 0, GE0, &opt->cost[k].utility, err)))
                return rc;
        }
    }
    return 0;
}

static int push_current(struct placement_problem *p, size_t *cap, size_t w, size_t n, double cpu)
{
    if (p->ncurrent == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct placement_assign *na = realloc(p->current, nc * sizeof(*na));
        if (!na)
            return -ENOMEM;
        p->current = na;
        *cap = nc;
    }
    p->current[p->ncurrent++] = (struct placement_assign){w, n, cpu};
    return 0;
}

int placement_snapshot_parse(const json_t *root, struct placement_problem **out,
                             struct wlm_error *err)
{
    /* "decision": what the controller decided on this snapshot (GET
     * /v1/placement/snapshot?of=last), kept for comparison and ignored. */
    static const char *const top_keys[] = {"options", "nodes",    "apps", "jobs",
                                           "comment", "decision", NULL};
    static const char *const node_keys[] = {"name",         "cores",       "mhz_per_core",
                                            "memory_mb",    "powered_on",  "can_power_off",
                                            "power_idle_w", "power_max_w", "power_budget_w",
                                            "labels",       NULL};
    static const char *const app_keys[] = {"name",          "memory_mb", "max_cpu_mhz",
                                           "min_instances", "max_instances", "utility",
                                           "requires",      "instances", NULL};
    static const char *const inst_keys[] = {"node", "cpu_mhz", NULL};
    static const char *const job_keys[] = {"name",     "memory_mb",  "max_cpu_mhz", "utility",
                                           "requires", "migratable", "state",       "node",
                                           "cpu_mhz",  "whole",      "stall_cost",  "busy",
                                           NULL};
    *out = NULL;
    if (!json_is_object(root))
        return fail(err, "snapshot", "expected a JSON object");
    int rc;
    if ((rc = check_keys(root, "", top_keys, err)))
        return rc;
    struct placement_problem *p = calloc(1, sizeof(*p));
    json_t *node_index = json_object(), *wl_index = json_object();
    if (!p || !node_index || !wl_index) {
        free(p);
        json_decref(node_index);
        json_decref(wl_index);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    placement_options_default(&p->opts);
    size_t curcap = 0;
    json_t *opts = json_object_get(root, "options");
    if (opts && (rc = parse_options(opts, &p->opts, err)))
        goto fail;

    json_t *nodes = json_object_get(root, "nodes");
    if (!nodes || !json_is_array(nodes)) {
        rc = fail(err, "nodes", nodes ? "expected an array" : "missing");
        goto fail;
    }
    p->nnodes = json_array_size(nodes);
    p->nodes = calloc(p->nnodes ? p->nnodes : 1, sizeof(*p->nodes));
    json_t *apps = json_object_get(root, "apps"), *jobs = json_object_get(root, "jobs");
    if ((apps && !json_is_array(apps)) || (jobs && !json_is_array(jobs))) {
        rc = fail(err, apps && !json_is_array(apps) ? "apps" : "jobs", "expected an array");
        goto fail;
    }
    size_t napps = apps ? json_array_size(apps) : 0, njobs = jobs ? json_array_size(jobs) : 0;
    p->nworkloads = napps + njobs;
    p->workloads = calloc(p->nworkloads ? p->nworkloads : 1, sizeof(*p->workloads));
    if (!p->nodes || !p->workloads) {
        rc = wlm_error_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    size_t i;
    json_t *e;
    char path[64];
    json_array_foreach(nodes, i, e)
    {
        struct placement_node *n = &p->nodes[i];
        snprintf(path, sizeof(path), "nodes[%zu]", i);
        if (!json_is_object(e)) {
            rc = fail(err, path, "expected an object");
            goto fail;
        }
        n->powered_on = 1;
        n->can_power_off = 1;
        if ((rc = check_keys(e, path, node_keys, err)) ||
            (rc = get_name(e, path, "name", 1, n->name, sizeof(n->name), err)) ||
            (rc = get_int(e, path, "cores", 1, GT0, &n->cores, err)) ||
            (rc = get_num(e, path, "mhz_per_core", 1, GT0, &n->mhz_per_core, err)) ||
            (rc = get_num(e, path, "memory_mb", 1, GT0, &n->memory_mb, err)) ||
            (rc = get_bool(e, path, "powered_on", &n->powered_on, err)) ||
            (rc = get_bool(e, path, "can_power_off", &n->can_power_off, err)) ||
            (rc = get_num(e, path, "power_idle_w", 0, GE0, &n->power_idle_w, err)) ||
            (rc = get_num(e, path, "power_max_w", 0, GE0, &n->power_max_w, err)) ||
            (rc = get_num(e, path, "power_budget_w", 0, GE0, &n->power_budget_w, err)) ||
            (rc = get_labels(e, path, "labels", n->labels, sizeof(n->labels), err)))
            goto fail;
        if (n->power_max_w > 0 && n->power_max_w < n->power_idle_w) {
            char f[96];
            snprintf(f, sizeof(f), "%s.power_max_w", path);
            rc = fail(err, f, "must be >= power_idle_w");
            goto fail;
        }
        if (json_object_get(node_index, n->name)) {
            char f[96];
            snprintf(f, sizeof(f), "%s.name", path);
            rc = fail(err, f, "duplicate node name '%s'", n->name);
            goto fail;
        }
        json_object_set_new(node_index, n->name, json_integer((json_int_t)i));
    }
    for (int kind = 0; kind < 2; kind++) {
        json_t *arr = kind == 0 ? apps : jobs;
        if (!arr)
            continue;
        json_array_foreach(arr, i, e)
        {
            size_t wi = kind == 0 ? i : napps + i;
            struct placement_workload *w = &p->workloads[wi];
            snprintf(path, sizeof(path), "%s[%zu]", kind == 0 ? "apps" : "jobs", i);
            if (!json_is_object(e)) {
                rc = fail(err, path, "expected an object");
                goto fail;
            }
            w->kind = kind == 0 ? PLACEMENT_APP : PLACEMENT_JOB;
            w->cur_node = -1;
            w->min_instances = kind == 0 ? 1 : 0;
            w->max_instances = 1;
            w->migratable = 1;
            if ((rc = check_keys(e, path, kind == 0 ? app_keys : job_keys, err)) ||
                (rc = get_name(e, path, "name", 1, w->name, sizeof(w->name), err)) ||
                (rc = get_num(e, path, "memory_mb", 1, GT0, &w->memory_mb, err)) ||
                (rc = get_num(e, path, "max_cpu_mhz", 1, GT0, &w->max_cpu_per_instance, err)) ||
                (rc = get_utility(e, path, &w->utility, err)) ||
                (rc = get_labels(e, path, "requires", w->requires, sizeof(w->requires), err)))
                goto fail;
            if (json_object_get(wl_index, w->name)) {
                char f[96];
                snprintf(f, sizeof(f), "%s.name", path);
                rc = fail(err, f, "duplicate workload name '%s'", w->name);
                goto fail;
            }
            json_object_set_new(wl_index, w->name, json_integer((json_int_t)wi));
            if (kind == 0) {
                w->max_instances = 0;
                if ((rc = get_int(e, path, "min_instances", 0, GE0, &w->min_instances, err)) ||
                    (rc = get_int(e, path, "max_instances", 0, GT0, &w->max_instances, err)))
                    goto fail;
                if (!json_object_get(e, "max_instances"))
                    w->max_instances = w->min_instances > 1 ? w->min_instances : 1;
                if (w->min_instances > w->max_instances) {
                    char f[96];
                    snprintf(f, sizeof(f), "%s.min_instances", path);
                    rc = fail(err, f, "must be <= max_instances (%d)", w->max_instances);
                    goto fail;
                }
                json_t *inst = json_object_get(e, "instances");
                if (inst && !json_is_array(inst)) {
                    char f[96];
                    snprintf(f, sizeof(f), "%s.instances", path);
                    rc = fail(err, f, "expected an array");
                    goto fail;
                }
                size_t k, first_cur = p->ncurrent; /* this app's instances follow */
                json_t *ie;
                json_array_foreach(inst, k, ie)
                {
                    char ip[96], nodename[PLACEMENT_NAME_MAX] = "";
                    double cpu = 0;
                    snprintf(ip, sizeof(ip), "%s.instances[%zu]", path, k);
                    if (!json_is_object(ie)) {
                        rc = fail(err, ip, "expected an object");
                        goto fail;
                    }
                    if ((rc = check_keys(ie, ip, inst_keys, err)) ||
                        (rc = get_name(ie, ip, "node", 1, nodename, sizeof(nodename), err)) ||
                        (rc = get_num(ie, ip, "cpu_mhz", 0, GE0, &cpu, err)))
                        goto fail;
                    int n = find_node(node_index, nodename);
                    char f[128];
                    snprintf(f, sizeof(f), "%s.node", ip);
                    if (n < 0) {
                        rc = fail(err, f, "unknown node '%s'", nodename);
                        goto fail;
                    }
                    if (!p->nodes[n].powered_on) {
                        rc = fail(err, f, "node '%s' is powered off", nodename);
                        goto fail;
                    }
                    for (size_t q = first_cur; q < p->ncurrent; q++) {
                        if (p->current[q].workload == wi && p->current[q].node == (size_t)n) {
                            rc = fail(err, f, "second instance on node '%s'", nodename);
                            goto fail;
                        }
                    }
                    if (push_current(p, &curcap, wi, (size_t)n, cpu)) {
                        rc = wlm_error_set(err, ENOMEM, "out of memory");
                        goto fail;
                    }
                }
                continue;
            }
            /* job */
            if ((rc = get_bool(e, path, "migratable", &w->migratable, err)) ||
                (rc = get_bool(e, path, "whole", &w->whole, err)) ||
                (rc = get_bool(e, path, "busy", &w->busy, err)) ||
                (rc = get_num(e, path, "stall_cost", 0, GE0, &w->stall_cost, err)))
                goto fail;
            json_t *st = json_object_get(e, "state");
            const char *sv = st && json_is_string(st) ? json_string_value(st) : NULL;
            char f[96];
            snprintf(f, sizeof(f), "%s.state", path);
            if (!st || !strcmp(sv ? sv : "", "queued"))
                w->state = PLACEMENT_JOB_QUEUED;
            else if (sv && !strcmp(sv, "running"))
                w->state = PLACEMENT_JOB_RUNNING;
            else if (sv && !strcmp(sv, "paused"))
                w->state = PLACEMENT_JOB_PAUSED;
            else if (sv && !strcmp(sv, "suspended"))
                w->state = PLACEMENT_JOB_SUSPENDED;
            else {
                rc = fail(err, f, "expected \"queued\", \"running\", \"paused\" or \"suspended\"");
                goto fail;
            }
            char nodename[PLACEMENT_NAME_MAX] = "";
            double cpu = 0;
            int on_node = w->state == PLACEMENT_JOB_RUNNING || w->state == PLACEMENT_JOB_PAUSED;
            if ((rc = get_name(e, path, "node", on_node, nodename, sizeof(nodename), err)) ||
                (rc = get_num(e, path, "cpu_mhz", 0, GE0, &cpu, err)))
                goto fail;
            snprintf(f, sizeof(f), "%s.node", path);
            if (!on_node && nodename[0]) {
                rc = fail(err, f, "only a running or paused job has a node");
                goto fail;
            }
            if (on_node) {
                int n = find_node(node_index, nodename);
                if (n < 0) {
                    rc = fail(err, f, "unknown node '%s'", nodename);
                    goto fail;
                }
                if (!p->nodes[n].powered_on) {
                    rc = fail(err, f, "node '%s' is powered off", nodename);
                    goto fail;
                }
                w->cur_node = n;
                if (push_current(p, &curcap, wi, (size_t)n, cpu)) {
                    rc = wlm_error_set(err, ENOMEM, "out of memory");
                    goto fail;
                }
            }
        }
    }
    if ((rc = placement_problem_check(p, err)))
        goto fail;
    json_decref(node_index);
    json_decref(wl_index);
    *out = p;
    return 0;
fail:
    json_decref(node_index);
    json_decref(wl_index);
    placement_problem_free(p);
    return rc ? rc : -WLM_EINVAL;
}

/* ---------------------------------------------------------------- output */

json_t *placement_decision_to_json(const struct placement_problem *p,
                                   const struct placement_decision *d)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "status", json_string(d->status == PLACEMENT_OK ? "ok" : "partial"));
    json_object_set_new(o, "solver", json_string(placement_solver_name(d->solver)));
    json_object_set_new(o, "exact_optimal", json_boolean(d->exact_optimal));
    json_object_set_new(o, "kept_current", json_boolean(d->kept_current));
    json_object_set_new(o, "consolidated", json_boolean(d->consolidated));
    json_object_set_new(o, "min_utility", json_real(d->min_utility));
    json_object_set_new(o, "min_utility_placeable", json_real(d->min_utility_placeable));
    json_object_set_new(o, "upper_bound", json_real(d->upper_bound));
    json_object_set_new(o, "gap", json_real(d->gap));
    json_object_set_new(o, "bound_method", json_string(d->bound_method[0] ? d->bound_method : "fluid"));
    json_object_set_new(o, "heuristic_min_utility", json_real(d->heuristic_min_utility));
    json_object_set_new(o, "current_min_utility", json_real(d->current_min_utility));
    json_object_set_new(o, "power_w", json_real(d->power_w));
    json_object_set_new(o, "plan_duration_s", json_real(d->plan_duration_s));
    json_object_set_new(o, "note", json_string(d->note));

    json_t *pl = json_array();
    for (size_t i = 0; i < d->nassign; i++) {
        const struct placement_assign *a = &d->assign[i];
        json_array_append_new(pl, json_pack("{s:s, s:s, s:s, s:f}", "workload",
                                            p->workloads[a->workload].name, "kind",
                                            p->workloads[a->workload].kind == PLACEMENT_APP ? "app"
                                                                                            : "job",
                                            "node", p->nodes[a->node].name, "cpu_mhz", a->cpu_mhz));
    }
    json_object_set_new(o, "placement", pl);

    size_t W = p->nworkloads ? p->nworkloads : 1, N = p->nnodes ? p->nnodes : 1;
    int *inst = calloc(W, sizeof(int));
    char *unpl = calloc(W, 1);
    double *ncpu = calloc(N, sizeof(double)), *nmem = calloc(N, sizeof(double));
    if (!inst || !unpl || !ncpu || !nmem) {
        free(inst);
        free(unpl);
        free(ncpu);
        free(nmem);
        json_decref(o);
        return NULL;
    }
    for (size_t i = 0; i < d->nassign; i++) {
        inst[d->assign[i].workload]++;
        ncpu[d->assign[i].node] += d->assign[i].cpu_mhz;
        nmem[d->assign[i].node] += p->workloads[d->assign[i].workload].memory_mb;
    }
    for (size_t k = 0; k < d->nunplaced; k++)
        unpl[d->unplaced[k]] = 1;
    json_t *ws = json_array(), *un = json_array();
    for (size_t a = 0; a < p->nworkloads; a++) {
        json_array_append_new(
            ws, json_pack("{s:s, s:s, s:f, s:f, s:i, s:b}", "name", p->workloads[a].name, "kind",
                          p->workloads[a].kind == PLACEMENT_APP ? "app" : "job", "utility",
                          d->utility[a], "cpu_mhz", d->cpu_mhz[a], "instances", inst[a], "unplaced",
                          unpl[a]));
        if (unpl[a])
            json_array_append_new(un, json_string(p->workloads[a].name));
    }
    json_object_set_new(o, "workloads", ws);
    json_object_set_new(o, "unplaced", un);

    json_t *ns = json_array(), *off = json_array(), *on = json_array();
    for (size_t n = 0; n < p->nnodes; n++) {
        const struct placement_node *nd = &p->nodes[n];
        json_array_append_new(ns, json_pack("{s:s, s:b, s:b, s:f, s:f, s:f, s:f}", "name", nd->name,
                                            "on", d->node_on[n], "was_on", nd->powered_on,
                                            "cpu_used_mhz", ncpu[n], "cpu_mhz",
                                            nd->cores * nd->mhz_per_core, "memory_used_mb",
                                            nmem[n], "memory_mb", nd->memory_mb));
        if (nd->powered_on && !d->node_on[n])
            json_array_append_new(off, json_string(nd->name));
        if (!nd->powered_on && d->node_on[n])
            json_array_append_new(on, json_string(nd->name));
    }
    free(inst);
    free(unpl);
    free(ncpu);
    free(nmem);
    json_object_set_new(o, "nodes", ns);
    json_object_set_new(o, "powered_off", off);
    json_object_set_new(o, "powered_on", on);

    json_t *acts = json_array();
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *a = &d->actions[i];
        json_t *x = json_pack("{s:I, s:s, s:s, s:f, s:f, s:f}", "id", (json_int_t)i, "action",
                              placement_action_name(a->kind), "node", p->nodes[a->node].name,
                              "cpu_mhz", a->cpu_mhz, "memory_mb", a->memory_mb, "duration_s",
                              a->duration_s);
        if (a->workload < p->nworkloads)
            json_object_set_new(x, "workload", json_string(p->workloads[a->workload].name));
        if (a->from_node >= 0)
            json_object_set_new(x, "from", json_string(p->nodes[a->from_node].name));
        json_t *deps = json_array();
        for (size_t k = 0; k < a->ndeps; k++)
            json_array_append_new(deps, json_integer((json_int_t)a->deps[k]));
        json_object_set_new(x, "deps", deps);
        json_array_append_new(acts, x);
    }
    json_object_set_new(o, "actions", acts);
    return o;
}
