/* cli.h - shared pieces of the wlm CLI subcommands. */
#ifndef WLM_CLI_H
#define WLM_CLI_H

#include <string.h>

#include "common.h"

/* Where the controller is and how to authenticate, from flags and env. */
struct cli_ctx {
    const char *controller; /* base URL, no trailing slash */
    const char *token;      /* may be NULL */
    int json;               /* --json given before the command */
    int quiet;              /* cli_call prints nothing for non-2xx answers */
};

/* GET/POST/... controller path; on success *out is the parsed JSON body
 * (caller decrefs) and the return value is the HTTP status. On transport
 * failure prints "wlm: cannot reach the controller at URL: ..." and returns
 * -1. Non-2xx answers print the server's error and detail. */
int cli_call(const struct cli_ctx *ctx, const char *method, const char *path, const char *body,
             json_t **out);

/* What to check when the controller could not be reached, from the
 * transport error: "(...)" to print on the line after it. */
static inline const char *cli_unreachable_hint(const char *err)
{
    if (strstr(err, "certificate verify failed"))
        return "(the controller's certificate is not trusted here: set --ca or WLM_CA to the CA "
               "certificate that signed it)";
    if (strstr(err, "TLS handshake") || strstr(err, "wrong version number"))
        return "(a TLS failure: does WLM_CONTROLLER say https:// for a TLS controller and "
               "http:// for a plain one?)";
    return "(is wlm-controller running there? set --controller or WLM_CONTROLLER)";
}

/* A JSON file ("-" = standard input); prints "WHO: FILE: what is wrong" and
 * returns NULL when it cannot be read or parsed. */
json_t *cli_load_json(const char *path, const char *who);

/* Print rows as an aligned table: `cells` holds nrows*ncols strings, the
 * first row is the header. */
void cli_table(FILE *out, const char *const *cells, size_t nrows, size_t ncols);
/* GET a list: *v gets the answer, *list its member `key` (borrowed from *v).
 * Returns -1 when the caller should go on and print *list (then free *v), or
 * the exit code when done: 3 controller unreachable, 1 an error answer
 * (printed), 0 with as_json after printing the list as JSON. */
int cli_get_list(const struct cli_ctx *ctx, const char *path, const char *key, int as_json,
                 json_t **v, json_t **list);
/* A table for cli_table: the header's ncols cells (copied) and nrows rows of
 * ncols cells each, NULL until the caller fills them (row i at
 * cells + (i + 1) * ncols). print_free prints it, or `empty` when nrows is 0,
 * and frees every cell. */
char **cli_cells_new(size_t nrows, size_t ncols, const char *const *hdr);
void cli_cells_print_free(char **cells, size_t nrows, size_t ncols, const char *empty);

/* Subcommands in this directory. */
int cli_cmd_app(const struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_status(const struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_placement(const struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_utilities(const struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_token(const struct cli_ctx *ctx, int argc, char **argv); /* token.c */
/* power.c: `wlm power`, `wlm nodes set`, and energy lines for job/app show. */
int cli_cmd_power(const struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_nodes_set(const struct cli_ctx *ctx, int argc, char **argv);
void cli_print_app_energy(const struct cli_ctx *ctx, const char *app);

/* "12.3 Wh (44280 J), mean 45.6 W over 1000 s running" from an energy
 * record of GET /v1/energy/... (the caller prints the label). Inline: `wlm
 * job show` (cmd_job.c, also linked alone into its API test) uses it too. */
static inline void cli_energy_text(const json_t *e, char *out, size_t n)
{
    double j = json_number_value(json_object_get(e, "energy_j"));
    double act = json_number_value(json_object_get(e, "active_s"));
    json_t *mp = json_object_get(e, "mean_power_w");
    if (json_is_number(mp))
        snprintf(out, n, "%.3f Wh (%.0f J), mean %.1f W over %.0f s running", j / 3600.0, j,
                 json_number_value(mp), act);
    else
        snprintf(out, n, "%.3f Wh (%.0f J)", j / 3600.0, j);
}
/* The one-line summary of GET /v1/summary. */
void cli_status_line(json_t *summary, char *out, size_t size);

#endif
