/*
 * cmd_job.c - `wlm job`: submit, list, show, cancel and wait for jobs.
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
#include "common.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_TIMEOUT = 4 };

struct ctx {
    const char *url;
    const char *token;
};

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

static const char submit_help[] =
    "Usage: wlm job submit [OPTIONS] [-- COMMAND...]\n"
    "  -f, --file FILE       job spec JSON: one job, or {\"jobs\": [...], \"batch\": NAME}\n"
    "                        whose jobs may depend on each other by name (\"-\" = stdin)\n"
    "  --name NAME           job name (also the profiler's kind unless --kind)\n"
    "  --command CMD         command line to run (or give it after --)\n"
    "  --kind KIND           profile key (default: name, else command)\n"
    "  --work-seconds S      run time at the reference speed (--ref-mhz, default 1000)\n"
    "  --work-cycles N       CPU cycles to complete (or --work-mcycles)\n"
    "  --threads N           threads the job can use\n"
    "  --max-speed MHZ       highest useful speed per thread\n"
    "  --memory MB           memory the job needs\n"
    "  --class CLASS         platinum, gold, silver (default) or bronze\n"
    "  --deadline TIME       completion goal: epoch seconds or RFC 3339\n"
    "  --deadline-in S       completion goal S seconds from now\n"
    "  --dependency SPEC     afterok:ID[:ID...], afterany:..., afternotok:... (repeatable)\n"
    "  --after ID            short for --dependency afterok:ID\n"
    "  --label K=V           require a node label (repeatable)\n"
    "  --min-cores N         require nodes with at least N cores\n"
    "  --min-memory MB       require nodes with at least MB memory\n"
    "  --arch ARCH           require this node architecture\n"
    "  --copy PATH           file to copy into the job's VM (repeatable)\n"
    "  --submit-id KEY       idempotency key: resubmitting with it never duplicates (with -f:\n"
    "                        the base of the file's keys). Without it a random one is made,\n"
    "                        used for every retry (after a lost answer, on the next controller,\n"
    "                        after a redirect to a new leader) and printed when the outcome is\n"
    "                        unknown\n"
    "  -v, --verbose         print the submission's idempotency key (to stderr)\n"
    "  --json                print the controller's answer as JSON\n"
    "\n"
    "Work and defaults:\n"
    "  work_seconds is the run time of ONE thread at ref_mhz (default 1000 MHz): a job of\n"
    "  --threads 4 --work-seconds 60 needs 4 x 60 s x 1000 MHz = 240,000 Mcycles. A job given\n"
    "  no work at all is assumed to need 3600 s per thread (until its kind's profile learns\n"
    "  better); no memory means 512 MB; no max speed means 1000 MHz per thread; 1 thread.\n"
    "  Without a deadline the goal is submit time + class factor x run time (platinum 1.5,\n"
    "  gold 3, silver 10, bronze 20).\n"
    "\n"
    "FILE (-f): one job object, or {\"batch\": NAME, \"jobs\": [job, ...]}. Job fields:\n"
    "  name, kind, command, files ([paths]),\n"
    "  work_seconds (+ ref_mhz) | work_mcycles | work_cycles   (give one; see above)\n"
    "  threads, max_speed_mhz (per thread), memory_mb, class,\n"
    "  deadline (epoch seconds or RFC 3339) | deadline_in (seconds from now),\n"
    "  dependencies: [{\"kind\": \"afterok\"|\"afterany\"|\"afternotok\", \"on\": ID or NAME}]\n"
    "     (names refer to jobs of the same batch),\n"
    "  requirements: {\"labels\": {K: V}, \"min_cores\", \"min_memory_mb\", \"arch\"},\n"
    "  submit_id (idempotency key).\n"
    "Dependencies: afterok runs once the other job COMPLETED; afterany once it ended in any\n"
    "way; afternotok once it FAILED or was CANCELLED. A dependency that can no longer be\n"
    "met fails the dependent: cancelling a job FAILS its afterok dependents (and theirs),\n"
    "releases its afternotok and afterany dependents.\n"
    "\n"
    "Example:\n"
    "  {\"batch\": \"nightly\", \"jobs\": [\n"
    "    {\"name\": \"extract\", \"command\": \"./extract\", \"work_seconds\": 600, \"memory_mb\": "
    "1024},\n"
    "    {\"name\": \"report\", \"command\": \"./report\", \"work_seconds\": 120, \"class\": "
    "\"gold\",\n"
    "     \"dependencies\": [{\"kind\": \"afterok\", \"on\": \"extract\"}]}]}\n";

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
static int call(const struct ctx *c, const char *method, const char *path, const char *body,
                const char *extra_key, json_t **out, int quiet)
{
    char url[2048];
    struct wlm_http_response resp;
    struct wlm_error err;
    memset(&resp, 0, sizeof(resp));
    wlm_error_clear(&err);
    *out = NULL;
    snprintf(url, sizeof(url), "%s%s", c->url, path);
    (void)extra_key;
    if (wlm_http_fetch(method, url, c->token, body ? "application/json" : NULL, body,
                       body ? strlen(body) : 0, 30000, &resp, &err)) {
        if (quiet < 2)
            fprintf(stderr, "wlm job: cannot reach the controller at %s: %s\n", c->url, err.msg);
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
    if (call(c, "GET", path, NULL, NULL, &v, 1) == 200) {
        char t[160];
        cli_energy_text(v, t, sizeof(t));
        printf("  energy:      %s\n", t);
    }
    json_decref(v);
}

static int status_exit(int status)
{
    if (status < 0)
        return EXIT_UNREACHABLE;
    return status >= 200 && status <= 299 ? EXIT_OK : EXIT_FAIL;
}

static void print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s ? s : "null");
    free(s);
}

static const char *jstr(const json_t *o, const char *k, const char *dflt)
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

/* ---------------------------------------------------------------- submit */

static int need_arg(int argc, char **argv, int i)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "wlm job submit: %s needs a value\n", argv[i]);
        return -1;
    }
    return 0;
}

static int num_arg(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v)) {
        fprintf(stderr, "wlm job submit: %s: '%s' is not a number\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "wlm job submit: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct wlm_buf b;
    wlm_buf_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        wlm_buf_append(&b, chunk, n);
    if (f != stdin)
        fclose(f);
    *len = b.len;
    char *s = wlm_buf_steal(&b);
    return s ? s : strdup("");
}

/* A random idempotency key, so that a submission retried after a lost
 * answer is recognised by the controller instead of stored twice. */
static void make_key(char *buf, size_t size)
{
    unsigned char r[12];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(r, 1, sizeof(r), f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof(r)) {
        /* No entropy source: time and pid are unique enough per host. */
        snprintf(buf, size, "cli-%lld-%d", (long long)(wlm_now_wall() * 1e6), (int)getpid());
        return;
    }
    size_t n = (size_t)snprintf(buf, size, "cli-");
    for (size_t i = 0; i < sizeof(r) && n + 2 < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%02x", r[i]);
}

/* Give every job of a spec (one job or {"jobs": [...]}) without a
 * submit_id one derived from `key`. */
static void add_keys(json_t *spec, const char *key)
{
    json_t *jobs = json_object_get(spec, "jobs");
    if (json_is_array(jobs)) {
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
        {
            char k[128];
            snprintf(k, sizeof(k), "%s#%zu", key, i);
            if (json_is_object(j) && !json_object_get(j, "submit_id"))
                json_object_set_new(j, "submit_id", json_string(k));
        }
    } else if (json_is_object(spec) && !json_object_get(spec, "submit_id")) {
        json_object_set_new(spec, "submit_id", json_string(key));
    }
}

/* POST with retries: a lost connection or a restarting controller does not
 * lose the submission, and the keys make the retry safe. */
static int post_retrying(const struct ctx *c, const char *body, json_t **resp)
{
    int st = -1;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (attempt > 0)
            usleep((useconds_t)(125000u << attempt)); /* 0.25, 0.5, 1 s */
        int last = attempt == 3;
        st = call(c, "POST", "/v1/jobs", body, NULL, resp, last ? 0 : 2);
        if (st >= 0 && st != 502 && st != 503 && st != 504)
            return st;
        if (!last) {
            json_decref(*resp);
            *resp = NULL;
        }
    }
    return st;
}

static int cmd_submit(const struct ctx *c, int argc, char **argv)
{
    json_t *job = json_object();
    json_t *deps = json_array(), *labels = json_object(), *req = json_object(),
           *files = json_array();
    const char *file = NULL;
    int as_json = 0, rc = EXIT_USAGE, command_set = 0, verbose = 0;
    char key[128] = "";
    struct wlm_buf cmd;
    wlm_buf_init(&cmd);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v;
#define STR_FLAG(flag, key)                                                                        \
    if (!strcmp(a, flag)) {                                                                        \
        if (need_arg(argc, argv, i))                                                               \
            goto out;                                                                              \
        json_object_set_new(job, key, json_string(argv[++i]));                                     \
        continue;                                                                                  \
    }
#define NUM_FLAG(flag, key, integer)                                                               \
    if (!strcmp(a, flag)) {                                                                        \
        if (need_arg(argc, argv, i) || num_arg(flag, argv[i + 1], &v))                             \
            goto out;                                                                              \
        i++;                                                                                       \
        json_object_set_new(                                                                       \
            job, key, (integer) && v == floor(v) ? json_integer((json_int_t)v) : json_real(v));    \
        continue;                                                                                  \
    }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(submit_help, stdout);
            rc = EXIT_OK;
            goto out;
        }
        if (!strcmp(a, "--json")) {
            as_json = 1;
            continue;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
            continue;
        }
        if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (need_arg(argc, argv, i))
                goto out;
            file = argv[++i];
            continue;
        }
        if (!strcmp(a, "--command")) {
            if (need_arg(argc, argv, i))
                goto out;
            json_object_set_new(job, "command", json_string(argv[++i]));
            command_set = 1;
            continue;
        }
        STR_FLAG("--name", "name")
        STR_FLAG("--kind", "kind")
        STR_FLAG("--class", "class")
        STR_FLAG("--submit-id", "submit_id")
        NUM_FLAG("--work-seconds", "work_seconds", 0)
        NUM_FLAG("--work-cycles", "work_cycles", 0)
        NUM_FLAG("--work-mcycles", "work_mcycles", 0)
        NUM_FLAG("--ref-mhz", "ref_mhz", 0)
        NUM_FLAG("--threads", "threads", 1)
        NUM_FLAG("--max-speed", "max_speed_mhz", 0)
        NUM_FLAG("--memory", "memory_mb", 1)
        NUM_FLAG("--deadline-in", "deadline_in", 0)
        if (!strcmp(a, "--deadline")) {
            if (need_arg(argc, argv, i))
                goto out;
            const char *d = argv[++i];
            char *end;
            double t = strtod(d, &end);
            json_object_set_new(job, "deadline",
                                *end == 0 && end != d ? json_real(t) : json_string(d));
            continue;
        }
        if (!strcmp(a, "--dependency") || !strcmp(a, "--after")) {
            if (need_arg(argc, argv, i))
                goto out;
            const char *d = argv[++i];
            if (!strcmp(a, "--after")) {
                char buf[256];
                snprintf(buf, sizeof(buf), "afterok:%s", d);
                json_array_append_new(deps, json_string(buf));
            } else {
                json_array_append_new(deps, json_string(d));
            }
            continue;
        }
        if (!strcmp(a, "--label")) {
            if (need_arg(argc, argv, i))
                goto out;
            const char *kv = argv[++i];
            const char *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                fprintf(stderr, "wlm job submit: --label wants KEY=VALUE, got '%s'\n", kv);
                goto out;
            }
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
            json_object_set_new(labels, key, json_string(eq + 1));
            continue;
        }
        if (!strcmp(a, "--min-cores") || !strcmp(a, "--min-memory")) {
            if (need_arg(argc, argv, i) || num_arg(a, argv[i + 1], &v))
                goto out;
            i++;
            json_object_set_new(req, !strcmp(a, "--min-cores") ? "min_cores" : "min_memory_mb",
                                json_integer((json_int_t)v));
            continue;
        }
        if (!strcmp(a, "--arch")) {
            if (need_arg(argc, argv, i))
                goto out;
            json_object_set_new(req, "arch", json_string(argv[++i]));
            continue;
        }
        if (!strcmp(a, "--copy")) {
            if (need_arg(argc, argv, i))
                goto out;
            json_array_append_new(files, json_string(argv[++i]));
            continue;
        }
        if (!strcmp(a, "--")) {
            for (int k = i + 1; k < argc; k++)
                wlm_buf_printf(&cmd, "%s%s", k > i + 1 ? " " : "", argv[k]);
            break;
        }
        fprintf(stderr, "wlm job submit: unknown argument '%s' (see wlm job submit --help)\n", a);
        goto out;
#undef STR_FLAG
#undef NUM_FLAG
    }
    if (cmd.len) {
        if (command_set) {
            fprintf(stderr, "wlm job submit: give the command with --command or after --, not "
                            "both\n");
            goto out;
        }
        json_object_set_new(job, "command", json_string(cmd.data));
    }
    if (json_array_size(deps))
        json_object_set(job, "dependencies", deps);
    if (json_object_size(labels))
        json_object_set(req, "labels", labels);
    if (json_object_size(req))
        json_object_set(job, "requirements", req);
    if (json_array_size(files))
        json_object_set(job, "files", files);

    char *body = NULL;
    /* The idempotency key: given, or random. Every retry sends the same
     * body, so the controllers (a new leader too) recognise it. */
    const char *given = json_string_value(json_object_get(job, "submit_id"));
    if (given && !given[0]) {
        fprintf(stderr, "wlm job submit: --submit-id: the key is empty\n");
        goto out;
    }
    if (given)
        wlm_strlcpy(key, given, sizeof(key));
    else
        make_key(key, sizeof(key));
    if (file) {
        json_object_del(job, "submit_id"); /* with -f: the base of the file's keys */
        if (json_object_size(job)) {
            fprintf(stderr, "wlm job submit: -f FILE cannot be combined with job flags\n");
            goto out;
        }
        size_t len;
        body = read_all(file, &len);
        if (!body) {
            rc = EXIT_FAIL;
            goto out;
        }
        json_error_t je;
        json_t *chk = json_loadb(body, len, 0, &je);
        free(body);
        if (!chk) {
            fprintf(stderr, "wlm job submit: %s:%d:%d: %s\n", file, je.line, je.column, je.text);
            rc = EXIT_FAIL;
            goto out;
        }
        add_keys(chk, key);
        body = json_dumps(chk, JSON_COMPACT);
        json_decref(chk);
    } else {
        if (!json_object_get(job, "command")) {
            fprintf(stderr, "wlm job submit: no command (use --command CMD, -- CMD..., or -f "
                            "FILE)\n");
            goto out;
        }
        add_keys(job, key);
        body = json_dumps(job, JSON_COMPACT);
    }
    if (verbose)
        fprintf(stderr, "wlm job submit: submit_id %s%s (to %s)\n", key,
                file ? " (jobs of a batch: KEY#0, KEY#1, ...)" : "", c->url);
    json_t *resp = NULL;
    int st = post_retrying(c, body, &resp);
    free(body);
    rc = status_exit(st);
    if (st < 0 || st >= 500)
        fprintf(stderr,
                "wlm job submit: the submission was not acknowledged and may or may not be "
                "stored; submitting again with --submit-id %s can never make it twice\n",
                key);
    if (rc == EXIT_OK) {
        if (as_json) {
            print_json(resp);
        } else {
            json_t *arr = json_object_get(resp, "jobs");
            size_t i;
            json_t *j;
            int dup = json_is_true(json_object_get(resp, "duplicate"));
            json_array_foreach(arr, i, j)
            {
                const char *reason = jstr(j, "reason", "");
                printf("%s job %lld%s%s%s %s%s%s\n", dup ? "already submitted:" : "submitted",
                       (long long)json_integer_value(json_object_get(j, "id")),
                       json_object_get(j, "name") ? " (" : "", jstr(j, "name", ""),
                       json_object_get(j, "name") ? ")" : "", jstr(j, "state", "?"),
                       *reason ? ": " : "", reason);
            }
        }
    }
    json_decref(resp);
out:
    wlm_buf_fini(&cmd);
    json_decref(job);
    json_decref(deps);
    json_decref(labels);
    json_decref(req);
    json_decref(files);
    return rc;
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
    int st = call(c, "GET", path, NULL, NULL, &resp, 0);
    rc = status_exit(st);
    if (rc == EXIT_OK) {
        if (as_json) {
            print_json(resp);
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
                const char *st = jstr(j, "state", "?");
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
                snprintf(row, sizeof(row), "%-8lld %-20.20s %-12.12s %-10s %-9s %-12.12s %4.0f%% %-8s %-14s %s",
                       (long long)json_integer_value(json_object_get(j, "id")),
                       jstr(j, "name", "-"), jstr(j, "owner", "-"), st, jstr(j, "class", "?"),
                       jstr(j, "node", "-"),
                       100 * (pg > 1 ? 1 : pg < 0 ? 0 : pg), goal, left, jstr(j, "reason", ""));
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
           json_is_string(json_object_get(j, "name")) ? " (" : "", jstr(j, "name", ""),
           json_is_string(json_object_get(j, "name")) ? ")" : "");
    const char *reason = jstr(j, "reason", "");
    printf("  state:       %s%s%s\n", jstr(j, "state", "?"), *reason ? ": " : "", reason);
    printf("  command:     %s\n", jstr(j, "command", "-"));
    printf("  class:       %s\n", jstr(j, "class", "?"));
    printf("  owner:       %s\n", jstr(j, "owner", "-"));
    printf("  submitted:   %s\n", fmt_time(jnum(j, "submit_time"), b1, sizeof(b1)));
    printf("  goal:        %s (%s %s)\n", fmt_time(jnum(j, "goal_time"), b1, sizeof(b1)),
           fmt_dur(fabs(jnum(j, "goal_time") - now), b2, sizeof(b2)),
           jnum(j, "goal_time") >= now ? "from now" : "ago");
    json_t *pc = json_object_get(j, "predicted_completion");
    if (json_is_number(pc)) {
        /* Placed jobs are predicted at their allocation; waiting ones at full
         * speed from now, i.e. the earliest they could finish. */
        const char *st = jstr(j, "state", "");
        int placed =
            (!strcmp(st, "RUNNING") || !strcmp(st, "STARTING") || !strcmp(st, "MIGRATING")) &&
            jnum(j, "alloc_mhz") > 0;
        printf("  %s %s (utility %.2f)\n", placed ? "predicted: " : "earliest:  ",
               fmt_time(json_number_value(pc), b1, sizeof(b1)), jnum(j, "predicted_utility"));
    } else if (json_is_number(json_object_get(j, "end_time")))
        printf("  ended:       %s\n", fmt_time(jnum(j, "end_time"), b1, sizeof(b1)));
    printf("  work:        %.0f of %.0f Mcycles (%s profile), %lld thread(s) x %.0f MHz, %lld MB\n",
           jnum(j, "done_mcycles"), jnum(j, "work_mcycles"), jstr(j, "profile", "?"),
           (long long)json_integer_value(json_object_get(j, "threads")), jnum(j, "max_speed_mhz"),
           (long long)json_integer_value(json_object_get(j, "memory_mb")));
    if (json_is_string(json_object_get(j, "node")))
        printf("  node:        %s at %.0f MHz\n", jstr(j, "node", ""), jnum(j, "alloc_mhz"));
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
            printf("    %s:%lld  (%s, %s)\n", jstr(d, "kind", "?"),
                   (long long)json_integer_value(json_object_get(d, "on")), jstr(d, "state", "?"),
                   jstr(d, "status", "?"));
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
            const char *from = jstr(e, "from", "?"), *to = jstr(e, "to", "?");
            const char *r = jstr(e, "reason", "");
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
    int rc = status_exit(call(c, "GET", path, NULL, NULL, &resp, 0));
    if (rc == EXIT_OK) {
        if (as_json)
            print_json(resp);
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
            if (i + 1 >= argc || num_arg(a, argv[i + 1], &v) || v < 0) {
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
        int rc = status_exit(call(c, "DELETE", path, NULL, NULL, &resp, 0));
        if (rc == EXIT_OK) {
            if (as_json)
                print_json(resp);
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
            int st = call(c, "GET", path, NULL, NULL, &resp, 0);
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
                const char *s = jstr(resp, "state", "?");
                if (!strcmp(s, "COMPLETED") || !strcmp(s, "FAILED") || !strcmp(s, "CANCELLED")) {
                    final[i] = strdup(s);
                    if (strcmp(s, "COMPLETED") != 0 && !quiet) {
                        const char *r = jstr(resp, "reason", "");
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
        return cmd_submit(&c, argc - 1, argv + 1);
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
