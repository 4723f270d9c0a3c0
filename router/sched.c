/* sched.c - start-time fair queuing under a concurrency limit (SFQ(D)).
 *
 * Why SFQ: it needs no knowledge of the service rate (the CPU the instances
 * really get is unknown and varies), it is fair over any interval for
 * variable costs, and with the concurrency limit D as depth it is the
 * scheduler Jin et al. analyse for shared servers. A request's cost is its
 * flow's CPU cycles per request, so weights divide CPU rather than request
 * counts. Pure: no clock, no locks; the gateway serialises calls. */
#include <stdlib.h>

#include "internal.h"

struct router_sched *router_sched_new(size_t nflows)
{
    struct router_sched *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->flows = calloc(nflows ? nflows : 1, sizeof *s->flows);
    if (!s->flows) {
        free(s);
        return NULL;
    }
    s->nflows = nflows;
    for (size_t f = 0; f < nflows; f++)
        s->flows[f] = (struct router_sched_flow){.weight = 1, .cost = 1, .max_queue = 1000};
    return s;
}

void router_sched_free(struct router_sched *s)
{
    if (!s)
        return;
    free(s->flows);
    free(s);
}

void router_sched_set_flow(struct router_sched *s, size_t flow, double weight, double cost,
                           unsigned max_queue)
{
    if (flow >= s->nflows)
        return;
    s->flows[flow].weight = weight > 0 ? weight : 1;
    s->flows[flow].cost = cost > 0 ? cost : 1;
    s->flows[flow].max_queue = max_queue;
}

static void link_tail(struct router_sched_flow *fl, struct router_sched_item *it)
{
    it->next = NULL;
    it->prev = fl->tail;
    if (fl->tail)
        fl->tail->next = it;
    else
        fl->head = it;
    fl->tail = it;
    fl->len++;
}

static void tag(struct router_sched *s, struct router_sched_flow *fl, struct router_sched_item *it)
{
    it->start = s->vtime > fl->last_finish ? s->vtime : fl->last_finish;
    it->finish = it->start + fl->cost / fl->weight;
    fl->last_finish = it->finish;
}

int router_sched_enqueue(struct router_sched *s, struct router_sched_item *it, size_t flow,
                         double now)
{
    if (flow >= s->nflows)
        return -WLM_EINVAL;
    struct router_sched_flow *fl = &s->flows[flow];
    if (fl->len >= fl->max_queue)
        return -WLM_ELIMIT;
    it->flow = flow;
    it->enq_time = now;
    tag(s, fl, it);
    link_tail(fl, it);
    it->queued = 1;
    s->total++;
    return 0;
}

static void unlink_item(struct router_sched *s, struct router_sched_item *it)
{
    struct router_sched_flow *fl = &s->flows[it->flow];
    if (it->prev)
        it->prev->next = it->next;
    else
        fl->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        fl->tail = it->prev;
    it->prev = it->next = NULL;
    it->queued = 0;
    fl->len--;
    s->total--;
}

void router_sched_remove(struct router_sched *s, struct router_sched_item *it)
{
    if (!it->queued)
        return;
    struct router_sched_flow *fl = &s->flows[it->flow];
    /* A cancelled request gives its virtual service back when it was the
     * flow's last arrival; otherwise later tags already include it, which
     * costs the flow at most one request's worth of share. */
    if (fl->tail == it)
        fl->last_finish = it->start;
    unlink_item(s, it);
}

struct router_sched_item *router_sched_pick(struct router_sched *s,
                                            int (*eligible)(size_t flow, void *ud), void *ud)
{
    struct router_sched_item *best = NULL;
    for (size_t f = 0; f < s->nflows; f++) {
        struct router_sched_item *h = s->flows[f].head;
        if (!h || (best && h->start >= best->start))
            continue;
        if (eligible && !eligible(f, ud))
            continue;
        best = h;
    }
    if (!best)
        return NULL;
    s->vtime = best->start;
    unlink_item(s, best);
    return best;
}

struct router_sched_item *router_sched_expired(struct router_sched *s, double now,
                                               double (*max_wait_s)(size_t flow, void *ud),
                                               void *ud)
{
    for (size_t f = 0; f < s->nflows; f++) {
        struct router_sched_item *h = s->flows[f].head;
        if (h && now - h->enq_time > max_wait_s(f, ud)) {
            unlink_item(s, h);
            return h;
        }
    }
    return NULL;
}

void router_sched_migrate(struct router_sched *from, struct router_sched *to, const long *map,
                          void (*reject)(struct router_sched_item *it, void *ud), void *ud)
{
    if (from->vtime > to->vtime)
        to->vtime = from->vtime;
    for (size_t f = 0; f < from->nflows; f++) {
        struct router_sched_item *it;
        while ((it = from->flows[f].head)) {
            unlink_item(from, it);
            long nf = map ? map[f] : -1;
            double t = it->enq_time;
            /* The new queue bound does not apply to requests already accepted:
             * link directly instead of router_sched_enqueue. */
            if (nf >= 0 && (size_t)nf < to->nflows) {
                struct router_sched_flow *fl = &to->flows[nf];
                it->flow = (size_t)nf;
                tag(to, fl, it);
                link_tail(fl, it);
                it->queued = 1;
                it->enq_time = t;
                to->total++;
            } else if (reject) {
                reject(it, ud);
            }
        }
    }
}

double router_jain_index(const double *x, size_t n)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i], s2 += x[i] * x[i];
    return (n == 0 || s2 == 0) ? 1.0 : s * s / ((double)n * s2);
}
