/*
 * trace.c - real job traces for wlm-sim: the Standard Workload Format (SWF
 * v2.2, the Parallel Workloads Archive's) read into struct sim_job_spec, the
 * queue -> service class map, and simulation of a trace with its afterok
 * dependencies (SWF fields 17/18) on top of sim_run.
 *
 * Fields used (1-based, as the SWF definition numbers them): 1 job number,
 * 2 submit time, 4 run time, 5 allocated processors, 8 requested processors,
 * 10 requested memory (KB per processor), 15 queue, 17 preceding job,
 * 18 think time. The others must be numbers but are not used.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jobsched.h"
#include "sim.h"

/* ---------------------------------------------------------------- classes */

/* sim_class and jobsched_class list the same classes in the same order. */
_Static_assert((int)SIM_NCLASSES == (int)JOBSCHED_NCLASSES, "class lists differ");
_Static_assert((int)SIM_BRONZE == (int)JOBSCHED_BRONZE, "class order differs");

const char *sim_class_name(int cls)
{
    if (cls < 0 || cls >= SIM_NCLASSES)
        return "?";
    return jobsched_class_name((enum jobsched_class)cls);
}

double sim_class_factor(int cls)
{
    if (cls < 0 || cls >= SIM_NCLASSES)
        return 0;
    struct jobsched_config c;
    jobsched_config_default(&c);
    return c.class_factor[cls];
}

int sim_class_parse(const char *s)
{
    enum jobsched_class c;
    if (!s || jobsched_class_parse(s, &c) != 0)
        return -WLM_EINVAL;
    return (int)c;
}

void sim_trace_classes_default(struct sim_trace_classes *m)
{
    memset(m, 0, sizeof(*m));
    for (int q = 1; q <= 4; q++) {
        m->queue[m->n] = q;
        m->cls[m->n++] = q - 1; /* platinum, gold, silver, bronze */
    }
    m->other = SIM_SILVER;
}

static int classes_set(struct sim_trace_classes *m, long long q, int cls)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->queue[i] == q) {
            m->cls[i] = cls;
            return 0;
        }
    if (m->n == SIM_TRACE_MAXQ)
        return -1;
    m->queue[m->n] = q;
    m->cls[m->n++] = cls;
    return 0;
}

int sim_trace_classes_parse(const char *s, struct sim_trace_classes *out, struct wlm_error *err)
{
    struct sim_trace_classes m = *out;
    const char *p = s;
    if (!s || !*s)
        return wlm_error_setf(err, WLM_EINVAL, "trace_classes",
                              "empty (want QUEUE=CLASS[,QUEUE=CLASS...])");
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[96];
        if (len == 0 || len >= sizeof(item))
            return wlm_error_setf(err, WLM_EINVAL, "trace_classes",
                                  "bad entry '%.*s' (want QUEUE=CLASS, e.g. 1=platinum)",
                                  (int)(len < 40 ? len : 40), p);
        memcpy(item, p, len);
        item[len] = 0;
        char *eq = strchr(item, '=');
        if (!eq)
            return wlm_error_setf(err, WLM_EINVAL, "trace_classes",
                                  "entry '%s' has no '=' (want QUEUE=CLASS, e.g. 1=platinum)",
                                  item);
        *eq = 0;
        int cls = sim_class_parse(eq + 1);
        if (cls < 0)
            return wlm_error_setf(err, WLM_EINVAL, "trace_classes",
                                  "entry '%s=%s': unknown class (platinum, gold, silver, bronze)",
                                  item, eq + 1);
        if (!strcmp(item, "*")) {
            m.other = cls;
        } else {
            char *e;
            errno = 0;
            long long q = strtoll(item, &e, 10);
            if (e == item || *e || errno || q < 0)
                return wlm_error_setf(err, WLM_EINVAL, "trace_classes",
                                      "entry '%s=%s': queue must be a number >= 0 or '*'", item,
                                      eq + 1);
            if (classes_set(&m, q, cls))
                return wlm_error_setf(err, WLM_EINVAL, "trace_classes", "more than %d queues",
                                      SIM_TRACE_MAXQ);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    *out = m;
    return 0;
}

static int classes_map(const struct sim_trace_classes *m, long long q)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->queue[i] == q)
            return m->cls[i];
    return m->other;
}

void sim_trace_opts_default(struct sim_trace_opts *o)
{
    struct sim_config c;
    sim_config_defaults(&c);
    memset(o, 0, sizeof(*o));
    o->cores = c.cores;
    o->node_mem_mb = c.mem_mb;
    o->default_mem_mb = 1024;
    sim_trace_classes_default(&o->classes);
}

/* ---------------------------------------------------------------- SWF */

enum { SWF_FIELDS = 18 };

static const char *const swf_field_names[SWF_FIELDS + 1] = {
    "",
    "job number",
    "submit time",
    "wait time",
    "run time",
    "allocated processors",
    "average CPU time",
    "used memory",
    "requested processors",
    "requested time",
    "requested memory",
    "status",
    "user",
    "group",
    "executable",
    "queue",
    "partition",
    "preceding job",
    "think time",
};

/* Growable arrays of the trace being read; everything in one place so an
 * error frees it all. */
struct reader {
    const char *name;
    size_t line;
    struct sim_trace *t;
    size_t cap;
    /* every job number seen, kept or skipped, in file order (increasing), and
     * its index in t->jobs or -1 when skipped */
    long long *seen;
    long *seen_idx;
    size_t nseen, capseen;
    struct wlm_error *err;
};

static int bad(struct reader *r, int field, const char *fmt, const char *tok)
{
    return wlm_error_setf(r->err, WLM_EINVAL, "trace", "%s:%zu: field %d (%s): %s%s%s", r->name,
                          r->line, field, swf_field_names[field], tok ? "'" : "", tok ? tok : "",
                          fmt);
}

static int grow(struct reader *r)
{
    struct sim_trace *t = r->t;
    if (t->n < r->cap)
        return 0;
    size_t nc = r->cap ? r->cap * 2 : 256;
    struct sim_job_spec *j = realloc(t->jobs, nc * sizeof(*j));
    if (j)
        t->jobs = j;
    long long *num = realloc(t->number, nc * sizeof(*num));
    if (num)
        t->number = num;
    int *af = realloc(t->after, nc * sizeof(*af));
    if (af)
        t->after = af;
    double *th = realloc(t->think_s, nc * sizeof(*th));
    if (th)
        t->think_s = th;
    if (!j || !num || !af || !th)
        return wlm_error_set(r->err, ENOMEM, "out of memory reading %s", r->name);
    r->cap = nc;
    return 0;
}

static int remember(struct reader *r, long long number, long idx)
{
    if (r->nseen == r->capseen) {
        size_t nc = r->capseen ? r->capseen * 2 : 256;
        long long *s = realloc(r->seen, nc * sizeof(*s));
        if (s)
            r->seen = s;
        long *si = realloc(r->seen_idx, nc * sizeof(*si));
        if (si)
            r->seen_idx = si;
        if (!s || !si)
            return wlm_error_set(r->err, ENOMEM, "out of memory reading %s", r->name);
        r->capseen = nc;
    }
    r->seen[r->nseen] = number;
    r->seen_idx[r->nseen++] = idx;
    return 0;
}

/* Index into seen[] of job `number`, -1 when it never appeared. */
static long find_seen(const struct reader *r, long long number)
{
    size_t lo = 0, hi = r->nseen;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->seen[mid] < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->nseen && r->seen[lo] == number ? (long)lo : -1;
}

/* A field that is -1 (unknown) or a whole number >= lo. */
static int whole_or_unknown(struct reader *r, int k, double v, const char *tok, double lo)
{
    if (v == -1)
        return 0;
    if (v != floor(v) || v < lo || v > 1e15)
        return bad(r, k,
                   lo > 0 ? "' must be a whole number >= 1 or -1 (unknown)"
                          : "' must be a whole number >= 0 or -1 (unknown)",
                   tok);
    return 0;
}

static int nonneg_or_unknown(struct reader *r, int k, double v, const char *tok)
{
    if (v == -1 || v >= 0)
        return 0;
    return bad(r, k, "' must be >= 0 or -1 (unknown)", tok);
}

static int parse_line(struct reader *r, char *s, const struct sim_trace_opts *o)
{
    struct sim_trace *t = r->t;
    char *tok[SWF_FIELDS + 1];
    double v[SWF_FIELDS + 1];
    int nf = 0;
    for (char *save = NULL, *p = strtok_r(s, " \t\r\n\v\f", &save); p;
         p = strtok_r(NULL, " \t\r\n\v\f", &save)) {
        if (nf == SWF_FIELDS)
            return wlm_error_setf(r->err, WLM_EINVAL, "trace",
                                  "%s:%zu: more than %d fields (SWF has 18 per job)", r->name,
                                  r->line, SWF_FIELDS);
        tok[++nf] = p;
    }
    if (nf != SWF_FIELDS)
        return wlm_error_setf(r->err, WLM_EINVAL, "trace",
                              "%s:%zu: %d fields, SWF has 18 per job (field %d (%s) is missing)",
                              r->name, r->line, nf, nf + 1, swf_field_names[nf + 1]);
    for (int k = 1; k <= SWF_FIELDS; k++) {
        char *e;
        errno = 0;
        v[k] = strtod(tok[k], &e);
        if (e == tok[k] || *e || errno == ERANGE || !isfinite(v[k]))
            return bad(r, k, "' is not a number", tok[k]);
    }
    int rc;
    if (v[1] != floor(v[1]) || v[1] < 1 || v[1] > 1e15)
        return bad(r, 1, "' must be a whole number >= 1", tok[1]);
    long long number = (long long)v[1];
    if (r->nseen > 0 && number <= r->seen[r->nseen - 1]) {
        char m[96];
        snprintf(m, sizeof(m), "' is not above the previous job's %lld (job numbers increase)",
                 r->seen[r->nseen - 1]);
        return bad(r, 1, m, tok[1]);
    }
    if (v[2] < 0)
        return bad(r, 2, "' must be >= 0 (the submit time is required)", tok[2]);
    if ((rc = nonneg_or_unknown(r, 4, v[4], tok[4])) ||
        (rc = whole_or_unknown(r, 5, v[5], tok[5], 0)) ||
        (rc = whole_or_unknown(r, 8, v[8], tok[8], 0)) ||
        (rc = nonneg_or_unknown(r, 10, v[10], tok[10])) ||
        (rc = whole_or_unknown(r, 15, v[15], tok[15], 0)) ||
        (rc = whole_or_unknown(r, 17, v[17], tok[17], 0)) ||
        (rc = nonneg_or_unknown(r, 18, v[18], tok[18])))
        return rc;
    /* preceding job: 0 and -1 both mean none (job numbers start at 1) */
    long pred = -1;
    if (v[17] >= 1) {
        long long pn = (long long)v[17];
        if (pn >= number || (pred = find_seen(r, pn)) < 0) {
            char m[128];
            snprintf(m, sizeof(m), "': job %lld does not appear before job %lld", pn, number);
            return bad(r, 17, m, tok[17]);
        }
    }
    t->lines++;
    double procs = v[8] > 0 ? v[8] : v[5];
    double mem = v[10] > 0 ? v[10] * (procs > 0 ? procs : 1) / 1024.0 : o->default_mem_mb;
    size_t *skip = NULL;
    if (!(v[4] > 0))
        skip = &t->skipped_noruntime;
    else if (!(procs > 0))
        skip = &t->skipped_noprocs;
    else if (procs > o->cores)
        skip = &t->skipped_wide;
    else if (mem > o->node_mem_mb)
        skip = &t->skipped_mem;
    if (skip) {
        (*skip)++;
        return remember(r, number, -1);
    }
    if ((rc = grow(r)))
        return rc;
    size_t i = t->n;
    int cls = classes_map(&o->classes, v[15] >= 0 ? (long long)v[15] : -1);
    t->jobs[i] = (struct sim_job_spec){
        .arrival = v[2],
        .threads = (int)procs,
        .runtime_s = v[4],
        .svc_class = cls,
        .goal_factor = sim_class_factor(cls),
        .mem_mb = mem,
    };
    t->number[i] = number;
    t->after[i] = -1;
    t->think_s[i] = 0;
    if (pred >= 0) {
        if (r->seen_idx[pred] < 0) {
            t->deps_dropped++;
        } else {
            t->after[i] = (int)r->seen_idx[pred];
            t->think_s[i] = v[18] > 0 ? v[18] : 0;
            t->deps++;
        }
    }
    t->per_class[cls]++;
    t->n++;
    return remember(r, number, (long)i);
}

int sim_trace_read(FILE *f, const char *name, const struct sim_trace_opts *o, struct sim_trace *t,
                   struct wlm_error *err)
{
    memset(t, 0, sizeof(*t));
    if (!name || !*name)
        name = "trace";
    snprintf(t->name, sizeof(t->name), "%s", name);
    if (!(o->cores > 0) || !(o->node_mem_mb > 0) || !(o->default_mem_mb > 0))
        return wlm_error_setf(err, WLM_EINVAL, "trace", "cores, node and job memory must be > 0");
    struct reader r = {.name = t->name, .t = t, .err = err};
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&buf, &bcap, f)) >= 0) {
        r.line++;
        char *s = buf;
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (!*s || *s == ';')
            continue;
        if ((rc = parse_line(&r, s, o)))
            break;
    }
    if (!rc && ferror(f))
        rc =
            wlm_error_setf(err, WLM_EIO, "trace", "%s: read error after line %zu", t->name, r.line);
    if (!rc && t->n == 0)
        rc = wlm_error_setf(err, WLM_EINVAL, "trace",
                            "%s: no job to simulate (%zu job lines; skipped: %zu wider than a "
                            "node, %zu over node memory, %zu without run time, %zu without "
                            "processors)",
                            t->name, t->lines, t->skipped_wide, t->skipped_mem,
                            t->skipped_noruntime, t->skipped_noprocs);
    free(buf);
    free(r.seen);
    free(r.seen_idx);
    if (rc) {
        sim_trace_fini(t);
        return rc;
    }
    /* submit times relative to the earliest kept job */
    double t0 = INFINITY;
    for (size_t i = 0; i < t->n; i++)
        t0 = fmin(t0, t->jobs[i].arrival);
    for (size_t i = 0; i < t->n; i++)
        t->jobs[i].arrival -= t0;
    return 0;
}

int sim_trace_load(const char *path, const struct sim_trace_opts *o, struct sim_trace *t,
                   struct wlm_error *err)
{
    memset(t, 0, sizeof(*t));
    FILE *f = fopen(path, "r");
    if (!f)
        return wlm_error_setf(err, errno, "trace", "cannot read %s: %s", path, strerror(errno));
    int rc = sim_trace_read(f, path, o, t, err);
    fclose(f);
    return rc;
}

void sim_trace_fini(struct sim_trace *t)
{
    if (!t)
        return;
    free(t->jobs);
    free(t->number);
    free(t->after);
    free(t->think_s);
    char name[sizeof(t->name)];
    memcpy(name, t->name, sizeof(name));
    memset(t, 0, sizeof(*t));
    memcpy(t->name, name, sizeof(name));
}

/* ---------------------------------------------------------------- run */

int sim_trace_run(const struct sim_config *cfg, const struct sim_trace *t, struct sim_result *res,
                  unsigned *rounds, double *arrival, struct wlm_error *err)
{
    size_t n = t->n;
    memset(res, 0, sizeof(*res));
    if (rounds)
        *rounds = 0;
    if (n == 0)
        return wlm_error_setf(err, WLM_EINVAL, "trace", "%s: no jobs", t->name);
    struct sim_job_spec *spec = malloc(n * sizeof(*spec)), *sub = malloc(n * sizeof(*sub));
    int *in = malloc(n * sizeof(int)), *map = malloc(n * sizeof(int));
    double *fin = malloc(n * sizeof(double));
    int rc = 0;
    if (!spec || !sub || !in || !map || !fin) {
        rc = wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    memcpy(spec, t->jobs, n * sizeof(*spec));
    for (size_t i = 0; i < n; i++)
        in[i] = 1;
    /* The simulation before the earliest wrong arrival is the same in every
     * later round (sim_run is causal: nothing it decides at t depends on
     * jobs arriving after t), so the wrong part only shrinks towards the end
     * of the run. A fixed point is checked, not assumed: a run is returned
     * only when no dependent job's submit time changed, and a trace that
     * has not settled after the cap is an error. */
    unsigned max_rounds = (unsigned)(2 * t->deps + 2);
    for (unsigned round = 1;; round++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            map[i] = in[i] ? (int)m : -1;
            if (in[i])
                sub[m++] = spec[i];
        }
        struct sim_result r;
        if ((rc = sim_run(cfg, sub, m, &r, err)))
            goto out;
        for (size_t i = 0; i < n; i++)
            fin[i] = map[i] >= 0 ? r.finish[map[i]] : -1;
        size_t changed = 0;
        for (size_t i = 0; i < n; i++) {
            int p = t->after[i];
            if (p < 0)
                continue;
            if (fin[p] < 0) {
                changed += in[i] != 0; /* never submitted: its predecessor never ends */
                in[i] = 0;
                continue;
            }
            double want = fin[p] + t->think_s[i];
            if (!in[i] || spec[i].arrival != want) {
                spec[i].arrival = want;
                in[i] = 1;
                changed++;
            }
        }
        if (changed == 0) {
            if (rounds)
                *rounds = round;
            *res = r;
            res->finish = fin;
            fin = NULL;
            free(r.finish);
            res->jobs = n;
            res->unfinished = n - res->done;
            if (arrival)
                for (size_t i = 0; i < n; i++)
                    arrival[i] = in[i] ? spec[i].arrival : -1;
            break;
        }
        sim_result_fini(&r);
        if (round >= max_rounds) {
            rc = wlm_error_setf(err, WLM_EINTERNAL, "trace",
                                "%s: %s: dependent jobs' submit times still changed after %u "
                                "runs (%zu in the last)",
                                t->name, sim_policy_name(cfg->policy), round, changed);
            goto out;
        }
    }
out:
    free(spec);
    free(sub);
    free(in);
    free(map);
    free(fin);
    return rc;
}
