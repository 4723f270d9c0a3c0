/* budget.c - the node's power budget, kept locally between the controller's
 * decisions. The controller sends the budget (and the order in which to
 * throttle workloads, cheapest in utility first) in its answer to each
 * heartbeat. Over budget, the agent lowers the CPU frequency through cpufreq
 * (scaling_max_freq) where the host allows it, else tightens CPU caps (cgroup
 * cpu quota of processes, libvirt vcpu_quota of VMs) on the first workloads
 * of the order. Well under budget again, it gives the CPU back step by step.
 * Every violation and action is logged and reported in the heartbeat. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MAX_ACTIONS 16
#define TOLERANCE 1.02   /* over budget by more than 2 % is a violation */
#define RELAX_BELOW 0.90 /* give CPU back under 90 % of the budget */

struct na_capped {
    char id[128];
    int is_vm;
    int vcpus;
    double cap_mhz;
    long long orig_quota, orig_period; /* to restore (-1/0 = uncapped) */
};

struct na_budget {
    double budget_w;
    json_t *order; /* ids, cheapest first */
    int violation;
    unsigned long long violations, actions_total;
    json_t *actions; /* the last MAX_ACTIONS */
    char mode[16];   /* cpufreq, caps */
    double freq_frac; /* scaling_max_freq as a fraction of cpuinfo_max_freq */
    double freq_min_frac;
    int have_cpufreq;
    struct na_capped *capped;
    size_t ncapped;
    int busy;
    int calm; /* heartbeats in a row well under budget */
    json_t *uncappable; /* {"id": "why"}: the driver refused a cap */
};

/* ------------------------------------------------------------ pure */

size_t nodeagent_budget_plan(double budget_w, double watts, double idle_w,
                             const struct nodeagent_budget_wl *wl, size_t n, double *caps)
{
    for (size_t i = 0; i < n; i++)
        caps[i] = 0;
    double used = 0;
    for (size_t i = 0; i < n; i++)
        used += wl[i].mhz > 0 ? wl[i].mhz : 0;
    if (budget_w <= 0 || watts <= budget_w || used <= 0 || watts <= idle_w)
        return 0;
    /* Watts per MHz of what runs now (RAPL or the model alike). */
    double k = (watts - idle_w) / used;
    double need = (watts - budget_w) / k * 1.05;
    size_t capped = 0;
    /* First down to a quarter of what each uses, then to a trickle. */
    for (int pass = 0; pass < 2 && need > 1e-6; pass++) {
        for (size_t i = 0; i < n && need > 1e-6; i++) {
            double cur = caps[i] > 0 ? caps[i] : wl[i].mhz;
            if (cur <= NODEAGENT_BUDGET_MIN_MHZ || wl[i].fixed)
                continue;
            double floor = pass == 0 ? 0.25 * wl[i].mhz : NODEAGENT_BUDGET_MIN_MHZ;
            if (floor < NODEAGENT_BUDGET_MIN_MHZ)
                floor = NODEAGENT_BUDGET_MIN_MHZ;
            double cut = cur - floor;
            if (cut <= 0)
                continue;
            if (cut > need)
                cut = need;
            if (caps[i] == 0)
                capped++;
            caps[i] = cur - cut;
            need -= cut;
        }
    }
    return capped;
}

double nodeagent_power_model(double idle_w, double max_w, double util, double freq_frac)
{
    if (freq_frac <= 0 || freq_frac > 1)
        freq_frac = 1;
    return nodeagent_power_linear(idle_w, idle_w + (max_w - idle_w) * freq_frac, util);
}

/* ------------------------------------------------------------ cpufreq */

static int read_ll(const char *path, long long *v)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    int ok = fscanf(f, "%lld", v) == 1;
    fclose(f);
    return ok ? 0 : -EINVAL;
}

/* Set every CPU's scaling_max_freq to `frac` of its cpuinfo_max_freq (not
 * below cpuinfo_min_freq). Returns the CPUs written, or -errno. */
int nodeagent_cpufreq_set(const char *dir, double frac, double *min_frac)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    int n = 0, r = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "cpu", 3) || !e->d_name[3] || strspn(e->d_name + 3, "0123456789") !=
                                                                   strlen(e->d_name + 3))
            continue;
        char p[1024];
        long long mn = 0, mx = 0;
        snprintf(p, sizeof(p), "%s/%s/cpufreq/cpuinfo_max_freq", dir, e->d_name);
        if (read_ll(p, &mx) || mx <= 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s/cpufreq/cpuinfo_min_freq", dir, e->d_name);
        if (read_ll(p, &mn) || mn < 0)
            mn = 0;
        if (min_frac)
            *min_frac = (double)mn / (double)mx;
        long long khz = (long long)(frac * (double)mx);
        if (khz < mn)
            khz = mn;
        snprintf(p, sizeof(p), "%s/%s/cpufreq/scaling_max_freq", dir, e->d_name);
        FILE *f = fopen(p, "w");
        if (!f) {
            r = -errno;
            continue;
        }
        fprintf(f, "%lld\n", khz);
        if (fclose(f) != 0) {
            r = -errno;
            continue;
        }
        n++;
    }
    closedir(d);
    return n > 0 ? n : r ? r : -ENOENT;
}

/* ------------------------------------------------------------ agent */

int na_budget_init(struct nodeagent *a)
{
    struct na_budget *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->actions = json_array();
    b->uncappable = json_object();
    b->freq_frac = 1;
    b->freq_min_frac = 0.3;
    /* cpufreq counts only if it can be written: probe with no change. */
    double minf = 0;
    b->have_cpufreq = a->cfg.cpufreq_dir[0] &&
                      nodeagent_cpufreq_set(a->cfg.cpufreq_dir, 1.0, &minf) > 0;
    if (b->have_cpufreq && minf > 0)
        b->freq_min_frac = minf;
    wlm_strlcpy(b->mode, b->have_cpufreq ? "cpufreq" : "caps", sizeof(b->mode));
    a->budget = b;
    return 0;
}

void na_budget_free(struct nodeagent *a)
{
    struct na_budget *b = a->budget;
    if (!b)
        return;
    json_decref(b->order);
    json_decref(b->actions);
    json_decref(b->uncappable);
    free(b->capped);
    free(b);
    a->budget = NULL;
}

double na_budget_freq_frac(struct nodeagent *a)
{
    return a->budget ? a->budget->freq_frac : 1;
}

void na_budget_set(struct nodeagent *a, double budget_w, json_t *order)
{
    struct na_budget *b = a->budget;
    if (!b)
        return;
    if (budget_w != b->budget_w)
        wlm_info(NA_COMP, "power budget", "budget_w=%.1f", budget_w);
    b->budget_w = budget_w > 0 ? budget_w : 0;
    json_decref(b->order);
    b->order = json_is_array(order) ? json_incref(order) : NULL;
}

static void record(struct na_budget *b, json_t *act)
{
    json_object_set_new(act, "t", json_real(wlm_now_wall()));
    b->actions_total++;
    if (json_array_size(b->actions) >= MAX_ACTIONS)
        json_array_remove(b->actions, 0);
    json_array_append_new(b->actions, act);
}

json_t *na_budget_json(struct nodeagent *a)
{
    struct na_budget *b = a->budget;
    if (!b)
        return NULL;
    json_t *caps = json_array();
    for (size_t i = 0; i < b->ncapped; i++)
        json_array_append_new(caps, json_pack("{s:s,s:f}", "workload", b->capped[i].id, "cap_mhz",
                                              b->capped[i].cap_mhz));
    return json_pack("{s:f,s:b,s:I,s:I,s:s,s:f,s:o,s:O,s:O}", "budget_w", b->budget_w,
                     "violation", b->violation, "violations", (json_int_t)b->violations,
                     "actions_total", (json_int_t)b->actions_total, "mode", b->mode, "freq_frac",
                     b->freq_frac, "caps", caps, "actions", b->actions, "uncappable",
                     b->uncappable);
}

static struct na_capped *find_cap(struct na_budget *b, const char *id);

/* A cap change carried out on the thread pool (drivers block). */
struct cap_op {
    char id[128];
    int is_vm, vcpus, restore;
    double cap_mhz;
    long long quota, period; /* restore: the original */
    int rc;
    char err[256];
};
struct cap_work {
    uv_work_t w;
    struct nodeagent *a;
    struct cap_op *ops;
    size_t n;
};

static void cap_run(uv_work_t *w)
{
    struct cap_work *cw = w->data;
    struct nodeagent *a = cw->a;
    for (size_t i = 0; i < cw->n; i++) {
        struct cap_op *op = &cw->ops[i];
        struct wlm_error err = {0};
        struct nodeagent_driver *d = op->is_vm ? a->vm : a->proc;
        struct nodeagent_resize r = {0};
        if (!d) {
            op->rc = -1;
            snprintf(op->err, sizeof(op->err), "no driver");
            continue;
        }
        if (op->is_vm) {
            long long period = 100000;
            int vc = op->vcpus > 0 ? op->vcpus : 1;
            r.period_us = op->restore && op->period > 0 ? op->period : period;
            r.vcpu_quota_us =
                op->restore ? (op->quota > 0 ? op->quota : -1) :
                              (long long)(op->cap_mhz / (a->node.mhz > 0 ? a->node.mhz : 1000) /
                                          vc * (double)period);
            if (!op->restore && r.vcpu_quota_us < 1000)
                r.vcpu_quota_us = 1000;
        } else {
            /* Restoring an uncapped process: a cap <= 0 removes it. */
            r.cpu_cap_mhz = op->restore ? (op->quota > 0 && op->period > 0 ?
                                               (double)op->quota / (double)op->period * a->node.mhz :
                                               -1) :
                                          op->cap_mhz;
        }
        op->rc = d->ops->resize(d, op->id, &r, &err);
        if (op->rc < 0)
            wlm_strlcpy(op->err, err.msg, sizeof(op->err));
    }
}

static void cap_after(uv_work_t *w, int status)
{
    struct cap_work *cw = w->data;
    struct nodeagent *a = cw->a;
    struct na_budget *b = a->budget;
    (void)status;
    for (size_t i = 0; b && i < cw->n; i++) {
        struct cap_op *op = &cw->ops[i];
        json_t *act = json_pack("{s:s,s:s,s:b}", "action", op->restore ? "uncap" : "cap",
                                "workload", op->id, "ok", op->rc >= 0);
        if (!op->restore)
            json_object_set_new(act, "cap_mhz", json_real(op->cap_mhz));
        if (op->rc < 0)
            json_object_set_new(act, "error", json_string(op->err));
        record(b, act);
        if (op->rc < 0) {
            wlm_warn(NA_COMP, "power budget: CPU cap failed, trying the next workload",
                     "workload=%s error=\"%s\"", op->id, op->err);
            if (!op->restore)
                json_object_set_new(b->uncappable, op->id, json_string(op->err));
        }
        else
            wlm_info(NA_COMP, op->restore ? "power budget: CPU cap removed" :
                                            "power budget: CPU capped",
                     "workload=%s cap_mhz=%.0f", op->id, op->cap_mhz);
        /* The list of caps in force follows what worked. */
        struct na_capped *c = find_cap(b, op->id);
        if (op->restore) {
            if (c) {
                size_t j = (size_t)(c - b->capped);
                memmove(c, c + 1, (b->ncapped - j - 1) * sizeof(*c));
                b->ncapped--;
            }
        } else if (op->rc >= 0 && c) {
            c->cap_mhz = op->cap_mhz;
        } else if (op->rc >= 0) {
            struct na_capped *p = realloc(b->capped, (b->ncapped + 1) * sizeof(*p));
            if (p) {
                b->capped = p;
                c = &b->capped[b->ncapped++];
                memset(c, 0, sizeof(*c));
                wlm_strlcpy(c->id, op->id, sizeof(c->id));
                c->is_vm = op->is_vm;
                c->vcpus = op->vcpus;
                c->cap_mhz = op->cap_mhz;
                c->orig_quota = op->quota;
                c->orig_period = op->period;
            }
        }
    }
    if (b)
        b->busy = 0;
    free(cw->ops);
    free(cw);
    na_pending_dec(a);
}

static void queue_ops(struct nodeagent *a, struct cap_op *ops, size_t n)
{
    if (!n) {
        free(ops);
        return;
    }
    struct cap_work *cw = calloc(1, sizeof(*cw));
    if (!cw) {
        free(ops);
        return;
    }
    cw->a = a;
    cw->ops = ops;
    cw->n = n;
    cw->w.data = cw;
    a->budget->busy = 1;
    na_pending_inc(a);
    if (uv_queue_work(a->loop, &cw->w, cap_run, cap_after)) {
        a->budget->busy = 0;
        na_pending_dec(a);
        free(ops);
        free(cw);
    }
}

static struct na_capped *find_cap(struct na_budget *b, const char *id)
{
    for (size_t i = 0; i < b->ncapped; i++)
        if (!strcmp(b->capped[i].id, id))
            return &b->capped[i];
    return NULL;
}

static long order_rank(const struct na_budget *b, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(b->order, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), id))
            return (long)i;
    }
    return -1;
}

struct ranked {
    size_t idx;
    long rank;
    double mhz;
};
static int ranked_cmp(const void *x, const void *y)
{
    const struct ranked *p = x, *q = y;
    /* Ordered by the controller; the ones it did not name go first (it does
     * not value them), the biggest users first among them. */
    if (p->rank != q->rank)
        return p->rank < q->rank ? -1 : 1;
    return p->mhz > q->mhz ? -1 : p->mhz < q->mhz ? 1 : 0;
}

void na_budget_tick(struct nodeagent *a, double watts, const struct na_budget_item *items,
                    size_t n)
{
    struct na_budget *b = a->budget;
    if (!b || b->busy || !a->powered_on)
        return;
    int was = b->violation;
    b->violation = b->budget_w > 0 && watts > b->budget_w * TOLERANCE;
    if (b->violation) {
        b->violations++;
        b->calm = 0;
        if (!was)
            wlm_warn(NA_COMP, "power budget violated", "watts=%.1f budget_w=%.1f mode=%s", watts,
                     b->budget_w, b->mode);
        record(b, json_pack("{s:s,s:f,s:f}", "action", "violation", "watts", watts, "budget_w",
                            b->budget_w));
        /* 1. cpufreq, while it can go lower. */
        if (b->have_cpufreq && b->freq_frac > b->freq_min_frac + 1e-6) {
            double idle = a->cfg.idle_watts;
            double f = watts > idle ? b->freq_frac * (b->budget_w - idle) / (watts - idle) : 1;
            if (f < b->freq_min_frac)
                f = b->freq_min_frac;
            if (f > b->freq_frac - 0.02)
                f = b->freq_frac - 0.02;
            if (f < b->freq_min_frac)
                f = b->freq_min_frac;
            int r = nodeagent_cpufreq_set(a->cfg.cpufreq_dir, f, NULL);
            json_t *act = json_pack("{s:s,s:f,s:b}", "action", "cpufreq", "freq_frac", f, "ok",
                                    r > 0);
            if (r > 0) {
                b->freq_frac = f;
                wlm_info(NA_COMP, "power budget: CPU frequency lowered", "freq_frac=%.2f", f);
            } else {
                json_object_set_new(act, "error", json_string(strerror(-r)));
                b->have_cpufreq = 0;
                wlm_strlcpy(b->mode, "caps", sizeof(b->mode));
            }
            record(b, act);
            return;
        }
        /* 2. caps, cheapest workloads first. */
        struct ranked *rk = calloc(n + 1, sizeof(*rk));
        struct nodeagent_budget_wl *wl = calloc(n + 1, sizeof(*wl));
        double *caps = calloc(n + 1, sizeof(double));
        struct cap_op *ops = calloc(n + 1, sizeof(*ops));
        size_t nops = 0;
        if (rk && wl && caps && ops) {
            for (size_t i = 0; i < n; i++) {
                rk[i].idx = i;
                long r = order_rank(b, items[i].id);
                rk[i].rank = r < 0 ? -1 : r;
                rk[i].mhz = items[i].mhz;
            }
            qsort(rk, n, sizeof(*rk), ranked_cmp);
            for (size_t i = 0; i < n; i++) {
                const struct na_budget_item *it = &items[rk[i].idx];
                const struct na_capped *c = find_cap(b, it->id);
                wl[i].id = it->id;
                /* A capped workload counts at its cap (it cannot use more). */
                wl[i].mhz = c && c->cap_mhz < it->mhz ? c->cap_mhz : it->mhz;
                wl[i].fixed = json_object_get(b->uncappable, it->id) != NULL;
            }
            size_t nc = nodeagent_budget_plan(b->budget_w, watts, a->cfg.idle_watts, wl, n, caps);
            if (!nc) {
                /* Everything that can be capped is at its floor. */
                record(b, json_pack("{s:s,s:s}", "action", "none", "why",
                                    "every workload that can be capped is at its minimum; the "
                                    "rest cannot be capped here"));
            }
            for (size_t i = 0; i < n; i++) {
                if (caps[i] <= 0)
                    continue;
                const struct na_budget_item *it = &items[rk[i].idx];
                const struct na_capped *c = find_cap(b, it->id);
                struct cap_op *op = &ops[nops++];
                wlm_strlcpy(op->id, it->id, sizeof(op->id));
                op->is_vm = it->is_vm;
                op->vcpus = it->vcpus;
                op->cap_mhz = caps[i];
                op->quota = c ? c->orig_quota : it->quota;
                op->period = c ? c->orig_period : it->period;
            }
        }
        free(rk);
        free(wl);
        free(caps);
        queue_ops(a, ops, nops);
        return;
    }
    if (was)
        wlm_info(NA_COMP, "power budget kept again", "watts=%.1f budget_w=%.1f", watts,
                 b->budget_w);
    /* Well under budget (or no budget): give back, one step per heartbeat
     * after two calm ones. */
    if (b->budget_w > 0 && watts > b->budget_w * RELAX_BELOW) {
        b->calm = 0;
        return;
    }
    if (++b->calm < 2)
        return;
    if (b->ncapped) {
        struct cap_op *ops = calloc(b->ncapped, sizeof(*ops));
        size_t nops = 0;
        double idle = a->cfg.idle_watts;
        /* Room: watts we may add, spread over the caps as MHz at the
         * current watts per MHz (the model's when nothing runs). */
        double used = 0;
        for (size_t i = 0; i < n; i++)
            used += items[i].mhz;
        double k = used > 0 && watts > idle ? (watts - idle) / used :
                   a->node.mhz * a->node.cores > 0 ?
                                              (a->cfg.max_watts - idle) / (a->node.mhz * a->node.cores) :
                                              0.1;
        double room = b->budget_w > 0 ? (b->budget_w * RELAX_BELOW - watts) / (k > 0 ? k : 0.1) : 1e12;
        for (size_t i = 0; ops && i < b->ncapped; i++) {
            struct na_capped *c = &b->capped[i];
            struct cap_op *op = &ops[nops++];
            wlm_strlcpy(op->id, c->id, sizeof(op->id));
            op->is_vm = c->is_vm;
            op->vcpus = c->vcpus;
            double step = room / (double)b->ncapped;
            if (b->budget_w <= 0 || step > c->cap_mhz) {
                op->restore = 1; /* doubled cap: let it go altogether */
                op->quota = c->orig_quota;
                op->period = c->orig_period;
            } else {
                op->cap_mhz = c->cap_mhz + step;
                op->quota = c->orig_quota;
                op->period = c->orig_period;
            }
        }
        queue_ops(a, ops, nops);
        return;
    }
    if (b->have_cpufreq && b->freq_frac < 1) {
        double f = b->budget_w > 0 ? b->freq_frac + 0.1 : 1;
        if (f > 1)
            f = 1;
        if (nodeagent_cpufreq_set(a->cfg.cpufreq_dir, f, NULL) > 0) {
            b->freq_frac = f;
            record(b, json_pack("{s:s,s:f,s:b}", "action", "cpufreq", "freq_frac", f, "ok", 1));
        }
    }
}
