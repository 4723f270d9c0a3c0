/*
 * cmd_job.c - `wlm job`: list, show, cancel and wait for jobs (submit:
 * cmd_job_submit.c), and what the subcommands share.
 *
 * A thin client of the controller's /v1/jobs API: tables for people, --json
 * for scripts, and exit codes a script can branch on (see cmd_job.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_job.h"
#include "cmd_job_int.h"
#include "common.h"

static const char usage_text[] =
    "Usage: wlm job COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  submit [OPTIONS] [-- COMMAND...]   submit a job (flags) or jobs (-f FILE)\n"
    "  list [--state S[,S]] [--class C] [--limit N] [--json]\n"
    "  show ID [--json]                   state, reason, goal, prediction, dependencies, history\n"
    "  cancel ID... [--json]\n"
    "  wait ID... [--timeout S] [--interval S] [--quiet]\n"
    "                                     block until the jobs end; exit 0 when all COMPLETED,\n"
    "                                     1 when any FAILED or was CANCELLED, 4 on timeout\n"
    "\n"
    "Exit codes: 0 ok, 1 rejected by the controller or job failed, 2 usage error,\n"
    "3 controller unreachable, 4 wait timed out.\n";

/* ---------------------------------------------------------------- HTTP */

/* Is this the controller's error body? Its errors are {"error": name,
 * "detail": ...} with a snake_case name ("not_found"); a router's data port
 * says {"error": "Not Found"}, an application anything at all. */
static int is_controller(const struct ctx *c, json_t *body)
{
    (void)c;
    const char *e = json_string_value(json_object_get(body, "error"));
    if (!e || !*e)
        return 0;
    for (const char *p = e; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
            return 0;
    return 1;
}

/* Returns the HTTP status with *out the parsed body, or -1 when the
 * controller cannot be reached (message printed). Non-2xx answers print the
 * controller's error unless quiet == 1; quiet == 2 silences only transport failures. */
int cj_call(const struct ctx *c, const char *method, const char *path, const char *body,
            json_t **out, int quiet)
{
    char url[2048];
    struct wlm_http_response resp;
    struct wlm_error err;
    memset(&resp, 0, sizeof(resp));
    wlm_error_clear(&err);
    *out = NULL;
    snprintf(url, sizeof(url), "%s%s", c->url, path);
    if (wlm_http_fetch(method, url, c->token, body ? "application/json" : NULL, body,
                       body ? strlen(body) : 0, 30000, &resp, &err)) {
        if (quiet < 2)
            fprintf(stderr, "wlm job: cannot reach the controller at %s: %s\n         %s\n", c->url,
                    err.msg, cli_unreachable_hint(err.msg));
        return -1;
    }
    json_t *v = resp.body_len ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
    /* A 404 or 5xx without the controller's error body, or from something
     * whose /healthz is not the controller's: a router or an app. */
    if ((resp.status == 404 || resp.status >= 500 ||
         (resp.status >= 200 && resp.status < 300 && resp.body_len && !json_is_object(v))) &&
        !is_controller(c, v)) {
        if (quiet < 2)
            fprintf(stderr,
                    "wlm job: %s answered HTTP %d: this is not a wlm controller.\n"
                    "     Point --controller or WLM_CONTROLLER at the controller's API (default "
                    "port 7700), not at a router or an application.\n",
                    c->url, resp.status);
        json_decref(v);
        wlm_http_response_fini(&resp);
        return -1;
    }
    if ((resp.status < 200 || resp.status > 299) && quiet != 1) {
        const char *d = json_string_value(json_object_get(v, "detail"));
        if (resp.status == 401)
            fprintf(stderr,
                    "wlm job: the controller refused the token (%s); set WLM_TOKEN or "
                    "--token\n",
                    c->token && *c->token ? "wrong token" : "no token given");
        else
            fprintf(stderr, "wlm job: %s\n",
                    d && *d ? d
                            : (resp.body && *resp.body ? resp.body : wlm_http_reason(resp.status)));
    }
    int status = resp.status;
    wlm_http_response_fini(&resp);
    *out = v;
    return status;
}

/* The job's energy line; quietly nothing from a controller without energy
 * accounting. */
static void print_energy(const struct ctx *c, long long id)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/energy/jobs/%lld", id);
    json_t *v = NULL;
    if (cj_call(c, "GET", path, NULL, &v, 1) == 200) {
        char t[160];
        cli_energy_text(v, t, sizeof(t));
        printf("  energy:      %s\n", t);
    }
    json_decref(v);
}

int cj_status_exit(int status)
{
    if (status < 0)
        return EXIT_UNREACHABLE;
    return status >= 200 && status <= 299 ? EXIT_OK : EXIT_FAIL;
}

void cj_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s ? s : "null");
    free(s);
}

const char *cj_jstr(const json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : dflt;
}

static double jnum(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static char *fmt_time(double t, char *buf, size_t size)
{
    if (t <= 0 || !isfinite(t)) {
        snprintf(buf, size, "-");
        return buf;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static char *fmt_dur(double s, char *buf, size_t size)
{
    const char *sign = s < 0 ? "-" : "";
    s = fabs(s);
    if (s < 120)
        snprintf(buf, size, "%s%.0fs", sign, s);
    else if (s < 7200)
        snprintf(buf, size, "%s%.0fm", sign, s / 60);
    else if (s < 172800)
        snprintf(buf, size, "%s%.1fh", sign, s / 3600);
    else
        snprintf(buf, size, "%s%.1fd", sign, s / 86400);
    return buf;
}

static int parse_job_id(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0) {
        fprintf(stderr, "wlm job: '%s' is not a job id\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

int cj_num_arg(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v)) {
        fprintf(stderr, "wlm job: %s: '%s' is not a number\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- list / show */

static int isalnum_ascii(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

static int cmd_list(const struct ctx *c, int argc, char **argv)
{
    int as_json = 0;
    struct wlm_buf q;
    wlm_buf_init(&q);
    int rc = EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("Usage: wlm job list [--state S[,S...]] [--class C] [--limit N] [--json]\n"
                   "The most recent jobs (default 1000), oldest first.\n");
            rc = EXIT_OK;
            goto out;
        } else if (!strcmp(a, "--state") || !strcmp(a, "--class") || !strcmp(a, "--limit")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "wlm job list: %s needs a value\n", a);
                goto out;
            }
            /* Values are simple words; reject anything that would need
             * escaping rather than build a broken query. */
            const char *v = argv[++i];
            for (const char *p = v; *p; p++)
                if (!(isalnum_ascii(*p) || *p == ',' || *p == '_')) {
                    fprintf(stderr, "wlm job list: %s: invalid value '%s'\n", a, v);
                    goto out;
                }
            wlm_buf_printf(&q, "%s%s=%s", q.len ? "&" : "?", a + 2, v);
        } else {
            fprintf(stderr, "wlm job list: unknown argument '%s'\n", a);
            goto out;
        }
    }
    char path[512];
    snprintf(path, sizeof(path), "/v1/jobs%s", q.data ? q.data : "");
    json_t *resp;
    int st = cj_call(c, "GET", path, NULL, &resp, 0);
    rc = cj_status_exit(st);
    if (rc == EXIT_OK) {
        if (as_json) {
            cj_print_json(resp);
        } else {
            json_t *arr = json_object_get(resp, "jobs");
            double now = wlm_now_wall();
            printf("%-8s %-20s %-12s %-10s %-9s %-12s %5s %-8s %-14s %s\n", "ID", "NAME", "OWNER",
                   "STATE", "CLASS", "NODE", "DONE", "GOAL", "LEFT", "REASON");
            size_t i;
            json_t *j;
            json_array_foreach(arr, i, j)
            {
                char goal[32], left[48], d[32];
                double gt = jnum(j, "goal_time");
                time_t gtt = (time_t)gt;
                struct tm tm;
                strftime(goal, sizeof(goal), "%H:%M:%S", localtime_r(&gtt, &tm));
                /* A finished job stops counting: how early or late it ended. */
                json_t *et = json_object_get(j, "end_time");
                const char *st = cj_jstr(j, "state", "?");
                if (!strcmp(st, "COMPLETED") && json_is_number(et) && json_number_value(et) > 0) {
                    double early = gt - json_number_value(et);
                    fmt_dur(fabs(early), d, sizeof(d));
                    snprintf(left, sizeof(left), "%s %s", d, early >= 0 ? "early" : "late");
                } else if (!strcmp(st, "FAILED") || !strcmp(st, "CANCELLED")) {
                    snprintf(left, sizeof(left), "-");
                } else {
                    fmt_dur(gt - now, left, sizeof(left));
                }
                /* A completed job did all its work, whatever the estimate said. */
                double pg = !strcmp(st, "COMPLETED") ? 1 : jnum(j, "progress");
                char row[768];
                snprintf(row, sizeof(row),
                         "%-8lld %-20.20s %-12.12s %-10s %-9s %-12.12s %4.0f%% %-8s %-14s %s",
                         (long long)json_integer_value(json_object_get(j, "id")),
                         cj_jstr(j, "name", "-"), cj_jstr(j, "owner", "-"), st,
                         cj_jstr(j, "class", "?"), cj_jstr(j, "node", "-"),
                         100 * (pg > 1   ? 1
                                : pg < 0 ? 0
                                         : pg),
                         goal, left, cj_jstr(j, "reason", ""));
                size_t rl = strlen(row);
                while (rl && row[rl - 1] == ' ')
                    row[--rl] = '\0'; /* no trailing separator without a reason */
                printf("%s\n", row);
            }
            long long total = json_integer_value(json_object_get(resp, "total"));
            if ((size_t)total > json_array_size(arr))
                printf("(%zu of %lld shown; use --limit)\n", json_array_size(arr), total);
        }
    }
    json_decref(resp);
out:
    wlm_buf_fini(&q);
    return rc;
}

static void show_human(const json_t *j)
{
    char b1[40], b2[40];
    double now = wlm_now_wall();
    printf("Job %lld%s%s%s\n", (long long)json_integer_value(json_object_get(j, "id")),
           json_is_string(json_object_get(j, "name")) ? " (" : "", cj_jstr(j, "name", ""),
           json_is_string(json_object_get(j, "name")) ? ")" : "");
    const char *reason = cj_jstr(j, "reason", "");
    printf("  state:       %s%s%s\n", cj_jstr(j, "state", "?"), *reason ? ": " : "", reason);
    printf("  command:     %s\n", cj_jstr(j, "command", "-"));
    printf("  class:       %s\n", cj_jstr(j, "class", "?"));
    printf("  owner:       %s\n", cj_jstr(j, "owner", "-"));
    printf("  submitted:   %s\n", fmt_time(jnum(j, "submit_time"), b1, sizeof(b1)));
    printf("  goal:        %s (%s %s)\n", fmt_time(jnum(j, "goal_time"), b1, sizeof(b1)),
           fmt_dur(fabs(jnum(j, "goal_time") - now), b2, sizeof(b2)),
           jnum(j, "goal_time") >= now ? "from now" : "ago");
    json_t *pc = json_object_get(j, "predicted_completion");
    if (json_is_number(pc)) {
        /* Placed jobs are predicted at their allocation; waiting ones at full
         * speed from now, i.e. the earliest they could finish. */
        const char *st = cj_jstr(j, "state", "");
        int placed =
            (!strcmp(st, "RUNNING") || !strcmp(st, "STARTING") || !strcmp(st, "MIGRATING")) &&
            jnum(j, "alloc_mhz") > 0;
        printf("  %s %s (utility %.2f)\n", placed ? "predicted: " : "earliest:  ",
               fmt_time(json_number_value(pc), b1, sizeof(b1)), jnum(j, "predicted_utility"));
    } else if (json_is_number(json_object_get(j, "end_time")))
        printf("  ended:       %s\n", fmt_time(jnum(j, "end_time"), b1, sizeof(b1)));
    printf("  work:        %.0f of %.0f Mcycles (%s profile), %lld thread(s) x %.0f MHz, %lld MB\n",
           jnum(j, "done_mcycles"), jnum(j, "work_mcycles"), cj_jstr(j, "profile", "?"),
           (long long)json_integer_value(json_object_get(j, "threads")), jnum(j, "max_speed_mhz"),
           (long long)json_integer_value(json_object_get(j, "memory_mb")));
    if (json_is_string(json_object_get(j, "node")))
        printf("  node:        %s at %.0f MHz\n", cj_jstr(j, "node", ""), jnum(j, "alloc_mhz"));
    json_t *el = json_object_get(j, "eligible_nodes");
    if (json_array_size(el)) {
        printf("  eligible:    ");
        for (size_t i = 0; i < json_array_size(el); i++)
            printf("%s%s", i ? ", " : "", json_string_value(json_array_get(el, i)));
        printf("\n");
    }
    json_t *deps = json_object_get(j, "dependencies");
    if (json_array_size(deps)) {
        printf("  depends on:\n");
        size_t i;
        json_t *d;
        json_array_foreach(deps, i, d)
            printf("    %s:%lld  (%s, %s)\n", cj_jstr(d, "kind", "?"),
                   (long long)json_integer_value(json_object_get(d, "on")),
                   cj_jstr(d, "state", "?"), cj_jstr(d, "status", "?"));
    }
    json_t *dn = json_object_get(j, "dependents");
    if (json_array_size(dn)) {
        printf("  dependents: ");
        for (size_t i = 0; i < json_array_size(dn); i++)
            printf(" %lld", (long long)json_integer_value(json_array_get(dn, i)));
        printf("\n");
    }
    json_t *h = json_object_get(j, "history");
    if (json_array_size(h)) {
        printf("  history:\n");
        size_t i;
        json_t *e;
        json_array_foreach(h, i, e)
        {
            const char *from = cj_jstr(e, "from", "?"), *to = cj_jstr(e, "to", "?");
            const char *r = cj_jstr(e, "reason", "");
            if (!strcmp(from, to))
                printf("    %s  %s%s%s\n", fmt_time(jnum(e, "t"), b1, sizeof(b1)), to,
                       *r ? "  " : "", r);
            else
                printf("    %s  %s -> %s%s%s\n", fmt_time(jnum(e, "t"), b1, sizeof(b1)), from, to,
                       *r ? "  " : "", r);
        }
    }
}

static int cmd_show(const struct ctx *c, int argc, char **argv)
{
    int as_json = 0;
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("Usage: wlm job show ID [--json]\n");
            return EXIT_OK;
        } else if (argv[i][0] == '-' || id) {
            fprintf(stderr, "wlm job show: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        } else
            id = argv[i];
    }
    long long v;
    if (!id) {
        fprintf(stderr, "wlm job show: which job? (wlm job show ID)\n");
        return EXIT_USAGE;
    }
    if (parse_job_id(id, &v))
        return EXIT_USAGE;
    char path[64];
    snprintf(path, sizeof(path), "/v1/jobs/%lld", v);
    json_t *resp;
    int rc = cj_status_exit(cj_call(c, "GET", path, NULL, &resp, 0));
    if (rc == EXIT_OK) {
        if (as_json)
            cj_print_json(resp);
        else {
            show_human(resp);
            print_energy(c, v);
        }
    }
    json_decref(resp);
    return rc;
}

/* ---------------------------------------------------------------- cancel / wait */

static int collect_ids(const char *cmd, int argc, char **argv, long long **ids, size_t *n,
                       int *as_json, double *timeout, double *interval, int *quiet)
{
    *ids = calloc((size_t)argc + 1, sizeof(long long));
    *n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json") && as_json) {
            *as_json = 1;
        } else if (!strcmp(a, "--quiet") && quiet) {
            *quiet = 1;
        } else if ((!strcmp(a, "--timeout") && timeout) || (!strcmp(a, "--interval") && interval)) {
            double v;
            if (i + 1 >= argc || cj_num_arg(a, argv[i + 1], &v) || v < 0) {
                fprintf(stderr, "wlm job %s: %s needs a number of seconds\n", cmd, a);
                return -1;
            }
            i++;
            if (!strcmp(a, "--timeout"))
                *timeout = v;
            else
                *interval = v;
        } else if (a[0] == '-') {
            fprintf(stderr, "wlm job %s: unknown argument '%s'\n", cmd, a);
            return -1;
        } else {
            if (parse_job_id(a, &(*ids)[*n]))
                return -1;
            (*n)++;
        }
    }
    if (*n == 0) {
        fprintf(stderr, "wlm job %s: which job(s)? (wlm job %s ID...)\n", cmd, cmd);
        return -1;
    }
    return 0;
}

static int cmd_cancel(const struct ctx *c, int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("Usage: wlm job cancel ID... [--json]\nCancel jobs; jobs that depend on them "
               "with afterok fail with a reason.\n");
        return EXIT_OK;
    }
    long long *ids;
    size_t n;
    int as_json = 0, worst = EXIT_OK;
    if (collect_ids("cancel", argc, argv, &ids, &n, &as_json, NULL, NULL, NULL)) {
        free(ids);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/jobs/%lld", ids[i]);
        json_t *resp;
        int rc = cj_status_exit(cj_call(c, "DELETE", path, NULL, &resp, 0));
        if (rc == EXIT_OK) {
            if (as_json)
                cj_print_json(resp);
            else
                printf("cancelled job %lld\n", ids[i]);
        }
        json_decref(resp);
        if (rc > worst)
            worst = rc;
        if (rc == EXIT_UNREACHABLE)
            break;
    }
    free(ids);
    return worst;
}

static int cmd_wait(const struct ctx *c, int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("Usage: wlm job wait ID... [--timeout S] [--interval S] [--quiet]\n"
               "Block until every job has ended, with a progress line on stderr.\n"
               "Exit 0 when all COMPLETED, 1 when any FAILED or was CANCELLED (or is unknown),\n"
               "3 when the controller is unreachable, 4 on timeout.\n");
        return EXIT_OK;
    }
    long long *ids;
    size_t n;
    double timeout = 0, interval = 1;
    int quiet = 0;
    if (collect_ids("wait", argc, argv, &ids, &n, NULL, &timeout, &interval, &quiet)) {
        free(ids);
        return EXIT_USAGE;
    }
    char **final = calloc(n, sizeof(char *));
    double start = wlm_now_mono();
    int tty = isatty(2), rc = EXIT_OK;
    char last[256] = "";
    for (;;) {
        size_t ended = 0, completed = 0, failed = 0, running = 0, waiting = 0;
        for (size_t i = 0; i < n; i++) {
            if (final[i]) {
                ended++;
                completed += !strcmp(final[i], "COMPLETED");
                failed += !!strcmp(final[i], "COMPLETED");
                continue;
            }
            char path[64];
            snprintf(path, sizeof(path), "/v1/jobs/%lld", ids[i]);
            json_t *resp;
            int st = cj_call(c, "GET", path, NULL, &resp, 0);
            if (st < 0) {
                json_decref(resp);
                rc = EXIT_UNREACHABLE;
                goto out;
            }
            if (st == 404) {
                final[i] = strdup("UNKNOWN");
            } else if (st != 200) {
                json_decref(resp);
                rc = EXIT_FAIL;
                goto out;
            } else {
                const char *s = cj_jstr(resp, "state", "?");
                if (!strcmp(s, "COMPLETED") || !strcmp(s, "FAILED") || !strcmp(s, "CANCELLED")) {
                    final[i] = strdup(s);
                    if (strcmp(s, "COMPLETED") != 0 && !quiet) {
                        const char *r = cj_jstr(resp, "reason", "");
                        fprintf(stderr, "%sjob %lld %s%s%s\n", tty ? "\r\033[K" : "", ids[i], s,
                                *r ? ": " : "", r);
                    }
                } else if (!strcmp(s, "RUNNING") || !strcmp(s, "STARTING") ||
                           !strcmp(s, "MIGRATING")) {
                    running++;
                } else {
                    waiting++;
                }
            }
            json_decref(resp);
            if (final[i]) {
                ended++;
                completed += !strcmp(final[i], "COMPLETED");
                failed += !!strcmp(final[i], "COMPLETED");
            }
        }
        char line[256];
        snprintf(line, sizeof(line),
                 "%zu/%zu ended (%zu completed, %zu failed/cancelled), %zu running, %zu waiting",
                 ended, n, completed, failed, running, waiting);
        if (!quiet && strcmp(line, last) != 0) {
            /* On a terminal the line is rewritten in place; in a log each
             * change is a line of its own. */
            fprintf(stderr, tty ? "\r\033[K%s" : "%s\n", line);
            wlm_strlcpy(last, line, sizeof(last));
        }
        if (ended == n) {
            rc = failed ? EXIT_FAIL : EXIT_OK;
            break;
        }
        if (timeout > 0 && wlm_now_mono() - start >= timeout) {
            if (!quiet)
                fprintf(stderr, "%swlm job wait: timed out after %.0f s\n", tty ? "\n" : "",
                        timeout);
            rc = EXIT_TIMEOUT;
            goto out;
        }
        usleep((useconds_t)(interval * 1e6));
    }
    if (!quiet && tty)
        fprintf(stderr, "\n");
out:
    for (size_t i = 0; i < n; i++)
        free(final[i]);
    free(final);
    free(ids);
    return rc;
}

int wlm_cmd_job(int argc, char **argv, const char *controller_url, const char *token)
{
    struct ctx c = {controller_url, token};
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "submit"))
        return cj_submit(&c, argc - 1, argv + 1);
    if (!strcmp(sub, "list") || !strcmp(sub, "ls"))
        return cmd_list(&c, argc - 1, argv + 1);
    if (!strcmp(sub, "show"))
        return cmd_show(&c, argc - 1, argv + 1);
    if (!strcmp(sub, "cancel"))
        return cmd_cancel(&c, argc - 1, argv + 1);
    if (!strcmp(sub, "wait"))
        return cmd_wait(&c, argc - 1, argv + 1);
    fprintf(stderr, "wlm job: unknown command '%s' (see wlm job --help)\n", sub);
    return EXIT_USAGE;
}
