/*
 * wlm-bench-placement - placement controller scaling and quality.
 *
 * 1. GLPK figures (issue 14) on contended generated instances
 *    (bench/placement/instances.h: heterogeneous nodes, apps with several
 *    instances, whole jobs of 1-4 threads), nodes x 3 workloads from 10 x 30
 *    up to --max-nodes: the heuristic's minimum utility, the minimum after
 *    GLPK improved it, the upper bound and where it comes from, the gap,
 *    wall and CPU seconds and peak memory of the whole decision (each run in
 *    its own process, so the peak is that run's), whether a second run gives
 *    a byte-identical placement, and glpsol on the exported MILP for the
 *    small sizes (its objective is the minimum utility).
 * 2. Steady state: disruptive actions per cycle under demand noise.
 *
 * Goals: gap <= 0.01 at 100 x 300 within 2 s; exact optimal at 20 x 60 in
 * < 1 s; 10,000 x 30,000 decided in < 10 s with a reported bound.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glpk.h>

#include "export.h"
#include "helpers.h"
#include "instances.h"
#include "lpbound.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: wlm-bench-placement [--max-nodes N] [--time-limit S] [--load X] [--seed N]\n"
               "                           [--glpsol-max-nodes N] [--smoke] [--write-snapshot FILE]\n"
               "Prints, for contended generated instances from 10 nodes x 30 workloads up to\n"
               "--max-nodes (default 10000): heuristic and GLPK-improved minimum utility, the\n"
               "bound and its method, gap, wall/CPU seconds, peak memory, repeatability, and\n"
               "glpsol on the exported MILP up to --glpsol-max-nodes (default 20).\n"
               "--write-snapshot FILE writes the instance of --max-nodes nodes as a snapshot\n"
               "for `wlm plan` instead (WLM_BENCH_URGENT=1: the packing-bound family).\n");
}

struct result {
    double secs, minu, bound, gap, hmin;
    int atmin; /* workloads at the minimum (leximin: fewer is better) */
    int optimal, solver, rounds;
    char method[16];
    unsigned long long hash; /* of the placement: repeatability */
    char note[256];
    int ok;
};

static unsigned long long hash_decision(const struct placement_decision *d)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < d->nassign; i++) {
        const unsigned char *b = (const unsigned char *)&d->assign[i];
        for (size_t k = 0; k < sizeof(d->assign[i]); k++)
            h = (h ^ b[k]) * 1099511628211ULL;
    }
    return h;
}

/* Solve in a child process: peak memory and CPU are that run's alone. */
static int run(const struct placement_problem *p, enum placement_solver s, double tlim,
               struct result *r, double *cpu, double *peak_mb)
{
    int fd[2];
    memset(r, 0, sizeof(*r));
    if (pipe(fd))
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        struct placement_problem q = *p;
        q.opts.solver = s;
        q.opts.time_limit_s = tlim;
        struct placement_decision *d = NULL;
        struct wlm_error err = {0};
        struct result x = {0};
        double t0 = now();
        int rc = placement_solve(&q, &d, &err);
        x.secs = now() - t0;
        if (rc) {
            snprintf(x.note, sizeof(x.note), "solve failed: %s", err.msg);
        } else {
            x.ok = 1;
            /* whole jobs count at u(0) unless they hold their whole cap */
            x.minu = INFINITY;
            int *out = calloc(q.nworkloads + 1, sizeof(int));
            for (size_t k = 0; k < d->nunplaced; k++)
                out[d->unplaced[k]] = 1;
            for (size_t a = 0; a < q.nworkloads; a++) {
                const struct placement_workload *w = &q.workloads[a];
                if (out[a])
                    continue;
                double u = d->utility[a];
                if (w->kind == PLACEMENT_JOB && w->whole && d->cpu_mhz[a] < w->max_cpu_per_instance * (1 - 1e-6))
                    u = placement_utility_eval(&w->utility, 0);
                x.minu = fmin(x.minu, u);
            }
            for (size_t a = 0; a < q.nworkloads; a++) {
                const struct placement_workload *w = &q.workloads[a];
                if (out[a])
                    continue;
                double u = d->utility[a];
                if (w->kind == PLACEMENT_JOB && w->whole && d->cpu_mhz[a] < w->max_cpu_per_instance * (1 - 1e-6))
                    u = placement_utility_eval(&w->utility, 0);
                x.atmin += u <= x.minu + 1e-6;
            }
            free(out);
            x.hmin = d->heuristic_min_utility;
            x.bound = d->upper_bound;
            x.gap = fmax(0, d->upper_bound - x.minu);
            x.optimal = d->exact_optimal;
            x.solver = d->solver;
            x.rounds = d->glpk_rounds;
            snprintf(x.method, sizeof(x.method), "%s", d->bound_method);
            snprintf(x.note, sizeof(x.note), "%s", d->note);
            x.hash = hash_decision(d);
            placement_decision_free(d);
        }
        ssize_t w = write(fd[1], &x, sizeof(x));
        _exit(w == (ssize_t)sizeof(x) ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], r, sizeof(*r));
    close(fd[0]);
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0 || got != (ssize_t)sizeof(*r))
        return -1;
    *cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
    *peak_mb = ru.ru_maxrss / 1024.0;
    return r->ok ? 0 : -1;
}

/* glpsol on the exported MILP: its minimum (objective - 2), status, seconds. */
static int run_glpsol(const struct placement_problem *p, double tlim, double *t, double *secs,
                      char *status, size_t statussz)
{
    char lp[64], out[64], cmd[256];
    snprintf(lp, sizeof(lp), "/tmp/wlm-bench-%d.lp", (int)getpid());
    snprintf(out, sizeof(out), "/tmp/wlm-bench-%d.out", (int)getpid());
    struct wlm_error err = {0};
    if (placement_export_lp(p, lp, &err))
        return -1;
    snprintf(cmd, sizeof(cmd), "glpsol --lp %s --tmlim %d -o %s >/dev/null 2>&1", lp, (int)tlim,
             out);
    double t0 = now();
    int rc = system(cmd);
    *secs = now() - t0;
    (void)rc;
    FILE *f = fopen(out, "r");
    snprintf(status, statussz, "-");
    *t = NAN;
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            double v;
            char st[64];
            if (sscanf(line, "Status: %63[A-Z ]", st) == 1) {
                st[strcspn(st, "\n")] = 0;
                snprintf(status, statussz, "%s", !strncmp(st, "INTEGER OPTIMAL", 15) ? "optimal"
                                                 : !strncmp(st, "INTEGER NON-OPTIMAL", 19) ? "limit"
                                                                                          : "none");
            }
            if (sscanf(line, "Objective: obj = %lf", &v) == 1)
                *t = v;
        }
        fclose(f);
    }
    remove(lp);
    remove(out);
    return 0;
}

int main(int argc, char **argv)
{
    size_t max_nodes = 10000, glpsol_max = 20;
    double tlim = 2, load = 0.95;
    unsigned long long seed = 42;
    const char *snap_out = NULL;
    static const struct option opts[] = {{"max-nodes", required_argument, 0, 'n'},
                                         {"glpsol-max-nodes", required_argument, 0, 'g'},
                                         {"time-limit", required_argument, 0, 't'},
                                         {"load", required_argument, 0, 'l'},
                                         {"seed", required_argument, 0, 's'},
                                         {"smoke", no_argument, 0, 'k'},
                                         {"write-snapshot", required_argument, 0, 'w'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': max_nodes = strtoul(optarg, NULL, 10); break;
        case 'g': glpsol_max = strtoul(optarg, NULL, 10); break;
        case 't': tlim = atof(optarg); break;
        case 'l': load = atof(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'w': snap_out = optarg; break;
        case 'k':
            max_nodes = 10;
            glpsol_max = 0;
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
    if (snap_out) {
        /* one instance of --max-nodes nodes as a snapshot for `wlm plan` */
        struct placement_problem *p = getenv("WLM_BENCH_URGENT")
                                          ? bi_urgent(max_nodes, seed + max_nodes, load)
                                          : bi_contended(max_nodes, seed + max_nodes, load);
        json_t *j = placement_problem_to_json(p, "wlm-bench-placement instance");
        int rc = j ? json_dump_file(j, snap_out, JSON_INDENT(1)) : -1;
        json_decref(j);
        placement_problem_free(p);
        if (rc) {
            fprintf(stderr, "wlm-bench-placement: cannot write %s\n", snap_out);
            return 1;
        }
        return 0;
    }
    static const size_t sizes[] = {10, 20, 50, 100, 300, 1000, 3000, 10000};
    printf("GLPK placement figures: contended instances (whole jobs), CPU load %.2f, seed %llu,\n"
           "time limit %.1f s (safety net; work limits are deterministic)\n",
           load, seed, tlim);
    printf("%6s %6s | %8s %4s %7s | %8s %4s %8s %-9s %7s %4s %3s | %7s %7s %7s | %4s | %8s %7s %s\n",
           "nodes", "wklds", "heur_min", "#min", "heur_s", "glpk_min", "#min", "bound", "method",
           "gap", "opt", "rnd", "wall_s", "cpu_s", "peak_MB", "rep", "glpsol_t", "glpsol_s",
           "glpsol");
    int failed = 0;
    for (size_t i = 0; i < WLM_ARRAY_LEN(sizes) && sizes[i] <= max_nodes; i++) {
        size_t nn = sizes[i], nw = 3 * nn;
        struct placement_problem *p = getenv("WLM_BENCH_URGENT") ? bi_urgent(nn, seed + nn, load)
                                                                  : bi_contended(nn, seed + nn, load);
        struct result h, e, e2;
        double hcpu, hpk, ecpu, epk, c2, p2;
        enum placement_solver gs = getenv("WLM_BENCH_EXACT") ? PLACEMENT_SOLVER_EXACT
                                                             : PLACEMENT_SOLVER_AUTO;
        if (run(p, PLACEMENT_SOLVER_HEURISTIC, tlim, &h, &hcpu, &hpk) ||
            run(p, gs, tlim, &e, &ecpu, &epk)) {
            fprintf(stderr, "%zu x %zu: %s\n", nn, nw, h.ok ? e.note : h.note);
            failed = 1;
            placement_problem_free(p);
            break;
        }
        const char *rep = "-";
        if (nn <= 1000)
            rep = run(p, gs, tlim, &e2, &c2, &p2) ? "err"
                  : e2.hash == e.hash                              ? "same"
                                                                   : "DIFF";
        printf("%6zu %6zu | %8.4f %4d %7.3f | %8.4f %4d %8.4f %-9s %7.4f %4s %3d | %7.3f %7.3f %7.0f | %4s | ",
               nn, nw, h.minu, h.atmin, h.secs, e.minu, e.atmin, e.bound, e.method, e.gap,
               e.optimal ? "yes" : "no", e.rounds, e.secs, ecpu, epk, rep);
        if (nn <= glpsol_max) {
            double gt, gs;
            char gst[32];
            if (run_glpsol(p, 60, &gt, &gs, gst, sizeof(gst)) == 0)
                printf("%8.4f %7.2f %s\n", gt, gs, gst);
            else
                printf("%8s %7s export failed\n", "-", "-");
        } else {
            printf("%8s %7s -\n", "-", "-");
        }
        if (getenv("WLM_BENCH_NOTES"))
            printf("       stage saw heuristic at %.4f; note: %s\n", e.hmin, e.note);
        fflush(stdout);
        placement_problem_free(p);
    }

    /* The bound LP alone, bisected over the whole utility range (the
     * decisions above start it at the heuristic's level, which often ends it
     * after one probe). */
    printf("\nbound LP alone (full bisection from -2): classes, groups, LPs solved, seconds\n");
    printf("%6s %6s | %7s %6s %4s %8s | %9s %9s %8s\n", "nodes", "wklds", "classes", "groups", "lps",
           "iters", "bound", "fluid", "secs");
    for (size_t i = 0; i < WLM_ARRAY_LEN(sizes) && sizes[i] <= max_nodes; i++) {
        size_t nn = sizes[i];
        struct placement_problem *p = getenv("WLM_BENCH_URGENT") ? bi_urgent(nn, seed + nn, load)
                                                                  : bi_contended(nn, seed + nn, load);
        struct pl_ctx c;
        if (pl_ctx_init(&c, p)) {
            placement_problem_free(p);
            failed = 1;
            break;
        }
        double fl = placement_fluid_bound(p);
        struct pl_bound_args ba = {.excluded = NULL, .known_feasible = -2, .known_bound = fl,
                                   .tol = 1e-6, .deadline = glp_time() + 60000};
        struct pl_bound_result br;
        char note[96] = "";
        double t0 = now();
        int rc = pl_lp_bound(&c, &ba, &br, note, sizeof(note));
        double secs = now() - t0;
        glp_free_env();
        if (rc)
            failed = 1;
        else
            printf("%6zu %6zu | %7d %6d %4d %8ld | %9.4f %9.4f %8.3f\n", nn, 3 * nn, br.classes,
                   br.groups, br.lps, br.iterations, br.bound, fl, secs);
        pl_ctx_fini(&c);
        placement_problem_free(p);
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

    printf("\nheur = heuristic only (GLPK computes the bound); glpk = solver auto (GLPK improves).\n"
           "gap = bound - glpk_min (utility units; 1.0 = the whole goal range). method: glpk-lp =\n"
           "aggregated LP relaxation, glpk-milp = the full MILP proved its optimum, fluid = totals only.\n"
           "opt: proven optimal (at the bound or by the full MILP). rnd: restricted MILPs solved.\n"
           "wall/cpu/peak: the whole decision (heuristic + GLPK) in its own process.\n"
           "rep: a second run gave a byte-identical placement. glpsol: `glpsol --lp` on the\n"
           "exported MILP (60 s limit; its objective is the minimum utility).\n");
    return failed;
}
