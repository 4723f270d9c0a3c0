/*
 * profiles.c - learned job profiles: looking one up by kind, and
 * teaching it a completed run.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct jobsched_profile *jobsched__profile_find(const struct jobsched *js, const char *kind)
{
    for (size_t i = 0; kind && i < js->nprofiles; i++)
        if (strcmp(js->profiles[i].kind, kind) == 0)
            return &js->profiles[i];
    return NULL;
}

const struct jobsched_profile *jobsched_profile_get(const struct jobsched *js, const char *kind)
{
    return jobsched__profile_find(js, kind);
}

size_t jobsched__profiles(const struct jobsched *js, const struct jobsched_profile **out)
{
    *out = js->profiles;
    return js->nprofiles;
}

/* Teach the profiler a completed run (once per job), inside the open
 * transaction. Nothing is learned without usage reports: the work estimate
 * alone would teach the profiler what it already believed. */
int jobsched__learn_from(struct jobsched *js, struct jobsched_job *j, double now,
                         struct wlm_error *err)
{
    if (j->learned || j->done_mcycles <= 0 || !j->kind)
        return 0;
    struct jobsched_profile *p = jobsched__profile_find(js, j->kind), tmp;
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
