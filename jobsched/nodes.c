/*
 * nodes.c - the scheduler's copy of the node list and, for each job,
 * the nodes it could run on (matchmaking, match.c).
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

void jobsched__nodes_free(struct node_copy *nc)
{
    for (size_t i = 0; i < nc->n; i++) {
        struct jobsched_node *n = &nc->v[i];
        free((char *)n->name);
        free((char *)n->arch);
        for (size_t k = 0; k < n->nlabels; k++) {
            free(n->labels[k].key);
            free(n->labels[k].value);
        }
        free((struct jobsched_label *)n->labels);
    }
    free(nc->v);
    nc->v = NULL;
    nc->n = 0;
}

void jobsched__refresh_eligible(struct jobsched *js, struct jobsched_job *j)
{
    free(j->eligible_nodes);
    j->eligible_nodes = NULL;
    j->neligible = 0;
    if (jobsched_state_terminal(j->state) || js->nodes.n == 0)
        return;
    size_t m = jobsched_match(j, js->nodes.v, js->nodes.n, js->match, NULL, 0);
    if (m == 0)
        return;
    j->eligible_nodes = calloc(m, sizeof(char *));
    if (!j->eligible_nodes)
        return;
    for (size_t i = 0; i < m; i++)
        j->eligible_nodes[i] = js->nodes.v[js->match[i]].name;
    j->neligible = m;
}

int jobsched_set_nodes(struct jobsched *js, const struct jobsched_node *nodes, size_t n)
{
    struct node_copy nc = {calloc(n ? n : 1, sizeof(struct jobsched_node)), 0};
    size_t *match = calloc(n ? n : 1, sizeof(size_t));
    if (!nc.v || !match) {
        free(nc.v);
        free(match);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct jobsched_node *d = &nc.v[nc.n++];
        *d = nodes[i];
        d->name = wlm_strdup(nodes[i].name ? nodes[i].name : "");
        d->arch = nodes[i].arch ? wlm_strdup(nodes[i].arch) : NULL;
        d->labels = NULL;
        d->nlabels = 0;
        if (nodes[i].nlabels) {
            struct jobsched_label *l = calloc(nodes[i].nlabels, sizeof(*l));
            for (size_t k = 0; l && k < nodes[i].nlabels; k++) {
                l[k].key = wlm_strdup(nodes[i].labels[k].key);
                l[k].value = wlm_strdup(nodes[i].labels[k].value);
            }
            d->labels = l;
            d->nlabels = l ? nodes[i].nlabels : 0;
        }
    }
    /* Eligible lists point into the node copy: drop them before freeing it. */
    for (size_t i = 0; i < js->njobs; i++) {
        free(js->jobs[i]->eligible_nodes);
        js->jobs[i]->eligible_nodes = NULL;
        js->jobs[i]->neligible = 0;
    }
    jobsched__nodes_free(&js->nodes);
    free(js->match);
    js->nodes = nc;
    js->match = match;
    for (size_t i = 0; i < js->njobs; i++)
        jobsched__refresh_eligible(js, js->jobs[i]);
    return 0;
}
