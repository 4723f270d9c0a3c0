/*
 * submit.c - admission: turning validated specs into jobs, one or a
 * batch in one transaction, with idempotent resubmission by submit_id.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int exists_cb(int64_t id, void *ud)
{
    return jobsched__find_job(ud, id) != NULL;
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
    const struct jobsched_profile *p = jobsched__profile_find(js, s->kind);
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
    j->max_speed_mhz =
        s->max_speed_mhz > 0
            ? s->max_speed_mhz
            : (p && p->max_speed_mhz > 0 ? p->max_speed_mhz : js->cfg.default_max_speed_mhz);
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
    json_t *spec = jobsched__spec_to_json(j);
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

/* A class-derived goal of a job that waits for others counts from when
 * they are due, not from its submission: "report" after "index" gets
 * factor x its own run time after index's goal. (From the submission, a
 * chain's later jobs would be born late, their utility at the floor before
 * they could run.) Explicit deadlines stay as given. Jobs of the batch may
 * name later ones, so the goals settle in dependency order (depth first;
 * the batch has no cycles, jobsched_batch_parse refused those). */
static double dep_goal(const struct jobsched *js, const struct jobsched_batch *b,
                       struct jobsched_job **made, unsigned char *done, size_t i, double now);

static double due_after(const struct jobsched *js, const struct jobsched_batch *b,
                        struct jobsched_job **made, unsigned char *done, size_t i, double now)
{
    double start = now;
    const struct jobsched_spec *s = &b->jobs[i];
    for (size_t d = 0; d < s->ndeps; d++) {
        double t = now;
        if (s->deps[d].batch_index >= 0) {
            t = dep_goal(js, b, made, done, (size_t)s->deps[d].batch_index, now);
        } else {
            const struct jobsched_job *o = jobsched__find_job(js, s->deps[d].job_id);
            if (o && !jobsched_state_terminal(o->state))
                t = o->goal_time;
        }
        if (t > start)
            start = t;
    }
    return start;
}

static double dep_goal(const struct jobsched *js, const struct jobsched_batch *b,
                       struct jobsched_job **made, unsigned char *done, size_t i, double now)
{
    struct jobsched_job *j = made[i];
    if (done[i])
        return j->goal_time;
    done[i] = 1;
    if (j->deadline <= 0 && b->jobs[i].ndeps > 0)
        j->goal_time += due_after(js, b, made, done, i, now) - now;
    return j->goal_time;
}

static int goals_after_dependencies(const struct jobsched *js, const struct jobsched_batch *b,
                                    struct jobsched_job **made, double now, struct wlm_error *err)
{
    unsigned char *done = calloc(b->njobs ? b->njobs : 1, 1);
    if (!done)
        return wlm_error_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < b->njobs; i++)
        dep_goal(js, b, made, done, i, now);
    free(done);
    return 0;
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
    size_t given = 0; /* made[0..given) belong to the scheduler */
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
            const struct jobsched_job *j = jobsched__find_job(js, old[i]);
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
    for (size_t i = 0; i < b.njobs; i++)
        if (!(made[i] = job_from_spec(js, &b.jobs[i], b.batch, now))) {
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto unowned;
        }
    if ((rc = goals_after_dependencies(js, &b, made, now, err)))
        goto unowned;
    for (size_t i = 0; i < b.njobs; i++) {
        if ((rc = insert_job(js, made[i], err)))
            goto unowned;
        if (jobsched__append_job(js, made[i])) {
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto unowned;
        }
        given = i + 1;
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
            int64_t target =
                s->deps[d].batch_index >= 0 ? made[s->deps[d].batch_index]->id : s->deps[d].job_id;
            int dup = 0;
            for (size_t e = 0; e < j->ndeps; e++)
                dup |= j->deps[e].job_id == target && j->deps[e].kind == s->deps[d].kind;
            if (dup)
                continue;
            if ((rc = jstore_dep(js->st, j->id, target, jobsched_dep_kind_name(s->deps[d].kind),
                                 err)))
                goto out;
            j->deps[j->ndeps++] = (struct jobsched_dep){s->deps[d].kind, target};
            if (jobsched__add_dependent(jobsched__find_job(js, target), j->id)) {
                rc = wlm_error_set(err, ENOMEM, "out of memory");
                goto out;
            }
        }
    }
    for (size_t i = 0; i < b.njobs; i++) {
        rc = jobsched__evaluate(js, made[i], now, err);
        if (rc < 0)
            goto out;
        if (rc == 1 && (rc = jobsched__cascade(js, made[i], now, err)))
            goto out;
        rc = 0;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < b.njobs; i++)
        json_array_append_new(arr, ack_json(made[i]));
    *resp = b.batch ? json_pack("{s:o,s:s}", "jobs", arr, "batch", b.batch)
                    : json_pack("{s:o}", "jobs", arr);
    *fatal = 0;
    goto out;
unowned: /* jobs made but not yet the scheduler's */
    for (size_t i = given; i < b.njobs; i++)
        if (made[i])
            jobsched__job_free(made[i]);
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
    int rc = jobsched__tx_begin(js, &terr);
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
    if ((rc = jobsched__tx_commit(js, &terr)))
        goto abort_all;
    return;
abort_all:
    jobsched__tx_abort(js);
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
