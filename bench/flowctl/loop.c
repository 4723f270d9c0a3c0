/* loop.c - see loop.h. */
#include "loop.h"

#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "flowctl.h"
#include "loadgen.h"
#include "nodeagent.h"
#include "profilers.h"

static const char *app_name[2] = {"gold", "bronze"};

struct flow_cum { /* cumulative router counters of one flow */
    double arrivals, completed, rejected, resp_n, resp_sum_ms, svc_n, svc_sum_ms;
};

struct ctx {
    const struct loop_params *p;
    uv_loop_t *loop;
    int pids[3];
    struct lg *data, *admin, *app[2];
    struct lg_stream *s[2];
    json_t *cfg;
    struct flowctl *fc;
    struct flowctl *fc_blind; /* measured_cpu: the same model without the CPU measurement */
    struct prof_web *prof;
    double prev_cpu[2], prev_wait[2], prev_done[2]; /* measured_cpu */
    int have_prev[2];
    int hogs[4];
    int nhogs;
    struct flow_cum prev[2];
    double prev_svc_n[2]; /* service counts at the previous cycle (gradient policy) */
    double prev_burn[2], prev_busy[2], omega[2]; /* the apps' obtained CPU (MHz) */
    json_t *prev_stats;                          /* last GET /admin/stats document */
    double prev_t;
    double min_rtt; /* gradient policy */
    double limit;   /* gradient policy, continuous */
    struct flowctl_decision dec;
};

static void wake(uv_timer_t *t)
{
    (void)t;
}

static void run_for(uv_loop_t *loop, double s)
{
    double end = lg_now() + s;
    uv_timer_t w;
    uv_timer_init(loop, &w);
    while (lg_now() < end) {
        uv_timer_start(&w, wake, (uint64_t)((end - lg_now()) * 1000) + 1, 0);
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&w);
    uv_close((uv_handle_t *)&w, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Ports of the router from its log line "listening listen=H:P admin=H:Q". */
static int router_ports(const char *log, double timeout_s, int *lport, int *aport)
{
    double end = lg_now() + timeout_s;
    while (lg_now() < end) {
        FILE *f = fopen(log, "r");
        char line[1024];
        while (f && fgets(line, sizeof line, f)) {
            char *l = strstr(line, "listen="), *a = strstr(line, "admin=");
            if (l && a) {
                char *pl = strchr(l, ':'), *pa = strchr(a, ':');
                if (pl && pa) {
                    *lport = atoi(pl + 1);
                    *aport = atoi(pa + 1);
                    fclose(f);
                    return *lport > 0 && *aport > 0 ? 0 : -1;
                }
            }
        }
        if (f)
            fclose(f);
        usleep(20000);
    }
    return -1;
}

static json_t *initial_config(const struct loop_params *p, const int *ports)
{
    json_t *apps = json_array();
    for (int i = 0; i < 2; i++) {
        char prefix[32], url[64];
        snprintf(prefix, sizeof prefix, "/%s", app_name[i]);
        snprintf(url, sizeof url, "http://127.0.0.1:%d", ports[i]);
        json_array_append_new(
            apps,
            json_pack("{s:s,s:s,s:[{s:s,s:f,s:f,s:i,s:i}],s:[{s:s,s:s,s:f}]}", "name", app_name[i],
                      "prefix", prefix, "classes", "name", "default", "weight", 1.0, "cost", 1.0,
                      "max_queue", (int)p->max_queue, "max_wait_ms", (int)p->max_wait_ms,
                      "instances", "id", app_name[i], "url", url, "cpu_mhz", 1000.0));
    }
    return json_pack("{s:i,s:o}", "limit", (int)p->limit0, "apps", apps);
}

static int put_config(struct ctx *c, char *err, size_t errlen)
{
    char *body = json_dumps(c->cfg, JSON_COMPACT);
    char *resp = NULL;
    int st = lg_request_sync(c->admin, "PUT", "/admin/config", body, &resp);
    free(body);
    if (st != 200)
        snprintf(err, errlen, "PUT /admin/config: status %d: %s", st, resp ? resp : "");
    free(resp);
    return st == 200 ? 0 : -1;
}

static int read_router(struct ctx *c, struct flow_cum *cum, json_t **doc, char *err, size_t errlen)
{
    char *body = NULL;
    int st = lg_request_sync(c->admin, "GET", "/admin/stats", NULL, &body);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    if (st != 200 || !j) {
        snprintf(err, errlen, "GET /admin/stats: status %d", st);
        json_decref(j);
        return -1;
    }
    memset(cum, 0, 2 * sizeof *cum);
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(j, "flows"), i, f)
    {
        const char *app = json_string_value(json_object_get(f, "app"));
        for (int k = 0; k < 2; k++) {
            if (!app || strcmp(app, app_name[k]))
                continue;
            json_t *resp = json_object_get(f, "response");
            cum[k].arrivals = json_number_value(json_object_get(f, "arrivals"));
            cum[k].completed = json_number_value(json_object_get(f, "completed"));
            cum[k].rejected = json_number_value(json_object_get(f, "rejected")) +
                              json_number_value(json_object_get(f, "expired"));
            cum[k].resp_n = json_number_value(json_object_get(resp, "count"));
            cum[k].resp_sum_ms = json_number_value(json_object_get(resp, "sum_ms"));
            cum[k].svc_n = json_number_value(json_object_get(f, "service_count"));
            cum[k].svc_sum_ms =
                cum[k].svc_n * json_number_value(json_object_get(f, "service_time_ms_mean"));
        }
    }
    if (doc)
        *doc = j;
    else
        json_decref(j);
    return 0;
}

/* The app's CPU counter (burn_seconds) and the wall time its worker spent
 * burning (busy_seconds); NAN when unreachable. */
static double app_burn(struct ctx *c, int k, double *busy)
{
    char *body = NULL;
    int st = lg_request_sync(c->app[k], "GET", "/stats", NULL, &body);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    double v = st == 200 && j ? json_number_value(json_object_get(j, "burn_seconds")) : NAN;
    *busy = st == 200 && j ? json_number_value(json_object_get(j, "busy_seconds")) : NAN;
    json_decref(j);
    return v;
}

/* CPU hogs: busy processes pinned to gold's core (CPU 0), so gold's CPU
 * runs slower than its allocation says. */
static void set_hogs(struct ctx *c, int n)
{
    if (n > 4)
        n = 4;
    while (c->nhogs > n) {
        int pid = c->hogs[--c->nhogs];
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    while (c->nhogs < n) {
        pid_t pid = fork();
        if (pid == 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(0, &set);
            sched_setaffinity(0, sizeof set, &set);
            for (volatile unsigned long x = 0;; x++) {
            }
        }
        if (pid < 0)
            break;
        c->hogs[c->nhogs++] = pid;
    }
}

static void set_weights_equal(json_t *cfg, double limit)
{
    json_object_set_new(cfg, "limit", json_integer((json_int_t)llround(limit)));
}

/* One control cycle: observe, decide, push. Fills the cycle record. */
static int control(struct ctx *c, double now, struct loop_cycle *cy, char *err, size_t errlen)
{
    const struct loop_params *p = c->p;
    struct flow_cum cum[2];
    json_t *doc = NULL;
    if (read_router(c, cum, &doc, err, errlen))
        return -1;
    /* What the controller daemon does with the router's stats. */
    struct flowctl_obs obs[8];
    size_t nobs = 0;
    if (flowctl_obs_from_router_stats(c->prev_stats, doc, now - c->prev_t, obs, 8, &nobs, NULL))
        nobs = 0;
    double svc[2] = {NAN, NAN};
    for (int k = 0; k < 2; k++) {
        double busy, burn = app_burn(c, k, &busy);
        double cpu_time = -1, cpu_wait = -1;
        if (p->measured_cpu) {
            /* What the node agent reports: the process's CPU and the time its
             * threads waited for a CPU; per request over this cycle. */
            struct nodeagent_proc_usage u;
            burn = busy = NAN;
            if (nodeagent_proc_session_usage(c->pids[k], &u) == 0) {
                burn = u.cpu_seconds;
                double dn = cum[k].completed - c->prev_done[k];
                if (c->have_prev[k] && dn > 0) {
                    cpu_time = (u.cpu_seconds - c->prev_cpu[k]) / dn;
                    cpu_wait = (u.wait_seconds - c->prev_wait[k]) / dn;
                }
                if (!c->have_prev[k] || dn > 0) {
                    c->prev_cpu[k] = u.cpu_seconds;
                    c->prev_wait[k] = u.wait_seconds;
                    c->prev_done[k] = cum[k].completed;
                    c->have_prev[k] = 1;
                }
            }
            cy->cpu_wait_ms[k] = cpu_wait >= 0 ? cpu_wait * 1000 : NAN;
        }
        /* The allocation the app really gets: on this shared machine nothing
         * enforces one core per app, so the CPU share its worker obtained
         * while it had work stands in for what the placement controller and
         * the hypervisor would guarantee. Without it, a starved app looks
         * like one with a long non-CPU delay, where more concurrency helps. */
        if (!p->measured_cpu && isfinite(burn) && isfinite(busy) && busy - c->prev_busy[k] > 0.05) {
            double share = (burn - c->prev_burn[k]) / (busy - c->prev_busy[k]);
            share = fmax(0.05, fmin(1, share));
            c->omega[k] = c->omega[k] > 0 ? 0.5 * c->omega[k] + 0.5 * 1000 * share : 1000 * share;
            c->prev_burn[k] = burn;
            c->prev_busy[k] = busy;
            if (p->policy == LOOP_FLOWCTL)
                flowctl_set_allocation(c->fc, app_name[k], c->omega[k], NULL);
        }
        cy->omega[k] = c->omega[k] > 0 ? c->omega[k] : 1000;
        char flow[64];
        snprintf(flow, sizeof flow, "%s/default", app_name[k]);
        struct prof_flow_count pc = {flow, cum[k].completed};
        if (isfinite(burn))
            prof_web_sample(c->prof, app_name[k], now, burn, &pc, 1, NULL);
        double cost = NAN;
        if (prof_web_cost(c->prof, flow, &cost, NULL) == 0 && prof_web_rows(c->prof) > 0)
            cy->cost_est[k] = cost * 1000;
        else
            cy->cost_est[k] = NAN;
        double dn = cum[k].svc_n - c->prev[k].svc_n;
        if (dn > 0)
            svc[k] = (cum[k].svc_sum_ms - c->prev[k].svc_sum_ms) / dn / 1000;
        cy->svc[k] = svc[k];
        for (size_t i = 0; p->policy == LOOP_FLOWCTL && i < nobs; i++)
            if (!strcmp(obs[i].app, app_name[k])) {
                obs[i].cost = isfinite(cy->cost_est[k]) ? cy->cost_est[k] : -1;
                if (c->fc_blind)
                    flowctl_observe(c->fc_blind, &obs[i], now, NULL);
                obs[i].cpu_time = cpu_time;
                obs[i].cpu_wait = cpu_wait;
                flowctl_observe(c->fc, &obs[i], now, NULL);
            }
    }
    for (int k = 0; k < 2; k++)
        c->prev_svc_n[k] = c->prev[k].svc_n;
    memcpy(c->prev, cum, sizeof cum);
    json_decref(c->prev_stats);
    c->prev_stats = doc;
    c->prev_t = now;
    cy->pred_rt[0] = cy->pred_rt[1] = NAN;
    if (p->policy == LOOP_FLOWCTL) {
        struct wlm_error e = {0};
        if (flowctl_cycle(c->fc, now, &c->dec, &e)) {
            snprintf(err, errlen, "flowctl_cycle: %s", e.msg);
            return -1;
        }
        for (size_t i = 0; i < c->dec.nflows; i++)
            for (int k = 0; k < 2; k++)
                if (!strcmp(c->dec.flows[i].app, app_name[k]))
                    cy->pred_rt[k] = c->dec.flows[i].pred_rt;
        for (int k = 0; k < 2; k++) {
            struct flowctl_flow_model m;
            cy->d0[k] = flowctl_flow_get(c->fc, app_name[k], "default", &m, NULL) == 0 ? m.d0 : NAN;
            cy->cpu_share[k] = flowctl_app_cpu_share(c->fc, app_name[k]);
            cy->d0_blind[k] = cy->pred_blind[k] = NAN;
        }
        if (c->fc_blind) {
            struct flowctl_decision bd;
            if (flowctl_cycle(c->fc_blind, now, &bd, NULL) == 0)
                for (size_t i = 0; i < bd.nflows; i++)
                    for (int k = 0; k < 2; k++)
                        if (!strcmp(bd.flows[i].app, app_name[k]))
                            cy->pred_blind[k] = bd.flows[i].pred_rt;
            for (int k = 0; k < 2; k++) {
                struct flowctl_flow_model m;
                if (flowctl_flow_get(c->fc_blind, app_name[k], "default", &m, NULL) == 0)
                    cy->d0_blind[k] = m.d0;
            }
        }
        if (p->verbose)
            for (size_t i = 0; i < c->dec.nflows; i++) {
                struct flowctl_flow_model m;
                flowctl_flow_get(c->fc, c->dec.flows[i].app, "default", &m, NULL);
                fprintf(
                    stderr,
                    "    %s: lam %.1f c %.2f d0 %.1fms svc %.1fms slots %.1f->%.0f in_app %.1fms\n",
                    c->dec.flows[i].app, m.lambda, m.cost, m.d0 * 1000, svc[i] * 1000,
                    c->dec.flows[i].slots, c->dec.flows[i].target_slots,
                    c->dec.flows[i].in_app * 1000);
            }
        if (flowctl_router_config_apply(c->cfg, &c->dec, &e)) {
            snprintf(err, errlen, "apply: %s", e.msg);
            return -1;
        }
        return put_config(c, err, errlen);
    }
    if (p->policy == LOOP_GRADIENT) {
        /* Envoy's adaptive concurrency: the RTT sample is the upstream
         * latency (dispatch to response), minRTT the least sample seen. */
        double sample = 0, n = 0;
        for (int k = 0; k < 2; k++) {
            double dn = cum[k].svc_n - c->prev_svc_n[k];
            if (isfinite(svc[k]) && dn > 0) {
                sample += svc[k] * dn;
                n += dn;
            }
        }
        if (n == 0)
            return put_config(c, err, errlen);
        sample /= n;
        if (!(c->min_rtt > 0) || sample < c->min_rtt)
            c->min_rtt = sample;
        double grad = c->min_rtt * 1.25 / sample;
        grad = fmax(0.5, fmin(2.0, grad));
        c->limit = c->limit * grad + sqrt(c->limit);
        c->limit = fmax(3, fmin(1000, c->limit));
        set_weights_equal(c->cfg, c->limit);
        return put_config(c, err, errlen);
    }
    return 0;
}

int loop_run(const struct loop_params *p, struct loop_result *r)
{
    memset(r, 0, sizeof *r);
    struct ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.pids[0] = c.pids[1] = c.pids[2] = -1;
    c.limit = p->limit0;
    int rc = -1;
    char tmp[256], log[300], cfgpath[300], sapp[4200], router[4200];
    snprintf(tmp, sizeof tmp, "/tmp/wlm-flowctl-loop-%d", (int)getpid());
    snprintf(sapp, sizeof sapp, "%s/wlm-sampleapp", p->bindir);
    snprintf(router, sizeof router, "%s/wlm-router", p->bindir);
    if (access(router, X_OK) || access(sapp, X_OK)) {
        snprintf(r->error, sizeof r->error, "need %s and %s", router, sapp);
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    int ports[2];
    for (int k = 0; k < 2; k++) {
        char pf[300], cpu[32], delay[32];
        snprintf(pf, sizeof pf, "%s-%s.port", tmp, app_name[k]);
        snprintf(log, sizeof log, "%s-%s.log", tmp, app_name[k]);
        snprintf(cpu, sizeof cpu, "%g", p->cpu_ms[k]);
        snprintf(delay, sizeof delay, "%g", p->delay_ms[k]);
        unlink(pf);
        /* One core each, and on different cores when there are two: the
         * design gives each application its own CPU allocation, so one
         * app's overload must not eat the other's CPU. */
        char aff[16];
        snprintf(aff, sizeof aff, "%d", k);
        char *av[] = {
            sapp,  "--port",    "0", "--port-file",
            pf,    "--cpu-ms",  cpu, "--delay-ms",
            delay, "--workers", "1", sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? "--cpu-affinity" : NULL,
            aff,   NULL};
        c.pids[k] = lg_spawn(av, log);
        ports[k] = lg_wait_port(pf, 10);
        unlink(pf);
        if (c.pids[k] < 0 || ports[k] < 0) {
            snprintf(r->error, sizeof r->error, "wlm-sampleapp %s did not start (see %s)",
                     app_name[k], log);
            goto out;
        }
    }
    c.cfg = initial_config(p, ports);
    snprintf(cfgpath, sizeof cfgpath, "%s-router.json", tmp);
    if (json_dump_file(c.cfg, cfgpath, 0)) {
        snprintf(r->error, sizeof r->error, "cannot write %s", cfgpath);
        goto out;
    }
    snprintf(log, sizeof log, "%s-router.log", tmp);
    {
        char *av[] = {router,        "--config", cfgpath,       "--listen",
                      "127.0.0.1:0", "--admin",  "127.0.0.1:0", NULL};
        c.pids[2] = lg_spawn(av, log);
    }
    int lport, aport;
    if (c.pids[2] < 0 || router_ports(log, 10, &lport, &aport)) {
        snprintf(r->error, sizeof r->error, "wlm-router did not start (see %s)", log);
        goto out;
    }
    c.loop = uv_default_loop();
    c.data = lg_new(c.loop, "127.0.0.1", lport);
    c.admin = lg_new(c.loop, "127.0.0.1", aport);
    for (int k = 0; k < 2; k++) {
        c.app[k] = lg_new(c.loop, "127.0.0.1", ports[k]);
        char path[64];
        snprintf(path, sizeof path, "/%s/work", app_name[k]);
        c.s[k] = lg_stream_add(c.data, path, NULL, 0);
    }
    struct flowctl_config fcfg;
    flowctl_config_default(&fcfg);
    fcfg.queue_cap = p->max_queue;
    c.fc = flowctl_new(&fcfg, NULL);
    struct prof_web_config pcfg;
    prof_web_config_default(&pcfg);
    pcfg.window_s = 2 * p->cycle_s - 1e-6;
    pcfg.forgetting = 0.9;
    pcfg.baseline = 0; /* burn_seconds counts request CPU only */
    c.prof = prof_web_new(&pcfg, NULL);
    if (p->measured_cpu) {
        c.fc_blind = flowctl_new(&fcfg, NULL);
        pcfg.baseline = 1; /* process CPU includes the app's idle work */
        prof_web_free(c.prof);
        c.prof = prof_web_new(&pcfg, NULL);
    }
    for (int k = 0; k < 2; k++) {
        flowctl_set_allocation(c.fc, app_name[k], 1000, NULL); /* one core each */
        flowctl_set_goal(c.fc, app_name[k], "default", p->goal[k], 1, NULL);
        if (c.fc_blind) {
            flowctl_set_allocation(c.fc_blind, app_name[k], 1000, NULL);
            flowctl_set_goal(c.fc_blind, app_name[k], "default", p->goal[k], 1, NULL);
        }
    }
    double t0 = lg_now();
    c.prev_t = t0;
    if (read_router(&c, c.prev, &c.prev_stats, r->error, sizeof r->error))
        goto out;
    for (size_t ph = 0; ph < p->nphases; ph++) {
        for (int k = 0; k < 2; k++)
            lg_stream_set_rate(c.s[k], p->phases[ph].rate[k]);
        set_hogs(&c, p->hog_phase[ph]);
        double end = lg_now() + p->phases[ph].seconds;
        while (lg_now() < end - 1e-3 && r->ncycles < LOOP_MAX_CYCLES) {
            struct loop_cycle *cy = &r->cycles[r->ncycles];
            memset(cy, 0, sizeof *cy);
            cy->phase = ph;
            cy->limit = (unsigned)json_integer_value(json_object_get(c.cfg, "limit"));
            for (int k = 0; k < 2; k++) {
                json_t *cls = json_array_get(
                    json_object_get(json_array_get(json_object_get(c.cfg, "apps"), k), "classes"),
                    0);
                cy->weight[k] = json_number_value(json_object_get(cls, "weight"));
            }
            run_for(c.loop, p->cycle_s);
            cy->t = lg_now() - t0;
            for (int k = 0; k < 2; k++) {
                struct lg_stats st;
                lg_stream_take(c.s[k], &st);
                cy->rt[k] = lg_stats_mean(&st);
                cy->done[k] = (double)st.ok;
                cy->rejected[k] = (double)(st.s503);
            }
            if (control(&c, lg_now(), cy, r->error, sizeof r->error))
                goto out;
            r->ncycles++;
            if (p->verbose)
                fprintf(stderr,
                        "t=%5.1f ph=%zu limit=%3u w=%.0f/%.0f gold rt=%6.1fms (pred %6.1f) n=%3.0f "
                        "503=%3.0f c=%.2f cpu=%.0f | bronze rt=%6.1fms n=%3.0f 503=%3.0f c=%.2f "
                        "cpu=%.0f\n",
                        cy->t, ph, cy->limit, cy->weight[0], cy->weight[1], cy->rt[0] * 1000,
                        cy->pred_rt[0] * 1000, cy->done[0], cy->rejected[0], cy->cost_est[0],
                        cy->omega[0], cy->rt[1] * 1000, cy->done[1], cy->rejected[1],
                        cy->cost_est[1], cy->omega[1]);
        }
    }
    rc = 0;
out:
    for (int k = 0; k < 2; k++)
        if (c.s[k])
            lg_stream_set_rate(c.s[k], 0);
    if (c.loop) {
        lg_free(c.data);
        lg_free(c.admin);
        for (int k = 0; k < 2; k++)
            lg_free(c.app[k]);
        for (int i = 0; i < 20; i++)
            uv_run(c.loop, UV_RUN_NOWAIT);
    }
    for (int i = 0; i < 3; i++)
        if (c.pids[i] > 0) {
            kill(c.pids[i], SIGTERM);
            waitpid(c.pids[i], NULL, 0);
        }
    if (rc == 0) {
        for (int k = 0; k < 2; k++) {
            snprintf(log, sizeof log, "%s-%s.log", tmp, app_name[k]);
            unlink(log);
        }
        snprintf(log, sizeof log, "%s-router.log", tmp);
        unlink(log);
        unlink(cfgpath);
    }
    json_decref(c.cfg);
    json_decref(c.prev_stats);
    set_hogs(&c, 0);
    flowctl_free(c.fc);
    flowctl_free(c.fc_blind);
    prof_web_free(c.prof);
    return rc;
}
