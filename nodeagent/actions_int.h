/* Private to the action code (actions.c, act_vm.c, act_migrate.c, jobs.c):
 * one accepted action, and the helpers its steps share. */
#ifndef WLM_NODEAGENT_ACTIONS_INT_H
#define WLM_NODEAGENT_ACTIONS_INT_H

#include <stdio.h>

#include "internal.h"

struct na_action {
    struct na_action *next;
    struct nodeagent *a;
    char id[128];
    char kind[24];
    char job[128]; /* job or instance id; "" for node actions */
    json_t *params;
    char status[16]; /* accepted, running, succeeded, failed */
    json_t *result;
    struct wlm_error err;
    double t_accept, t_start, t_done;
    uv_work_t work;
    void (*run)(struct na_action *); /* on the thread pool */
    void (*after)(struct na_action *);
    int done; /* set by `after` steps that finish the action */
    /* scratch shared by run/after */
    struct nodeagent_vm_rec rec;
    int have_rec;
    char *image;
    /* migrate fallback */
    char target[256];
    char remote_id[160];
    int polls, stage;
    uv_timer_t *timer;
    int recovered;                         /* settled or finished after an agent restart */
    int lost;                              /* cut off by an agent restart, its effect not there */
    struct nodeagent_migrate_stats mstats; /* live migration figures */
    char live_error[256];                  /* why a live migration fell back */
};

int na_kind_is_app(const char *k);
/* A new action (takes `params`); not yet checked or queued. */
struct na_action *na_action_new(struct nodeagent *a, const char *id, const char *kind,
                                const char *target, json_t *params);
/* Validation and conflict checks against the VM-ID repository (may record
 * a starting job); nothing is queued. */
int na_action_check(struct na_action *x, struct wlm_error *err);
/* Record as running, list it (idempotency) and queue its first step. */
void na_action_launch(struct na_action *x);
/* POST the action's outcome document to the controller. */
void na_notify_complete(struct nodeagent *a, const char *id, json_t *doc);
void na_action_free(struct na_action *x);
/* Replace the action's result (takes the reference). */
void na_set_result(struct na_action *x, json_t *r);
/* Mark done (status from x->err), count it, post the completion. */
void na_action_finish(struct na_action *x);
/* Run `run` on the thread pool, then `after` on the loop; the action
 * finishes after `after` unless it clears x->done. */
void na_queue_step(struct na_action *x, void (*run)(struct na_action *),
                   void (*after)(struct na_action *));
const char *na_pstr(struct na_action *x, const char *k);
long long na_pint(struct na_action *x, const char *k, long long def);
/* STATE/jobs/JOB[/file] */
void na_job_path(struct nodeagent *a, const char *job, const char *file, char *out, size_t n);
void na_save_path_of(struct nodeagent *a, const char *job, char *out, size_t n);
int na_rec_live(const struct nodeagent_vm_rec *r);
void na_release_image_run(struct na_action *x);
/* The job's console log (capped at 16 MiB), malloc'd; NULL when none. */
char *na_read_console(struct nodeagent *a, const char *job, size_t *len);

/* act_vm.c */
void na_start_run(struct na_action *x);
void na_start_after(struct na_action *x);
void na_pause_run(struct na_action *x);
void na_pause_after(struct na_action *x);
void na_resume_run(struct na_action *x);
void na_resume_after(struct na_action *x);
void na_suspend_run(struct na_action *x);
void na_suspend_after(struct na_action *x);
void na_restore_run(struct na_action *x);
void na_restore_after(struct na_action *x);
void na_resize_run(struct na_action *x);
void na_stop_run(struct na_action *x);
void na_stop_after(struct na_action *x);
void na_destroy_run(struct na_action *x);
void na_destroy_after(struct na_action *x);
void na_app_start_run(struct na_action *x);
void na_app_start_after(struct na_action *x);
void na_power_run(struct na_action *x);
void na_power_after(struct na_action *x);
void na_pool_hint_run(struct na_action *x);

/* act_migrate.c */
void na_migrate_run(struct na_action *x);
void na_migrate_after(struct na_action *x);
void na_migrate_timer_closed(uv_handle_t *h);
void na_adopt_run(struct na_action *x);
void na_adopt_after(struct na_action *x);

/* jobs.c */
void na_h_list_jobs(struct wlm_http_req *req, void *ud);
void na_h_get_job(struct wlm_http_req *req, void *ud);

#endif
