/* cmd_job_int.h - what the pieces of `wlm job` share (private to cli/). */
#ifndef WLM_CMD_JOB_INT_H
#define WLM_CMD_JOB_INT_H

#include <jansson.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_TIMEOUT = 4 };

struct ctx {
    const char *url;
    const char *token;
};

/* One API call: the HTTP status with *out the parsed body, or -1 when the
 * controller cannot be reached (message printed). Non-2xx answers print
 * the controller's error unless quiet == 1; quiet == 2 silences only
 * transport failures. */
int cj_call(const struct ctx *c, const char *method, const char *path, const char *body,
            json_t **out, int quiet);
/* The exit code for an answer's HTTP status. */
int cj_status_exit(int status);
void cj_print_json(const json_t *v);
const char *cj_jstr(const json_t *o, const char *k, const char *dflt);
/* A number flag's value; -1 with the flag named on stderr. */
int cj_num_arg(const char *flag, const char *s, double *out);

/* `wlm job submit` (cmd_job_submit.c). */
int cj_submit(const struct ctx *c, int argc, char **argv);

#endif
