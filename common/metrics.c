/* metrics.c - Prometheus text exposition registry.
 *
 * Metrics are grouped into families (one name, help and type); each family
 * holds series distinguished by their label string. Pointers returned to
 * callers stay valid until the registry is freed, so series are allocated
 * individually and never moved. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

enum metric_kind { M_COUNTER, M_GAUGE, M_HISTOGRAM };

struct wlm_counter {
    double v;
};
struct wlm_gauge {
    double v;
};
struct wlm_histogram {
    double *bounds;
    unsigned long long *counts; /* per finite bucket, not cumulative */
    size_t nbounds;
    unsigned long long count;
    double sum;
};

struct family;

struct series {
    char *labels;
    struct family *fam;
    unsigned hash;
    union {
        struct wlm_counter c;
        struct wlm_gauge g;
        struct wlm_histogram h;
    } u;
    struct series *next;
};

struct family {
    char *name, *help;
    enum metric_kind kind;
    struct series *head, **tail;
    struct family *next;
};

/* Series are found by (name, labels) through an open-addressing hash table:
 * a controller keeps several series per node, and with thousands of nodes
 * a scan per update was the heartbeat path's main cost. */
struct wlm_metrics {
    struct family *head, **tail;
    struct series **tab;
    size_t cap, n;
};

static unsigned key_hash(const char *name, const char *labels)
{
    unsigned h = 2166136261u;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (const char *c = labels; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    return h;
}

static struct series *tab_find(const struct wlm_metrics *m, unsigned h, const char *name,
                               const char *labels)
{
    if (!m->cap)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct series *s = m->tab[i];
        if (!s)
            return NULL;
        if (s->hash == h && !strcmp(s->fam->name, name) && !strcmp(s->labels, labels))
            return s;
    }
}

static void tab_put(struct series **tab, size_t cap, struct series *s)
{
    size_t i = s->hash & (cap - 1);
    while (tab[i])
        i = (i + 1) & (cap - 1);
    tab[i] = s;
}

static int tab_add(struct wlm_metrics *m, struct series *s)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        struct series **t = calloc(cap, sizeof(*t));
        if (!t)
            return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->tab[i])
                tab_put(t, cap, m->tab[i]);
        free(m->tab);
        m->tab = t;
        m->cap = cap;
    }
    tab_put(m->tab, m->cap, s);
    m->n++;
    return 0;
}

struct wlm_metrics *wlm_metrics_new(void)
{
    struct wlm_metrics *m = calloc(1, sizeof(*m));
    if (m)
        m->tail = &m->head;
    return m;
}

void wlm_metrics_free(struct wlm_metrics *m)
{
    if (!m)
        return;
    struct family *f = m->head;
    while (f) {
        struct family *fn = f->next;
        struct series *s = f->head;
        while (s) {
            struct series *sn = s->next;
            if (f->kind == M_HISTOGRAM) {
                free(s->u.h.bounds);
                free(s->u.h.counts);
            }
            free(s->labels);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    free(m->tab);
    free(m);
}

static struct series *series_get(struct wlm_metrics *m, const char *name, const char *help,
                                 const char *labels, enum metric_kind kind, int *created)
{
    struct family *f;
    const char *l = labels ? labels : "";
    unsigned h = key_hash(name, l);
    *created = 0;
    struct series *hit = tab_find(m, h, name, l);
    if (hit)
        return hit->fam->kind == kind ? hit : NULL;
    for (f = m->head; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            break;
    if (f && f->kind != kind)
        return NULL; /* same name, other type: a programming error */
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            return NULL;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        f->kind = kind;
        f->tail = &f->head;
        *m->tail = f;
        m->tail = &f->next;
    }
    struct series *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->labels = strdup(l);
    s->fam = f;
    s->hash = h;
    if (!s->labels || tab_add(m, s) < 0) {
        free(s->labels);
        free(s);
        return NULL;
    }
    *f->tail = s;
    f->tail = &s->next;
    *created = 1;
    return s;
}

struct wlm_counter *wlm_metrics_counter(struct wlm_metrics *m, const char *name, const char *help,
                                        const char *labels)
{
    int created;
    struct series *s = series_get(m, name, help, labels, M_COUNTER, &created);
    return s ? &s->u.c : NULL;
}

struct wlm_gauge *wlm_metrics_gauge(struct wlm_metrics *m, const char *name, const char *help,
                                    const char *labels)
{
    int created;
    struct series *s = series_get(m, name, help, labels, M_GAUGE, &created);
    return s ? &s->u.g : NULL;
}

struct wlm_histogram *wlm_metrics_histogram(struct wlm_metrics *m, const char *name,
                                            const char *help, const char *labels,
                                            const double *bounds, size_t nbounds)
{
    int created;
    struct series *s = series_get(m, name, help, labels, M_HISTOGRAM, &created);
    if (!s)
        return NULL;
    if (created) {
        s->u.h.bounds = malloc(sizeof(double) * (nbounds ? nbounds : 1));
        s->u.h.counts = calloc(nbounds ? nbounds : 1, sizeof(unsigned long long));
        if (!s->u.h.bounds || !s->u.h.counts)
            return NULL;
        memcpy(s->u.h.bounds, bounds, sizeof(double) * nbounds);
        s->u.h.nbounds = nbounds;
    }
    return &s->u.h;
}

void wlm_counter_add(struct wlm_counter *c, double v)
{
    if (c && v > 0)
        c->v += v;
}

void wlm_gauge_set(struct wlm_gauge *g, double v)
{
    if (g)
        g->v = v;
}

void wlm_gauge_add(struct wlm_gauge *g, double v)
{
    if (g)
        g->v += v;
}

void wlm_histogram_observe(struct wlm_histogram *h, double v)
{
    if (!h || isnan(v))
        return;
    h->count++;
    h->sum += v;
    for (size_t i = 0; i < h->nbounds; i++) {
        if (v <= h->bounds[i]) {
            h->counts[i]++;
            break;
        }
    }
}

static void fmt_value(struct wlm_buf *b, double v)
{
    if (isinf(v))
        wlm_buf_printf(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        wlm_buf_printf(b, "%.0f", v);
    else
        wlm_buf_printf(b, "%.9g", v);
}

/* name{labels,extra} value */
static void fmt_sample(struct wlm_buf *b, const char *name, const char *suffix, const char *labels,
                       const char *extra, double v)
{
    int has_l = labels && *labels, has_e = extra && *extra;
    wlm_buf_printf(b, "%s%s", name, suffix);
    if (has_l || has_e)
        wlm_buf_printf(b, "{%s%s%s}", has_l ? labels : "", has_l && has_e ? "," : "",
                       has_e ? extra : "");
    wlm_buf_append(b, " ", 1);
    fmt_value(b, v);
    wlm_buf_append(b, "\n", 1);
}

char *wlm_metrics_render(const struct wlm_metrics *m)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    struct wlm_buf b;
    wlm_buf_init(&b);
    for (struct family *f = m ? m->head : NULL; f; f = f->next) {
        wlm_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                       types[f->kind]);
        for (struct series *s = f->head; s; s = s->next) {
            if (f->kind == M_COUNTER) {
                fmt_sample(&b, f->name, "", s->labels, NULL, s->u.c.v);
            } else if (f->kind == M_GAUGE) {
                fmt_sample(&b, f->name, "", s->labels, NULL, s->u.g.v);
            } else {
                const struct wlm_histogram *h = &s->u.h;
                unsigned long long cum = 0;
                for (size_t i = 0; i < h->nbounds; i++) {
                    char le[64];
                    cum += h->counts[i];
                    struct wlm_buf lb;
                    wlm_buf_init(&lb);
                    fmt_value(&lb, h->bounds[i]);
                    snprintf(le, sizeof(le), "le=\"%s\"", lb.data);
                    wlm_buf_fini(&lb);
                    fmt_sample(&b, f->name, "_bucket", s->labels, le, (double)cum);
                }
                fmt_sample(&b, f->name, "_bucket", s->labels, "le=\"+Inf\"", (double)h->count);
                fmt_sample(&b, f->name, "_sum", s->labels, NULL, h->sum);
                fmt_sample(&b, f->name, "_count", s->labels, NULL, (double)h->count);
            }
        }
    }
    return wlm_buf_steal(&b);
}

char *wlm_metrics_escape_label(const char *v)
{
    struct wlm_buf b;
    wlm_buf_init(&b);
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            wlm_buf_append(&b, "\\\\", 2);
        else if (*p == '"')
            wlm_buf_append(&b, "\\\"", 2);
        else if (*p == '\n')
            wlm_buf_append(&b, "\\n", 2);
        else
            wlm_buf_append(&b, p, 1);
    }
    return wlm_buf_steal(&b);
}
