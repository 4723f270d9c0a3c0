/* status.c - `wlm status`, `wlm placement`, `wlm utilities`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int parse_json_flag(int argc, char **argv, const char *cmd, const char *help, int *as_json)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            *as_json = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: wlm %s [--json]\n%s\n", cmd, help);
            return 0;
        } else {
            fprintf(stderr, "wlm %s: unknown argument '%s' (see wlm %s --help)\n", cmd, argv[i],
                    cmd);
            return 2;
        }
    }
    return -1;
}

static int fetch(const struct cli_ctx *ctx, const char *path, json_t **v)
{
    int st = cli_call(ctx, "GET", path, NULL, v);
    if (st == 200)
        return 0;
    json_decref(*v);
    *v = NULL;
    return st < 0 ? 3 : 1;
}

static int print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
    json_decref(v);
    return 0;
}

static long long ival(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* One line: what an operator glances at. */
void cli_status_line(json_t *s, char *out, size_t size)
{
    json_t *jobs = json_object_get(s, "jobs"), *nodes = json_object_get(s, "nodes");
    json_t *mu = json_object_get(s, "min_utility");
    char util[128];
    if (mu)
        snprintf(util, sizeof(util), "min utility %+.3f (%s)", json_number_value(mu),
                 json_string_value(json_object_get(s, "min_workload")));
    else
        snprintf(util, sizeof(util), "min utility -");
    char cancelled[48] = "";
    if (ival(jobs, "cancelled"))
        snprintf(cancelled, sizeof(cancelled), ", %lld cancelled", ival(jobs, "cancelled"));
    snprintf(out, size,
             "%s | jobs %lld done, %lld running, %lld queued, %lld failed%s | nodes on %lld/%lld | "
             "instances %lld",
             util, ival(jobs, "completed"), ival(jobs, "running"), ival(jobs, "queued"),
             ival(jobs, "failed"), cancelled, ival(nodes, "on"), ival(nodes, "registered"),
             ival(s, "instances"));
}

int cli_cmd_status(const struct cli_ctx *ctx, int argc, char **argv)
{
    int as_json = 0, rc = parse_json_flag(argc, argv, "status",
                                          "One line: minimum utility, jobs, nodes powered on.",
                                          &as_json);
    if (rc >= 0)
        return rc;
    json_t *v;
    if ((rc = fetch(ctx, "/v1/summary", &v)))
        return rc;
    if (as_json)
        return print_json(v);
    char line[512];
    cli_status_line(v, line, sizeof(line));
    printf("%s\n", line);
    /* Below the line, what needs the operator: a router the controller
     * cannot configure, apps that crash-loop or cannot be placed. */
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(v, "problems"), i, p)
        printf("  ! %s\n", json_string_value(p));
    json_t *ws = json_object_get(json_object_get(v, "jobs"), "waiting_for_vm_slot");
    if (ws && json_integer_value(ws))
        printf("  ! %lld queued jobs wait for a VM slot (more jobs than free slots in the nodes' image pools)\n",
               (long long)json_integer_value(ws));
    json_decref(v);
    return 0;
}

int cli_cmd_placement(const struct cli_ctx *ctx, int argc, char **argv)
{
    int as_json = 0, rc = parse_json_flag(
                         argc, argv, "placement",
                         "Where every app instance and job runs, its CPU, and the last decision.",
                         &as_json);
    if (rc >= 0)
        return rc;
    json_t *v;
    if ((rc = fetch(ctx, "/v1/placement", &v)))
        return rc;
    if (as_json)
        return print_json(v);
    json_t *nodes = json_object_get(v, "nodes");
    size_t i, k;
    json_t *n, *in;
    json_array_foreach(nodes, i, n) {
        json_t *insts = json_object_get(n, "instances");
        double used = 0;
        json_array_foreach(insts, k, in) used += json_number_value(json_object_get(in, "cpu_mhz"));
        printf("%-12s %-5s %-5s cpu %6.0f/%-6.0f MHz  mem %lld MB\n",
               json_string_value(json_object_get(n, "name")),
               json_string_value(json_object_get(n, "state")),
               json_string_value(json_object_get(n, "power")), used,
               json_number_value(json_object_get(n, "cpu_mhz")), ival(n, "memory_mb"));
        json_array_foreach(insts, k, in) {
            printf("    %-4s %-28s %-10s %8.0f MHz %6.0f MB\n",
                   json_string_value(json_object_get(in, "kind")),
                   json_string_value(json_object_get(in, "name")),
                   json_string_value(json_object_get(in, "state")),
                   json_number_value(json_object_get(in, "cpu_mhz")),
                   json_number_value(json_object_get(in, "memory_mb")));
        }
    }
    json_t *solver = json_object_get(v, "solver");
    if (solver)
        printf("last decision: solver %s, min utility %.3f (bound %.3f), %zu actions; %s\n",
               json_string_value(solver), json_number_value(json_object_get(v, "min_utility")),
               json_number_value(json_object_get(v, "upper_bound")),
               json_array_size(json_object_get(v, "actions")),
               json_string_value(json_object_get(v, "note")));
    int decided = solver != NULL;
    json_decref(v);
    /* The decision is what was expected then; the utilities now may differ
     * (work slower than planned, a router that does not route): say both. */
    json_t *s = NULL;
    if (decided && cli_call(ctx, "GET", "/v1/summary", NULL, &s) == 200 &&
        json_object_get(s, "min_utility"))
        printf("now:           min utility %.3f (%s)\n",
               json_number_value(json_object_get(s, "min_utility")),
               json_string_value(json_object_get(s, "min_workload")));
    json_decref(s);
    return 0;
}

int cli_cmd_utilities(const struct cli_ctx *ctx, int argc, char **argv)
{
    int as_json = 0, rc = parse_json_flag(argc, argv, "utilities",
                                          "Current utility of every application and job.",
                                          &as_json);
    if (rc >= 0)
        return rc;
    json_t *v;
    if ((rc = fetch(ctx, "/v1/utilities", &v)))
        return rc;
    if (as_json)
        return print_json(v);
    json_t *ws = json_object_get(v, "workloads");
    json_t *min = json_object_get(v, "min");
    const char *minname = min ? json_string_value(json_object_get(min, "name")) : NULL;
    printf("%-32s %-4s %9s %10s\n", "WORKLOAD", "KIND", "UTILITY", "CPU_MHZ");
    size_t i;
    json_t *w;
    json_array_foreach(ws, i, w) {
        const char *name = json_string_value(json_object_get(w, "name"));
        printf("%-32s %-4s %+9.3f %10.0f%s\n", name, json_string_value(json_object_get(w, "kind")),
               json_number_value(json_object_get(w, "utility")),
               json_number_value(json_object_get(w, "cpu_mhz")),
               minname && !strcmp(minname, name) ? "  <- minimum" : "");
    }
    if (!json_array_size(ws))
        printf("(no applications or jobs yet)\n");
    json_decref(v);
    return 0;
}
