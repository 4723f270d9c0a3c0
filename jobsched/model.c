/*
 * model.c - names, the job state machine, dependency evaluation, profile rule.
 * Pure code.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "jobsched.h"

static const char *const state_names[JOBSCHED_NSTATES] = {
    "PENDING", "ELIGIBLE", "STARTING", "RUNNING", "PAUSED",
    "SUSPENDED", "MIGRATING", "COMPLETED", "FAILED", "CANCELLED",
};
static const char *const class_names[JOBSCHED_NCLASSES] = {"platinum", "gold", "silver",
                                                           "bronze"};
static const char *const dep_names[] = {"afterok", "afterany", "afternotok"};

const char *jobsched_state_name(enum jobsched_state s)
{
    return (unsigned)s < JOBSCHED_NSTATES ? state_names[s] : "UNKNOWN";
}

int jobsched_state_parse(const char *s, enum jobsched_state *out)
{
    for (int i = 0; s && i < JOBSCHED_NSTATES; i++)
        if (strcasecmp(s, state_names[i]) == 0) {
            *out = (enum jobsched_state)i;
            return 0;
        }
    return -WLM_EINVAL;
}

const char *jobsched_class_name(enum jobsched_class c)
{
    return (unsigned)c < JOBSCHED_NCLASSES ? class_names[c] : "unknown";
}

int jobsched_class_parse(const char *s, enum jobsched_class *out)
{
    for (int i = 0; s && i < JOBSCHED_NCLASSES; i++)
        if (strcasecmp(s, class_names[i]) == 0) {
            *out = (enum jobsched_class)i;
            return 0;
        }
    return -WLM_EINVAL;
}

const char *jobsched_dep_kind_name(enum jobsched_dep_kind k)
{
    return (unsigned)k < WLM_ARRAY_LEN(dep_names) ? dep_names[k] : "unknown";
}

int jobsched_dep_kind_parse(const char *s, enum jobsched_dep_kind *out)
{
    for (size_t i = 0; s && i < WLM_ARRAY_LEN(dep_names); i++)
        if (strcasecmp(s, dep_names[i]) == 0) {
            *out = (enum jobsched_dep_kind)i;
            return 0;
        }
    return -WLM_EINVAL;
}

int jobsched_state_terminal(enum jobsched_state s)
{
    return s == JOBSCHED_COMPLETED || s == JOBSCHED_FAILED || s == JOBSCHED_CANCELLED;
}

#define B(s) (1u << JOBSCHED_##s)
/* Allowed successors of each state. Any live state may fail or be
 * cancelled; PENDING and ELIGIBLE flip as dependencies and nodes change;
 * STARTING may fall back to ELIGIBLE when a start is abandoned (the node
 * went away before the job ran), so nothing is lost. MIGRATING ends where
 * the VM lands: running, paused or suspended. */
static const unsigned allowed[JOBSCHED_NSTATES] = {
    [JOBSCHED_PENDING] = B(ELIGIBLE) | B(FAILED) | B(CANCELLED),
    [JOBSCHED_ELIGIBLE] = B(PENDING) | B(STARTING) | B(FAILED) | B(CANCELLED),
    [JOBSCHED_STARTING] = B(RUNNING) | B(ELIGIBLE) | B(COMPLETED) | B(FAILED) | B(CANCELLED),
    [JOBSCHED_RUNNING] = B(PAUSED) | B(SUSPENDED) | B(MIGRATING) | B(COMPLETED) | B(FAILED) |
                         B(CANCELLED),
    [JOBSCHED_PAUSED] = B(RUNNING) | B(SUSPENDED) | B(MIGRATING) | B(FAILED) | B(CANCELLED),
    [JOBSCHED_SUSPENDED] = B(RUNNING) | B(MIGRATING) | B(FAILED) | B(CANCELLED),
    [JOBSCHED_MIGRATING] = B(RUNNING) | B(PAUSED) | B(SUSPENDED) | B(FAILED) | B(CANCELLED),
    [JOBSCHED_COMPLETED] = 0,
    [JOBSCHED_FAILED] = 0,
    [JOBSCHED_CANCELLED] = 0,
};
#undef B

int jobsched_transition_allowed(enum jobsched_state from, enum jobsched_state to)
{
    if ((unsigned)from >= JOBSCHED_NSTATES || (unsigned)to >= JOBSCHED_NSTATES)
        return 0;
    return (allowed[from] >> to) & 1u;
}

enum jobsched_dep_status jobsched_dep_eval(enum jobsched_dep_kind kind, enum jobsched_state dep)
{
    if (!jobsched_state_terminal(dep))
        return JOBSCHED_DEP_WAITING;
    switch (kind) {
    case JOBSCHED_AFTEROK:
        return dep == JOBSCHED_COMPLETED ? JOBSCHED_DEP_SATISFIED : JOBSCHED_DEP_NEVER;
    case JOBSCHED_AFTERNOTOK:
        return dep == JOBSCHED_COMPLETED ? JOBSCHED_DEP_NEVER : JOBSCHED_DEP_SATISFIED;
    case JOBSCHED_AFTERANY:
    default:
        return JOBSCHED_DEP_SATISFIED;
    }
}

double jobsched_job_max_mhz(const struct jobsched_job *j)
{
    return (j->threads > 0 ? j->threads : 1) * j->max_speed_mhz;
}

double jobsched_job_remaining(const struct jobsched_job *j)
{
    double r = j->work_mcycles - j->done_mcycles;
    return r > 0 ? r : 0;
}

void jobsched_config_default(struct jobsched_config *c)
{
    memset(c, 0, sizeof(*c));
    c->class_factor[JOBSCHED_PLATINUM] = 1.5;
    c->class_factor[JOBSCHED_GOLD] = 3;
    c->class_factor[JOBSCHED_SILVER] = 10;
    c->class_factor[JOBSCHED_BRONZE] = 20;
    c->utility_min = -1;
    c->utility_max = 1;
    c->ref_mhz = 1000;
    c->default_work_seconds = 3600;
    c->default_max_speed_mhz = 1000;
    c->default_memory_mb = 512;
    c->profile_alpha = 0.3;
    c->max_batch = 10000;
    c->utility_points = 8;
}

void jobsched_profile_learn(struct jobsched_profile *p, double mcycles, double threads,
                            double max_speed_mhz, double now, double alpha)
{
    if (p->samples <= 0) {
        p->mcycles = mcycles;
        p->threads = threads;
        p->max_speed_mhz = max_speed_mhz;
    } else {
        /* Exponential averaging follows drift (inputs change between runs)
         * without letting one odd run dominate. */
        p->mcycles = alpha * mcycles + (1 - alpha) * p->mcycles;
        p->threads = alpha * threads + (1 - alpha) * p->threads;
        /* A lower observed speed says the job was held back, not that it
         * cannot go faster: keep the highest. */
        if (max_speed_mhz > p->max_speed_mhz)
            p->max_speed_mhz = max_speed_mhz;
    }
    p->samples++;
    p->updated = now;
}
