/* pool.c - warm-pool hints for the node agents: each placement period every
 * READY node is told how many job starts of each VM shape (threads, memory)
 * to expect in the next period, from the jobs waiting to be placed, spread
 * over the nodes (nodeagent/README.md, action `pool_hint`). A hint is sent
 * only when it changes, so agents do not accumulate one record per period. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle.h"

static void on_hint(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    char *node = ud;
    if (err && err->code)
        wlm_debug(CTL_COMP, "pool hint not delivered", "node=%s detail=\"%s\"", node, err->msg);
    else if (resp && resp->status >= 300)
        wlm_debug(CTL_COMP, "pool hint refused", "node=%s status=%d", node, resp->status);
    free(node);
}

/* Shapes of the waiting jobs: [{vcpus, memory_mb, starts}] with starts the
 * count per READY node (rounded up). */
static json_t *waiting_shapes(struct controller *c, size_t nready)
{
    json_t *shapes = json_array();
    size_t n = jobsched_placeable(c->js, NULL, 0);
    const struct jobsched_job **jobs = calloc(n ? n : 1, sizeof(*jobs));
    if (!jobs)
        return shapes;
    n = jobsched_placeable(c->js, jobs, n);
    for (size_t i = 0; i < n; i++) {
        const struct jobsched_job *j = jobs[i];
        if (j->state != JOBSCHED_ELIGIBLE)
            continue;
        json_int_t vcpus = j->threads > 0 ? j->threads : 1, mem = j->memory_mb;
        json_t *found = NULL, *e;
        size_t k;
        json_array_foreach(shapes, k, e)
        {
            if (json_integer_value(json_object_get(e, "vcpus")) == vcpus &&
                json_integer_value(json_object_get(e, "memory_mb")) == mem)
                found = e;
        }
        if (!found) {
            found = json_pack("{s:I, s:I, s:I}", "vcpus", vcpus, "memory_mb", mem, "starts",
                              (json_int_t)0);
            json_array_append_new(shapes, found);
        }
        json_object_set_new(found, "starts",
                            json_integer(json_integer_value(json_object_get(found, "starts")) + 1));
    }
    free(jobs);
    size_t k;
    json_t *e;
    json_array_foreach(shapes, k, e)
    {
        json_int_t s = json_integer_value(json_object_get(e, "starts"));
        json_object_set_new(
            e, "starts",
            json_integer((s + (json_int_t)nready - 1) / (json_int_t)(nready ? nready : 1)));
    }
    return shapes;
}

void ctl_pool_hints(struct controller *c)
{
    size_t nready = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        nready += c->nodes[i].state == CONTROLLER_NODE_READY;
    if (!nready)
        return;
    if (!c->pool_hints)
        c->pool_hints = json_object();
    json_t *shapes = waiting_shapes(c, nready);
    char *text = wlm_json_dumps(shapes);
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct ctl_node *n = &c->nodes[i];
        if (n->state != CONTROLLER_NODE_READY || !n->agent_url[0])
            continue;
        const char *last = json_string_value(json_object_get(c->pool_hints, n->name));
        if (last && !strcmp(last, text))
            continue;
        json_object_set_new(c->pool_hints, n->name, json_string(text));
        char id[128];
        snprintf(id, sizeof(id), "hint-%s-%.0f", n->name, wlm_now_wall() * 1000);
        json_t *body =
            json_pack("{s:s, s:s, s:O}", "id", id, "kind", "pool_hint", "shapes", shapes);
        char *b = wlm_json_dumps(body);
        json_decref(body);
        char *url = wlm_asprintf("%s/v1/actions", n->agent_url);
        char *node = strdup(n->name);
        if (wlm_http_client_request(c->client, "POST", url, ctl_agent_token(c),
                                    "application/json", b, strlen(b), 5000, on_hint, node) < 0)
            free(node);
        free(url);
        free(b);
    }
    free(text);
    json_decref(shapes);
}
