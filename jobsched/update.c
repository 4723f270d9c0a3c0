/*
 * update.c - updates from the controller: re-evaluation, explicit
 * transitions, cancellation, placement, and usage reports.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

int jobsched_update(struct jobsched *js, double now, struct wlm_error *err)
{
    int rc = jobsched__tx_begin(js, err), changes = 0;
    if (rc)
        return rc;
    for (size_t i = 0; i < js->njobs; i++) {
        struct jobsched_job *j = js->jobs[i];
        if (j->state != JOBSCHED_PENDING && j->state != JOBSCHED_ELIGIBLE)
            continue;
        enum jobsched_state before = j->state;
        rc = jobsched__evaluate(js, j, now, err);
        if (rc < 0)
            goto fail;
        if (rc == 1 && (rc = jobsched__cascade(js, j, now, err)))
            goto fail;
        changes += j->state != before;
    }
    if ((rc = jobsched__tx_commit(js, err)))
        goto fail;
    return changes;
fail:
    jobsched__tx_abort(js);
    return rc;
}

static struct jobsched_job *must_find(struct jobsched *js, int64_t id, struct wlm_error *err)
{
    struct jobsched_job *j = jobsched__find_job(js, id);
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
    int rc = jobsched__tx_begin(js, err);
    if (rc)
        return rc;
    if ((rc = jobsched__set_state(js, j, to, now, reason, err)))
        goto fail;
    if (jobsched_state_terminal(to) && (rc = jobsched__cascade(js, j, now, err)))
        goto fail;
    if ((rc = jobsched__tx_commit(js, err)))
        goto fail;
    return 0;
fail:
    jobsched__tx_abort(js);
    return rc;
}

int jobsched_cancel(struct jobsched *js, int64_t id, double now, const char *reason,
                    struct wlm_error *err)
{
    const struct jobsched_job *j = must_find(js, id, err);
    if (!j)
        return -WLM_ENOTFOUND;
    if (jobsched_state_terminal(j->state))
        return wlm_error_setf(err, WLM_ECONFLICT, "state", "job %lld is already %s", (long long)id,
                              jobsched_state_name(j->state));
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

int jobsched_report_usage(struct jobsched *js, int64_t id, double done_mcycles, double threads_used,
                          double speed_mhz, double now, struct wlm_error *err)
{
    struct jobsched_job *j = must_find(js, id, err);
    if (!j)
        return -WLM_ENOTFOUND;
    if (!isfinite(done_mcycles) || done_mcycles < 0)
        return wlm_error_setf(err, WLM_EINVAL, "done_mcycles",
                              "field 'done_mcycles': must be >= 0");
    if (!isfinite(threads_used) || threads_used < 0)
        return wlm_error_setf(err, WLM_EINVAL, "threads", "field 'threads': must be >= 0");
    if (!isfinite(speed_mhz) || speed_mhz < 0)
        return wlm_error_setf(err, WLM_EINVAL, "speed_mhz", "field 'speed_mhz': must be >= 0");
    int rc = jobsched__tx_begin(js, err);
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
    if (j->state == JOBSCHED_COMPLETED && (rc = jobsched__learn_from(js, j, now, err)))
        goto fail;
    if ((rc = jobsched__tx_commit(js, err)))
        goto fail;
    return 0;
fail:
    jobsched__tx_abort(js);
    return rc;
}
