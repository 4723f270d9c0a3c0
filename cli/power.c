/* power.c - `wlm power` (budgets, power now) and `wlm nodes set NAME
 * --power-budget W`, plus the energy lines other commands print. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char power_usage[] =
    "Usage: wlm power [show] [--json]       cluster budget, each node's power and budget\n"
    "       wlm power set-budget W|none     set the cluster power budget (watts); it is split\n"
    "                                       among the nodes by planned CPU share\n";

/* "none" = no budget (-> JSON null); else a number of watts >= 0. */
static int parse_watts(const char *cmd, const char *s, json_t **out)
{
    if (!strcmp(s, "none") || !strcmp(s, "off")) {
        *out = json_null();
        return 0;
    }
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v)) {
        fprintf(stderr, "%s: budget '%s' is not a number of watts (or 'none')\n", cmd, s);
        return -1;
    }
    if (v < 0) {
        fprintf(stderr, "%s: budget %g W is negative (use 'none' to remove the budget)\n", cmd, v);
        return -1;
    }
    *out = json_real(v);
    return 0;
}

static void print_power(json_t *v)
{
    double cb = json_number_value(json_object_get(v, "cluster_budget_w"));
    if (cb > 0)
        printf("cluster budget: %.0f W (physical maximum %.0f W)\n", cb,
               json_number_value(json_object_get(v, "cluster_max_w")));
    else
        printf("cluster budget: none (physical maximum %.0f W)\n",
               json_number_value(json_object_get(v, "cluster_max_w")));
    const char *note = json_string_value(json_object_get(v, "split_note"));
    if (note && *note)
        printf("note: %s\n", note);
    note = json_string_value(json_object_get(v, "budget_note"));
    if (note && *note)
        printf("placement: %s\n", note);
    json_t *nodes = json_object_get(v, "nodes");
    size_t n = json_array_size(nodes);
    const size_t nc = 8;
    char **cells = calloc((n + 1) * nc, sizeof(char *));
    const char *hdr[] = {"NODE",   "ON",    "POWER_W",    "BUDGET_W",
                         "SOURCE", "MAX_W", "VIOLATIONS", "FLAGGED"};
    for (size_t c = 0; c < nc; c++)
        cells[c] = strdup(hdr[c]);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(nodes, i);
        char **r = cells + (i + 1) * nc;
        double b = json_number_value(json_object_get(o, "budget_w"));
        r[0] = strdup(json_string_value(json_object_get(o, "name")));
        r[1] = strdup(json_is_true(json_object_get(o, "on")) ? "yes" : "no");
        r[2] = wlm_asprintf("%.1f", json_number_value(json_object_get(o, "watts")));
        r[3] = b > 0 ? wlm_asprintf("%.1f", b) : strdup("-");
        r[4] = strdup(json_is_number(json_object_get(o, "override_w")) ? "node"
                      : b > 0                                          ? "cluster"
                                                                       : "-");
        r[5] = wlm_asprintf("%.0f", json_number_value(json_object_get(o, "max_w")));
        r[6] = wlm_asprintf("%lld in %lld periods",
                            (long long)json_integer_value(json_object_get(o, "violating_periods")),
                            (long long)json_integer_value(json_object_get(v, "violation_n")));
        r[7] = strdup(json_is_true(json_object_get(o, "flagged")) ? "yes" : "no");
    }
    if (n)
        cli_table(stdout, (const char *const *)cells, n + 1, nc);
    for (size_t i = 0; i < (n + 1) * nc; i++)
        free(cells[i]);
    free(cells);
}

int cli_cmd_power(const struct cli_ctx *ctx, int argc, char **argv)
{
    int as_json = 0;
    const char *sub = "show", *arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            as_json = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(power_usage, stdout);
            return 0;
        } else if (i == 1 && (!strcmp(argv[i], "show") || !strcmp(argv[i], "set-budget"))) {
            sub = argv[i];
        } else if (!strcmp(sub, "set-budget") && !arg) {
            arg = argv[i];
        } else {
            fprintf(stderr, "wlm power: unexpected argument '%s' (see wlm power --help)\n",
                    argv[i]);
            return 2;
        }
    }
    json_t *v = NULL;
    int st;
    if (!strcmp(sub, "set-budget")) {
        if (!arg) {
            fprintf(stderr,
                    "wlm power set-budget: how many watts? (wlm power set-budget W|none)\n");
            return 2;
        }
        json_t *w;
        if (parse_watts("wlm power set-budget", arg, &w))
            return 2;
        json_t *body = json_pack("{s:O}", "budget_w", w);
        char *s = wlm_json_dumps(body);
        json_decref(body);
        st = cli_call(ctx, "PUT", "/v1/power", s, &v);
        free(s);
        json_decref(w);
    } else {
        st = cli_call(ctx, "GET", "/v1/power", NULL, &v);
    }
    if (st == 200) {
        if (as_json) {
            char *s = json_dumps(v, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
        } else {
            print_power(v);
        }
    }
    json_decref(v);
    return st < 0 ? 3 : st == 200 ? 0 : 1;
}

int cli_cmd_nodes_set(const struct cli_ctx *ctx, int argc, char **argv)
{
    const char *name = NULL, *budget = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: wlm nodes set NAME --power-budget W|none\n"
                   "Give one node its own power budget (watts), outside the cluster split; "
                   "'none' returns it to the split.\n");
            return 0;
        } else if (!strcmp(argv[i], "--power-budget")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "wlm nodes set: --power-budget needs a value (watts or 'none')\n");
                return 2;
            }
            budget = argv[++i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            fprintf(stderr, "wlm nodes set: unexpected argument '%s' (see wlm nodes set --help)\n",
                    argv[i]);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "wlm nodes set: which node? (wlm nodes set NAME --power-budget W)\n");
        return 2;
    }
    if (!budget) {
        fprintf(stderr, "wlm nodes set: nothing to set (--power-budget W|none)\n");
        return 2;
    }
    json_t *w;
    if (parse_watts("wlm nodes set", budget, &w))
        return 2;
    json_t *body = json_pack("{s:O}", "budget_w", w);
    char *s = wlm_json_dumps(body);
    json_decref(body);
    char *path = wlm_asprintf("/v1/nodes/%s/power", name);
    json_t *v = NULL;
    int st = cli_call(ctx, "PUT", path, s, &v);
    free(path);
    free(s);
    if (st == 200) {
        const char *warn = json_string_value(json_object_get(v, "warning"));
        if (warn)
            fprintf(stderr, "wlm nodes set: warning: %s\n", warn);
        if (json_is_null(w))
            printf("%s: power budget removed (back in the cluster split)\n", name);
        else
            printf("%s: power budget %g W\n", name, json_number_value(w));
    }
    json_decref(v);
    json_decref(w);
    return st < 0 ? 3 : st == 200 ? 0 : 1;
}

void cli_print_app_energy(const struct cli_ctx *ctx, const char *app)
{
    char *path = wlm_asprintf("/v1/energy/apps/%s", app);
    json_t *v = NULL;
    if (cli_call(ctx, "GET", path, NULL, &v) == 200) {
        char t[160];
        cli_energy_text(v, t, sizeof(t));
        printf("energy: %s\n", t);
        size_t i;
        json_t *in;
        json_array_foreach(json_object_get(v, "instances"), i, in)
        {
            cli_energy_text(in, t, sizeof(t));
            printf("  %-20s %s (last on %s)\n", json_string_value(json_object_get(in, "name")), t,
                   json_string_value(json_object_get(in, "node")));
        }
    }
    json_decref(v);
    free(path);
}
