/*
 * match.c - matchmaking of jobs to nodes. Pure.
 */
#include <stdio.h>
#include <string.h>

#include "jobsched.h"

/* Requirements in the order they are checked; the index is used to find the
 * requirement that rules out the most nodes. */
enum { REQ_ARCH, REQ_CORES, REQ_MEMORY, REQ_LABEL, REQ_N };

static const char *node_label(const struct jobsched_node *n, const char *key)
{
    for (size_t i = 0; i < n->nlabels; i++)
        if (n->labels[i].key && strcmp(n->labels[i].key, key) == 0)
            return n->labels[i].value ? n->labels[i].value : "";
    return NULL;
}

static long long need_memory(const struct jobsched_job *j)
{
    return j->req.min_memory_mb > j->memory_mb ? j->req.min_memory_mb : j->memory_mb;
}

/* Returns -1 when the node matches, else the failing requirement (and its
 * description in why). */
static int first_failure(const struct jobsched_job *j, const struct jobsched_node *n, char *why,
                         size_t whysize)
{
    if (j->req.arch && j->req.arch[0] && (!n->arch || strcmp(n->arch, j->req.arch) != 0)) {
        if (why)
            snprintf(why, whysize, "arch %s", j->req.arch);
        return REQ_ARCH;
    }
    if (j->req.min_cores > 0 && n->cores < j->req.min_cores) {
        if (why)
            snprintf(why, whysize, "min_cores %d", j->req.min_cores);
        return REQ_CORES;
    }
    long long mem = need_memory(j);
    if (mem > 0 && n->memory_mb < mem) {
        if (why)
            snprintf(why, whysize, "memory_mb %lld", mem);
        return REQ_MEMORY;
    }
    for (size_t i = 0; i < j->req.nlabels; i++) {
        const char *v = node_label(n, j->req.labels[i].key);
        if (!v || strcmp(v, j->req.labels[i].value ? j->req.labels[i].value : "") != 0) {
            if (why)
                snprintf(why, whysize, "label %s=%s", j->req.labels[i].key,
                         j->req.labels[i].value ? j->req.labels[i].value : "");
            return REQ_LABEL + (int)i;
        }
    }
    return -1;
}

int jobsched_node_matches(const struct jobsched_job *j, const struct jobsched_node *node,
                          char *why, size_t whysize)
{
    return first_failure(j, node, why, whysize) < 0;
}

size_t jobsched_match(const struct jobsched_job *j, const struct jobsched_node *nodes, size_t n,
                      size_t *match, char *why, size_t whysize)
{
    size_t m = 0;
    if (n == 0) {
        if (why)
            snprintf(why, whysize, "no node matches: no nodes registered");
        return 0;
    }
    /* Count, per requirement, the nodes it alone rules out, so the message
     * names the requirement an operator would most likely relax. */
    size_t nreq = REQ_LABEL + j->req.nlabels;
    size_t counts_small[REQ_N + 16] = {0};
    size_t *counts = counts_small;
    if (nreq > WLM_ARRAY_LEN(counts_small))
        nreq = WLM_ARRAY_LEN(counts_small); /* more labels share the last slot's index space */
    int worst = -1;
    char worst_why[160] = "";
    for (size_t i = 0; i < n; i++) {
        char w[160];
        int f = first_failure(j, &nodes[i], w, sizeof(w));
        if (f < 0) {
            if (match)
                match[m] = i;
            m++;
            continue;
        }
        size_t fi = (size_t)f < nreq ? (size_t)f : nreq - 1;
        counts[fi]++;
        if (worst < 0 || counts[fi] > counts[worst]) {
            worst = (int)fi;
            wlm_strlcpy(worst_why, w, sizeof(worst_why));
        }
    }
    if (m == 0 && why) {
        /* Say what the cluster does offer, so the fix is obvious. */
        char have[128] = "";
        if (worst == REQ_CORES || worst == REQ_MEMORY) {
            long long best = 0;
            for (size_t i = 0; i < n; i++) {
                long long v = worst == REQ_CORES ? nodes[i].cores : nodes[i].memory_mb;
                if (v > best)
                    best = v;
            }
            snprintf(have, sizeof(have), " (largest node has %lld)", best);
        } else if (worst == REQ_ARCH) {
            size_t len = (size_t)snprintf(have, sizeof(have), " (nodes are");
            for (size_t i = 0; i < n && len + 20 < sizeof(have); i++) {
                const char *a = nodes[i].arch ? nodes[i].arch : "unknown";
                int seen = 0;
                for (size_t k = 0; k < i; k++)
                    seen |= strcmp(nodes[k].arch ? nodes[k].arch : "unknown", a) == 0;
                if (!seen)
                    len += (size_t)snprintf(have + len, sizeof(have) - len, " %s", a);
            }
            if (len < sizeof(have) - 1)
                snprintf(have + len, sizeof(have) - len, ")");
        }
        snprintf(why, whysize, "no node matches: %s%s", worst_why, have);
    }
    return m;
}
