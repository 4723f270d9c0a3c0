/* cmd_plan.h - `wlm plan`: what-if placement on a snapshot file. */
#ifndef WLM_CLI_CMD_PLAN_H
#define WLM_CLI_CMD_PLAN_H

#include <stdio.h>

/* argv[0] is "plan". Returns the exit code: 0 ok, 1 failure (unreadable or
 * bad snapshot, solver error), 2 usage. */
int wlm_cmd_plan(int argc, char **argv);
/* Same, writing results to `out` and messages to `err` (tests). */
int wlm_cmd_plan_io(int argc, char **argv, FILE *out, FILE *err);

#endif
