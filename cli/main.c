/* wlm - the operator's command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#if __has_include("cmd_job.h")
#include "cmd_job.h"
#define HAVE_CMD_JOB 1
#endif
#if __has_include("cmd_plan.h")
#include "cmd_plan.h"
#define HAVE_CMD_PLAN 1
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: wlm [--controller URL] [--token TOKEN] [--ca FILE] [--json] COMMAND [ARGS]\n"
            "       (the options may also come after the command)\n"
            "\n"
            "Commands:\n"
            "  nodes [--json]        list the cluster's nodes, their state, power and budget\n"
            "  nodes set NAME --power-budget W|none   a node's own power budget\n"
            "  power [--json]        cluster power budget; power set-budget W|none\n"
            "  app ...               deploy, list, show and delete web applications\n"
            "  status [--json]       one line: minimum utility, jobs, nodes on\n"
            "  placement [--json]    where everything runs and the last decision\n"
            "  utilities [--json]    utility of every application and job\n"
#ifdef HAVE_CMD_JOB
            "  job ...               submit, list, show, cancel and wait for jobs (wlm job --help)\n"
#endif
#ifdef HAVE_CMD_PLAN
            "  plan --snapshot FILE  what-if placement on a snapshot (wlm plan --help)\n"
#endif
            "  token ...             create, list and revoke API tokens (wlm token --help)\n"
            "  version               print the version\n"
            "\n"
            "The controller defaults to $WLM_CONTROLLER or http://127.0.0.1:7700; the token to\n"
            "$WLM_TOKEN, or the first line of $WLM_TOKEN_FILE. An https:// controller is\n"
            "verified against the CA certificates in --ca FILE or $WLM_CA (else the system's).\n"
            "Several controllers (HA, docs/ha.md): a comma-separated list, e.g.\n"
            "http://c1:7700,http://c2:7700; the next is tried when one fails, and a standby's\n"
            "redirect to the leader is followed.\n");
}

static char token_buf[512];

/* The token: $WLM_TOKEN, else the first line of $WLM_TOKEN_FILE. A token
 * file that cannot be read is an error the operator must hear about, not a
 * silent "no token". Returns -1 after printing why. */
static int token_from_env(const char **out)
{
    *out = NULL;
    const char *t = getenv("WLM_TOKEN");
    if (t && *t) {
        *out = t;
        return 0;
    }
    const char *file = getenv("WLM_TOKEN_FILE");
    if (!file || !*file)
        return 0;
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "wlm: WLM_TOKEN_FILE names %s, which cannot be read: %s\n"
                        "     (the controller writes its token to DB.token next to its --db; or set "
                        "WLM_TOKEN)\n",
                file, strerror(errno));
        return -1;
    }
    if (!fgets(token_buf, sizeof(token_buf), f) || !token_buf[strspn(token_buf, " \t\r\n")]) {
        fclose(f);
        fprintf(stderr, "wlm: WLM_TOKEN_FILE names %s, which is empty\n", file);
        return -1;
    }
    fclose(f);
    token_buf[strcspn(token_buf, "\r\n")] = '\0';
    *out = token_buf;
    return 0;
}

/* "host:port" becomes "http://host:port"; a scheme other than http(s) is
 * refused. Returns -1 after printing why. */
static int normalise_url(const char *in, char *out, size_t size)
{
    if (!strstr(in, "://"))
        snprintf(out, size, "http://%s", in);
    else if (!strncmp(in, "http://", 7) || !strncmp(in, "https://", 8))
        snprintf(out, size, "%s", in);
    else {
        fprintf(stderr, "wlm: controller URL '%s': only http:// and https:// are supported, e.g. "
                        "http://127.0.0.1:7700\n",
                in);
        return -1;
    }
    size_t bl = strlen(out);
    while (bl && out[bl - 1] == '/')
        out[--bl] = '\0';
    const char *host = strstr(out, "://") + 3;
    if (!*host) {
        fprintf(stderr, "wlm: controller URL '%s' names no host, e.g. http://127.0.0.1:7700\n", in);
        return -1;
    }
    return 0;
}

json_t *cli_load_json(const char *path, const char *who)
{
    struct wlm_error err = {0};
    json_t *v;
    if (!strcmp(path, "-")) {
        json_error_t je;
        v = json_loadf(stdin, 0, &je);
        if (!v)
            fprintf(stderr, "%s: standard input: line %d: %s\n", who, je.line, je.text);
        return v;
    }
    v = wlm_json_load_file(path, &err);
    if (!v)
        fprintf(stderr, "%s: %s\n", who, err.msg);
    return v;
}

/* An answer without the controller's {"error", "detail"} body comes from
 * something else listening there (a wlm-router, another service). */
static void not_a_controller(const struct cli_ctx *ctx, int status)
{
    fprintf(stderr,
            "wlm: %s answered HTTP %d without a wlm error body: this is not a wlm controller.\n"
            "     Point --controller or WLM_CONTROLLER at the controller's API (default port 7700), "
            "not at a router or an application.\n",
            ctx->controller, status);
}

/* Is this the controller's error body? Its errors are {"error": name,
 * "detail": ...} with a snake_case name ("not_found"); a router's data port
 * says {"error": "Not Found"}, an application anything at all. */
static int wlm_error_body(json_t *v)
{
    const char *e = json_string_value(json_object_get(v, "error"));
    if (!e || !*e)
        return 0;
    for (const char *p = e; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
            return 0;
    return 1;
}

int cli_call(const struct cli_ctx *ctx, const char *method, const char *path, const char *body,
             json_t **out)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", ctx->controller, path);
    struct wlm_http_response resp = {0};
    struct wlm_error err = {0};
    *out = NULL;
    if (wlm_http_fetch(method, url, ctx->token, body ? "application/json" : NULL, body,
                       body ? strlen(body) : 0, 15000, &resp, &err)) {
        fprintf(stderr, "wlm: cannot reach the controller at %s: %s\n     %s\n", ctx->controller,
                err.msg, cli_unreachable_hint(err.msg));
        return -1;
    }
    int status = resp.status;
    json_t *v = resp.body_len ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
    int ours = v && json_is_object(v) && (status < 300 || wlm_error_body(v));
    if (!ours && (status != 204 || resp.body_len)) {
        if (!ctx->quiet || status != 404)
            not_a_controller(ctx, status);
        json_decref(v);
        wlm_http_response_fini(&resp);
        return -1;
    }
    if ((status < 200 || status > 299) && !ctx->quiet) {
        const char *e = json_string_value(json_object_get(v, "error"));
        const char *d = json_string_value(json_object_get(v, "detail"));
        if (status == 401)
            fprintf(stderr, "wlm: the controller refused the token (%s); set WLM_TOKEN, "
                            "WLM_TOKEN_FILE or --token (the controller's token is in DB.token "
                            "next to its --db)\n",
                    ctx->token ? "wrong token" : "no token given");
        else
            fprintf(stderr, "wlm: %s %s: %d %s%s%s\n", method, path, status,
                    e ? e : wlm_http_reason(status), d && *d ? ": " : "", d ? d : "");
    }
    *out = v;
    wlm_http_response_fini(&resp);
    return status;
}

void cli_table(FILE *out, const char *const *cells, size_t nrows, size_t ncols)
{
    size_t w[32] = {0};
    for (size_t r = 0; r < nrows; r++)
        for (size_t c = 0; c < ncols && c < 32; c++) {
            size_t l = strlen(cells[r * ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            if (c + 1 == ncols)
                fprintf(out, "%s\n", cells[r * ncols + c]);
            else
                fprintf(out, "%-*s  ", (int)w[c], cells[r * ncols + c]);
        }
    }
}

int cli_get_list(const struct cli_ctx *ctx, const char *path, const char *key, int as_json,
                 json_t **v, json_t **list)
{
    *v = NULL;
    *list = NULL;
    int st = cli_call(ctx, "GET", path, NULL, v);
    if (st != 200) {
        json_decref(*v);
        *v = NULL;
        return st < 0 ? 3 : 1;
    }
    *list = json_object_get(*v, key);
    if (as_json) {
        char *s = json_dumps(*list, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(*v);
        *v = NULL;
        return 0;
    }
    return -1;
}

char **cli_cells_new(size_t nrows, size_t ncols, const char *const *hdr)
{
    char **cells = calloc((nrows + 1) * ncols, sizeof(char *));
    for (size_t c = 0; c < ncols; c++)
        cells[c] = strdup(hdr[c]);
    return cells;
}

void cli_cells_print_free(char **cells, size_t nrows, size_t ncols, const char *empty)
{
    if (nrows == 0)
        printf("%s\n", empty);
    else
        cli_table(stdout, (const char *const *)cells, nrows + 1, ncols);
    for (size_t i = 0; i < (nrows + 1) * ncols; i++)
        free(cells[i]);
    free(cells);
}

static int cmd_nodes(const struct cli_ctx *ctx, int argc, char **argv)
{
    int as_json = 0;
    if (argc > 1 && !strcmp(argv[1], "set"))
        return cli_cmd_nodes_set(ctx, argc - 1, argv + 1);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            as_json = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: wlm nodes [--json]\n       wlm nodes set NAME --power-budget W|none\n"
                   "List nodes: name, state (READY, or LOST after missed heartbeats), cores, MHz\n"
                   "per core, memory, power (on or off), power now and budget (W), VM slots\n"
                   "(used/max of the agent's image pool), the last heartbeat, and notes: the\n"
                   "driver (test: nothing runs inside its VMs, jobs are simulated) and actions\n"
                   "the node said it cannot do.\n");
            return 0;
        } else {
            fprintf(stderr, "wlm nodes: unknown argument '%s' (see wlm nodes --help)\n", argv[i]);
            return 2;
        }
    }
    json_t *v, *nodes;
    int rc = cli_get_list(ctx, "/v1/nodes", "nodes", as_json, &v, &nodes);
    if (rc >= 0)
        return rc;
    size_t n = json_array_size(nodes);
    const size_t ncols = 11;
    const char *hdr[] = {"NAME",     "STATE",    "CORES",    "MHZ",       "MEMORY_MB", "POWER",
                         "POWER_W",  "BUDGET_W", "VM_SLOTS", "HEARTBEAT", "NOTES"};
    char **cells = cli_cells_new(n, ncols, hdr);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(nodes, i);
        char **row = cells + (i + 1) * ncols;
        json_t *age = json_object_get(o, "heartbeat_age_s");
        json_t *pw = json_object_get(o, "power");
        const char *pst = json_is_object(pw) ? json_string_value(json_object_get(pw, "state"))
                                             : json_string_value(pw);
        json_t *pool = json_object_get(o, "pool");
        row[0] = strdup(json_string_value(json_object_get(o, "name")));
        row[1] = strdup(json_string_value(json_object_get(o, "state")));
        row[2] = wlm_asprintf("%lld", (long long)json_integer_value(json_object_get(o, "cores")));
        row[3] = wlm_asprintf("%.0f", json_number_value(json_object_get(o, "mhz")));
        row[4] =
            wlm_asprintf("%lld", (long long)json_integer_value(json_object_get(o, "memory_mb")));
        row[5] = strdup(pst ? pst : "-");
        json_t *pnow = json_object_get(o, "power_now");
        json_t *bw = pnow ? json_object_get(pnow, "budget_w") : NULL;
        row[6] = pnow ? wlm_asprintf("%.1f", json_number_value(json_object_get(pnow, "watts")))
                      : strdup("-");
        row[7] = json_is_number(bw) ? wlm_asprintf("%.1f%s", json_number_value(bw),
                                                   json_is_true(json_object_get(pnow, "flagged"))
                                                       ? " FLAGGED"
                                                       : "")
                                    : strdup("-");
        row[8] = json_object_get(pool, "max")
                     ? wlm_asprintf("%lld/%lld",
                                    (long long)json_integer_value(json_object_get(pool, "used")),
                                    (long long)json_integer_value(json_object_get(pool, "max")))
                     : strdup("-");
        row[9] = age ? wlm_asprintf("%.1fs ago", json_number_value(age)) : strdup("never");
        struct wlm_buf b;
        wlm_buf_init(&b);
        const char *drv = json_string_value(json_object_get(o, "driver"));
        if (drv && !strcmp(drv, "test"))
            wlm_buf_printf(&b, "test driver (jobs simulated)");
        const char *k;
        json_t *x;
        json_object_foreach(json_object_get(o, "unsupported"), k, x)
            wlm_buf_printf(&b, "%scannot %s", b.len ? "; " : "", k);
        row[10] = b.len ? wlm_buf_steal(&b) : (wlm_buf_fini(&b), strdup("-"));
    }
    cli_cells_print_free(cells, n, ncols,
                         "no nodes registered (start wlm-nodeagent with --controller pointing here)");
    json_decref(v);
    return 0;
}

/* Global options may come before or after the command: --controller URL,
 * --token TOKEN (also --controller=URL, --token=TOKEN) are taken out of
 * argv wherever they are; --json before the command is passed on to it. */
static int take_global(int *argc, char **argv, struct cli_ctx *ctx, int *json_before)
{
    int out = 1, seen_cmd = 0;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--controller") || !strcmp(a, "--token") || !strcmp(a, "--ca")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "wlm: %s needs a value (see wlm --help)\n", a);
                return -1;
            }
            if (!strcmp(a, "--controller"))
                ctx->controller = argv[++i];
            else if (!strcmp(a, "--token"))
                ctx->token = argv[++i];
            else
                setenv("WLM_CA", argv[++i], 1); /* read by wlm_http_fetch */
            continue;
        }
        if (!strncmp(a, "--ca=", 5)) {
            setenv("WLM_CA", a + 5, 1);
            continue;
        }
        if (!strncmp(a, "--controller=", 13)) {
            ctx->controller = a + 13;
            continue;
        }
        if (!strncmp(a, "--token=", 8)) {
            ctx->token = a + 8;
            continue;
        }
        if (!seen_cmd && !strcmp(a, "--json")) {
            *json_before = 1;
            continue;
        }
        if (a[0] != '-')
            seen_cmd = 1;
        argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx = {getenv("WLM_CONTROLLER"), NULL, 0, 0};
    if (!ctx.controller || !*ctx.controller)
        ctx.controller = "http://127.0.0.1:7700";
    int json_before = 0;
    if (take_global(&argc, argv, &ctx, &json_before))
        return 2;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("wlm %s\n", WLM_VERSION);
            return 0;
        } else {
            fprintf(stderr, "wlm: unknown option '%s' (see wlm --help)\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i];
    if (!strcmp(cmd, "version")) {
        printf("wlm %s\n", WLM_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    /* --json given before the command goes to the command. */
    char **args = calloc((size_t)(argc - i) + 2, sizeof(char *));
    if (!args)
        return 1;
    int nargs = 0;
    for (int k = i; k < argc; k++)
        args[nargs++] = argv[k];
    if (json_before)
        args[nargs++] = "--json";
    args[nargs] = NULL;
    ctx.json = json_before;
#ifdef HAVE_CMD_PLAN
    /* wlm plan works on a file: no controller or token needed. */
    if (!strcmp(cmd, "plan")) {
        int rc = wlm_cmd_plan(nargs, args);
        free(args);
        return rc;
    }
#endif
    static char base[1024];
    int wants_help = 0;
    for (int k = 1; k < nargs; k++)
        wants_help |= !strcmp(args[k], "--help") || !strcmp(args[k], "-h");
    if (!wants_help) {
        if (normalise_url(ctx.controller, base, sizeof(base))) {
            free(args);
            return 2;
        }
        ctx.controller = base;
        if (!ctx.token && token_from_env(&ctx.token)) {
            free(args);
            return 2;
        }
    }
    int rc = -1;
    if (!strcmp(cmd, "nodes"))
        rc = cmd_nodes(&ctx, nargs, args);
    else if (!strcmp(cmd, "app"))
        rc = cli_cmd_app(&ctx, nargs, args);
    else if (!strcmp(cmd, "status"))
        rc = cli_cmd_status(&ctx, nargs, args);
    else if (!strcmp(cmd, "placement"))
        rc = cli_cmd_placement(&ctx, nargs, args);
    else if (!strcmp(cmd, "utilities"))
        rc = cli_cmd_utilities(&ctx, nargs, args);
    else if (!strcmp(cmd, "token"))
        rc = cli_cmd_token(&ctx, nargs, args);
    else if (!strcmp(cmd, "power"))
        rc = cli_cmd_power(&ctx, nargs, args);
#ifdef HAVE_CMD_JOB
    else if (!strcmp(cmd, "job"))
        rc = wlm_cmd_job(nargs, args, ctx.controller, ctx.token);
#endif
    free(args);
    if (rc >= 0)
        return rc;
    fprintf(stderr, "wlm: unknown command '%s' (see wlm --help)\n", cmd);
    return 2;
}
