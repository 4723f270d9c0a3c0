/*
 * jobsched.c - the scheduler: an in-memory job table kept equal to the
 * database.
 *
 * Invariant: after every public call returns, memory and disk agree. Each
 * mutation runs inside one transaction; its memory changes are applied as
 * the SQL succeeds, and when anything fails the transaction is rolled back
 * and the whole table reloaded from disk (rare, and simpler than undoing
 * each change by hand).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define COMP "jobsched"

struct node_copy {
    struct jobsched_node *v;
    size_t n;
};

struct jobsched {
    struct jobsched_config cfg;
    struct jobsched_store *st;
    struct jobsched_job **jobs; /* ascending id */
    size_t njobs, capjobs;
    struct jobsched_profile *profiles;
    size_t nprofiles;
    struct node_copy nodes;
    size_t *match; /* scratch, one per node */
    double (*clock)(void *ud);
    void *clock_ud;
    int in_tx;
    int stale; /* memory may differ from the store (a reload failed) */
    uv_loop_t *loop; /* set: the API group-commits submissions */
    void *api_group; /* the API's group being collected */
};

/* ---------------------------------------------------------------- helpers */

static double wall_clock(void *ud)
{
    (void)ud;
    return wlm_now_wall();
}

static void job_free(struct jobsched_job *j)
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

static struct jobsched_job *find_job(const struct jobsched *js, int64_t id)
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

static int append_job(struct jobsched *js, struct jobsched_job *j)
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

static int add_dependent(struct jobsched_job *target, int64_t id)
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

/* ---------------------------------------------------------------- spec JSON (stored form) */

static json_t *spec_to_json(const struct jobsched_job *j)
{
    json_t *o = json_object();
    if (j->name)
        json_object_set_new(o, "name", json_string(j->name));
    json_object_set_new(o, "kind", json_string(j->kind ? j->kind : ""));
    if (j->command)
        json_object_set_new(o, "command", json_string(j->command));
    json_t *files = json_array();
    for (size_t i = 0; i < j->nfiles; i++)
        json_array_append_new(files, json_string(j->files[i]));
    json_object_set_new(o, "files", files);
    if (j->batch)
        json_object_set_new(o, "batch", json_string(j->batch));
    if (j->owner)
        json_object_set_new(o, "owner", json_string(j->owner));
    json_object_set_new(o, "threads", json_integer(j->threads));
    json_object_set_new(o, "max_speed_mhz", json_real(j->max_speed_mhz));
    json_object_set_new(o, "memory_mb", json_integer(j->memory_mb));
    json_object_set_new(o, "class", json_string(jobsched_class_name(j->cls)));
    json_object_set_new(o, "deadline", json_real(j->deadline));
    json_object_set_new(o, "submit_time", json_real(j->submit_time));
    json_object_set_new(o, "goal_time", json_real(j->goal_time));
    json_object_set_new(o, "profile_source", json_integer(j->profile_source));
    json_t *req = json_object(), *labels = json_object();
    for (size_t i = 0; i < j->req.nlabels; i++)
        json_object_set_new(labels, j->req.labels[i].key, json_string(j->req.labels[i].value));
    json_object_set_new(req, "labels", labels);
    json_object_set_new(req, "min_cores", json_integer(j->req.min_cores));
    json_object_set_new(req, "min_memory_mb", json_integer(j->req.min_memory_mb));
    if (j->req.arch)
        json_object_set_new(req, "arch", json_string(j->req.arch));
    json_object_set_new(o, "requirements", req);
    return o;
}

static char *jdup(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? wlm_strdup(json_string_value(v)) : NULL;
}

static double jnum(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static int spec_from_json(struct jobsched_job *j, const char *text)
{
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o)
        return -WLM_EIO;
    j->name = jdup(o, "name");
    j->kind = jdup(o, "kind");
    j->command = jdup(o, "command");
    j->batch = jdup(o, "batch");
    j->owner = jdup(o, "owner");
    const json_t *files = json_object_get(o, "files");
    if (json_array_size(files) > 0) {
        j->files = calloc(json_array_size(files), sizeof(char *));
        for (size_t i = 0; j->files && i < json_array_size(files); i++)
            j->files[j->nfiles++] = wlm_strdup(json_string_value(json_array_get(files, i)));
    }
    j->threads = (int)jnum(o, "threads");
    j->max_speed_mhz = jnum(o, "max_speed_mhz");
    j->memory_mb = (long long)jnum(o, "memory_mb");
    const json_t *cls = json_object_get(o, "class");
    if (jobsched_class_parse(json_string_value(cls), &j->cls))
        j->cls = JOBSCHED_SILVER;
    j->deadline = jnum(o, "deadline");
    j->submit_time = jnum(o, "submit_time");
    j->goal_time = jnum(o, "goal_time");
    j->profile_source = (enum jobsched_profile_source)(int)jnum(o, "profile_source");
    const json_t *req = json_object_get(o, "requirements");
    const json_t *labels = json_object_get(req, "labels");
    if (json_object_size(labels) > 0) {
        j->req.labels = calloc(json_object_size(labels), sizeof(*j->req.labels));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)labels, k, v)
        {
            if (!j->req.labels)
                break;
            j->req.labels[j->req.nlabels].key = wlm_strdup(k);
            j->req.labels[j->req.nlabels].value = wlm_strdup(json_string_value(v));
            j->req.nlabels++;
        }
    }
    j->req.min_cores = (int)jnum(req, "min_cores");
    j->req.min_memory_mb = (long long)jnum(req, "min_memory_mb");
    j->req.arch = jdup(req, "arch");
    json_decref(o);
    return 0;
}

/* ---------------------------------------------------------------- load */

static void clear_memory(struct jobsched *js)
{
    for (size_t i = 0; i < js->njobs; i++)
        job_free(js->jobs[i]);
    js->njobs = 0;
    free(js->profiles);
    js->profiles = NULL;
    js->nprofiles = 0;
}

static void refresh_eligible(struct jobsched *js, struct jobsched_job *j);

static int load_job(const struct jstore_row *r, void *ud)
{
    struct jobsched *js = ud;
    struct jobsched_job *j = calloc(1, sizeof(*j));
    if (!j || append_job(js, j)) {
        free(j);
        return 1;
    }
    j->id = r->id;
    j->submit_id = wlm_strdup(r->submit_id);
    if (spec_from_json(j, r->spec))
        return -WLM_EIO;
    j->work_mcycles = r->work_mcycles;
    if (jobsched_state_parse(r->state, &j->state))
        j->state = JOBSCHED_FAILED;
    wlm_strlcpy(j->reason, r->reason ? r->reason : "", sizeof(j->reason));
    j->state_time = r->state_time;
    j->end_time = r->end_time;
    wlm_strlcpy(j->node, r->node ? r->node : "", sizeof(j->node));
    j->alloc_mhz = r->alloc_mhz;
    j->done_mcycles = r->done_mcycles;
    j->seen_threads = r->seen_threads;
    j->seen_speed_mhz = r->seen_speed_mhz;
    j->learned = r->learned;
    return 0;
}

static int load_dep(int64_t job, int64_t dep, const char *kind, void *ud)
{
    struct jobsched *js = ud;
    struct jobsched_job *j = find_job(js, job);
    struct jobsched_job *t = find_job(js, dep);
    enum jobsched_dep_kind k;
    if (!j || !t || jobsched_dep_kind_parse(kind ? kind : "", &k))
        return 0;
    struct jobsched_dep *nd = realloc(j->deps, (j->ndeps + 1) * sizeof(*nd));
    if (!nd)
        return 1;
    j->deps = nd;
    if (add_dependent(t, j->id))
        return 1;
    j->deps[j->ndeps++] = (struct jobsched_dep){k, t->id};
    return 0;
}

static int load_profile(const struct jobsched_profile *p, void *ud)
{
    struct jobsched *js = ud;
    struct jobsched_profile *np = realloc(js->profiles, (js->nprofiles + 1) * sizeof(*np));
    if (!np)
        return 1;
    js->profiles = np;
    np[js->nprofiles++] = *p;
    return 0;
}

static int load_all(struct jobsched *js, struct wlm_error *err)
{
    static const struct jstore_loader ld = {load_job, load_dep, load_profile};
    clear_memory(js);
    int rc = jstore_load(js->st, &ld, js, err);
    if (rc == -WLM_EIO && js->njobs)
        return wlm_error_set(err, WLM_EIO, "job store: job %lld has a corrupt spec",
                             (long long)js->jobs[js->njobs - 1]->id);
    if (rc)
        return rc;
    for (size_t i = 0; i < js->njobs; i++)
        refresh_eligible(js, js->jobs[i]);
    return 0;
}

/* The etcd document of a job: its row and its dependency edges. */
json_t *jobsched__job_doc(struct jobsched *js, int64_t id)
{
    const struct jobsched_job *j = find_job(js, id);
    if (!j)
        return NULL;
    json_t *spec = spec_to_json(j);
    char *text = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    json_decref(spec);
    if (!text)
        return NULL;
    json_t *deps = json_array();
    for (size_t i = 0; i < j->ndeps; i++)
        json_array_append_new(deps, json_pack("[I,s]", (json_int_t)j->deps[i].job_id,
                                              jobsched_dep_kind_name(j->deps[i].kind)));
    json_t *o = json_pack("{s:I,s:s,s:f,s:s,s:s,s:f,s:f,s:s,s:f,s:f,s:f,s:f,s:i,s:o}", "id",
                          (json_int_t)j->id, "spec", text, "work_mcycles", j->work_mcycles,
                          "state", jobsched_state_name(j->state), "reason", j->reason,
                          "state_time", j->state_time, "end_time", j->end_time, "node", j->node,
                          "alloc_mhz", j->alloc_mhz, "done_mcycles", j->done_mcycles,
                          "seen_threads", j->seen_threads, "seen_speed_mhz", j->seen_speed_mhz,
                          "learned", j->learned, "deps", deps);
    free(text);
    if (o && j->submit_id)
        json_object_set_new(o, "submit_id", json_string(j->submit_id));
    return o;
}

/* ---------------------------------------------------------------- transactions */

static int tx_begin(struct jobsched *js, struct wlm_error *err)
{
    int rc = jstore_begin(js->st, err);
    if (rc == 0)
        js->in_tx = 1;
    return rc;
}

static int tx_commit(struct jobsched *js, struct wlm_error *err)
{
    js->in_tx = 0;
    return jstore_commit(js->st, err);
}

/* Roll back and make memory equal to disk again. */
static void tx_abort(struct jobsched *js)
{
    struct wlm_error e2;
    if (js->in_tx)
        jstore_rollback(js->st);
    js->in_tx = 0;
    wlm_error_clear(&e2);
    js->stale = load_all(js, &e2) != 0;
    if (js->stale)
        wlm_errorlog(COMP, "reload after rollback failed", "error=\"%s\"", e2.msg);
}

/* ---------------------------------------------------------------- lifecycle */

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
    if ((rc = jstore_bind(store, js, err)) || (rc = load_all(js, err))) {
        jobsched_free(js);
        return rc;
    }
    *out = js;
    return 0;
}

int jobsched_reload(struct jobsched *js, struct wlm_error *err)
{
    int rc = load_all(js, err);
    js->stale = rc != 0;
    return rc;
}

int jobsched_stale(const struct jobsched *js) { return js && js->stale; }

static void nodes_free(struct node_copy *nc)
{
    for (size_t i = 0; i < nc->n; i++) {
        struct jobsched_node *n = &nc->v[i];
        free((char *)n->name);
        free((char *)n->arch);
        for (size_t k = 0; k < n->nlabels; k++) {
            free(n->labels[k].key);
            free(n->labels[k].value);
        }
        free((struct jobsched_label *)n->labels);
    }
    free(nc->v);
    nc->v = NULL;
    nc->n = 0;
}

void jobsched_free(struct jobsched *js)
{
    if (!js)
        return;
    clear_memory(js);
    free(js->jobs);
    nodes_free(&js->nodes);
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

/* ---------------------------------------------------------------- nodes */

static void refresh_eligible(struct jobsched *js, struct jobsched_job *j)
{
    free(j->eligible_nodes);
    j->eligible_nodes = NULL;
    j->neligible = 0;
    if (jobsched_state_terminal(j->state) || js->nodes.n == 0)
        return;
    size_t m = jobsched_match(j, js->nodes.v, js->nodes.n, js->match, NULL, 0);
    if (m == 0)
        return;
    j->eligible_nodes = calloc(m, sizeof(char *));
    if (!j->eligible_nodes)
        return;
    for (size_t i = 0; i < m; i++)
        j->eligible_nodes[i] = js->nodes.v[js->match[i]].name;
    j->neligible = m;
}

int jobsched_set_nodes(struct jobsched *js, const struct jobsched_node *nodes, size_t n)
{
    struct node_copy nc = {calloc(n ? n : 1, sizeof(struct jobsched_node)), 0};
    size_t *match = calloc(n ? n : 1, sizeof(size_t));
    if (!nc.v || !match) {
        free(nc.v);
        free(match);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct jobsched_node *d = &nc.v[nc.n++];
        *d = nodes[i];
        d->name = wlm_strdup(nodes[i].name ? nodes[i].name : "");
        d->arch = nodes[i].arch ? wlm_strdup(nodes[i].arch) : NULL;
        d->labels = NULL;
        d->nlabels = 0;
        if (nodes[i].nlabels) {
            struct jobsched_label *l = calloc(nodes[i].nlabels, sizeof(*l));
            for (size_t k = 0; l && k < nodes[i].nlabels; k++) {
                l[k].key = wlm_strdup(nodes[i].labels[k].key);
                l[k].value = wlm_strdup(nodes[i].labels[k].value);
            }
            d->labels = l;
            d->nlabels = l ? nodes[i].nlabels : 0;
        }
    }
    /* Eligible lists point into the node copy: drop them before freeing it. */
    for (size_t i = 0; i < js->njobs; i++) {
        free(js->jobs[i]->eligible_nodes);
        js->jobs[i]->eligible_nodes = NULL;
        js->jobs[i]->neligible = 0;
    }
    nodes_free(&js->nodes);
    free(js->match);
    js->nodes = nc;
    js->match = match;
    for (size_t i = 0; i < js->njobs; i++)
        refresh_eligible(js, js->jobs[i]);
    return 0;
}

/* ---------------------------------------------------------------- state changes */

static int learn_from(struct jobsched *js, struct jobsched_job *j, double now,
                      struct wlm_error *err);

/* Change state in the open transaction, recording the event. */
static int set_state(struct jobsched *js, struct jobsched_job *j, enum jobsched_state to,
                     double now, const char *reason, struct wlm_error *err)
{
    enum jobsched_state from = j->state;
    if (!jobsched_transition_allowed(from, to))
        return wlm_error_setf(err, WLM_ECONFLICT, "state",
                              "job %lld: illegal transition %s -> %s", (long long)j->id,
                              jobsched_state_name(from), jobsched_state_name(to));
    double end = jobsched_state_terminal(to) ? now : 0;
    /* Memory first: the store writes from it. A failure aborts the
     * transaction, which reloads memory from the store. */
    j->state = to;
    wlm_strlcpy(j->reason, reason ? reason : "", sizeof(j->reason));
    j->state_time = now;
    j->end_time = end;
    int rc = jstore_save(js->st, j, JSTORE_STATE, err);
    if (rc)
        return rc;
    if ((rc = jstore_event(js->st, j->id, now, jobsched_state_name(from),
                           jobsched_state_name(to), reason ? reason : "", err)))
        return rc;
    if (to == JOBSCHED_COMPLETED)
        return learn_from(js, j, now, err);
    if (jobsched_state_terminal(to)) {
        free(j->eligible_nodes);
        j->eligible_nodes = NULL;
        j->neligible = 0;
    }
    return 0;
}

static int set_reason(struct jobsched *js, struct jobsched_job *j, const char *reason,
                      struct wlm_error *err)
{
    if (strcmp(j->reason, reason) == 0)
        return 0;
    wlm_strlcpy(j->reason, reason, sizeof(j->reason));
    return jstore_save(js->st, j, JSTORE_REASON, err);
}

/* Decide PENDING / ELIGIBLE / FAILED for a job that has not been placed
 * yet, from its dependencies and the nodes. Returns 1 when the job became
 * terminal (its dependents then need a look), 0 otherwise, <0 on error. */
static int evaluate(struct jobsched *js, struct jobsched_job *j, double now,
                    struct wlm_error *err)
{
    if (j->state != JOBSCHED_PENDING && j->state != JOBSCHED_ELIGIBLE)
        return 0;
    char why[256] = "";
    int waiting = 0;
    for (size_t i = 0; i < j->ndeps; i++) {
        const struct jobsched_job *t = find_job(js, j->deps[i].job_id);
        enum jobsched_state ts = t ? t->state : JOBSCHED_CANCELLED;
        enum jobsched_dep_status s = jobsched_dep_eval(j->deps[i].kind, ts);
        if (s == JOBSCHED_DEP_NEVER) {
            snprintf(why, sizeof(why), "dependency %s:%lld can never be satisfied (job %lld %s)",
                     jobsched_dep_kind_name(j->deps[i].kind), (long long)j->deps[i].job_id,
                     (long long)j->deps[i].job_id, jobsched_state_name(ts));
            int rc = set_state(js, j, JOBSCHED_FAILED, now, why, err);
            return rc ? rc : 1;
        }
        if (s == JOBSCHED_DEP_WAITING && !waiting) {
            waiting = 1;
            snprintf(why, sizeof(why), "waiting for dependency %s:%lld",
                     jobsched_dep_kind_name(j->deps[i].kind), (long long)j->deps[i].job_id);
        }
    }
    size_t m = 0;
    if (!waiting) {
        m = jobsched_match(j, js->nodes.v, js->nodes.n, js->match, why, sizeof(why));
    }
    refresh_eligible(js, j);
    enum jobsched_state want = (!waiting && m > 0) ? JOBSCHED_ELIGIBLE : JOBSCHED_PENDING;
    if (want == JOBSCHED_ELIGIBLE)
        why[0] = 0;
    if (want != j->state)
        return set_state(js, j, want, now, why, err);
    return set_reason(js, j, why, err);
}

/* Evaluate `start`'s dependents, and theirs when they fail in turn, with an
 * explicit work list (chains can be long). */
static int cascade(struct jobsched *js, struct jobsched_job *start, double now,
                   struct wlm_error *err)
{
    int64_t *work = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
#define PUSH(x)                                                                                    \
    do {                                                                                           \
        if (n == cap) {                                                                            \
            size_t nc = cap ? cap * 2 : 16;                                                        \
            int64_t *nw = realloc(work, nc * sizeof(*nw));                                         \
            if (!nw) {                                                                             \
                rc = wlm_error_set(err, ENOMEM, "out of memory");                                  \
                goto out;                                                                          \
            }                                                                                      \
            work = nw;                                                                             \
            cap = nc;                                                                              \
        }                                                                                          \
        work[n++] = (x);                                                                           \
    } while (0)
    for (size_t i = 0; i < start->ndependents; i++)
        PUSH(start->dependents[i]);
    while (n > 0) {
        struct jobsched_job *d = find_job(js, work[--n]);
        if (!d)
            continue;
        rc = evaluate(js, d, now, err);
        if (rc < 0)
            goto out;
        if (rc == 1)
            for (size_t i = 0; i < d->ndependents; i++)
                PUSH(d->dependents[i]);
        rc = 0;
    }
#undef PUSH
out:
    free(work);
    return rc;
}

/* ---------------------------------------------------------------- profiles */

static struct jobsched_profile *profile_find(const struct jobsched *js, const char *kind)
{
    for (size_t i = 0; kind && i < js->nprofiles; i++)
        if (strcmp(js->profiles[i].kind, kind) == 0)
            return &js->profiles[i];
    return NULL;
}

const struct jobsched_profile *jobsched_profile_get(const struct jobsched *js, const char *kind)
{
    return profile_find(js, kind);
}

size_t jobsched__profiles(const struct jobsched *js, const struct jobsched_profile **out)
{
    *out = js->profiles;
    return js->nprofiles;
}

/* Teach the profiler a completed run (once per job), inside the open
 * transaction. Nothing is learned without usage reports: the work estimate
 * alone would teach the profiler what it already believed. */
static int learn_from(struct jobsched *js, struct jobsched_job *j, double now,
                      struct wlm_error *err)
{
    if (j->learned || j->done_mcycles <= 0 || !j->kind)
        return 0;
    struct jobsched_profile *p = profile_find(js, j->kind), tmp;
    if (p)
        tmp = *p;
    else {
        memset(&tmp, 0, sizeof(tmp));
        wlm_strlcpy(tmp.kind, j->kind, sizeof(tmp.kind));
    }
    double threads = j->seen_threads > 0 ? j->seen_threads : j->threads;
    double speed = j->seen_speed_mhz > 0 ? j->seen_speed_mhz : j->max_speed_mhz;
    jobsched_profile_learn(&tmp, j->done_mcycles, threads, speed, now, js->cfg.profile_alpha);
    tmp.updated = now;
    int rc = jstore_profile(js->st, &tmp, err);
    if (rc)
        return rc;
    j->learned = 1;
    if ((rc = jstore_save(js->st, j, JSTORE_USAGE, err)))
        return rc;
    if (p) {
        *p = tmp;
    } else {
        struct jobsched_profile *np = realloc(js->profiles, (js->nprofiles + 1) * sizeof(*np));
        if (!np)
            return wlm_error_set(err, ENOMEM, "out of memory");
        js->profiles = np;
        np[js->nprofiles++] = tmp;
    }
    return 0;
}

/* ---------------------------------------------------------------- submission */

static int exists_cb(int64_t id, void *ud)
{
    return find_job(ud, id) != NULL;
}

/* id of the job with this submit_id, 0 when none, <0 on error. */
static int64_t by_submit_id(struct jobsched *js, const char *sid, struct wlm_error *err)
{
    return jstore_by_submit(js->st, sid, err);
}

static json_t *ack_json(const struct jobsched_job *j)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(j->id));
    if (j->name)
        json_object_set_new(o, "name", json_string(j->name));
    json_object_set_new(o, "state", json_string(jobsched_state_name(j->state)));
    if (j->reason[0])
        json_object_set_new(o, "reason", json_string(j->reason));
    if (j->submit_id)
        json_object_set_new(o, "submit_id", json_string(j->submit_id));
    return o;
}

/* Turn a validated spec into a job: fill what the user left out from the
 * learned profile or the defaults, then derive the goal. */
static struct jobsched_job *job_from_spec(struct jobsched *js, struct jobsched_spec *s,
                                          const char *batch, double now)
{
    struct jobsched_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    const struct jobsched_profile *p = profile_find(js, s->kind);
    /* Steal the strings: the spec is discarded afterwards. */
    j->name = s->name, s->name = NULL;
    j->kind = s->kind, s->kind = NULL;
    j->command = s->command, s->command = NULL;
    j->files = s->files, s->files = NULL;
    j->nfiles = s->nfiles, s->nfiles = 0;
    j->submit_id = s->submit_id, s->submit_id = NULL;
    j->owner = s->owner, s->owner = NULL;
    j->req = s->req;
    memset(&s->req, 0, sizeof(s->req));
    j->batch = wlm_strdup(batch);
    j->cls = s->cls;
    j->deadline = s->deadline;
    j->threads = s->threads > 0 ? s->threads : (p && p->threads >= 1 ? (int)lround(p->threads) : 1);
    j->max_speed_mhz = s->max_speed_mhz > 0
                           ? s->max_speed_mhz
                           : (p && p->max_speed_mhz > 0 ? p->max_speed_mhz
                                                        : js->cfg.default_max_speed_mhz);
    j->memory_mb = s->memory_mb > 0 ? s->memory_mb : js->cfg.default_memory_mb;
    if (s->work_mcycles > 0) {
        j->work_mcycles = s->work_mcycles;
        j->profile_source = JOBSCHED_PROF_USER;
    } else if (p && p->mcycles > 0) {
        j->work_mcycles = p->mcycles;
        j->profile_source = JOBSCHED_PROF_LEARNED;
    } else {
        j->work_mcycles = js->cfg.default_work_seconds * js->cfg.ref_mhz * j->threads;
        j->profile_source = JOBSCHED_PROF_DEFAULT;
    }
    j->submit_time = now;
    double runtime = j->work_mcycles / jobsched_job_max_mhz(j);
    j->goal_time = j->deadline > 0 ? j->deadline : now + js->cfg.class_factor[j->cls] * runtime;
    j->state = JOBSCHED_PENDING;
    j->state_time = now;
    return j;
}

static int insert_job(struct jobsched *js, struct jobsched_job *j, struct wlm_error *err)
{
    json_t *spec = spec_to_json(j);
    char *text = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    json_decref(spec);
    if (!text)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int64_t id = 0;
    int rc = jstore_insert(js->st, j, text, &id, err);
    free(text);
    if (rc)
        return rc;
    j->id = id;
    return jstore_event(js->st, j->id, j->submit_time, "PENDING", "PENDING", "submitted", err);
}

/* One submission inside the open transaction. Returns 0 or <0; *fatal is
 * set when the transaction itself is now unusable (database or memory
 * failure) and must be rolled back. Validation errors and conflicts change
 * nothing. */
static int submit_in_tx(struct jobsched *js, const json_t *body, const char *idem_key, double now,
                        json_t **resp, int *duplicate, int *fatal, struct wlm_error *err)
{
    struct jobsched_batch b;
    struct jobsched_job **made = NULL;
    int64_t *old = NULL;
    *resp = NULL;
    *fatal = 0;
    if (duplicate)
        *duplicate = 0;
    int rc = jobsched_batch_parse(body, now, idem_key, &js->cfg, exists_cb, js, &b, err);
    if (rc)
        return rc;

    /* A retried submission (same keys) returns what the first one created. */
    size_t seen = 0;
    old = calloc(b.njobs, sizeof(*old));
    made = calloc(b.njobs, sizeof(*made));
    if (!old || !made) {
        rc = wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < b.njobs; i++) {
        if (!b.jobs[i].submit_id)
            continue;
        int64_t id = by_submit_id(js, b.jobs[i].submit_id, err);
        if (id < 0) {
            rc = (int)id;
            *fatal = 1;
            goto out;
        }
        if (id > 0) {
            old[i] = id;
            seen++;
        }
    }
    if (seen > 0) {
        if (seen != b.njobs) {
            rc = wlm_error_setf(err, WLM_ECONFLICT, "submit_id",
                                "field 'submit_id': %zu of %zu jobs were already submitted with "
                                "these keys; resubmit the same request or use new keys",
                                seen, b.njobs);
            goto out;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < b.njobs; i++) {
            const struct jobsched_job *j = find_job(js, old[i]);
            if (j)
                json_array_append_new(arr, ack_json(j));
        }
        *resp = json_pack("{s:o}", "jobs", arr);
        if (duplicate)
            *duplicate = 1;
        goto out;
    }

    /* From here on any failure leaves the transaction half-written. */
    *fatal = 1;
    for (size_t i = 0; i < b.njobs; i++) {
        struct jobsched_job *j = job_from_spec(js, &b.jobs[i], b.batch, now);
        if (!j) {
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = insert_job(js, j, err))) {
            job_free(j);
            goto out;
        }
        if (append_job(js, j)) {
            job_free(j);
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto out;
        }
        made[i] = j;
    }
    /* Edges after every id is known: a job may name a later one. */
    for (size_t i = 0; i < b.njobs; i++) {
        struct jobsched_spec *s = &b.jobs[i];
        struct jobsched_job *j = made[i];
        if (s->ndeps == 0)
            continue;
        j->deps = calloc(s->ndeps, sizeof(*j->deps));
        if (!j->deps) {
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto out;
        }
        for (size_t d = 0; d < s->ndeps; d++) {
            int64_t target = s->deps[d].batch_index >= 0 ? made[s->deps[d].batch_index]->id
                                                         : s->deps[d].job_id;
            int dup = 0;
            for (size_t e = 0; e < j->ndeps; e++)
                dup |= j->deps[e].job_id == target && j->deps[e].kind == s->deps[d].kind;
            if (dup)
                continue;
            if ((rc = jstore_dep(js->st, j->id, target, jobsched_dep_kind_name(s->deps[d].kind),
                                 err)))
                goto out;
            j->deps[j->ndeps++] = (struct jobsched_dep){s->deps[d].kind, target};
            if (add_dependent(find_job(js, target), j->id)) {
                rc = wlm_error_set(err, ENOMEM, "out of memory");
                goto out;
            }
        }
    }
    for (size_t i = 0; i < b.njobs; i++) {
        rc = evaluate(js, made[i], now, err);
        if (rc < 0)
            goto out;
        if (rc == 1 && (rc = cascade(js, made[i], now, err)))
            goto out;
        rc = 0;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < b.njobs; i++)
        json_array_append_new(arr, ack_json(made[i]));
    *resp = b.batch ? json_pack("{s:o,s:s}", "jobs", arr, "batch", b.batch)
                    : json_pack("{s:o}", "jobs", arr);
    *fatal = 0;
out:
    free(old);
    free(made);
    jobsched_batch_fini(&b);
    return rc;
}

int jobsched_submit(struct jobsched *js, const json_t *body, const char *idem_key, double now,
                    json_t **resp, int *duplicate, struct wlm_error *err)
{
    struct jobsched_submission s = {body, idem_key, NULL, 0, 0, {0, "", ""}};
    jobsched_submit_many(js, &s, 1, now);
    *resp = s.resp;
    if (duplicate)
        *duplicate = s.duplicate;
    if (s.rc && err)
        *err = s.err;
    return s.rc;
}

void jobsched_submit_many(struct jobsched *js, struct jobsched_submission *subs, size_t n,
                          double now)
{
    struct wlm_error terr;
    wlm_error_clear(&terr);
    for (size_t i = 0; i < n; i++) {
        subs[i].resp = NULL;
        subs[i].duplicate = 0;
        subs[i].rc = 0;
        wlm_error_clear(&subs[i].err);
    }
    int rc = tx_begin(js, &terr);
    if (rc)
        goto fail_all;
    for (size_t i = 0; i < n; i++) {
        int fatal = 0;
        subs[i].rc = submit_in_tx(js, subs[i].body, subs[i].idem_key, now, &subs[i].resp,
                                  &subs[i].duplicate, &fatal, &subs[i].err);
        if (fatal) {
            rc = subs[i].rc;
            terr = subs[i].err;
            goto abort_all;
        }
    }
    if ((rc = tx_commit(js, &terr)))
        goto abort_all;
    return;
abort_all:
    tx_abort(js);
fail_all:
    /* Nothing of the group was committed: every submission fails alike. */
    for (size_t i = 0; i < n; i++) {
        json_decref(subs[i].resp);
        subs[i].resp = NULL;
        subs[i].duplicate = 0;
        subs[i].rc = rc;
        subs[i].err = terr;
    }
}

/* ---------------------------------------------------------------- updates from the controller */

int jobsched_update(struct jobsched *js, double now, struct wlm_error *err)
{
    int rc = tx_begin(js, err), changes = 0;
    if (rc)
        return rc;
    for (size_t i = 0; i < js->njobs; i++) {
        struct jobsched_job *j = js->jobs[i];
        if (j->state != JOBSCHED_PENDING && j->state != JOBSCHED_ELIGIBLE)
            continue;
        enum jobsched_state before = j->state;
        rc = evaluate(js, j, now, err);
        if (rc < 0)
            goto fail;
        if (rc == 1 && (rc = cascade(js, j, now, err)))
            goto fail;
        changes += j->state != before;
    }
    if ((rc = tx_commit(js, err)))
        goto fail;
    return changes;
fail:
    tx_abort(js);
    return rc;
}

static struct jobsched_job *must_find(struct jobsched *js, int64_t id, struct wlm_error *err)
{
    struct jobsched_job *j = find_job(js, id);
    if (!j)
        wlm_error_setf(err, WLM_ENOTFOUND, "id", "no job %lld", (long long)id);
    return j;
}

int jobsched_transition(struct jobsched *js, int64_t id, enum jobsched_state to, double now,
                        const char *reason, struct wlm_error *err)
{
    struct jobsched_job *j = must_find(js, id, err);
    if (!j)
        return -WLM_ENOTFOUND;
    if (!jobsched_transition_allowed(j->state, to))
        return wlm_error_setf(err, WLM_ECONFLICT, "state", "job %lld: illegal transition %s -> %s",
                              (long long)id, jobsched_state_name(j->state),
                              jobsched_state_name(to));
    int rc = tx_begin(js, err);
    if (rc)
        return rc;
    if ((rc = set_state(js, j, to, now, reason, err)))
        goto fail;
    if (jobsched_state_terminal(to) && (rc = cascade(js, j, now, err)))
        goto fail;
    if ((rc = tx_commit(js, err)))
        goto fail;
    return 0;
fail:
    tx_abort(js);
    return rc;
}

int jobsched_cancel(struct jobsched *js, int64_t id, double now, const char *reason,
                    struct wlm_error *err)
{
    const struct jobsched_job *j = must_find(js, id, err);
    if (!j)
        return -WLM_ENOTFOUND;
    if (jobsched_state_terminal(j->state))
        return wlm_error_setf(err, WLM_ECONFLICT, "state", "job %lld is already %s",
                              (long long)id, jobsched_state_name(j->state));
    return jobsched_transition(js, id, JOBSCHED_CANCELLED, now,
                               reason && reason[0] ? reason : "cancelled by user", err);
}

int jobsched_set_placement(struct jobsched *js, int64_t id, const char *node, double alloc_mhz,
                           double now, struct wlm_error *err)
{
    (void)now;
    struct jobsched_job *j = must_find(js, id, err);
    if (!j)
        return -WLM_ENOTFOUND;
    if (node && strlen(node) >= sizeof(j->node))
        return wlm_error_setf(err, WLM_EINVAL, "node", "field 'node': name too long");
    if (!(alloc_mhz >= 0) || !isfinite(alloc_mhz))
        return wlm_error_setf(err, WLM_EINVAL, "alloc_mhz", "field 'alloc_mhz': must be >= 0");
    const char *nn = node ? node : "";
    if (strcmp(j->node, nn) == 0 && j->alloc_mhz == alloc_mhz)
        return 0;
    char old_node[sizeof(j->node)];
    double old_alloc = j->alloc_mhz;
    wlm_strlcpy(old_node, j->node, sizeof(old_node));
    wlm_strlcpy(j->node, nn, sizeof(j->node));
    j->alloc_mhz = alloc_mhz;
    int rc = jstore_save(js->st, j, JSTORE_PLACE, err);
    if (rc) {
        wlm_strlcpy(j->node, old_node, sizeof(j->node));
        j->alloc_mhz = old_alloc;
    }
    return rc;
}

int jobsched_report_usage(struct jobsched *js, int64_t id, double done_mcycles,
                          double threads_used, double speed_mhz, double now,
                          struct wlm_error *err)
{
    struct jobsched_job *j = must_find(js, id, err);
    if (!j)
        return -WLM_ENOTFOUND;
    if (!isfinite(done_mcycles) || done_mcycles < 0)
        return wlm_error_setf(err, WLM_EINVAL, "done_mcycles", "field 'done_mcycles': must be >= 0");
    if (!isfinite(threads_used) || threads_used < 0)
        return wlm_error_setf(err, WLM_EINVAL, "threads", "field 'threads': must be >= 0");
    if (!isfinite(speed_mhz) || speed_mhz < 0)
        return wlm_error_setf(err, WLM_EINVAL, "speed_mhz", "field 'speed_mhz': must be >= 0");
    int rc = tx_begin(js, err);
    if (rc)
        return rc;
    /* Reports are cumulative; a smaller one (a restored VM re-counting) never
     * takes progress back. */
    if (done_mcycles > j->done_mcycles)
        j->done_mcycles = done_mcycles;
    if (threads_used > j->seen_threads)
        j->seen_threads = threads_used;
    if (speed_mhz > j->seen_speed_mhz)
        j->seen_speed_mhz = speed_mhz;
    if ((rc = jstore_save(js->st, j, JSTORE_USAGE, err)))
        goto fail;
    /* A job still running past its estimate has more work than believed:
     * keep a margin so the estimator does not think it is done. */
    if (!jobsched_state_terminal(j->state) && j->done_mcycles >= j->work_mcycles) {
        j->work_mcycles = j->done_mcycles * 1.1;
        if ((rc = jstore_save(js->st, j, JSTORE_WORK, err)))
            goto fail;
    }
    if (j->state == JOBSCHED_COMPLETED && (rc = learn_from(js, j, now, err)))
        goto fail;
    if ((rc = tx_commit(js, err)))
        goto fail;
    return 0;
fail:
    tx_abort(js);
    return rc;
}

/* ---------------------------------------------------------------- reading */

const struct jobsched_job *jobsched_get(const struct jobsched *js, int64_t id)
{
    return find_job(js, id);
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
        const struct jobsched_job *t = find_job(js, j->deps[i].job_id);
        json_array_append_new(
            deps, json_pack("{s:s,s:I,s:s,s:s}", "kind", jobsched_dep_kind_name(j->deps[i].kind),
                            "on", (json_int_t)j->deps[i].job_id, "state",
                            t ? jobsched_state_name(t->state) : "UNKNOWN", "status",
                            jobsched_dep_eval(j->deps[i].kind,
                                              t ? t->state : JOBSCHED_CANCELLED) ==
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
                json_array_append_new(h, json_pack("{s:f,s:o,s:s,s:s,s:s}", "t", ev[i].t, "time",
                                                   time_json(ev[i].t), "from",
                                                   jobsched_state_name(ev[i].from), "to",
                                                   jobsched_state_name(ev[i].to), "reason",
                                                   ev[i].reason));
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
        snprintf(labels, sizeof(labels), "state=\"%s\"", jobsched_state_name((enum jobsched_state)s));
        struct wlm_gauge *g = wlm_metrics_gauge(m, "wlm_jobs", "Jobs by state", labels);
        if (g)
            wlm_gauge_set(g, (double)counts[s]);
    }
    struct wlm_gauge *g =
        wlm_metrics_gauge(m, "wlm_job_profiles", "Job kinds with a learned profile", NULL);
    if (g)
        wlm_gauge_set(g, (double)js->nprofiles);
}
