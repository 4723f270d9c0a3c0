/* wlm - the operator's command line. */
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
            "Usage: wlm [--controller URL] [--token TOKEN] [--ca FILE] COMMAND [ARGS]\n"
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
            "verified against the CA certificates in --ca FILE or $WLM_CA (else the system's).\n");
}

static char token_buf[512];

static const char *token_from_env(void)
{
    const char *t = getenv("WLM_TOKEN");
    if (t && *t)
        return t;
    const char *file = getenv("WLM_TOKEN_FILE");
    if (file && *file) {
        FILE *f = fopen(file, "r");
        if (f) {
            if (fgets(token_buf, sizeof(token_buf), f)) {
                token_buf[strcspn(token_buf, "\r\n")] = '\0';
                fclose(f);
                return token_buf;
            }
            fclose(f);
        }
    }
    return NULL;
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
        fprintf(stderr, "wlm: cannot reach the controller at %s: %s\n", ctx->controller,
                err.msg);
        return -1;
    }
    int status = resp.status;
    json_t *v = resp.body_len ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
    if (status < 200 || status > 299) {
        const char *e = v ? json_string_value(json_object_get(v, "error")) : NULL;
        const char *d = v ? json_string_value(json_object_get(v, "detail")) : NULL;
        if (status == 401)
            fprintf(stderr, "wlm: the controller refused the token (%s); set WLM_TOKEN or "
                            "--token\n",
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
                   "List nodes: name, state (READY, or LOST after "
                   "missed heartbeats), cores, MHz, memory, power now and budget.\n");
            return 0;
        } else {
            fprintf(stderr, "wlm nodes: unknown argument '%s' (see wlm nodes --help)\n", argv[i]);
            return 2;
        }
    }
    json_t *v;
    int st = cli_call(ctx, "GET", "/v1/nodes", NULL, &v);
    if (st != 200) {
        json_decref(v);
        return st < 0 ? 3 : 1;
    }
    json_t *nodes = json_object_get(v, "nodes");
    if (as_json) {
        char *s = json_dumps(nodes, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(v);
        return 0;
    }
    size_t n = json_array_size(nodes);
    const size_t ncols = 9;
    char **cells = calloc((n + 1) * ncols, sizeof(char *));
    const char *hdr[] = {"NAME",      "STATE",   "CORES",    "MHZ",  "MEMORY_MB",
                         "HEARTBEAT", "POWER_W", "BUDGET_W", "AGENT"};
    for (size_t c = 0; c < ncols; c++)
        cells[c] = strdup(hdr[c]);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(nodes, i);
        char **row = cells + (i + 1) * ncols;
        json_t *age = json_object_get(o, "heartbeat_age_s");
        row[0] = strdup(json_string_value(json_object_get(o, "name")));
        row[1] = strdup(json_string_value(json_object_get(o, "state")));
        row[2] = wlm_asprintf("%lld", (long long)json_integer_value(json_object_get(o, "cores")));
        row[3] = wlm_asprintf("%.0f", json_number_value(json_object_get(o, "mhz")));
        row[4] =
            wlm_asprintf("%lld", (long long)json_integer_value(json_object_get(o, "memory_mb")));
        row[5] = age ? wlm_asprintf("%.1fs ago", json_number_value(age)) : strdup("never");
        json_t *pw = json_object_get(o, "power_now");
        json_t *bw = pw ? json_object_get(pw, "budget_w") : NULL;
        row[6] = pw ? wlm_asprintf("%.1f", json_number_value(json_object_get(pw, "watts")))
                    : strdup("-");
        row[7] = json_is_number(bw) ? wlm_asprintf("%.1f%s", json_number_value(bw),
                                                   json_is_true(json_object_get(pw, "flagged"))
                                                       ? " FLAGGED"
                                                       : "")
                                    : strdup("-");
        const char *url = json_string_value(json_object_get(o, "agent_url"));
        row[8] = strdup(url && *url ? url : "-");
    }
    if (n == 0)
        printf("no nodes registered\n");
    else
        cli_table(stdout, (const char *const *)cells, n + 1, ncols);
    for (size_t i = 0; i < (n + 1) * ncols; i++)
        free(cells[i]);
    free(cells);
    json_decref(v);
    return 0;
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx = {getenv("WLM_CONTROLLER"), token_from_env()};
    if (!ctx.controller || !*ctx.controller)
        ctx.controller = "http://127.0.0.1:7700";
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("wlm %s\n", WLM_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--controller") && i + 1 < argc) {
            ctx.controller = argv[++i];
        } else if (!strcmp(argv[i], "--token") && i + 1 < argc) {
            ctx.token = argv[++i];
        } else if (!strcmp(argv[i], "--ca") && i + 1 < argc) {
            setenv("WLM_CA", argv[++i], 1); /* read by wlm_http_fetch */
        } else {
            fprintf(stderr, "wlm: unknown option '%s' (see wlm --help)\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    static char base[1024];
    wlm_strlcpy(base, ctx.controller, sizeof(base));
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        base[--bl] = '\0';
    ctx.controller = base;
    const char *cmd = argv[i];
    if (!strcmp(cmd, "nodes"))
        return cmd_nodes(&ctx, argc - i, argv + i);
    if (!strcmp(cmd, "app"))
        return cli_cmd_app(&ctx, argc - i, argv + i);
    if (!strcmp(cmd, "status"))
        return cli_cmd_status(&ctx, argc - i, argv + i);
    if (!strcmp(cmd, "placement"))
        return cli_cmd_placement(&ctx, argc - i, argv + i);
    if (!strcmp(cmd, "utilities"))
        return cli_cmd_utilities(&ctx, argc - i, argv + i);
    if (!strcmp(cmd, "token"))
        return cli_cmd_token(&ctx, argc - i, argv + i);
    if (!strcmp(cmd, "power"))
        return cli_cmd_power(&ctx, argc - i, argv + i);
    if (!strcmp(cmd, "version")) {
        printf("wlm %s\n", WLM_VERSION);
        return 0;
    }
#ifdef HAVE_CMD_JOB
    if (!strcmp(cmd, "job"))
        return wlm_cmd_job(argc - i, argv + i, ctx.controller, ctx.token);
#endif
#ifdef HAVE_CMD_PLAN
    if (!strcmp(cmd, "plan"))
        return wlm_cmd_plan(argc - i, argv + i);
#endif
    fprintf(stderr, "wlm: unknown command '%s' (see wlm --help)\n", cmd);
    return 2;
}
