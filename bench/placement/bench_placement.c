/*
 * wlm-bench-placement - placement controller scaling and quality.
 *
 * Generated instances (nodes x 3 workloads, 1/3 web apps with up to four
 * instances, 2/3 jobs, concave utilities, CPU over-committed by `load`), for
 * each size: heuristic solve time, minimum utility, upper bound and gap; the
 * exact MILP's result where it finishes within its time limit; and a
 * consolidation run at low load (nodes left on). Prints a table.
 *
 * Goals (issue 5): exact < 1 s at 20 x 60; heuristic within 0.02 (2 % of the
 * utility scale) of the exact minimum utility; 10,000 x 30,000 < 10 s.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: wlm-bench-placement [--max-nodes N] [--exact-max-nodes N] [--time-limit S]\n"
               "                           [--load X] [--seed N] [--smoke]\n"
               "Prints solve time, minimum utility and gap for generated instances from\n"
               "10 nodes x 30 workloads up to --max-nodes (default 10000).\n");
}

struct result {
    double secs, cpu, minu, bound, gap;
    int optimal, solver, on;
    size_t actions;
    char note[256];
};

static int run(struct placement_problem *p, enum placement_solver s, struct result *r)
{
    struct placement_decision *d = NULL;
    struct wlm_error err = {0};
    p->opts.solver = s;
    double t0 = now();
    clock_t c0 = clock();
    int rc = placement_solve(p, &d, &err);
    r->secs = now() - t0;
    r->cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    if (rc) {
        fprintf(stderr, "solve failed: %s\n", err.msg);
        return rc;
    }
    r->minu = d->min_utility_placeable;
    r->bound = d->upper_bound;
    r->gap = d->gap;
    r->optimal = d->exact_optimal;
    r->solver = d->solver;
    r->actions = d->nactions;
    snprintf(r->note, sizeof(r->note), "%s", d->note);
    r->on = 0;
    for (size_t n = 0; n < p->nnodes; n++)
        r->on += d->node_on[n];
    placement_decision_free(d);
    return 0;
}

int main(int argc, char **argv)
{
    size_t max_nodes = 10000, exact_max_nodes = 50;
    double tlim = 10, load = 1.2;
    unsigned long long seed = 42;
    static const struct option opts[] = {{"max-nodes", required_argument, 0, 'n'},
                                         {"exact-max-nodes", required_argument, 0, 'e'},
                                         {"time-limit", required_argument, 0, 't'},
                                         {"load", required_argument, 0, 'l'},
                                         {"seed", required_argument, 0, 's'},
                                         {"smoke", no_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': max_nodes = strtoul(optarg, NULL, 10); break;
        case 'e': exact_max_nodes = strtoul(optarg, NULL, 10); break;
        case 't': tlim = atof(optarg); break;
        case 'l': load = atof(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'k':
            max_nodes = 10;
            exact_max_nodes = 10;
            tlim = 2;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("wlm-bench-placement %s\n", WLM_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || max_nodes < 1 || !(tlim > 0) || !(load > 0)) {
        usage(stderr);
        return 2;
    }
    static const size_t sizes[] = {10, 20, 50, 100, 200, 1000, 3000, 10000};
    printf("placement bench: workloads = 3 x nodes, CPU load %.2f, seed %llu, MILP limit %.0f s\n",
           load, seed, tlim);
    printf("%6s %6s | %8s %8s %8s %8s %7s | %8s %8s %8s %8s %7s %4s | %7s | %8s %8s %6s\n", "nodes",
           "wklds", "heur_s", "heur_cpu", "heur_min", "bound", "gap", "exact_s", "ex_cpu", "ex_min",
           "lp_bnd", "ex_gap", "opt", "h-ex", "cons_s", "cons_cpu", "on");
    int failed = 0;
    for (size_t i = 0; i < WLM_ARRAY_LEN(sizes) && sizes[i] <= max_nodes; i++) {
        size_t nn = sizes[i], nw = 3 * nn;
        struct placement_problem *p = tp_random(nn, nw, seed + nn, load);
        p->opts.power_saving = 0;
        p->opts.max_balance_moves = 0;
        p->opts.time_limit_s = tlim;
        struct result h = {0}, e = {0}, cons = {0};
        if (run(p, PLACEMENT_SOLVER_HEURISTIC, &h)) {
            failed = 1;
            placement_problem_free(p);
            break;
        }
        int have_exact = 0;
        if (nn <= exact_max_nodes) {
            if (run(p, PLACEMENT_SOLVER_EXACT, &e) == 0 && e.solver == PLACEMENT_SOLVER_EXACT)
                have_exact = 1;
            else
                fprintf(stderr, "%zu x %zu: %s\n", nn, nw, e.note);
        }
        placement_problem_free(p);
        /* Consolidation: same shape at a fifth of the load, power saving on. */
        p = tp_random(nn, nw, seed + nn, load / 5);
        p->opts.time_limit_s = tlim;
        p->opts.max_balance_moves = 0;
        if (run(p, PLACEMENT_SOLVER_HEURISTIC, &cons))
            failed = 1;
        placement_problem_free(p);
        printf("%6zu %6zu | %8.3f %8.3f %8.4f %8.4f %7.4f | ", nn, nw, h.secs, h.cpu, h.minu,
               h.bound, h.gap);
        if (have_exact)
            printf("%8.3f %8.3f %8.4f %8.4f %7.4f %4s | %7.4f | ", e.secs, e.cpu, e.minu, e.bound,
                   e.gap, e.optimal ? "yes" : "no", h.minu - e.minu);
        else
            printf("%8s %8s %8s %8s %7s %4s | %7s | ", "-", "-", "-", "-", "-", "-", "-");
        printf("%8.3f %8.3f %3d/%zu\n", cons.secs, cons.cpu, cons.on, nn);
        fflush(stdout);
    }
    /* Harder for the heuristic: rigid single-node jobs only (no splittable
     * apps), so bin packing matters and the LP bound is not tight. */
    printf("\nrigid jobs only (heuristic vs exact, %d seeds per size)\n", 5);
    printf("%6s %6s | %10s %10s %10s | %10s %10s | %9s %9s\n", "nodes", "jobs", "heur_s_max",
           "exact_s_max", "ex_cpu_max", "worst h-ex", "mean h-ex", "ex_opt", "mean_gap");
    static const size_t jsizes[] = {4, 10, 20};
    for (size_t i = 0; i < WLM_ARRAY_LEN(jsizes) && jsizes[i] <= max_nodes; i++) {
        size_t nn = jsizes[i], nw = 3 * nn;
        double hmax = 0, emax = 0, ecpu = 0, worst = 0, sum = 0, gsum = 0;
        int nopt = 0, runs = 0;
        for (unsigned long long k = 0; k < 5; k++) {
            struct placement_problem *p = tp_random(nn, nw, seed * 31 + k * 7 + nn, load);
            for (size_t a = 0; a < nw; a++) { /* turn the apps into jobs */
                struct placement_workload *w = &p->workloads[a];
                if (w->kind != PLACEMENT_APP)
                    continue;
                w->kind = PLACEMENT_JOB;
                w->max_cpu_per_instance = 8000;
                w->min_instances = 0;
                w->max_instances = 1;
                w->state = PLACEMENT_JOB_QUEUED;
            }
            p->opts.power_saving = 0;
            p->opts.max_balance_moves = 0;
            p->opts.time_limit_s = tlim;
            struct result h = {0}, e = {0};
            if (run(p, PLACEMENT_SOLVER_HEURISTIC, &h) || run(p, PLACEMENT_SOLVER_EXACT, &e)) {
                failed = 1;
                placement_problem_free(p);
                break;
            }
            placement_problem_free(p);
            if (e.solver != PLACEMENT_SOLVER_EXACT) {
                fprintf(stderr, "rigid %zu x %zu: %s\n", nn, nw, e.note);
                continue;
            }
            runs++;
            hmax = fmax(hmax, h.secs);
            emax = fmax(emax, e.secs);
            ecpu = fmax(ecpu, e.cpu);
            double diff = h.minu - e.minu;
            worst = fmin(worst, diff);
            sum += diff;
            gsum += e.gap;
            nopt += e.optimal;
        }
        if (runs)
            printf("%6zu %6zu | %10.3f %10.3f %10.3f | %10.4f %10.4f | %4d/%-4d %9.4f\n", nn, nw,
                   hmax, emax, ecpu, worst, sum / runs, nopt, runs, gsum / runs);
    }
    /* Steady state: feed each decision back as the current placement, jiggle
     * demand by +-5 %, and count the disruptive actions per cycle. Action
     * costs and hysteresis are what keep this near zero. */
    printf("\nsteady state (5 cycles, demand noise +-5 %%, heuristic, power saving off)\n");
    printf("%6s %6s | %10s %12s %12s %10s\n", "nodes", "wklds", "first_acts", "moves/cycle",
           "starts/cycle", "kept");
    static const size_t ssizes[] = {20, 200, 2000};
    for (size_t i = 0; i < WLM_ARRAY_LEN(ssizes) && ssizes[i] <= max_nodes; i++) {
        size_t nn = ssizes[i], nw = 3 * nn;
        struct placement_problem *p = tp_random(nn, nw, seed + 1000 + nn, load);
        p->opts.power_saving = 0;
        p->opts.solver = PLACEMENT_SOLVER_HEURISTIC;
        unsigned long long rs = seed;
        size_t first = 0, moves = 0, starts = 0, kept = 0;
        for (int cyc = 0; cyc <= 5; cyc++) {
            struct placement_decision *d = NULL;
            struct wlm_error err = {0};
            if (placement_solve(p, &d, &err)) {
                fprintf(stderr, "solve failed: %s\n", err.msg);
                failed = 1;
                break;
            }
            size_t mv = 0, st = 0;
            for (size_t k = 0; k < d->nactions; k++) {
                enum placement_action_kind kd = d->actions[k].kind;
                mv += kd == PLACEMENT_ACT_MIGRATE_JOB || kd == PLACEMENT_ACT_SUSPEND_JOB ||
                      kd == PLACEMENT_ACT_STOP_INSTANCE;
                st += kd == PLACEMENT_ACT_START_JOB || kd == PLACEMENT_ACT_START_INSTANCE ||
                      kd == PLACEMENT_ACT_RESTORE_JOB;
            }
            if (cyc == 0) {
                first = d->nactions;
            } else {
                moves += mv;
                starts += st;
                kept += d->kept_current;
            }
            /* the decision becomes the current state */
            p->ncurrent = 0;
            for (size_t a = 0; a < nw; a++) {
                struct placement_workload *w = &p->workloads[a];
                if (w->kind == PLACEMENT_JOB) {
                    w->state = w->state == PLACEMENT_JOB_QUEUED ? PLACEMENT_JOB_QUEUED
                                                                : PLACEMENT_JOB_SUSPENDED;
                    w->cur_node = -1;
                }
            }
            for (size_t k = 0; k < d->nassign; k++)
                tp_cur(p, d->assign[k].workload, d->assign[k].node, d->assign[k].cpu_mhz);
            placement_decision_free(d);
            for (size_t a = 0; a < nw; a++) {
                struct placement_utility *u = &p->workloads[a].utility;
                double f = 0.95 + 0.1 * tp_rand(&rs);
                for (size_t q = 1; q < u->npoints; q++)
                    u->cpu_mhz[q] *= f;
            }
        }
        placement_problem_free(p);
        printf("%6zu %6zu | %10zu %12.1f %12.1f %7zu/5\n", nn, nw, first, moves / 5.0,
               starts / 5.0, kept);
    }

    printf("\ngap = upper bound - min utility (utility units; 1.0 = the whole goal range).\n"
           "bound: aggregate LP relaxation (heuristic) or GLPK LP relaxation (exact).\n"
           "cons: consolidation run at load/5 with power saving: solve time, nodes left on.\n"
           "_s = wall seconds, _cpu = process CPU seconds (differ when the machine is busy).\n");
    return failed;
}
