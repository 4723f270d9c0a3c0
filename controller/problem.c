/* problem.c - the placement problem built from the controller's state: a
 * translation only. Curves come from jobsched (jobs) and flowctl (apps),
 * options from the controller's settings; the core decides. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"
#include "power.h"

/* ------------------------------------------------------------ solving */

void ctl_solve_run(uv_work_t *w)
{
    struct solve_work *sw = w->data;
    double t0 = wlm_now_mono();
    ctl_power_plan_run(sw);
    sw->rc = placement_solve(sw->p, &sw->d, &sw->err);
    if (!sw->rc)
        ctl_power_budget_check(sw);
    sw->seconds = wlm_now_mono() - t0;
}

/* A job's placement curve: jobsched's valuation for this controller's
 * placement period and action durations (the same function and settings
 * rule wlm-sim uses). */
void ctl_placement_options(const struct controller *c, struct placement_options *o)
{
    placement_options_default(o);
    o->power_saving = c->cfg.power_saving;
    o->headroom = c->cfg.headroom;
    if (!strcmp(c->cfg.solver, "exact"))
        o->solver = PLACEMENT_SOLVER_EXACT;
    else if (!strcmp(c->cfg.solver, "heuristic"))
        o->solver = PLACEMENT_SOLVER_HEURISTIC;
    o->time_limit_s = 1.0;
}

void ctl_job_curve(const struct controller *c, const struct jobsched_job *job, double now,
                   struct placement_utility *u)
{
    struct placement_options opts, *o = &opts;
    ctl_placement_options(c, o);
    struct jobsched_valuation v;
    jobsched_valuation_init(&v, (double)c->cfg.placement_period_ms / 1000.0,
                            o->cost[PLACEMENT_ACT_START_JOB].duration_s,
                            o->cost[PLACEMENT_ACT_RESTORE_JOB].duration_s);
    struct jobsched_point pts[PLACEMENT_UTILITY_MAX_POINTS];
    size_t np = jobsched_placement_curve(job, now, &v, pts, PLACEMENT_UTILITY_MAX_POINTS);
    u->npoints = np;
    for (size_t k = 0; k < np; k++) {
        u->cpu_mhz[k] = pts[k].x;
        u->util[k] = pts[k].y;
    }
}

static enum placement_job_state job_state_of(enum jobsched_state s)
{
    switch (s) {
    case JOBSCHED_RUNNING:
    case JOBSCHED_STARTING:
    case JOBSCHED_MIGRATING: return PLACEMENT_JOB_RUNNING;
    case JOBSCHED_PAUSED: return PLACEMENT_JOB_PAUSED;
    case JOBSCHED_SUSPENDED: return PLACEMENT_JOB_SUSPENDED;
    default: return PLACEMENT_JOB_QUEUED;
    }
}

static long node_index(char (*names)[64], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name))
            return (long)i;
    return -1;
}

/* ------------------------------------------------------------ VM slots */

/* VM slots a node's agent enforces: its image pool holds at most `max`
 * images, one per job VM. -1 when the agent reports no limit. */
long ctl_node_free_slots(struct controller *c, const struct ctl_node *n)
{
    json_t *pool = n->report ? json_object_get(n->report, "pool") : NULL;
    json_t *mx = pool ? json_object_get(pool, "max") : NULL;
    if (!json_is_integer(mx) || json_integer_value(mx) <= 0)
        return -1;
    long max = (long)json_integer_value(mx);
    long reported = (long)json_integer_value(json_object_get(pool, "used")) -
                    (long)json_integer_value(json_object_get(pool, "parked"));
    long mine = 0;
    size_t nj;
    struct jobsched_job *const *jobs = jobsched_jobs(c->js, &nj);
    for (size_t i = 0; i < nj; i++)
        mine += !jobsched_state_terminal(jobs[i]->state) && !strcmp(jobs[i]->node, n->name);
    long used = reported > mine ? reported : mine;
    return used >= max ? 0 : max - used;
}

struct slot_order {
    const struct jobsched_job *job;
    size_t idx; /* in the placeable jobs */
};

static int cmp_goal(const void *x, const void *y)
{
    const struct jobsched_job *a = ((const struct slot_order *)x)->job;
    const struct jobsched_job *b = ((const struct slot_order *)y)->job;
    if (a->goal_time != b->goal_time)
        return a->goal_time < b->goal_time ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int job_needs_slot(const struct jobsched_job *j)
{
    enum placement_job_state s = job_state_of(j->state);
    return s == PLACEMENT_JOB_QUEUED || s == PLACEMENT_JOB_SUSPENDED || !j->node[0];
}

static int job_fits_node(const struct jobsched_job *j, const struct ctl_node *n)
{
    if (j->memory_mb > n->memory_mb || (long long)j->threads > n->cores)
        return 0;
    for (size_t l = 0; l < j->req.nlabels; l++) {
        const char *v = json_string_value(json_object_get(n->labels, j->req.labels[l].key));
        if (!v || strcmp(v, j->req.labels[l].value))
            return 0;
    }
    return 1;
}

/* Jobs that need a new VM (queued, suspended) may go only to nodes with a
 * free VM slot: those nodes carry the label "wlm-vm-slot=free" and the jobs
 * require it. As many jobs as there are free slots (on nodes they fit),
 * most urgent first, are offered so; the others wait in the problem with no
 * eligible node (slot[j] = -2, "wlm-vm-slot=none"). The placement may still
 * put more starts on one node than it has slots: the executor defers those
 * (ctl_defer_starts), so none is sent to fail. slot[j] = 0: requires a free
 * slot; -1: no slot needed or no limit. node_open[i]: node i gets the label.
 * Returns how many wait. */
static size_t assign_slots(struct controller *c, const struct jobsched_job **jobs, size_t njobs,
                           long *slot, long *free_slots, int *node_open, int *limited)
{
    size_t waiting = 0;
    *limited = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        free_slots[i] = c->nodes[i].state == CONTROLLER_NODE_READY
                            ? ctl_node_free_slots(c, &c->nodes[i])
                            : 0;
        node_open[i] = c->nodes[i].state == CONTROLLER_NODE_READY && free_slots[i] != 0;
        if (c->nodes[i].state == CONTROLLER_NODE_READY && free_slots[i] >= 0)
            *limited = 1;
    }
    for (size_t j = 0; j < njobs; j++)
        slot[j] = -1;
    if (!*limited)
        return 0;
    struct slot_order *order = calloc(njobs ? njobs : 1, sizeof(*order));
    if (!order)
        return 0;
    size_t n = 0;
    for (size_t j = 0; j < njobs; j++)
        if (job_needs_slot(jobs[j]))
            order[n++] = (struct slot_order){jobs[j], j};
    qsort(order, n, sizeof(*order), cmp_goal);
    for (size_t k = 0; k < n; k++) {
        size_t j = order[k].idx;
        long best = -1;
        int unlimited = 0;
        for (size_t i = 0; i < c->nnodes; i++) {
            if (c->nodes[i].state != CONTROLLER_NODE_READY ||
                !job_fits_node(order[k].job, &c->nodes[i]))
                continue;
            if (free_slots[i] < 0)
                unlimited = 1;
            else if (free_slots[i] > 0 && (best < 0 || free_slots[i] > free_slots[best]))
                best = (long)i;
        }
        if (unlimited) {
            slot[j] = 0;
            continue;
        }
        if (best < 0) {
            slot[j] = -2;
            waiting++;
            continue;
        }
        slot[j] = 0;
        free_slots[best]--; /* accounting only: the placement picks the node */
    }
    free(order);
    return waiting;
}

static void add_label(char *buf, size_t size, const char *item)
{
    size_t used = strlen(buf);
    snprintf(buf + used, size - used, "%s%s", used ? "," : "", item);
}

/* Build the problem from the controller's state. Returns NULL when there is
 * nothing to decide (no READY node). */
struct solve_work *ctl_build_problem(struct controller *c, double now)
{
    size_t nready = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        nready += c->nodes[i].state == CONTROLLER_NODE_READY;
    if (!nready)
        return NULL;
    size_t njobs = jobsched_placeable(c->js, NULL, 0);
    const struct jobsched_job **jobs = calloc(njobs ? njobs : 1, sizeof(*jobs));
    struct solve_work *sw = calloc(1, sizeof(*sw));
    struct placement_problem *p = calloc(1, sizeof(*p));
    long *slot = NULL, *free_slots = NULL;
    int *node_open = NULL;
    if (!sw || !p || !jobs)
        goto oom;
    njobs = jobsched_placeable(c->js, jobs, njobs);
    slot = calloc(njobs ? njobs : 1, sizeof(*slot));
    free_slots = calloc(c->nnodes ? c->nnodes : 1, sizeof(*free_slots));
    node_open = calloc(c->nnodes ? c->nnodes : 1, sizeof(*node_open));
    if (!slot || !free_slots || !node_open)
        goto oom;
    int limited = 0;
    size_t no_slot = assign_slots(c, jobs, njobs, slot, free_slots, node_open, &limited);
    c->jobs_without_slot = no_slot;
    sw->c = c;
    sw->p = p;
    ctl_placement_options(c, &p->opts);

    p->nodes = calloc(nready, sizeof(*p->nodes));
    sw->node_names = calloc(nready, sizeof(*sw->node_names));
    size_t nw = c->napps + njobs;
    p->workloads = calloc(nw ? nw : 1, sizeof(*p->workloads));
    sw->refs = calloc(nw ? nw : 1, sizeof(*sw->refs));
    p->current = calloc(c->ninsts + njobs + 1, sizeof(*p->current));
    if (!p->nodes || !sw->node_names || !p->workloads || !sw->refs || !p->current)
        goto oom;
    double max_node_mhz = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct ctl_node *n = &c->nodes[i];
        if (n->state != CONTROLLER_NODE_READY)
            continue;
        struct placement_node *pn = &p->nodes[p->nnodes];
        wlm_strlcpy(pn->name, n->name, sizeof(pn->name));
        wlm_strlcpy(sw->node_names[p->nnodes], n->name, 64);
        pn->cores = (int)n->cores;
        pn->mhz_per_core = n->mhz;
        pn->memory_mb = (double)n->memory_mb;
        pn->powered_on = ctl_node_powered_on(n);
        pn->can_power_off = c->cfg.power_saving;
        ctl_power_placement_node(c, n, &pn->power_idle_w, &pn->power_max_w,
                                 &pn->power_budget_w);
        if (n->cores * n->mhz > max_node_mhz)
            max_node_mhz = (double)n->cores * n->mhz;
        /* Labels as "k=v" items, matching jobs' label requirements. */
        const char *k;
        json_t *v;
        size_t used = 0;
        json_object_foreach(n->labels, k, v)
        {
            int w = snprintf(pn->labels + used, sizeof(pn->labels) - used, "%s%s=%s",
                             used ? "," : "", k, json_string_value(v));
            if (w < 0 || (size_t)w >= sizeof(pn->labels) - used)
                break;
            used += (size_t)w;
        }
        if (limited && node_open[i]) {
            const char *item = "wlm-vm-slot=free";
            if (strlen(pn->labels) + strlen(item) + 2 <= sizeof(pn->labels))
                add_label(pn->labels, sizeof(pn->labels), item);
        }
        p->nnodes++;
    }
    for (size_t a = 0; a < c->napps; a++) {
        const struct ctl_app *app = &c->apps[a];
        /* A deleted app's instances are being stopped; a crash-looping app
         * gets no new instance until its backoff ends. */
        int have = 0;
        for (size_t i = 0; i < c->ninsts; i++)
            have += !strcmp(c->insts[i].app, app->name) && c->insts[i].state != CTL_INST_STOPPING;
        int backoff = app->restart_after > now;
        if (app->deleting || (backoff && !have))
            continue;
        struct placement_workload *w = &p->workloads[p->nworkloads];
        snprintf(w->name, sizeof(w->name), "%s", app->name);
        w->kind = PLACEMENT_APP;
        w->memory_mb = app->memory_mb;
        w->max_cpu_per_instance = app->max_cpu_mhz > 0 ? app->max_cpu_mhz : max_node_mhz;
        w->min_instances = (int)app->min_instances;
        w->max_instances = (int)app->max_instances;
        if (backoff && have < w->max_instances) {
            w->max_instances = have;
            if (w->min_instances > have)
                w->min_instances = have;
        }
        w->cur_node = -1;
        ctl_app_utility(c, app, &w->utility);
        sw->refs[p->nworkloads].is_job = 0;
        wlm_strlcpy(sw->refs[p->nworkloads].app, app->name, 64);
        for (size_t i = 0; i < c->ninsts; i++) {
            const struct ctl_instance *in = &c->insts[i];
            long ni = node_index(sw->node_names, p->nnodes, in->node);
            if (strcmp(in->app, app->name) || ni < 0 || in->state == CTL_INST_STOPPING)
                continue;
            p->current[p->ncurrent++] =
                (struct placement_assign){p->nworkloads, (size_t)ni, in->cpu_mhz};
        }
        p->nworkloads++;
    }
    for (size_t j = 0; j < njobs; j++) {
        const struct jobsched_job *job = jobs[j];
        /* No VM slot free for it, or a capacity failure not long ago: it
         * stays in the problem (its utility while it waits counts) but no
         * node is eligible, so it is not planned to fail. */
        int held = slot[j] == -2 || (job_needs_slot(job) && ctl_job_backing_off(c, job->id, now));
        struct placement_workload *w = &p->workloads[p->nworkloads];
        snprintf(w->name, sizeof(w->name), "job-%lld", (long long)job->id);
        w->kind = PLACEMENT_JOB;
        w->memory_mb = (double)job->memory_mb;
        w->max_cpu_per_instance = jobsched_job_max_mhz(job);
        w->min_instances = 0;
        w->max_instances = 1;
        w->migratable = 1;
        w->whole = 1;
        w->stall_cost = jobsched_stall_cost(job);
        /* An action in flight (start, migration) is not the decision's to
         * undo: the job stays where it goes, with what it was given. */
        w->busy = job->state == JOBSCHED_STARTING || job->state == JOBSCHED_MIGRATING;
        ctl_job_curve(c, job, now, &w->utility);
        for (size_t l = 0, used = 0; l < job->req.nlabels; l++) {
            int n = snprintf(w->requires + used, sizeof(w->requires) - used, "%s%s=%s",
                             used ? "," : "", job->req.labels[l].key, job->req.labels[l].value);
            if (n < 0 || (size_t)n >= sizeof(w->requires) - used)
                break;
            used += (size_t)n;
        }
        if (slot[j] >= 0 || held) {
            const char *item = held ? "wlm-vm-slot=none" : "wlm-vm-slot=free";
            if (strlen(w->requires) + strlen(item) + 2 > sizeof(w->requires)) {
                if (held) {
                    memset(w, 0, sizeof(*w));
                    continue; /* no room for the label: left out instead */
                }
            } else {
                add_label(w->requires, sizeof(w->requires), item);
            }
        }
        w->state = job_state_of(job->state);
        long ni = job->node[0] ? node_index(sw->node_names, p->nnodes, job->node) : -1;
        w->cur_node = (int)ni;
        if ((w->state == PLACEMENT_JOB_RUNNING || w->state == PLACEMENT_JOB_PAUSED) && ni < 0) {
            /* Its node is gone: the job's last save file is its only copy. */
            w->state = PLACEMENT_JOB_SUSPENDED;
        }
        if (ni >= 0 && (w->state == PLACEMENT_JOB_RUNNING || w->state == PLACEMENT_JOB_PAUSED))
            p->current[p->ncurrent++] = (struct placement_assign){
                p->nworkloads, (size_t)ni, w->state == PLACEMENT_JOB_PAUSED ? 0 : job->alloc_mhz};
        sw->refs[p->nworkloads].is_job = 1;
        sw->refs[p->nworkloads].job = job->id;
        p->nworkloads++;
    }
    free(slot);
    free(free_slots);
    free(node_open);
    free(jobs);
    ctl_power_prepare(c, sw);
    return sw;
oom:
    free(slot);
    free(free_slots);
    free(node_open);
    free(jobs);
    if (sw) {
        free(sw->refs);
        free(sw->node_names);
        free(sw);
    }
    placement_problem_free(p);
    return NULL;
}

void ctl_solve_work_free(struct solve_work *sw)
{
    ctl_power_adopt(sw);
    placement_decision_free(sw->d);
    placement_problem_free(sw->p);
    free(sw->refs);
    free(sw->node_names);
    free(sw);
}

json_t *ctl_snapshot_json(const struct solve_work *sw)
{
    char comment[96], ts[40];
    snprintf(comment, sizeof(comment), "taken from wlm-controller at %s",
             wlm_time_format(wlm_now_wall(), ts, sizeof(ts)));
    json_t *o = placement_problem_to_json(sw->p, comment);
    /* Jobs are "job-ID" to the core; people know them by name (wlm plan
     * shows both). */
    json_t *names = json_object();
    for (size_t w = 0; w < sw->p->nworkloads; w++) {
        if (!sw->refs[w].is_job)
            continue;
        const struct jobsched_job *j = jobsched_get(sw->c->js, sw->refs[w].job);
        if (j && j->name && *j->name)
            json_object_set_new(names, sw->p->workloads[w].name, json_string(j->name));
    }
    if (o)
        json_object_set_new(o, "job_names", names);
    else
        json_decref(names);
    return o;
}
