/*
 * spec.c - parsing and validation of job submissions. Pure (the caller
 * supplies `now` and a lookup of existing job ids).
 *
 * Everything is validated before anything is stored: a bad member anywhere in
 * a batch rejects the whole batch with the member named, e.g.
 * "jobs[3].dependencies[0].on: unknown job 42".
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define MAX_STR 4096

static const char *const job_keys[] = {
    "name",      "kind",         "command",       "files",     "work_cycles",
    "work_mcycles", "work_seconds", "ref_mhz",     "threads",   "max_speed_mhz",
    "memory_mb", "class",        "deadline",      "deadline_in", "dependencies",
    "requirements", "submit_id", "owner", NULL,
};
static const char *const req_keys[] = {"labels", "min_cores", "min_memory_mb", "arch", NULL};
static const char *const dep_keys[] = {"kind", "on", NULL};
static const char *const batch_keys[] = {"jobs", "batch", NULL};

static int fail(struct wlm_error *err, const char *prefix, const char *key, const char *fmt, ...)
    WLM_PRINTF(4, 5);

/* Error with the field "prefix.key" (or "key"), message "field: detail". */
static int fail(struct wlm_error *err, const char *prefix, const char *key, const char *fmt, ...)
{
    char field[256], detail[384];
    va_list ap;
    if (prefix && prefix[0] && key && key[0])
        snprintf(field, sizeof(field), "%s.%s", prefix, key);
    else
        snprintf(field, sizeof(field), "%s", prefix && prefix[0] ? prefix : (key ? key : ""));
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return wlm_error_setf(err, WLM_EINVAL, field, "field '%s': %s", field, detail);
}

static int check_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                      struct wlm_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                ok = 1;
        if (!ok)
            return fail(err, prefix, key, "unknown field");
    }
    return 0;
}

static int get_str(const json_t *obj, const char *key, const char *prefix, char **out,
                   struct wlm_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, prefix, key, "must be a string");
    if (json_string_length(v) > MAX_STR)
        return fail(err, prefix, key, "longer than %d bytes", MAX_STR);
    if (json_string_length(v) == 0)
        return fail(err, prefix, key, "must not be empty");
    *out = wlm_strdup(json_string_value(v));
    return *out ? 0 : -ENOMEM;
}

/* Number in (min, max] when `exclusive`, else [min, max]. */
static int get_num(const json_t *obj, const char *key, const char *prefix, double min,
                   double max, int exclusive, double *out, int *present, struct wlm_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(err, prefix, key, "must be a number");
    double d = json_number_value(v);
    if (!isfinite(d))
        return fail(err, prefix, key, "must be finite");
    if (exclusive ? d <= min : d < min)
        return fail(err, prefix, key, "must be %s %g (got %g)", exclusive ? ">" : ">=", min, d);
    if (d > max)
        return fail(err, prefix, key, "must be <= %g (got %g)", max, d);
    *out = d;
    if (present)
        *present = 1;
    return 0;
}

static int get_int(const json_t *obj, const char *key, const char *prefix, long long min,
                   long long max, long long *out, struct wlm_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return fail(err, prefix, key, "must be an integer");
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return fail(err, prefix, key, "must be between %lld and %lld (got %lld)", min, max, x);
    *out = x;
    return 0;
}

/* RFC 3339 ("2026-11-22T10:00:00Z", "...+01:00", optional fraction). */
static int parse_rfc3339(const char *s, double *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    double frac = 0;
    if (*p == '.') {
        char *end;
        frac = strtod(p, &end);
        p = end;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return -1;
        off = sign * (hh * 3600L + mm * 60L);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    time_t t = timegm(&tm);
    *out = (double)t - (double)off + frac;
    return 0;
}


void jobsched_requirements_fini(struct jobsched_requirements *r)
{
    for (size_t i = 0; i < r->nlabels; i++) {
        free(r->labels[i].key);
        free(r->labels[i].value);
    }
    free(r->labels);
    free(r->arch);
    memset(r, 0, sizeof(*r));
}

static void spec_fini(struct jobsched_spec *s)
{
    free(s->name);
    free(s->kind);
    free(s->command);
    for (size_t i = 0; i < s->nfiles; i++)
        free(s->files[i]);
    free(s->files);
    free(s->submit_id);
    free(s->owner);
    free(s->deps);
    jobsched_requirements_fini(&s->req);
    memset(s, 0, sizeof(*s));
}

void jobsched_batch_fini(struct jobsched_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->njobs; i++)
        spec_fini(&b->jobs[i]);
    free(b->jobs);
    free(b->batch);
    memset(b, 0, sizeof(*b));
}

static int add_label(struct jobsched_requirements *r, const char *k, size_t klen, const char *v)
{
    struct jobsched_label *nl = realloc(r->labels, (r->nlabels + 1) * sizeof(*nl));
    if (!nl)
        return -ENOMEM;
    r->labels = nl;
    nl[r->nlabels].key = strndup(k, klen);
    nl[r->nlabels].value = wlm_strdup(v);
    r->nlabels++;
    return 0;
}

static int parse_requirements(const json_t *v, const char *prefix, struct jobsched_requirements *r,
                              struct wlm_error *err)
{
    char p[128];
    snprintf(p, sizeof(p), "%s%srequirements", prefix, prefix[0] ? "." : "");
    if (!json_is_object(v))
        return fail(err, p, NULL, "must be an object");
    int rc = check_keys(v, req_keys, p, err);
    if (rc)
        return rc;
    long long cores = 0, mem = 0;
    if ((rc = get_int(v, "min_cores", p, 0, 1 << 20, &cores, err)) ||
        (rc = get_int(v, "min_memory_mb", p, 0, 1LL << 40, &mem, err)) ||
        (rc = get_str(v, "arch", p, &r->arch, err)))
        return rc;
    r->min_cores = (int)cores;
    r->min_memory_mb = mem;
    json_t *labels = json_object_get(v, "labels");
    if (!labels || json_is_null(labels))
        return 0;
    if (json_is_object(labels)) {
        const char *k;
        json_t *lv;
        json_object_foreach(labels, k, lv)
        {
            if (!json_is_string(lv))
                return fail(err, p, "labels", "value of '%s' must be a string", k);
            if (add_label(r, k, strlen(k), json_string_value(lv)))
                return -ENOMEM;
        }
    } else if (json_is_array(labels)) {
        size_t i;
        json_t *lv;
        json_array_foreach(labels, i, lv)
        {
            const char *s = json_is_string(lv) ? json_string_value(lv) : NULL;
            const char *eq = s ? strchr(s, '=') : NULL;
            if (!eq || eq == s)
                return fail(err, p, "labels", "element %zu must be a \"key=value\" string", i);
            if (add_label(r, s, (size_t)(eq - s), eq + 1))
                return -ENOMEM;
        }
    } else {
        return fail(err, p, "labels", "must be an object or an array of \"key=value\"");
    }
    return 0;
}

/* A dependency target before resolution. */
struct raw_dep {
    enum jobsched_dep_kind kind;
    char *ref; /* name or decimal id */
    char field[128];
};

struct raw_deps {
    struct raw_dep *v;
    size_t n;
};

static int raw_add(struct raw_deps *d, enum jobsched_dep_kind kind, const char *ref, size_t len,
                   const char *field)
{
    struct raw_dep *nv = realloc(d->v, (d->n + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    d->v = nv;
    nv[d->n].kind = kind;
    nv[d->n].ref = strndup(ref, len);
    wlm_strlcpy(nv[d->n].field, field, sizeof(nv[d->n].field));
    d->n++;
    return 0;
}

static void raw_fini(struct raw_deps *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].ref);
    free(d->v);
    d->v = NULL;
    d->n = 0;
}

/* "afterok:12:prep,afterany:7" (Slurm's --dependency syntax). */
static int parse_dep_string(const char *s, const char *field, struct raw_deps *out,
                            struct wlm_error *err)
{
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        char kind[32];
        size_t klen = colon ? (size_t)(colon - p) : len;
        if (!colon || klen >= sizeof(kind))
            return fail(err, field, NULL, "expected kind:ref[:ref...] in \"%.*s\"", (int)len, p);
        memcpy(kind, p, klen);
        kind[klen] = 0;
        enum jobsched_dep_kind k;
        if (jobsched_dep_kind_parse(kind, &k))
            return fail(err, field, NULL,
                        "unknown dependency kind '%s' (afterok, afterany, afternotok)", kind);
        const char *r = colon + 1, *stop = p + len;
        while (r <= stop) {
            const char *c = memchr(r, ':', (size_t)(stop - r));
            size_t rl = c ? (size_t)(c - r) : (size_t)(stop - r);
            if (rl == 0)
                return fail(err, field, NULL, "empty reference in \"%.*s\"", (int)len, p);
            if (raw_add(out, k, r, rl, field))
                return -ENOMEM;
            if (!c)
                break;
            r = c + 1;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int parse_deps(const json_t *v, const char *prefix, struct raw_deps *out,
                      struct wlm_error *err)
{
    char field[128];
    snprintf(field, sizeof(field), "%s%sdependencies", prefix, prefix[0] ? "." : "");
    if (json_is_string(v))
        return parse_dep_string(json_string_value(v), field, out, err);
    if (!json_is_array(v))
        return fail(err, field, NULL, "must be an array or a \"kind:ref\" string");
    size_t i;
    json_t *d;
    json_array_foreach(v, i, d)
    {
        char f[160];
        snprintf(f, sizeof(f), "%s[%zu]", field, i);
        if (json_is_string(d)) {
            int rc = parse_dep_string(json_string_value(d), f, out, err);
            if (rc)
                return rc;
            continue;
        }
        if (!json_is_object(d))
            return fail(err, f, NULL, "must be an object {\"kind\", \"on\"} or a string");
        int rc = check_keys(d, dep_keys, f, err);
        if (rc)
            return rc;
        enum jobsched_dep_kind k = JOBSCHED_AFTEROK;
        json_t *kv = json_object_get(d, "kind");
        if (kv && (!json_is_string(kv) || jobsched_dep_kind_parse(json_string_value(kv), &k)))
            return fail(err, f, "kind", "unknown dependency kind (afterok, afterany, afternotok)");
        json_t *on = json_object_get(d, "on");
        char fon[192];
        snprintf(fon, sizeof(fon), "%s.on", f);
        if (json_is_integer(on)) {
            char buf[32];
            int n = snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(on));
            rc = raw_add(out, k, buf, (size_t)n, fon);
        } else if (json_is_string(on) && json_string_length(on) > 0) {
            rc = raw_add(out, k, json_string_value(on), json_string_length(on), fon);
        } else {
            return fail(err, fon, NULL, "required: a job id or the name of a job in this batch");
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_job(const json_t *o, const char *prefix, double now, const char *idem,
                     const struct jobsched_config *cfg, struct jobsched_spec *s,
                     struct raw_deps *deps, struct wlm_error *err)
{
    int rc;
    if (!json_is_object(o))
        return fail(err, prefix, NULL, "a job must be a JSON object");
    if ((rc = check_keys(o, job_keys, prefix, err)))
        return rc;
    if ((rc = get_str(o, "name", prefix, &s->name, err)) ||
        (rc = get_str(o, "kind", prefix, &s->kind, err)) ||
        (rc = get_str(o, "command", prefix, &s->command, err)) ||
        (rc = get_str(o, "submit_id", prefix, &s->submit_id, err)) ||
        (rc = get_str(o, "owner", prefix, &s->owner, err)))
        return rc;
    if (!s->command)
        return fail(err, prefix, "command", "required");
    if (s->submit_id && strlen(s->submit_id) > 200)
        return fail(err, prefix, "submit_id", "longer than 200 bytes");

    json_t *files = json_object_get(o, "files");
    if (files && !json_is_null(files)) {
        if (!json_is_array(files))
            return fail(err, prefix, "files", "must be an array of paths");
        s->files = calloc(json_array_size(files) + 1, sizeof(char *));
        if (!s->files)
            return -ENOMEM;
        size_t i;
        json_t *f;
        json_array_foreach(files, i, f)
        {
            if (!json_is_string(f) || json_string_length(f) == 0)
                return fail(err, prefix, "files", "element %zu must be a non-empty string", i);
            s->files[s->nfiles++] = wlm_strdup(json_string_value(f));
        }
    }

    /* Work: exactly one of cycles, megacycles, or seconds at a reference
     * speed (per thread). Zero or negative work is meaningless. */
    double cycles = 0, mcycles = 0, secs = 0, ref = cfg->ref_mhz, speed = 0;
    int has_c, has_m, has_s, has_ref, has_speed;
    long long threads = 0, mem = 0;
    if ((rc = get_num(o, "work_cycles", prefix, 0, 1e30, 1, &cycles, &has_c, err)) ||
        (rc = get_num(o, "work_mcycles", prefix, 0, 1e24, 1, &mcycles, &has_m, err)) ||
        (rc = get_num(o, "work_seconds", prefix, 0, 1e12, 1, &secs, &has_s, err)) ||
        (rc = get_num(o, "ref_mhz", prefix, 0, 1e7, 1, &ref, &has_ref, err)) ||
        (rc = get_num(o, "max_speed_mhz", prefix, 0, 1e7, 1, &speed, &has_speed, err)) ||
        (rc = get_int(o, "threads", prefix, 1, 4096, &threads, err)) ||
        (rc = get_int(o, "memory_mb", prefix, 1, 1LL << 40, &mem, err)))
        return rc;
    if (has_c + has_m + has_s > 1)
        return fail(err, prefix, has_s ? "work_seconds" : "work_mcycles",
                    "give only one of work_cycles, work_mcycles, work_seconds");
    if (has_ref && !has_s)
        return fail(err, prefix, "ref_mhz", "only meaningful with work_seconds");
    s->threads = (int)threads;
    s->max_speed_mhz = speed;
    s->memory_mb = mem;
    if (has_c)
        s->work_mcycles = cycles / 1e6;
    else if (has_m)
        s->work_mcycles = mcycles;
    else if (has_s)
        s->work_mcycles = secs * ref * (threads > 0 ? (double)threads : 1.0);

    s->cls = JOBSCHED_SILVER;
    json_t *cv = json_object_get(o, "class");
    if (cv && !json_is_null(cv)) {
        if (!json_is_string(cv) || jobsched_class_parse(json_string_value(cv), &s->cls))
            return fail(err, prefix, "class",
                        "unknown class%s%s%s (platinum, gold, silver, bronze)",
                        json_is_string(cv) ? " '" : "",
                        json_is_string(cv) ? json_string_value(cv) : "",
                        json_is_string(cv) ? "'" : "");
    }
    json_t *dv = json_object_get(o, "deadline");
    int has_in = 0;
    double din = 0;
    if ((rc = get_num(o, "deadline_in", prefix, 0, 1e10, 1, &din, &has_in, err)))
        return rc;
    if (dv && !json_is_null(dv)) {
        if (has_in)
            return fail(err, prefix, "deadline", "give deadline or deadline_in, not both");
        if (json_is_number(dv))
            s->deadline = json_number_value(dv);
        else if (!json_is_string(dv) || parse_rfc3339(json_string_value(dv), &s->deadline))
            return fail(err, prefix, "deadline",
                        "must be epoch seconds or RFC 3339 like 2026-11-22T10:00:00Z");
        if (!(s->deadline > now))
            return fail(err, prefix, "deadline", "is not in the future");
    } else if (has_in) {
        s->deadline = now + din;
    }

    json_t *rv = json_object_get(o, "requirements");
    if (rv && !json_is_null(rv) && (rc = parse_requirements(rv, prefix, &s->req, err)))
        return rc;
    json_t *depv = json_object_get(o, "dependencies");
    if (depv && !json_is_null(depv) && (rc = parse_deps(depv, prefix, deps, err)))
        return rc;

    if (!s->kind)
        s->kind = wlm_strdup(s->name ? s->name : s->command);
    if (!s->submit_id && idem)
        s->submit_id = wlm_strdup(idem);
    return 0;
}

/* Find the batch job named `name`; -1 none, -2 ambiguous. */
static int find_name(const struct jobsched_batch *b, const char *name)
{
    int found = -1;
    for (size_t i = 0; i < b->njobs; i++)
        if (b->jobs[i].name && strcmp(b->jobs[i].name, name) == 0) {
            if (found >= 0)
                return -2;
            found = (int)i;
        }
    return found;
}

static int is_decimal(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static const char *job_label(const struct jobsched_batch *b, size_t i, char *buf, size_t size)
{
    if (b->jobs[i].name)
        return b->jobs[i].name;
    snprintf(buf, size, "jobs[%zu]", i);
    return buf;
}

static int report_cycle(const struct jobsched_batch *b, const int *stack, size_t depth, int t,
                        struct wlm_error *err)
{
    struct wlm_buf path;
    char tmp[32];
    wlm_buf_init(&path);
    size_t start = 0;
    while (stack[start] != t)
        start++;
    for (size_t k = start; k < depth; k++)
        wlm_buf_printf(&path, "%s -> ", job_label(b, (size_t)stack[k], tmp, sizeof(tmp)));
    wlm_buf_printf(&path, "%s", job_label(b, (size_t)t, tmp, sizeof(tmp)));
    int rc = wlm_error_setf(err, WLM_EINVAL, "dependencies",
                            "field 'dependencies': dependency cycle: %s",
                            path.data ? path.data : "?");
    wlm_buf_fini(&path);
    return rc;
}

/* Depth-first search for a cycle among batch-internal dependencies, with an
 * explicit stack (a batch may be a chain of thousands). On a back edge the
 * path is the stack from the edge's target to the top. color: 0 unvisited,
 * 1 on the stack, 2 done. */
static int find_cycle(const struct jobsched_batch *b, size_t root, unsigned char *color,
                      int *stack, size_t *next, struct wlm_error *err)
{
    size_t depth = 0;
    stack[depth] = (int)root;
    next[depth] = 0;
    depth++;
    color[root] = 1;
    while (depth > 0) {
        size_t i = (size_t)stack[depth - 1];
        if (next[depth - 1] >= b->jobs[i].ndeps) {
            color[i] = 2;
            depth--;
            continue;
        }
        int t = b->jobs[i].deps[next[depth - 1]++].batch_index;
        if (t < 0 || color[t] == 2)
            continue;
        if (color[t] == 1)
            return report_cycle(b, stack, depth, t, err);
        color[t] = 1;
        stack[depth] = t;
        next[depth] = 0;
        depth++;
    }
    return 0;
}

int jobsched_batch_parse(const json_t *body, double now, const char *idem_key,
                         const struct jobsched_config *cfg, jobsched_exists_fn exists,
                         void *exists_ud, struct jobsched_batch *out, struct wlm_error *err)
{
    struct raw_deps *raw = NULL;
    int rc = 0;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(body))
        return fail(err, "body", NULL, "must be a JSON object (a job or {\"jobs\": [...]})");
    const json_t *jobs = json_object_get(body, "jobs");
    size_t n = 1;
    if (jobs) {
        out->is_batch = 1;
        if ((rc = check_keys(body, batch_keys, "", err)))
            return rc;
        if (!json_is_array(jobs) || json_array_size(jobs) == 0)
            return fail(err, "jobs", NULL, "must be a non-empty array of jobs");
        n = json_array_size(jobs);
        if (n > cfg->max_batch)
            return wlm_error_setf(err, WLM_ELIMIT, "jobs",
                                  "field 'jobs': %zu jobs in one request, the limit is %zu", n,
                                  cfg->max_batch);
        if ((rc = get_str(body, "batch", "", &out->batch, err)))
            return rc;
    }
    out->jobs = calloc(n, sizeof(*out->jobs));
    raw = calloc(n, sizeof(*raw));
    if (!out->jobs || !raw) {
        rc = wlm_error_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    out->njobs = n;
    for (size_t i = 0; i < n; i++) {
        char prefix[32] = "", idem[256];
        const char *key = idem_key;
        if (out->is_batch) {
            snprintf(prefix, sizeof(prefix), "jobs[%zu]", i);
            if (idem_key) {
                snprintf(idem, sizeof(idem), "%.200s#%zu", idem_key, i);
                key = idem;
            }
        }
        rc = parse_job(out->is_batch ? json_array_get(jobs, i) : body, prefix, now, key, cfg,
                       &out->jobs[i], &raw[i], err);
        if (rc)
            goto fail;
    }
    /* Resolve references now that every name of the batch is known. */
    for (size_t i = 0; i < n; i++) {
        struct jobsched_spec *s = &out->jobs[i];
        if (raw[i].n == 0)
            continue;
        s->deps = calloc(raw[i].n, sizeof(*s->deps));
        if (!s->deps) {
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t d = 0; d < raw[i].n; d++) {
            const struct raw_dep *r = &raw[i].v[d];
            struct jobsched_spec_dep *sd = &s->deps[s->ndeps++];
            sd->kind = r->kind;
            sd->batch_index = -1;
            int idx = find_name(out, r->ref);
            if (idx == -2) {
                rc = fail(err, r->field, NULL, "name '%s' is used by several jobs of this batch",
                          r->ref);
                goto fail;
            }
            if (idx >= 0) {
                sd->batch_index = idx;
                continue;
            }
            if (is_decimal(r->ref)) {
                errno = 0;
                long long id = strtoll(r->ref, NULL, 10);
                if (errno == 0 && id > 0 && exists && exists(id, exists_ud)) {
                    sd->job_id = id;
                    continue;
                }
                rc = fail(err, r->field, NULL, "unknown dependency: no job %s", r->ref);
                goto fail;
            }
            rc = fail(err, r->field, NULL,
                      "unknown dependency '%s': no job of this batch has that name", r->ref);
            goto fail;
        }
    }
    {
        unsigned char *color = calloc(n, 1);
        int *stack = calloc(n, sizeof(int));
        size_t *next = calloc(n, sizeof(size_t));
        if (!color || !stack || !next) {
            free(color);
            free(stack);
            free(next);
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n && rc == 0; i++)
            if (color[i] == 0)
                rc = find_cycle(out, i, color, stack, next, err);
        free(color);
        free(stack);
        free(next);
        if (rc)
            goto fail;
    }
    for (size_t i = 0; i < n; i++)
        raw_fini(&raw[i]);
    free(raw);
    return 0;
fail:
    for (size_t i = 0; raw && i < n; i++)
        raw_fini(&raw[i]);
    free(raw);
    jobsched_batch_fini(out);
    return rc;
}
