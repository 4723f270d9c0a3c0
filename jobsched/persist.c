/*
 * persist.c - the scheduler's table and its database: a job's spec in
 * its stored JSON form, loading the whole table, and the transactions every
 * mutation runs in (a failed one reloads the table from disk).
 */
#include <stdlib.h>

#include "internal.h"

json_t *jobsched__spec_to_json(const struct jobsched_job *j)
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

void jobsched__clear_memory(struct jobsched *js)
{
    for (size_t i = 0; i < js->njobs; i++)
        jobsched__job_free(js->jobs[i]);
    js->njobs = 0;
    free(js->profiles);
    js->profiles = NULL;
    js->nprofiles = 0;
}

static int load_job(const struct jstore_row *r, void *ud)
{
    struct jobsched *js = ud;
    struct jobsched_job *j = calloc(1, sizeof(*j));
    if (!j || jobsched__append_job(js, j)) {
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
    struct jobsched_job *j = jobsched__find_job(js, job);
    struct jobsched_job *t = jobsched__find_job(js, dep);
    enum jobsched_dep_kind k;
    if (!j || !t || jobsched_dep_kind_parse(kind ? kind : "", &k))
        return 0;
    struct jobsched_dep *nd = realloc(j->deps, (j->ndeps + 1) * sizeof(*nd));
    if (!nd)
        return 1;
    j->deps = nd;
    if (jobsched__add_dependent(t, j->id))
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

int jobsched__load_all(struct jobsched *js, struct wlm_error *err)
{
    static const struct jstore_loader ld = {load_job, load_dep, load_profile};
    jobsched__clear_memory(js);
    int rc = jstore_load(js->st, &ld, js, err);
    if (rc == -WLM_EIO && js->njobs)
        return wlm_error_set(err, WLM_EIO, "job store: job %lld has a corrupt spec",
                             (long long)js->jobs[js->njobs - 1]->id);
    if (rc)
        return rc;
    for (size_t i = 0; i < js->njobs; i++)
        jobsched__refresh_eligible(js, js->jobs[i]);
    return 0;
}

/* The etcd document of a job: its row and its dependency edges. */
json_t *jobsched__job_doc(struct jobsched *js, int64_t id)
{
    const struct jobsched_job *j = jobsched__find_job(js, id);
    if (!j)
        return NULL;
    json_t *spec = jobsched__spec_to_json(j);
    char *text = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    json_decref(spec);
    if (!text)
        return NULL;
    json_t *deps = json_array();
    for (size_t i = 0; i < j->ndeps; i++)
        json_array_append_new(deps, json_pack("[I,s]", (json_int_t)j->deps[i].job_id,
                                              jobsched_dep_kind_name(j->deps[i].kind)));
    json_t *o = json_pack(
        "{s:I,s:s,s:f,s:s,s:s,s:f,s:f,s:s,s:f,s:f,s:f,s:f,s:i,s:o}", "id", (json_int_t)j->id,
        "spec", text, "work_mcycles", j->work_mcycles, "state", jobsched_state_name(j->state),
        "reason", j->reason, "state_time", j->state_time, "end_time", j->end_time, "node", j->node,
        "alloc_mhz", j->alloc_mhz, "done_mcycles", j->done_mcycles, "seen_threads", j->seen_threads,
        "seen_speed_mhz", j->seen_speed_mhz, "learned", j->learned, "deps", deps);
    free(text);
    if (o && j->submit_id)
        json_object_set_new(o, "submit_id", json_string(j->submit_id));
    return o;
}

int jobsched__tx_begin(struct jobsched *js, struct wlm_error *err)
{
    int rc = jstore_begin(js->st, err);
    if (rc == 0)
        js->in_tx = 1;
    return rc;
}

int jobsched__tx_commit(struct jobsched *js, struct wlm_error *err)
{
    js->in_tx = 0;
    return jstore_commit(js->st, err);
}

/* Roll back and make memory equal to disk again. */
void jobsched__tx_abort(struct jobsched *js)
{
    struct wlm_error e2;
    if (js->in_tx)
        jstore_rollback(js->st);
    js->in_tx = 0;
    wlm_error_clear(&e2);
    js->stale = jobsched__load_all(js, &e2) != 0;
    if (js->stale)
        wlm_errorlog(COMP, "reload after rollback failed", "error=\"%s\"", e2.msg);
}
