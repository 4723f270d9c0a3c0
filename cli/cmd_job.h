/* cmd_job.h - `wlm job`: submit, list, show, cancel and wait for jobs. */
#ifndef WLM_CMD_JOB_H
#define WLM_CMD_JOB_H

/* argv[0] is "job". controller_url has no trailing slash; token may be NULL.
 * Exit codes: 0 success (for wait: every job COMPLETED), 1 the controller
 * rejected the request or a waited-for job FAILED / was CANCELLED, 2 usage
 * error, 3 controller unreachable, 4 wait timed out. */
int wlm_cmd_job(int argc, char **argv, const char *controller_url, const char *token);

#endif
