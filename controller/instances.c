/* instances.c - the app instance table: lookups, persistence, counts; node
 * helpers the cycle shares. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"

static size_t name_hash(const char *s)
{
    size_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

void ctl_nodes_reindex(struct controller *c)
{
    c->node_idx_n = 0;
}

/* Nodes are only appended between reindexes: index the new ones. */
static int node_idx_sync(struct controller *c)
{
    if (2 * (c->nnodes + 1) > c->node_idx_cap) {
        size_t cap = c->node_idx_cap ? c->node_idx_cap : 64;
        while (2 * (c->nnodes + 1) > cap)
            cap *= 2;
        size_t *t = calloc(cap, sizeof(*t));
        if (!t)
            return -1;
        free(c->node_idx);
        c->node_idx = t;
        c->node_idx_cap = cap;
        c->node_idx_n = 0;
    } else if (c->node_idx_n == 0 || c->node_idx_n > c->nnodes) {
        memset(c->node_idx, 0, c->node_idx_cap * sizeof(*c->node_idx));
        c->node_idx_n = 0;
    }
    for (size_t i = c->node_idx_n; i < c->nnodes; i++) {
        size_t k = name_hash(c->nodes[i].name) & (c->node_idx_cap - 1);
        while (c->node_idx[k])
            k = (k + 1) & (c->node_idx_cap - 1);
        c->node_idx[k] = i + 1;
    }
    c->node_idx_n = c->nnodes;
    return 0;
}

struct ctl_node *ctl_node_find(struct controller *c, const char *name)
{
    if (node_idx_sync(c) < 0) {
        for (size_t i = 0; i < c->nnodes; i++)
            if (!strcmp(c->nodes[i].name, name))
                return &c->nodes[i];
        return NULL;
    }
    for (size_t k = name_hash(name) & (c->node_idx_cap - 1); c->node_idx[k];
         k = (k + 1) & (c->node_idx_cap - 1)) {
        struct ctl_node *n = &c->nodes[c->node_idx[k] - 1];
        if (!strcmp(n->name, name))
            return n;
    }
    return NULL;
}

int ctl_node_powered_on(const struct ctl_node *n)
{
    json_t *p = n->report ? json_object_get(n->report, "power") : NULL;
    const char *st = p ? json_string_value(json_object_get(p, "state")) : NULL;
    return !st || strcmp(st, "off") != 0;
}

/* The host part of the node's agent URL: where its instances listen. */
void ctl_node_host(const struct ctl_node *n, char *out, size_t size)
{
    const char *p = n->agent_url[0] ? n->agent_url : "127.0.0.1";
    const char *sep = strstr(p, "://"); /* http:// or https:// */
    if (sep)
        p = sep + 3;
    size_t len = strcspn(p, ":/");
    snprintf(out, size, "%.*s", (int)len, p);
}

double ctl_app_allocation(const struct controller *c, const char *app)
{
    double sum = 0;
    for (size_t i = 0; i < c->ninsts; i++)
        if (!strcmp(c->insts[i].app, app) && c->insts[i].state == CTL_INST_RUNNING)
            sum += c->insts[i].cpu_mhz;
    return sum;
}

struct ctl_instance *ctl_inst_find(struct controller *c, const char *app, const char *node)
{
    for (size_t i = 0; i < c->ninsts; i++)
        if (!strcmp(c->insts[i].app, app) && !strcmp(c->insts[i].node, node))
            return &c->insts[i];
    return NULL;
}

struct ctl_instance *ctl_inst_by_id(struct controller *c, const char *id)
{
    for (size_t i = 0; i < c->ninsts; i++)
        if (!strcmp(c->insts[i].id, id))
            return &c->insts[i];
    return NULL;
}

void ctl_inst_remove(struct controller *c, struct ctl_instance *in)
{
    size_t i = (size_t)(in - c->insts);
    memmove(in, in + 1, (c->ninsts - i - 1) * sizeof(*in));
    c->ninsts--;
}

static json_t *inst_doc(const struct ctl_instance *in)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:f,s:i}", "id", in->id, "app", in->app, "node",
                     in->node, "host", in->host, "port", in->port, "cpu_mhz", in->cpu_mhz, "state",
                     (int)in->state);
}

/* Write what changed in the instance table since the last save (one
 * transaction); nothing when nothing changed. */
void ctl_instances_save(struct controller *c)
{
    struct wlm_error err = {0};
    json_t *now = json_object();
    for (size_t i = 0; i < c->ninsts; i++)
        json_object_set_new(now, c->insts[i].id, inst_doc(&c->insts[i]));
    if (c->inst_saved && json_equal(now, c->inst_saved)) {
        json_decref(now);
        return;
    }
    if (wlm_store_begin(c->store, &err))
        goto fail;
    const char *id;
    json_t *doc;
    json_object_foreach(c->inst_saved, id,
                        doc) if (!json_object_get(now, id) &&
                                 wlm_store_del(c->store, "instances", "id", id, &err)) goto fail;
    json_object_foreach(now, id,
                        doc) if (!json_equal(doc, json_object_get(c->inst_saved, id)) &&
                                 wlm_store_put(c->store, "instances", "id", doc, &err)) goto fail;
    if (wlm_store_commit(c->store, &err))
        goto fail_committed;
    json_decref(c->inst_saved);
    c->inst_saved = now;
    return;
fail:
    wlm_store_rollback(c->store);
fail_committed:
    json_decref(now);
    wlm_errorlog(CTL_COMP, "saving app instances failed", "detail=\"%s\"", err.msg);
}

static int load_inst(const json_t *doc, void *ud)
{
    struct controller *c = ud;
    struct ctl_instance *p = realloc(c->insts, (c->ninsts + 1) * sizeof(*p));
    if (!p)
        return 1;
    c->insts = p;
    struct ctl_instance *in = &c->insts[c->ninsts++];
    memset(in, 0, sizeof(*in));
    wlm_strlcpy(in->id, json_string_value(json_object_get(doc, "id")) ?: "", sizeof(in->id));
    wlm_strlcpy(in->app, json_string_value(json_object_get(doc, "app")) ?: "", sizeof(in->app));
    wlm_strlcpy(in->node, json_string_value(json_object_get(doc, "node")) ?: "", sizeof(in->node));
    wlm_strlcpy(in->host, json_string_value(json_object_get(doc, "host")) ?: "", sizeof(in->host));
    in->port = (int)json_number_value(json_object_get(doc, "port"));
    in->cpu_mhz = json_number_value(json_object_get(doc, "cpu_mhz"));
    in->state = CTL_INST_RUNNING;
    in->unconfirmed = 1;
    /* Fresh ids and ports never collide with what may still run. */
    const char *dash = strrchr(in->id, '-');
    unsigned seq = dash ? (unsigned)strtoul(dash + 1, NULL, 10) : 0;
    if (seq > c->inst_seq)
        c->inst_seq = seq;
    if (in->port >= c->next_port)
        c->next_port = in->port + 1;
    return 0;
}

int ctl_instances_load(struct controller *c, struct wlm_error *err)
{
    int rc = wlm_store_scan(c->store, "instances", NULL, load_inst, c, err);
    if (rc < 0)
        return rc;
    /* What the store holds now (the state read back as stored, not as
     * loaded: loaded instances count as RUNNING until confirmed). */
    json_decref(c->inst_saved);
    c->inst_saved = NULL;
    if (c->ninsts)
        wlm_info(CTL_COMP, "app instances recorded before the restart", "count=%zu", c->ninsts);
    return 0;
}

int ctl_instances_reload(struct controller *c, struct wlm_error *err)
{
    free(c->insts);
    c->insts = NULL;
    c->ninsts = 0;
    int rc = wlm_store_scan(c->store, "instances", NULL, load_inst, c, err);
    if (rc < 0)
        return rc;
    for (size_t a = 0; a < c->napps; a++) {
        c->apps[a].ninstances = 0;
        for (size_t i = 0; i < c->ninsts; i++)
            c->apps[a].ninstances += !strcmp(c->insts[i].app, c->apps[a].name);
    }
    return 0;
}

void ctl_count_instances(struct controller *c)
{
    ctl_instances_save(c);
    for (size_t a = 0; a < c->napps; a++) {
        c->apps[a].ninstances = 0;
        for (size_t i = 0; i < c->ninsts; i++)
            if (!strcmp(c->insts[i].app, c->apps[a].name) && c->insts[i].state == CTL_INST_RUNNING)
                c->apps[a].ninstances++;
    }
}
