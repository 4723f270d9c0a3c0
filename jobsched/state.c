/*
 * state.c - a job's state changes, recorded in the open transaction:
 * deciding PENDING / ELIGIBLE / FAILED from dependencies and nodes, and
 * re-deciding the dependents of a job that changed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Change state in the open transaction, recording the event. */
int jobsched__set_state(struct jobsched *js, struct jobsched_job *j, enum jobsched_state to,
                        double now, const char *reason, struct wlm_error *err)
{
    enum jobsched_state from = j->state;
    if (!jobsched_transition_allowed(from, to))
        return wlm_error_setf(err, WLM_ECONFLICT, "state", "job %lld: illegal transition %s -> %s",
                              (long long)j->id, jobsched_state_name(from), jobsched_state_name(to));
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
    if ((rc = jstore_event(js->st, j->id, now, jobsched_state_name(from), jobsched_state_name(to),
                           reason ? reason : "", err)))
        return rc;
    if (to == JOBSCHED_COMPLETED)
        return jobsched__learn_from(js, j, now, err);
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
int jobsched__evaluate(struct jobsched *js, struct jobsched_job *j, double now,
                       struct wlm_error *err)
{
    if (j->state != JOBSCHED_PENDING && j->state != JOBSCHED_ELIGIBLE)
        return 0;
    char why[256] = "";
    int waiting = 0;
    for (size_t i = 0; i < j->ndeps; i++) {
        const struct jobsched_job *t = jobsched__find_job(js, j->deps[i].job_id);
        enum jobsched_state ts = t ? t->state : JOBSCHED_CANCELLED;
        enum jobsched_dep_status s = jobsched_dep_eval(j->deps[i].kind, ts);
        if (s == JOBSCHED_DEP_NEVER) {
            snprintf(why, sizeof(why), "dependency %s:%lld can never be satisfied (job %lld %s)",
                     jobsched_dep_kind_name(j->deps[i].kind), (long long)j->deps[i].job_id,
                     (long long)j->deps[i].job_id, jobsched_state_name(ts));
            int rc = jobsched__set_state(js, j, JOBSCHED_FAILED, now, why, err);
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
    jobsched__refresh_eligible(js, j);
    enum jobsched_state want = (!waiting && m > 0) ? JOBSCHED_ELIGIBLE : JOBSCHED_PENDING;
    if (want == JOBSCHED_ELIGIBLE)
        why[0] = 0;
    if (want != j->state)
        return jobsched__set_state(js, j, want, now, why, err);
    return set_reason(js, j, why, err);
}

/* Evaluate `start`'s dependents, and theirs when they fail in turn, with an
 * explicit work list (chains can be long). */
int jobsched__cascade(struct jobsched *js, struct jobsched_job *start, double now,
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
        struct jobsched_job *d = jobsched__find_job(js, work[--n]);
        if (!d)
            continue;
        rc = jobsched__evaluate(js, d, now, err);
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
