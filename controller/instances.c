/* instances.c - the app instance table: lookups, persistence, counts; node
 * helpers the cycle shares. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"

struct ctl_node *ctl_node_find(struct controller *c, const char *name)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].name, name))
            return &c->nodes[i];
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
    const char *p = n->agent_url[0] ? n->agent_url + 7 : "127.0.0.1";
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

/* The instance table is small: rewrite it whole in one transaction each
 * time it changes. */
void ctl_instances_save(struct controller *c)
{
    struct wlm_error err = {0};
    if (wlm_db_begin(c->db, &err) || wlm_db_exec(c->db, "DELETE FROM instances", &err))
        goto fail;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "INSERT INTO instances(id, app, node, host, port, cpu_mhz, state)"
                           " VALUES (?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        wlm_error_set(&err, WLM_EIO, "%s", sqlite3_errmsg(c->db));
        goto fail;
    }
    for (size_t i = 0; i < c->ninsts; i++) {
        const struct ctl_instance *in = &c->insts[i];
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, in->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, in->app, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, in->node, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, in->host, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 5, in->port);
        sqlite3_bind_double(st, 6, in->cpu_mhz);
        sqlite3_bind_int(st, 7, (int)in->state);
        if (sqlite3_step(st) != SQLITE_DONE) {
            wlm_error_set(&err, WLM_EIO, "%s", sqlite3_errmsg(c->db));
            sqlite3_finalize(st);
            goto fail;
        }
    }
    sqlite3_finalize(st);
    if (wlm_db_commit(c->db, &err))
        goto fail;
    return;
fail:
    wlm_db_rollback(c->db);
    wlm_errorlog(CTL_COMP, "saving app instances failed", "detail=\"%s\"", err.msg);
}

int ctl_instances_load(struct controller *c, struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db, "SELECT id, app, node, host, port, cpu_mhz, state FROM instances",
                           -1, &st, NULL) != SQLITE_OK)
        return wlm_error_set(err, WLM_EIO, "load instances: %s", sqlite3_errmsg(c->db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ctl_instance *p = realloc(c->insts, (c->ninsts + 1) * sizeof(*p));
        if (!p)
            break;
        c->insts = p;
        struct ctl_instance *in = &c->insts[c->ninsts++];
        memset(in, 0, sizeof(*in));
        wlm_strlcpy(in->id, (const char *)sqlite3_column_text(st, 0), sizeof(in->id));
        wlm_strlcpy(in->app, (const char *)sqlite3_column_text(st, 1), sizeof(in->app));
        wlm_strlcpy(in->node, (const char *)sqlite3_column_text(st, 2), sizeof(in->node));
        wlm_strlcpy(in->host, (const char *)sqlite3_column_text(st, 3), sizeof(in->host));
        in->port = sqlite3_column_int(st, 4);
        in->cpu_mhz = sqlite3_column_double(st, 5);
        in->state = CTL_INST_RUNNING;
        in->unconfirmed = 1;
        /* Fresh ids and ports never collide with what may still run. */
        const char *dash = strrchr(in->id, '-');
        unsigned seq = dash ? (unsigned)strtoul(dash + 1, NULL, 10) : 0;
        if (seq > c->inst_seq)
            c->inst_seq = seq;
        if (in->port >= c->next_port)
            c->next_port = in->port + 1;
    }
    sqlite3_finalize(st);
    if (c->ninsts)
        wlm_info(CTL_COMP, "app instances recorded before the restart", "count=%zu", c->ninsts);
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
