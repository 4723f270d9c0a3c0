/*
 * jobsched.c - the scheduler: an in-memory job table kept equal to the
 * database.
 *
 * Invariant: after every public call returns, memory and disk agree. Each
 * mutation runs inside one transaction; its memory changes are applied as
 * the SQL succeeds, and when anything fails the transaction is rolled back
 * and the whole table reloaded from disk (rare, and simpler than undoing
 * each change by hand).
 *
 * This file holds the table itself (lifecycle, lookups, the JSON view);
 * persist.c loads it and runs transactions, submit.c admits jobs, state.c
 * moves them through their states as dependencies and nodes allow, nodes.c
 * keeps the node list and each job's eligible nodes, profiles.c learns from
 * completed runs, update.c applies the controller's reports. Their shared
 * declarations are in internal.h.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

static double wall_clock(void *ud)
{
    (void)ud;
    return wlm_now_wall();
}

void jobsched__job_free(struct jobsched_job *j)
{
    if (!j)
        return;
    free(j->name);
    free(j->kind);
    free(j->command);
    for (size_t i = 0; i < j->nfiles; i++)
        free(j->files[i]);
    free(j->files);
    free(j->batch);
    free(j->submit_id);
    free(j->owner);
    free(j->deps);
    jobsched_requirements_fini(&j->req);
    free(j->eligible_nodes);
    free(j->dependents);
    free(j);
}

struct jobsched_job *jobsched__find_job(const struct jobsched *js, int64_t id)
{
    size_t lo = 0, hi = js->njobs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (js->jobs[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < js->njobs && js->jobs[lo]->id == id ? js->jobs[lo] : NULL;
}

int jobsched__append_job(struct jobsched *js, struct jobsched_job *j)
{
    if (js->njobs == js->capjobs) {
        size_t nc = js->capjobs ? js->capjobs * 2 : 64;
        struct jobsched_job **nv = realloc(js->jobs, nc * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        js->jobs = nv;
        js->capjobs = nc;
    }
    js->jobs[js->njobs++] = j;
    return 0;
}

int jobsched__add_dependent(struct jobsched_job *target, int64_t id)
{
    for (size_t i = 0; i < target->ndependents; i++)
        if (target->dependents[i] == id)
            return 0;
    if (target->ndependents == target->capdependents) {
        size_t nc = target->capdependents ? target->capdependents * 2 : 4;
        int64_t *nv = realloc(target->dependents, nc * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        target->dependents = nv;
        target->capdependents = nc;
    }
    target->dependents[target->ndependents++] = id;
    return 0;
}

int jobsched_new(const struct jobsched_config *cfg, struct jobsched_store *store,
                 struct jobsched **out, struct wlm_error *err)
{
    *out = NULL;
    if (!store)
        return wlm_error_set(err, WLM_EINVAL, "jobsched_new: no store");
    struct jobsched *js = calloc(1, sizeof(*js));
    if (!js)
        return wlm_error_set(err, ENOMEM, "out of memory");
    if (cfg)
        js->cfg = *cfg;
    else
        jobsched_config_default(&js->cfg);
    js->st = store;
    js->clock = wall_clock;
    int rc;
    if ((rc = jstore_bind(store, js, err)) || (rc = jobsched__load_all(js, err))) {
        jobsched_free(js);
        return rc;
    }
    *out = js;
    return 0;
}

int jobsched_reload(struct jobsched *js, struct wlm_error *err)
{
    int rc = jobsched__load_all(js, err);
    js->stale = rc != 0;
    return rc;
}

int jobsched_stale(const struct jobsched *js)
{
    return js && js->stale;
}

void jobsched_free(struct jobsched *js)
{
    if (!js)
        return;
    jobsched__clear_memory(js);
    free(js->jobs);
    jobsched__nodes_free(&js->nodes);
    free(js->match);
    if (js->st)
        jstore_unbind(js->st);
    free(js);
}

const struct jobsched_config *jobsched_config(const struct jobsched *js)
{
    return &js->cfg;
}

void jobsched_set_clock(struct jobsched *js, double (*now)(void *ud), void *ud)
{
    js->clock = now ? now : wall_clock;
    js->clock_ud = now ? ud : NULL;
}

void jobsched_api_set_loop(struct jobsched *js, uv_loop_t *loop)
{
    js->loop = loop;
}

uv_loop_t *jobsched__loop(struct jobsched *js)
{
    return js->loop;
}

void **jobsched__api_group(struct jobsched *js)
{
    return &js->api_group;
}

double jobsched__now(struct jobsched *js)
{
    return js->clock(js->clock_ud);
}

const struct jobsched_job *jobsched_get(const struct jobsched *js, int64_t id)
{
    return jobsched__find_job(js, id);
}

struct jobsched_job *const *jobsched_jobs(const struct jobsched *js, size_t *n)
{
    *n = js->njobs;
    return js->jobs;
}

static int placeable(enum jobsched_state s)
{
    return s == JOBSCHED_ELIGIBLE || s == JOBSCHED_STARTING || s == JOBSCHED_RUNNING ||
           s == JOBSCHED_PAUSED || s == JOBSCHED_SUSPENDED || s == JOBSCHED_MIGRATING;
}

size_t jobsched_placeable(const struct jobsched *js, const struct jobsched_job **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < js->njobs; i++)
        if (placeable(js->jobs[i]->state)) {
            if (out && n < max)
                out[n] = js->jobs[i];
            n++;
        }
    return n;
}

int jobsched_history(struct jobsched *js, int64_t id, struct jobsched_event **out, size_t *n,
                     struct wlm_error *err)
{
    return jstore_history(js->st, id, out, n, err);
}

static json_t *time_json(double t)
{
    char buf[40];
    if (t <= 0 || !isfinite(t))
        return json_null();
    return json_string(wlm_time_format(t, buf, sizeof(buf)));
}

static const char *const prof_names[] = {"user", "learned", "default"};

json_t *jobsched_job_json(struct jobsched *js, const struct jobsched_job *j, double now,
                          int with_history)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(j->id));
    json_object_set_new(o, "name", j->name ? json_string(j->name) : json_null());
    json_object_set_new(o, "kind", json_string(j->kind ? j->kind : ""));
    json_object_set_new(o, "command", j->command ? json_string(j->command) : json_null());
    json_t *files = json_array();
    for (size_t i = 0; i < j->nfiles; i++)
        json_array_append_new(files, json_string(j->files[i]));
    json_object_set_new(o, "files", files);
    if (j->batch)
        json_object_set_new(o, "batch", json_string(j->batch));
    if (j->submit_id)
        json_object_set_new(o, "submit_id", json_string(j->submit_id));
    json_object_set_new(o, "owner", j->owner ? json_string(j->owner) : json_null());
    json_object_set_new(o, "state", json_string(jobsched_state_name(j->state)));
    json_object_set_new(o, "reason", json_string(j->reason));
    json_object_set_new(o, "class", json_string(jobsched_class_name(j->cls)));
    json_object_set_new(o, "submit_time", json_real(j->submit_time));
    json_object_set_new(o, "goal_time", json_real(j->goal_time));
    json_object_set_new(o, "goal", time_json(j->goal_time));
    json_object_set_new(o, "deadline", j->deadline > 0 ? json_real(j->deadline) : json_null());
    json_object_set_new(o, "state_time", json_real(j->state_time));
    json_object_set_new(o, "end_time", j->end_time > 0 ? json_real(j->end_time) : json_null());
    json_object_set_new(o, "work_mcycles", json_real(j->work_mcycles));
    json_object_set_new(o, "done_mcycles", json_real(j->done_mcycles));
    json_object_set_new(o, "profile", json_string(prof_names[j->profile_source % 3]));
    json_object_set_new(o, "threads", json_integer(j->threads));
    json_object_set_new(o, "max_speed_mhz", json_real(j->max_speed_mhz));
    json_object_set_new(o, "max_mhz", json_real(jobsched_job_max_mhz(j)));
    json_object_set_new(o, "memory_mb", json_integer(j->memory_mb));
    json_object_set_new(o, "node", j->node[0] ? json_string(j->node) : json_null());
    json_object_set_new(o, "alloc_mhz", json_real(j->alloc_mhz));

    /* Prediction: at the current allocation when placed, else at full speed
     * from now (the best it could still do). */
    if (jobsched_state_terminal(j->state)) {
        json_object_set_new(o, "predicted_completion", json_null());
        json_object_set_new(o, "utility",
                            j->state == JOBSCHED_COMPLETED
                                ? json_real(jobsched_completion_utility(j, j->end_time, &js->cfg))
                                : json_null());
    } else {
        int running = j->state == JOBSCHED_RUNNING || j->state == JOBSCHED_STARTING ||
                      j->state == JOBSCHED_MIGRATING;
        double mhz = running && j->alloc_mhz > 0 ? j->alloc_mhz : jobsched_job_max_mhz(j);
        double t = jobsched_predict_completion(j, mhz, now);
        json_object_set_new(o, "predicted_completion", isfinite(t) ? json_real(t) : json_null());
        json_object_set_new(o, "predicted_utility",
                            json_real(jobsched_completion_utility(j, t, &js->cfg)));
    }

    json_t *deps = json_array();
    for (size_t i = 0; i < j->ndeps; i++) {
        const struct jobsched_job *t = jobsched__find_job(js, j->deps[i].job_id);
        json_array_append_new(
            deps, json_pack("{s:s,s:I,s:s,s:s}", "kind", jobsched_dep_kind_name(j->deps[i].kind),
                            "on", (json_int_t)j->deps[i].job_id, "state",
                            t ? jobsched_state_name(t->state) : "UNKNOWN", "status",
                            jobsched_dep_eval(j->deps[i].kind, t ? t->state : JOBSCHED_CANCELLED) ==
                                    JOBSCHED_DEP_SATISFIED
                                ? "satisfied"
                                : (jobsched_dep_eval(j->deps[i].kind,
                                                     t ? t->state : JOBSCHED_CANCELLED) ==
                                           JOBSCHED_DEP_NEVER
                                       ? "never"
                                       : "waiting")));
    }
    json_object_set_new(o, "dependencies", deps);
    json_t *dependents = json_array();
    for (size_t i = 0; i < j->ndependents; i++)
        json_array_append_new(dependents, json_integer(j->dependents[i]));
    json_object_set_new(o, "dependents", dependents);

    json_t *req = json_object(), *labels = json_object();
    for (size_t i = 0; i < j->req.nlabels; i++)
        json_object_set_new(labels, j->req.labels[i].key, json_string(j->req.labels[i].value));
    json_object_set_new(req, "labels", labels);
    json_object_set_new(req, "min_cores", json_integer(j->req.min_cores));
    json_object_set_new(req, "min_memory_mb", json_integer(j->req.min_memory_mb));
    json_object_set_new(req, "arch", j->req.arch ? json_string(j->req.arch) : json_null());
    json_object_set_new(o, "requirements", req);
    json_t *el = json_array();
    for (size_t i = 0; i < j->neligible; i++)
        json_array_append_new(el, json_string(j->eligible_nodes[i]));
    json_object_set_new(o, "eligible_nodes", el);

    if (with_history) {
        struct jobsched_event *ev = NULL;
        size_t n = 0;
        struct wlm_error e;
        wlm_error_clear(&e);
        json_t *h = json_array();
        if (jobsched_history(js, j->id, &ev, &n, &e) == 0) {
            for (size_t i = 0; i < n; i++)
                json_array_append_new(
                    h, json_pack("{s:f,s:o,s:s,s:s,s:s}", "t", ev[i].t, "time", time_json(ev[i].t),
                                 "from", jobsched_state_name(ev[i].from), "to",
                                 jobsched_state_name(ev[i].to), "reason", ev[i].reason));
        }
        free(ev);
        json_object_set_new(o, "history", h);
    }
    return o;
}

void jobsched_export_metrics(const struct jobsched *js, struct wlm_metrics *m)
{
    size_t counts[JOBSCHED_NSTATES] = {0};
    for (size_t i = 0; i < js->njobs; i++)
        if ((unsigned)js->jobs[i]->state < JOBSCHED_NSTATES)
            counts[js->jobs[i]->state]++;
    for (int s = 0; s < JOBSCHED_NSTATES; s++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "state=\"%s\"",
                 jobsched_state_name((enum jobsched_state)s));
        struct wlm_gauge *g = wlm_metrics_gauge(m, "wlm_jobs", "Jobs by state", labels);
        if (g)
            wlm_gauge_set(g, (double)counts[s]);
    }
    struct wlm_gauge *g =
        wlm_metrics_gauge(m, "wlm_job_profiles", "Job kinds with a learned profile", NULL);
    if (g)
        wlm_gauge_set(g, (double)js->nprofiles);
}
