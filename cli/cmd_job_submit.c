/*
 * cmd_job_submit.c - `wlm job submit`: one job from flags, or jobs from a
 * file, each with an idempotency key that every retry reuses.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_job_int.h"
#include "common.h"

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
    "  gold 3, silver 10, bronze 20); a job with --after counts from the latest goal of the\n"
    "  jobs it waits for instead of its submit time.\n"
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

static int need_arg(int argc, char **argv, int i)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "wlm job submit: %s needs a value\n", argv[i]);
        return -1;
    }
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
    int rc = wlm_buf_read_file(&b, f);
    if (f != stdin)
        fclose(f);
    if (rc) {
        fprintf(stderr, "wlm job submit: cannot read %s: %s\n", path, strerror(-rc));
        wlm_buf_fini(&b);
        return NULL;
    }
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
        st = cj_call(c, "POST", "/v1/jobs", body, resp, last ? 0 : 2);
        if (st >= 0 && st != 502 && st != 503 && st != 504)
            return st;
        if (!last) {
            json_decref(*resp);
            *resp = NULL;
        }
    }
    return st;
}

int cj_submit(const struct ctx *c, int argc, char **argv)
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
        if (need_arg(argc, argv, i) || cj_num_arg(flag, argv[i + 1], &v))                          \
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
            if (need_arg(argc, argv, i) || cj_num_arg(a, argv[i + 1], &v))
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
    rc = cj_status_exit(st);
    if (st < 0 || st >= 500)
        fprintf(stderr,
                "wlm job submit: the submission was not acknowledged and may or may not be "
                "stored; submitting again with --submit-id %s can never make it twice\n",
                key);
    if (rc == EXIT_OK) {
        if (as_json) {
            cj_print_json(resp);
        } else {
            json_t *arr = json_object_get(resp, "jobs");
            size_t i;
            json_t *j;
            int dup = json_is_true(json_object_get(resp, "duplicate"));
            json_array_foreach(arr, i, j)
            {
                const char *reason = cj_jstr(j, "reason", "");
                printf("%s job %lld%s%s%s %s%s%s\n", dup ? "already submitted:" : "submitted",
                       (long long)json_integer_value(json_object_get(j, "id")),
                       json_object_get(j, "name") ? " (" : "", cj_jstr(j, "name", ""),
                       json_object_get(j, "name") ? ")" : "", cj_jstr(j, "state", "?"),
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
