/* settle.h - actions in flight across a controller restart (settle.c). */
#ifndef WLM_CONTROLLER_SETTLE_H
#define WLM_CONTROLLER_SETTLE_H

#include "internal.h"

/* 1 for the kinds recorded while in flight (all but starts and power). */
int ctl_settle_tracked(const struct ctl_action *a);
/* The action was sent / its outcome is known. */
void ctl_settle_record(struct controller *c, const struct ctl_action *a);
void ctl_settle_forget(struct controller *c, const char *id);
/* At start: create the table and load what a previous run left in flight. */
int ctl_settle_load(struct controller *c, struct wlm_error *err);
/* 1 while an action on the job from before the restart is unsettled. */
int ctl_settle_job_pending(const struct controller *c, int64_t job);
struct ctl_action *ctl_settle_find(struct controller *c, const char *id);
/* Apply the outcome (as a completion would) and forget the action. */
void ctl_settle_outcome(struct controller *c, struct ctl_action *a, int ok, const char *detail,
                        const json_t *result);
/* A node reported: ask its agent about its unsettled actions. */
void ctl_settle_heartbeat(struct controller *c, const struct ctl_node *n);
/* Give up on actions whose node stayed silent past the action timeout. */
void ctl_settle_timeouts(struct controller *c);
void ctl_settle_free(struct controller *c);

#endif
