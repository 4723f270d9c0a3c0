/* energy.c - energy accounting: the agents' running totals (node, and per
 * domain and process) become energy per job, app instance and app, and a
 * short power history per node. Kept in the controller's store, so a job's
 * energy survives suspends, migrations and restarts of agents and of the
 * controller. Served at GET /v1/energy and as Prometheus metrics. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"
#include "store.h"
#include "power.h"

/* Tables of the store (on SQLite real tables, created here; on etcd
 * documents under PREFIX/TABLE/ID). */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS energy_workloads (id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    " name TEXT NOT NULL, app TEXT NOT NULL, node TEXT NOT NULL, joules REAL NOT NULL,"
    " active_s REAL NOT NULL, first_t REAL NOT NULL, last_t REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS energy_sources (id TEXT PRIMARY KEY, node TEXT NOT NULL,"
    " key TEXT NOT NULL, cum_j REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS power_nodes (name TEXT PRIMARY KEY, override_w REAL NOT NULL,"
    " energy_j REAL NOT NULL, attributed_j REAL NOT NULL, unattributed_j REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS power_samples (id TEXT PRIMARY KEY, node TEXT NOT NULL,"
    " t REAL NOT NULL, watts REAL NOT NULL, budget_w REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS power_settings (key TEXT PRIMARY KEY, value REAL NOT NULL);";

#define PERSIST_EVERY_S 5.0 /* a node's energy and power sample are written this often */
#define PERSIST_ETCD_S 60.0 /* the same on etcd */
#define SAMPLE_SLOTS 720     /* stored samples per node: an hour at PERSIST_EVERY_S */

/* Index keys: the two parts joined by a unit separator. */
static json_t *idx_get(json_t *idx, const char *a, const char *b)
{
    char key[300];
    snprintf(key, sizeof(key), "%s\x1f%s", a, b);
    return json_object_get(idx, key);
}

static void idx_set(json_t *idx, const char *a, const char *b, size_t i)
{
    char key[300];
    snprintf(key, sizeof(key), "%s\x1f%s", a, b);
    json_object_set_new(idx, key, json_integer((json_int_t)i));
}

/* Remember a changed row once, to write it with the next transaction. */
static void mark(int *dirty, size_t **list, size_t *n, size_t *cap, size_t idx)
{
    if (*dirty)
        return;
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        size_t *p = realloc(*list, nc * sizeof(*p));
        if (!p)
            return; /* written with a later change */
        *list = p;
        *cap = nc;
    }
    (*list)[(*n)++] = idx;
    *dirty = 1;
}

static struct ctl_energy_wl *wl_get(struct ctl_energy *e, const char *kind, const char *name,
                                    int create)
{
    json_t *ix = idx_get(e->wl_idx, kind, name);
    if (ix)
        return &e->wl[json_integer_value(ix)];
    if (!create)
        return NULL;
    if (e->nwl == e->capwl) {
        size_t cap = e->capwl ? 2 * e->capwl : 64;
        struct ctl_energy_wl *p = realloc(e->wl, cap * sizeof(*p));
        if (!p)
            return NULL;
        e->wl = p;
        e->capwl = cap;
    }
    idx_set(e->wl_idx, kind, name, e->nwl);
    struct ctl_energy_wl *w = &e->wl[e->nwl++];
    memset(w, 0, sizeof(*w));
    wlm_strlcpy(w->kind, kind, sizeof(w->kind));
    wlm_strlcpy(w->name, name, sizeof(w->name));
    return w;
}

static struct ctl_energy_src *src_get(struct ctl_energy *e, const char *node, const char *key)
{
    json_t *ix = idx_get(e->src_idx, node, key);
    if (ix)
        return &e->src[json_integer_value(ix)];
    if (e->nsrc == e->capsrc) {
        size_t cap = e->capsrc ? 2 * e->capsrc : 64;
        struct ctl_energy_src *p = realloc(e->src, cap * sizeof(*p));
        if (!p)
            return NULL;
        e->src = p;
        e->capsrc = cap;
    }
    idx_set(e->src_idx, node, key, e->nsrc);
    struct ctl_energy_src *s = &e->src[e->nsrc++];
    memset(s, 0, sizeof(*s));
    wlm_strlcpy(s->node, node, sizeof(s->node));
    wlm_strlcpy(s->key, key, sizeof(s->key));
    s->cum_j = -1; /* never seen */
    return s;
}

/* Energy since the last report of this running total. A total seen for the
 * first time counts whole (the agent started it for this workload); one
 * that went down was restarted by the agent and counts from zero. */
static double src_delta(struct ctl_energy *e, const char *node, const char *key, double cum)
{
    struct ctl_energy_src *s = src_get(e, node, key);
    if (!s || !isfinite(cum) || cum < 0)
        return 0;
    double d = s->cum_j < 0 ? cum : cum >= s->cum_j ? cum - s->cum_j : cum;
    if (s->cum_j != cum)
        mark(&s->dirty, &e->dsrc, &e->ndsrc, &e->capdsrc, (size_t)(s - e->src));
    s->cum_j = cum;
    return d;
}

struct ctl_power_node *ctl_power_node(struct controller *c, const char *name, int create)
{
    struct ctl_energy *e = c->energy;
    if (!e)
        return NULL;
    json_t *ix = json_object_get(e->pn_idx, name);
    if (ix)
        return &e->pn[json_integer_value(ix)];
    if (!create)
        return NULL;
    struct ctl_power_node *p = realloc(e->pn, (e->npn + 1) * sizeof(*p));
    if (!p)
        return NULL;
    e->pn = p;
    json_object_set_new(e->pn_idx, name, json_integer((json_int_t)e->npn));
    p = &e->pn[e->npn++];
    memset(p, 0, sizeof(*p));
    wlm_strlcpy(p->name, name, sizeof(p->name));
    p->override_w = -1;
    p->period = -1;
    return p;
}

static char *metric_labels(const char *kind, const char *name)
{
    char *en = wlm_metrics_escape_label(name);
    char *s = wlm_asprintf("kind=\"%s\",name=\"%s\"", kind, en ? en : "");
    free(en);
    return s;
}

/* The counter of a workload, looked up once (the registry's lookups are
 * linear in its series; the pointer stays valid as long as the registry). */
static void energy_counter_add(struct controller *c, struct ctl_energy_wl *w, double j)
{
    if (j <= 0 || !c->metrics)
        return;
    if (!w->counter) {
        char *l = metric_labels(w->kind, w->name);
        w->counter = wlm_metrics_counter(c->metrics, "wlm_workload_energy_joules_total",
                                         "Energy attributed to a workload (job or app) by the "
                                         "node agents, over its whole life.",
                                         l);
        free(l);
    }
    if (w->counter)
        wlm_counter_add(w->counter, j);
}

static const char *dstr(const json_t *d, const char *k)
{
    const char *v = json_string_value(json_object_get(d, k));
    return v ? v : "";
}
static double dnum(const json_t *d, const char *k) { return json_number_value(json_object_get(d, k)); }

static int load_wl(const json_t *d, void *ud)
{
    struct controller *c = ud;
    struct ctl_energy_wl *w = wl_get(c->energy, dstr(d, "kind"), dstr(d, "name"), 1);
    if (!w)
        return -ENOMEM;
    wlm_strlcpy(w->app, dstr(d, "app"), sizeof(w->app));
    wlm_strlcpy(w->node, dstr(d, "node"), sizeof(w->node));
    w->joules = dnum(d, "joules");
    w->active_s = dnum(d, "active_s");
    w->first_t = dnum(d, "first_t");
    w->last_t = dnum(d, "last_t");
    return 0;
}

static int load_src(const json_t *d, void *ud)
{
    struct controller *c = ud;
    struct ctl_energy_src *s = src_get(c->energy, dstr(d, "node"), dstr(d, "key"));
    if (!s)
        return -ENOMEM;
    s->cum_j = dnum(d, "cum_j");
    return 0;
}

static int load_pn(const json_t *d, void *ud)
{
    struct controller *c = ud;
    struct ctl_power_node *p = ctl_power_node(c, dstr(d, "name"), 1);
    if (!p)
        return -ENOMEM;
    p->override_w = dnum(d, "override_w");
    p->energy_j = dnum(d, "energy_j");
    p->attributed_j = dnum(d, "attributed_j");
    p->unattributed_j = dnum(d, "unattributed_j");
    return 0;
}

static int load_sample(const json_t *d, void *ud)
{
    struct controller *c = ud;
    struct ctl_power_node *p = ctl_power_node(c, dstr(d, "node"), 1);
    if (!p)
        return -ENOMEM;
    p->ht[p->hhead] = dnum(d, "t");
    p->hw[p->hhead] = dnum(d, "watts");
    p->hb[p->hhead] = dnum(d, "budget_w");
    p->hhead = (p->hhead + 1) % CTL_POWER_HIST;
    if (p->hlen < CTL_POWER_HIST)
        p->hlen++;
    if (p->ht[(p->hhead + CTL_POWER_HIST - 1) % CTL_POWER_HIST] > p->last_persist)
        p->last_persist = p->ht[(p->hhead + CTL_POWER_HIST - 1) % CTL_POWER_HIST];
    return 0;
}

static int load_setting(const json_t *d, void *ud)
{
    struct controller *c = ud;
    if (!strcmp(dstr(d, "key"), "cluster_budget_w"))
        c->energy->cluster_budget_w = dnum(d, "value");
    return 0;
}

/* Oldest first, whatever order the store gave. */
static void sort_history(struct ctl_power_node *p)
{
    size_t n = p->hlen;
    double t[CTL_POWER_HIST], w[CTL_POWER_HIST], b[CTL_POWER_HIST];
    for (size_t k = 0; k < n; k++) {
        size_t idx = (p->hhead + CTL_POWER_HIST - n + k) % CTL_POWER_HIST;
        t[k] = p->ht[idx];
        w[k] = p->hw[idx];
        b[k] = p->hb[idx];
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x;
            x = t[j], t[j] = t[j - 1], t[j - 1] = x;
            x = w[j], w[j] = w[j - 1], w[j - 1] = x;
            x = b[j], b[j] = b[j - 1], b[j - 1] = x;
        }
    for (size_t k = 0; k < n; k++) {
        p->ht[k] = t[k];
        p->hw[k] = w[k];
        p->hb[k] = b[k];
    }
    p->hhead = n % CTL_POWER_HIST;
}

int ctl_energy_init(struct controller *c, struct wlm_error *err)
{
    struct ctl_energy *e = calloc(1, sizeof(*e));
    if (!e)
        return wlm_error_set(err, ENOMEM, "out of memory");
    c->energy = e;
    e->wl_idx = json_object();
    e->src_idx = json_object();
    e->pn_idx = json_object();
    if (!e->wl_idx || !e->src_idx || !e->pn_idx)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int rc = wlm_db_exec(c->db, schema, err);
    if (rc)
        return rc;
    if ((rc = wlm_store_scan(c->store, "energy_workloads", NULL, load_wl, c, err)) ||
        (rc = wlm_store_scan(c->store, "energy_sources", NULL, load_src, c, err)) ||
        (rc = wlm_store_scan(c->store, "power_nodes", NULL, load_pn, c, err)) ||
        (rc = wlm_store_scan(c->store, "power_samples", "t", load_sample, c, err)) ||
        (rc = wlm_store_scan(c->store, "power_settings", NULL, load_setting, c, err)))
        return rc == -ENOMEM ? wlm_error_set(err, ENOMEM, "out of memory") : rc;
    /* The samples come in time order on SQLite, key order on etcd. */
    for (size_t i = 0; i < e->npn; i++)
        sort_history(&e->pn[i]);
    /* A budget given on the command line wins over the stored one. */
    if (c->cfg.power_budget_w > 0)
        e->cluster_budget_w = c->cfg.power_budget_w;
    return 0;
}

void ctl_energy_free(struct controller *c)
{
    struct ctl_energy *e = c->energy;
    if (!e)
        return;
    for (size_t i = 0; i < e->npn; i++)
        json_decref(e->pn[i].agent);
    free(e->wl);
    free(e->src);
    free(e->pn);
    free(e->dwl);
    free(e->dsrc);
    json_decref(e->wl_idx);
    json_decref(e->src_idx);
    json_decref(e->pn_idx);
    free(e);
    c->energy = NULL;
}

/* A node with energy (or, on SQLite, power) not yet written. */
static int node_changed(const struct controller *c, const struct ctl_power_node *p)
{
    if (p->energy_j != p->saved_energy_j)
        return 1;
    /* On etcd a constant power reading alone is not worth a write. */
    return !wlm_store_is_etcd(c->store) &&
           (p->watts != p->saved_watts || p->budget_w != p->saved_budget_w);
}

/* Write the changed rows and the given nodes (their totals and a power
 * sample) in one transaction: the running totals the deltas came from go
 * with the totals, so a crash loses nothing - the next heartbeat's deltas
 * cover the gap. Changes stay marked when the write fails. */
static int write_changes(struct controller *c, struct ctl_power_node **nodes, size_t nn,
                         double now)
{
    struct ctl_energy *e = c->energy;
    struct wlm_error err = {0};
    if (wlm_store_begin(c->store, &err)) {
        wlm_warn(CTL_COMP, "energy not stored", "detail=\"%s\"", err.msg);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < e->ndwl; i++) {
        struct ctl_energy_wl *x = &e->wl[e->dwl[i]];
        char id[120];
        snprintf(id, sizeof(id), "%s:%s", x->kind, x->name);
        json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:f,s:f}", "id", id, "kind", x->kind,
                              "name", x->name, "app", x->app, "node", x->node, "joules", x->joules,
                              "active_s", x->active_s, "first_t", x->first_t, "last_t", x->last_t);
        rc = wlm_store_put(c->store, "energy_workloads", "id", d, &err);
        json_decref(d);
    }
    for (size_t i = 0; !rc && i < e->ndsrc; i++) {
        struct ctl_energy_src *x = &e->src[e->dsrc[i]];
        char id[220];
        snprintf(id, sizeof(id), "%s|%s", x->node, x->key);
        json_t *d = json_pack("{s:s,s:s,s:s,s:f}", "id", id, "node", x->node, "key", x->key,
                              "cum_j", x->cum_j);
        rc = wlm_store_put(c->store, "energy_sources", "id", d, &err);
        json_decref(d);
    }
    for (size_t k = 0; !rc && k < nn; k++) {
        struct ctl_power_node *p = nodes[k];
        rc = ctl_power_node_store(c, p, &err);
        if (rc)
            break;
        /* The history rotates through a fixed set of slots per node. */
        char id[100];
        snprintf(id, sizeof(id), "%s#%ld", p->name, (long)(now / PERSIST_EVERY_S) % SAMPLE_SLOTS);
        json_t *d = json_pack("{s:s,s:s,s:f,s:f,s:f}", "id", id, "node", p->name, "t", now,
                              "watts", p->watts, "budget_w", p->budget_w);
        rc = wlm_store_put(c->store, "power_samples", "id", d, &err);
        json_decref(d);
    }
    if (rc) {
        wlm_store_rollback(c->store);
        wlm_warn(CTL_COMP, "energy not stored", "detail=\"%s\"", err.msg);
        return -1;
    }
    if (wlm_store_commit(c->store, &err)) {
        wlm_warn(CTL_COMP, "energy not stored", "detail=\"%s\"", err.msg);
        return -1;
    }
    for (size_t k = 0; k < nn; k++) {
        nodes[k]->saved_energy_j = nodes[k]->energy_j;
        nodes[k]->saved_watts = nodes[k]->watts;
        nodes[k]->saved_budget_w = nodes[k]->budget_w;
        nodes[k]->last_persist = now;
    }
    for (size_t i = 0; i < e->ndwl; i++)
        e->wl[e->dwl[i]].dirty = 0;
    for (size_t i = 0; i < e->ndsrc; i++)
        e->src[e->dsrc[i]].dirty = 0;
    e->ndwl = e->ndsrc = 0;
    return 0;
}

/* SQLite (local, cheap): after a heartbeat, at most every PERSIST_EVERY_S
 * per node. etcd is shared by every controller and every write is a round
 * trip: ctl_energy_flush writes everything once a minute instead. */
static void persist(struct controller *c, struct ctl_power_node *p, double now)
{
    struct ctl_energy *e = c->energy;
    if (wlm_store_is_etcd(c->store) || now - p->last_persist < PERSIST_EVERY_S)
        return;
    if (!node_changed(c, p) && !e->ndwl && !e->ndsrc)
        return;
    write_changes(c, &p, 1, now);
}

void ctl_energy_flush(struct controller *c, double now)
{
    struct ctl_energy *e = c->energy;
    if (!e || !wlm_store_is_etcd(c->store) || now - e->last_flush < PERSIST_ETCD_S)
        return;
    e->last_flush = now;
    struct ctl_power_node **nodes = calloc(e->npn + 1, sizeof(*nodes));
    if (!nodes)
        return;
    size_t nn = 0;
    for (size_t i = 0; i < e->npn; i++)
        if (node_changed(c, &e->pn[i]))
            nodes[nn++] = &e->pn[i];
    if (nn || e->ndwl || e->ndsrc)
        write_changes(c, nodes, nn, now);
    free(nodes);
}

int ctl_power_node_store(struct controller *c, const struct ctl_power_node *p,
                         struct wlm_error *err)
{
    json_t *d = json_pack("{s:s,s:f,s:f,s:f,s:f}", "name", p->name, "override_w", p->override_w,
                          "energy_j", p->energy_j, "attributed_j", p->attributed_j,
                          "unattributed_j", p->unattributed_j);
    int rc = wlm_store_put(c->store, "power_nodes", "name", d, err);
    json_decref(d);
    return rc;
}

static void add_energy(struct controller *c, const char *kind, const char *name, const char *app,
                       const char *node, double j, double active, double now)
{
    struct ctl_energy_wl *w = wl_get(c->energy, kind, name, 1);
    if (!w)
        return;
    if (w->first_t <= 0)
        w->first_t = now;
    w->last_t = now;
    if (app && *app)
        wlm_strlcpy(w->app, app, sizeof(w->app));
    wlm_strlcpy(w->node, node, sizeof(w->node));
    w->joules += j;
    w->active_s += active;
    struct ctl_energy *e = c->energy;
    mark(&w->dirty, &e->dwl, &e->ndwl, &e->capdwl, (size_t)(w - e->wl));
    if (strcmp(kind, "instance"))
        energy_counter_add(c, w, j);
}

/* Loaded totals go into the counters once, so they never go down across a
 * controller restart. */
static void load_counters(struct controller *c)
{
    struct ctl_energy *e = c->energy;
    if (e->loaded_counters)
        return;
    e->loaded_counters = 1;
    for (size_t i = 0; i < e->nwl; i++)
        if (strcmp(e->wl[i].kind, "instance"))
            energy_counter_add(c, &e->wl[i], e->wl[i].joules);
}

static void node_gauges(struct controller *c, struct ctl_power_node *p)
{
    if (!p->g_watts || !p->g_budget) {
        char *en = wlm_metrics_escape_label(p->name);
        char *l = wlm_asprintf("node=\"%s\"", en ? en : "");
        p->g_watts = wlm_metrics_gauge(c->metrics, "wlm_node_power_watts",
                                       "Node power reported by its agent (RAPL or model).", l);
        p->g_budget = wlm_metrics_gauge(c->metrics, "wlm_node_power_budget_watts",
                                        "Power budget in force on the node (0 = none).", l);
        free(l);
        free(en);
    }
    if (p->g_watts)
        wlm_gauge_set(p->g_watts, p->watts);
    if (p->g_budget)
        wlm_gauge_set(p->g_budget, p->budget_w);
}

void ctl_energy_heartbeat(struct controller *c, struct ctl_node *n, double now, double dt)
{
    struct ctl_energy *e = c->energy;
    if (!e || !n->report)
        return;
    load_counters(c);
    struct ctl_power_node *p = ctl_power_node(c, n->name, 1);
    if (!p)
        return;
    json_t *power = json_object_get(n->report, "power");
    json_t *usage = json_object_get(n->report, "usage");
    if (!json_is_object(power) && !e->nwl)
        return; /* an agent that reports no power: nothing to account */
    if (json_is_object(power)) {
        p->watts = json_number_value(json_object_get(power, "watts"));
        const char *src = json_string_value(json_object_get(power, "source"));
        wlm_strlcpy(p->source, src ? src : "", sizeof(p->source));
        double idle = json_number_value(json_object_get(power, "idle_w"));
        double max = json_number_value(json_object_get(power, "max_w"));
        if (max > 0 && max >= idle) {
            p->idle_w = idle;
            p->max_w = max;
        }
        json_t *cum = json_object_get(power, "energy_j");
        if (json_is_number(cum)) {
            double d = src_delta(e, n->name, "node", json_number_value(cum));
            p->energy_j += d;
        }
        json_t *un = json_object_get(power, "unattributed_j");
        if (json_is_number(un))
            p->unattributed_j += src_delta(e, n->name, "unattributed", json_number_value(un));
        json_t *b = json_object_get(power, "budget");
        json_decref(p->agent);
        p->agent = json_is_object(b) ? json_incref(b) : NULL;
        if (p->agent) {
            p->violations =
                (unsigned long long)json_integer_value(json_object_get(b, "violations"));
            ctl_power_violation(c, p, json_is_true(json_object_get(b, "violation")), now);
        } else {
            ctl_power_violation(c, p, 0, now);
        }
    }
    double attributed = 0;
    json_t *doms = usage ? json_object_get(usage, "domains") : NULL;
    size_t i;
    json_t *d;
    json_array_foreach(doms, i, d)
    {
        const char *jid = json_string_value(json_object_get(d, "job"));
        json_t *ej = json_object_get(d, "energy_j");
        if (!jid || jid[0] != 'j' || !json_is_number(ej))
            continue;
        char key[140];
        snprintf(key, sizeof(key), "vm:%s", jid);
        double dj = src_delta(e, n->name, key, json_number_value(ej));
        const char *ds = json_string_value(json_object_get(d, "domain_state"));
        double active = ds && !strcmp(ds, "running") ? dt : 0;
        if (dj > 0 || active > 0)
            add_energy(c, "job", jid + 1, NULL, n->name, dj, active, now);
        attributed += dj;
    }
    json_t *procs = usage ? json_object_get(usage, "processes") : NULL;
    json_array_foreach(procs, i, d)
    {
        const char *iid = json_string_value(json_object_get(d, "instance"));
        json_t *ej = json_object_get(d, "energy_j");
        if (!iid || !json_is_number(ej))
            continue;
        char key[140];
        snprintf(key, sizeof(key), "proc:%s", iid);
        double dj = src_delta(e, n->name, key, json_number_value(ej));
        const struct ctl_instance *in = ctl_inst_by_id(c, iid);
        struct ctl_energy_wl *old = wl_get(e, "instance", iid, 0);
        const char *app = in ? in->app : old ? old->app : NULL;
        const char *st = json_string_value(json_object_get(d, "state"));
        double active = st && !strcmp(st, "running") ? dt : 0;
        if (dj > 0 || active > 0) {
            add_energy(c, "instance", iid, app, n->name, dj, active, now);
            if (app)
                add_energy(c, "app", app, app, n->name, dj, 0, now);
        }
        attributed += dj;
    }
    p->attributed_j += attributed;
    /* history */
    p->ht[p->hhead] = now;
    p->hw[p->hhead] = p->watts;
    p->hb[p->hhead] = p->budget_w;
    p->hhead = (p->hhead + 1) % CTL_POWER_HIST;
    if (p->hlen < CTL_POWER_HIST)
        p->hlen++;
    node_gauges(c, p);
    persist(c, p, now);
}

void ctl_power_node_fields(struct controller *c, const struct ctl_node *n, json_t *o)
{
    struct ctl_power_node *p = ctl_power_node(c, n->name, 0);
    if (!p)
        return;
    json_t *pw = json_object();
    json_object_set_new(pw, "watts", json_real(p->watts));
    json_object_set_new(pw, "budget_w", p->budget_w > 0 ? json_real(p->budget_w) : json_null());
    json_object_set_new(pw, "budget_source",
                        json_string(p->override_w >= 0 ? "node" :
                                    p->budget_w > 0    ? "cluster" :
                                                         "none"));
    json_object_set_new(pw, "idle_w", json_real(p->idle_w));
    json_object_set_new(pw, "max_w", json_real(p->max_w));
    json_object_set_new(pw, "energy_j", json_real(p->energy_j));
    json_object_set_new(pw, "attributed_j", json_real(p->attributed_j));
    json_object_set_new(pw, "unattributed_j", json_real(p->unattributed_j));
    json_object_set_new(pw, "flagged", json_boolean(p->flagged));
    json_object_set_new(pw, "violations", json_integer((json_int_t)p->violations));
    size_t bad = 0;
    for (size_t k = 0; k < p->vlen; k++)
        bad += p->viol[k];
    json_object_set_new(pw, "violating_periods", json_integer((json_int_t)bad));
    json_object_set_new(pw, "window_periods", json_integer((json_int_t)p->vlen));
    if (p->agent)
        json_object_set(pw, "agent", p->agent);
    json_object_set_new(o, "power_now", pw);
}

/* ------------------------------------------------------------ API */

static json_t *wl_json(const struct ctl_energy_wl *w)
{
    json_t *o = json_pack("{s:s, s:f, s:f, s:f, s:s}", "name", w->name, "energy_j", w->joules,
                          "energy_wh", w->joules / 3600.0, "active_s", w->active_s, "node",
                          w->node);
    json_object_set_new(o, "mean_power_w",
                        w->active_s > 0 ? json_real(w->joules / w->active_s) : json_null());
    if (!strcmp(w->kind, "instance"))
        json_object_set_new(o, "app", json_string(w->app));
    return o;
}

static json_t *node_power_json(const struct ctl_power_node *p, size_t hist)
{
    json_t *o = json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:b}", "name", p->name, "watts",
                          p->watts, "budget_w", p->budget_w, "energy_j", p->energy_j,
                          "attributed_j", p->attributed_j, "max_w", p->max_w, "flagged",
                          p->flagged);
    json_object_set_new(o, "override_w", p->override_w >= 0 ? json_real(p->override_w) : json_null());
    json_object_set_new(o, "unattributed_j", json_real(p->unattributed_j));
    json_t *h = json_array();
    size_t take = hist < p->hlen ? hist : p->hlen;
    for (size_t k = p->hlen - take; k < p->hlen; k++) {
        size_t idx = (p->hhead + CTL_POWER_HIST - p->hlen + k) % CTL_POWER_HIST;
        json_array_append_new(h, json_pack("[f,f,f]", p->ht[idx], p->hw[idx], p->hb[idx]));
    }
    json_object_set_new(o, "history", h);
    return o;
}

static size_t query_int(const struct wlm_http_req *req, const char *key, size_t def)
{
    const char *q = req->url ? strchr(req->url, '?') : NULL;
    if (!q)
        return def;
    size_t kl = strlen(key);
    for (const char *s = q + 1; s && *s; s = strchr(s, '&') ? strchr(s, '&') + 1 : NULL)
        if (!strncmp(s, key, kl) && s[kl] == '=')
            return (size_t)strtoul(s + kl + 1, NULL, 10);
    return def;
}

static void handle_energy(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_energy *e = c->energy;
    size_t hist = query_int(req, "history", 60);
    json_t *jobs = json_array(), *apps = json_array(), *insts = json_array(), *nodes = json_array();
    for (size_t i = 0; i < e->nwl; i++) {
        const struct ctl_energy_wl *w = &e->wl[i];
        json_array_append_new(!strcmp(w->kind, "job") ? jobs :
                              !strcmp(w->kind, "app") ? apps :
                                                        insts,
                              wl_json(w));
    }
    double total = 0, attributed = 0;
    for (size_t i = 0; i < e->npn; i++) {
        json_array_append_new(nodes, node_power_json(&e->pn[i], hist));
        total += e->pn[i].energy_j;
        attributed += e->pn[i].attributed_j;
    }
    wlm_http_respond_json(req, 200,
                          json_pack("{s:f, s:f, s:f, s:o, s:o, s:o, s:o}", "cluster_budget_w",
                                    e->cluster_budget_w, "energy_j", total, "attributed_j",
                                    attributed, "nodes", nodes, "jobs", jobs, "apps", apps,
                                    "instances", insts));
}

static void handle_energy_job(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    const char *id = req->params[0];
    char *end = NULL;
    long long v = strtoll(id, &end, 10);
    if (!*id || *end || v <= 0) {
        wlm_http_respond_error(req, 400, "invalid", "job id: '%s' is not a job number", id);
        return;
    }
    char name[32];
    snprintf(name, sizeof(name), "%lld", v);
    const struct ctl_energy_wl *w = wl_get(c->energy, "job", name, 0);
    struct ctl_energy_wl zero = {.kind = "job"};
    if (!w) {
        wlm_strlcpy(zero.name, name, sizeof(zero.name));
        w = &zero;
    }
    wlm_http_respond_json(req, 200, wl_json(w));
}

static void handle_energy_app(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_energy *e = c->energy;
    const char *app = req->params[0];
    const struct ctl_energy_wl *w = wl_get(e, "app", app, 0);
    struct ctl_energy_wl zero = {.kind = "app"};
    if (!w) {
        wlm_strlcpy(zero.name, app, sizeof(zero.name));
        w = &zero;
    }
    json_t *o = wl_json(w);
    json_t *insts = json_array();
    for (size_t i = 0; i < e->nwl; i++)
        if (!strcmp(e->wl[i].kind, "instance") && !strcmp(e->wl[i].app, app))
            json_array_append_new(insts, wl_json(&e->wl[i]));
    json_object_set_new(o, "instances", insts);
    wlm_http_respond_json(req, 200, o);
}

void ctl_energy_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "GET", "/v1/energy", 1, handle_energy, c);
    wlm_http_server_route(c->http, "GET", "/v1/energy/jobs/:id", 1, handle_energy_job, c);
    wlm_http_server_route(c->http, "GET", "/v1/energy/apps/:name", 1, handle_energy_app, c);
}
