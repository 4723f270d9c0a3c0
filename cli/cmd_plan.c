/*
 * cmd_plan.c - `wlm plan --snapshot FILE [--json]`.
 *
 * Loads a snapshot (docs/snapshot.md), runs the same placement core as the
 * controller, checks the action plan step by step, and prints the placement,
 * every workload's utility, the ordered actions, the optimality gap and the
 * nodes that power off. Nothing is contacted and nothing is changed.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_plan.h"
#include "export.h"
#include "placement.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: wlm plan --snapshot FILE [--json] [--solver auto|exact|heuristic]\n"
            "                [--time-limit SECONDS] [--export-lp FILE]\n"
            "\n"
            "What-if placement: load a cluster snapshot (nodes, web applications, jobs,\n"
            "current placement, utility functions; schema in docs/snapshot.md), run the\n"
            "placement controller on it and print the placement, each workload's utility,\n"
            "the ordered actions with their dependencies, the optimality gap and the nodes\n"
            "that power off. --json prints the decision as JSON instead.\n"
            "--export-lp FILE also writes the max-min MILP in CPLEX LP format, so\n"
            "`glpsol --lp FILE` can check the figures (its objective is the minimum).\n"
            "Flags override the snapshot's \"options\". Exit: 0 ok, 1 failure, 2 usage.\n");
}

static const char *node_name(const struct placement_problem *p, int n)
{
    return n >= 0 && (size_t)n < p->nnodes ? p->nodes[n].name : "-";
}

/* "job-7 build" when the snapshot names job 7 (the controller's
 * "job_names"), else the workload's own name. */
static const char *wl_label(const struct placement_problem *p, size_t a, json_t *names, char *buf,
                            size_t size)
{
    const char *w = p->workloads[a].name;
    const char *n = json_string_value(json_object_get(names, w));
    if (!n || !*n)
        return w;
    snprintf(buf, size, "%s %s", w, n);
    return buf;
}

static void print_text(FILE *out, const struct placement_problem *p,
                       const struct placement_decision *d, json_t *names)
{
    char lb[160];
    size_t *count = calloc(p->nworkloads ? p->nworkloads : 1, sizeof(size_t));
    char *unpl = calloc(p->nworkloads ? p->nworkloads : 1, 1);
    if (!count || !unpl) {
        free(count);
        free(unpl);
        return;
    }
    for (size_t i = 0; i < d->nassign; i++)
        count[d->assign[i].workload]++;
    for (size_t i = 0; i < d->nunplaced; i++)
        unpl[d->unplaced[i]] = 1;

    fprintf(out, "Solver: %s%s%s%s\n", placement_solver_name(d->solver),
            d->solver == PLACEMENT_SOLVER_EXACT ? (d->exact_optimal ? " (optimal)" : " (time limit)")
                                                : "",
            d->consolidated ? ", consolidating" : "", d->kept_current ? ", kept current" : "");
    fprintf(out, "\nNodes\n  %-16s %-9s %17s %19s  %s\n", "NODE", "POWER", "CPU MHz used/cap",
            "MEM MB used/cap", "RUNS");
    /* Instances grouped by node (linked through `next`) keep this linear. */
    size_t N = p->nnodes ? p->nnodes : 1;
    size_t *head = malloc(N * sizeof(size_t)), *next = malloc((d->nassign + 1) * sizeof(size_t));
    if (!head || !next) {
        free(head);
        free(next);
        free(count);
        free(unpl);
        return;
    }
    for (size_t n = 0; n < p->nnodes; n++)
        head[n] = (size_t)-1;
    for (size_t i = d->nassign; i-- > 0;) {
        next[i] = head[d->assign[i].node];
        head[d->assign[i].node] = i;
    }
    for (size_t n = 0; n < p->nnodes; n++) {
        const struct placement_node *nd = &p->nodes[n];
        double cpu = 0, mem = 0;
        for (size_t i = head[n]; i != (size_t)-1; i = next[i]) {
            cpu += d->assign[i].cpu_mhz;
            mem += p->workloads[d->assign[i].workload].memory_mb;
        }
        const char *power = d->node_on[n] ? (nd->powered_on ? "on" : "power-on")
                                          : (nd->powered_on ? "power-off" : "off");
        fprintf(out, "  %-16s %-9s %8.0f/%-8.0f %9.0f/%-9.0f  ", nd->name, power, cpu,
                nd->cores * nd->mhz_per_core, mem, nd->memory_mb);
        for (size_t i = head[n]; i != (size_t)-1; i = next[i])
            fprintf(out, "%s%s(%.0f)", i == head[n] ? "" : " ",
                    p->workloads[d->assign[i].workload].name, d->assign[i].cpu_mhz);
        fprintf(out, "%s\n", head[n] == (size_t)-1 ? "-" : "");
    }
    free(head);
    free(next);
    fprintf(out, "\nWorkloads\n  %-28s %-4s %9s %10s %9s  %s\n", "WORKLOAD", "KIND", "UTILITY",
            "CPU MHz", "INSTANCES", "NOTE");
    for (size_t a = 0; a < p->nworkloads; a++) {
        const struct placement_workload *w = &p->workloads[a];
        const char *note = "";
        if (unpl[a])
            note = "fits nowhere: not placed";
        else if (count[a] == 0 && w->kind == PLACEMENT_JOB)
            note = w->state == PLACEMENT_JOB_SUSPENDED ? "stays suspended" : "waits";
        char line[400];
        snprintf(line, sizeof(line), "  %-28.28s %-4s %9.4f %10.0f %9zu  %s",
                 wl_label(p, a, names, lb, sizeof(lb)), w->kind == PLACEMENT_APP ? "app" : "job",
                 d->utility[a], d->cpu_mhz[a], count[a], note);
        size_t l = strlen(line);
        while (l && line[l - 1] == ' ')
            line[--l] = '\0'; /* no trailing separator when there is no note */
        fprintf(out, "%s\n", line);
    }
    fprintf(out, "\nMinimum utility: %.4f", d->min_utility);
    if (d->nunplaced)
        fprintf(out, " (%.4f among workloads that fit)", d->min_utility_placeable);
    fprintf(out, "; current placement would give %.4f\n", d->current_min_utility);
    fprintf(out, "Upper bound: %.4f (%s)  gap: %.4f\n", d->upper_bound,
            d->bound_method[0] ? d->bound_method : "fluid", d->gap);
    fprintf(out, "Powered off:");
    int any = 0;
    for (size_t n = 0; n < p->nnodes; n++)
        if (p->nodes[n].powered_on && !d->node_on[n])
            fprintf(out, " %s", p->nodes[n].name), any = 1;
    fprintf(out, "%s\nPowered on:", any ? "" : " none");
    any = 0;
    for (size_t n = 0; n < p->nnodes; n++)
        if (!p->nodes[n].powered_on && d->node_on[n])
            fprintf(out, " %s", p->nodes[n].name), any = 1;
    fprintf(out, "%s\nEstimated power: %.0f W\n", any ? "" : " none", d->power_w);
    if (d->note[0])
        fprintf(out, "Note: %s\n", d->note);

    fprintf(out, "\nActions (%zu; critical path %.0f s)\n", d->nactions, d->plan_duration_s);
    if (d->nactions)
        fprintf(out, "  %4s %-15s %-28s %-16s %-16s %8s  %s\n", "#", "ACTION", "WORKLOAD", "NODE",
                "FROM", "CPU MHz", "AFTER");
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *a = &d->actions[i];
        fprintf(out, "  %4zu %-15s %-28.28s %-16s %-16s %8.0f  ", i,
                placement_action_name(a->kind),
                a->workload < p->nworkloads ? wl_label(p, a->workload, names, lb, sizeof(lb)) : "-",
                node_name(p, a->node), node_name(p, a->from_node), a->cpu_mhz);
        if (!a->ndeps)
            fprintf(out, "-");
        for (size_t k = 0; k < a->ndeps; k++)
            fprintf(out, "%s%zu", k ? "," : "", a->deps[k]);
        fprintf(out, "\n");
    }
    free(count);
    free(unpl);
}

int wlm_cmd_plan_io(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option opts[] = {{"snapshot", required_argument, 0, 's'},
                                         {"json", no_argument, 0, 'j'},
                                         {"solver", required_argument, 0, 'S'},
                                         {"time-limit", required_argument, 0, 't'},
                                         {"export-lp", required_argument, 0, 'x'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL, *solver = NULL, *export_lp = NULL;
    double tlim = 0;
    int json = 0, ch;
    optind = 0; /* reset getopt: callers (and tests) may parse several argv */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (ch) {
        case 's': path = optarg; break;
        case 'j': json = 1; break;
        case 'S': solver = optarg; break;
        case 'x': export_lp = optarg; break;
        case 't': {
            char *end;
            tlim = strtod(optarg, &end);
            if (*end || !(tlim > 0) || !isfinite(tlim)) {
                fprintf(err, "wlm plan: --time-limit: '%s' is not a positive number\n", optarg);
                return 2;
            }
            break;
        }
        case 'h': usage(out); return 0;
        case ':':
            fprintf(err, "wlm plan: %s needs a value (see wlm plan --help)\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(err, "wlm plan: unknown flag '%s' (see wlm plan --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(err, "wlm plan: unexpected argument '%s' (see wlm plan --help)\n", argv[optind]);
        return 2;
    }
    if (!path) {
        fprintf(err, "wlm plan: --snapshot FILE is required (see wlm plan --help)\n");
        return 2;
    }
    enum placement_solver sv = PLACEMENT_SOLVER_AUTO;
    if (solver) {
        if (!strcmp(solver, "exact"))
            sv = PLACEMENT_SOLVER_EXACT;
        else if (!strcmp(solver, "heuristic"))
            sv = PLACEMENT_SOLVER_HEURISTIC;
        else if (strcmp(solver, "auto")) {
            fprintf(err, "wlm plan: --solver: expected auto, exact or heuristic\n");
            return 2;
        }
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0)
            fprintf(err, "wlm plan: %s:%d:%d: %s\n", path, jerr.line, jerr.column, jerr.text);
        else
            fprintf(err, "wlm plan: %s: %s\n", path, jerr.text);
        return 1;
    }
    /* The controller's snapshots carry the jobs' names beside the problem
     * ("job_names": {"job-7": "build"}); they are for people, not the core. */
    json_t *names = json_incref(json_object_get(root, "job_names"));
    json_object_del(root, "job_names");
    struct placement_problem *p = NULL;
    struct wlm_error e = {0};
    int rc = placement_snapshot_parse(root, &p, &e);
    json_decref(root);
    if (rc) {
        fprintf(err, "wlm plan: %s: %s\n", path, e.msg);
        json_decref(names);
        return 1;
    }
    if (solver)
        p->opts.solver = sv;
    if (tlim > 0)
        p->opts.time_limit_s = tlim;
    if (export_lp && (rc = placement_export_lp(p, export_lp, &e))) {
        fprintf(err, "wlm plan: --export-lp: %s\n", e.msg);
        placement_problem_free(p);
        json_decref(names);
        return 1;
    }
    struct placement_decision *d = NULL;
    rc = placement_solve(p, &d, &e);
    if (rc) {
        fprintf(err, "wlm plan: %s\n", e.msg);
        placement_problem_free(p);
        json_decref(names);
        return 1;
    }
    /* The plan must be executable as printed: check it step by step. */
    rc = placement_plan_verify(p, d, &e);
    if (rc)
        fprintf(err, "wlm plan: internal error, the plan is not safe: %s\n", e.msg);
    if (!rc && json) {
        json_t *o = placement_decision_to_json(p, d);
        char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
        if (s)
            fprintf(out, "%s\n", s);
        else
            rc = -1, fprintf(err, "wlm plan: out of memory\n");
        free(s);
        json_decref(o);
    } else if (!rc) {
        print_text(out, p, d, names);
    }
    json_decref(names);
    placement_decision_free(d);
    placement_problem_free(p);
    return rc ? 1 : 0;
}

int wlm_cmd_plan(int argc, char **argv)
{
    return wlm_cmd_plan_io(argc, argv, stdout, stderr);
}
