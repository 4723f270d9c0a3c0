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

#endif
