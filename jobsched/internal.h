/* internal.h - private declarations shared by jobsched's sources. */
#ifndef WLM_JOBSCHED_INTERNAL_H
#define WLM_JOBSCHED_INTERNAL_H

#include "jobsched.h"

void jobsched_requirements_fini(struct jobsched_requirements *r);

/* The clock of the shell (HTTP handlers); the core never calls it. */
double jobsched__now(struct jobsched *js);
/* Learned profiles (array owned by js). */
size_t jobsched__profiles(const struct jobsched *js, const struct jobsched_profile **out);

/* Group commit state of the API (see api.c). */
uv_loop_t *jobsched__loop(struct jobsched *js);
void **jobsched__api_group(struct jobsched *js);

/* ---- the job store's backends (store.c) ---- */
struct wlm_store;
struct jstore_row {
    int64_t id;
    const char *submit_id; /* may be NULL */
    const char *spec;
    double work_mcycles;
    const char *state, *reason;
    double state_time, end_time;
    const char *node;
    double alloc_mhz, done_mcycles, seen_threads, seen_speed_mhz;
    int learned;
};
/* Callbacks return 0, or non-zero to stop (out of memory). */
struct jstore_loader {
    int (*job)(const struct jstore_row *r, void *ud);
    int (*dep)(int64_t job, int64_t dep, const char *kind, void *ud);
    int (*profile)(const struct jobsched_profile *p, void *ud);
};
enum { JSTORE_STATE = 1, JSTORE_REASON = 2, JSTORE_PLACE = 4, JSTORE_USAGE = 8, JSTORE_WORK = 16 };
int jstore_bind(struct jobsched_store *st, struct jobsched *js, struct wlm_error *err);
void jstore_unbind(struct jobsched_store *st);
int jstore_begin(struct jobsched_store *st, struct wlm_error *err);
int jstore_commit(struct jobsched_store *st, struct wlm_error *err);
void jstore_rollback(struct jobsched_store *st);
/* Store a new job (its current fields); *id gets its id. */
int jstore_insert(struct jobsched_store *st, const struct jobsched_job *j, const char *spec_text,
                  int64_t *id, struct wlm_error *err);
/* Store the fields named by `what` (JSTORE_*) from memory. */
int jstore_save(struct jobsched_store *st, const struct jobsched_job *j, unsigned what,
                struct wlm_error *err);
int jstore_event(struct jobsched_store *st, int64_t id, double t, const char *from,
                 const char *to, const char *reason, struct wlm_error *err);
int jstore_dep(struct jobsched_store *st, int64_t id, int64_t dep, const char *kind,
               struct wlm_error *err);
int jstore_profile(struct jobsched_store *st, const struct jobsched_profile *p,
                   struct wlm_error *err);
/* id of the job with this submit_id, 0 when none, <0 on error. */
int64_t jstore_by_submit(struct jobsched_store *st, const char *sid, struct wlm_error *err);
int jstore_load(struct jobsched_store *st, const struct jstore_loader *ld, void *ud,
                struct wlm_error *err);
int jstore_history(struct jobsched_store *st, int64_t id, struct jobsched_event **out, size_t *n,
                   struct wlm_error *err);
/* The etcd document of a job, from memory (NULL when unknown). */
json_t *jobsched__job_doc(struct jobsched *js, int64_t id);

/* ---- the scheduler object, shared by jobsched.c and its pieces ---- */
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
    int stale;       /* memory may differ from the store (a reload failed) */
    uv_loop_t *loop; /* set: the API group-commits submissions */
    void *api_group; /* the API's group being collected */
};

/* jobsched.c */
void jobsched__job_free(struct jobsched_job *j);
struct jobsched_job *jobsched__find_job(const struct jobsched *js, int64_t id);
int jobsched__append_job(struct jobsched *js, struct jobsched_job *j);
int jobsched__add_dependent(struct jobsched_job *target, int64_t id);

/* persist.c */
json_t *jobsched__spec_to_json(const struct jobsched_job *j);
void jobsched__clear_memory(struct jobsched *js);
int jobsched__load_all(struct jobsched *js, struct wlm_error *err);
int jobsched__tx_begin(struct jobsched *js, struct wlm_error *err);
int jobsched__tx_commit(struct jobsched *js, struct wlm_error *err);
void jobsched__tx_abort(struct jobsched *js);

/* nodes.c */
void jobsched__nodes_free(struct node_copy *nc);
void jobsched__refresh_eligible(struct jobsched *js, struct jobsched_job *j);

/* state.c */
int jobsched__set_state(struct jobsched *js, struct jobsched_job *j, enum jobsched_state to,
                        double now, const char *reason, struct wlm_error *err);
int jobsched__evaluate(struct jobsched *js, struct jobsched_job *j, double now,
                       struct wlm_error *err);
int jobsched__cascade(struct jobsched *js, struct jobsched_job *start, double now,
                      struct wlm_error *err);

/* profiles.c */
struct jobsched_profile *jobsched__profile_find(const struct jobsched *js, const char *kind);
int jobsched__learn_from(struct jobsched *js, struct jobsched_job *j, double now,
                         struct wlm_error *err);

#endif
