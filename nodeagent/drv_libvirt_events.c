/* libvirt driver, events: domain lifecycle callbacks handed to the agent,
 * and libvirt's process-wide default event loop in its own thread. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "drv_libvirt_int.h"

static int lv_lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *ud)
{
    (void)conn;
    struct lv_driver *d = ud;
    const char *name = virDomainGetName(dom);
    if (!name || !d->event_fn)
        return 0;
    int stopped = event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_CRASHED;
    if (!strncmp(name, DOM_PREFIX, strlen(DOM_PREFIX))) {
        d->event_fn(name + strlen(DOM_PREFIX), event, detail, stopped, d->event_ud);
    } else if (!strncmp(name, POOL_PREFIX, strlen(POOL_PREFIX))) {
        char job[128], id[160];
        if (lv_alias_get(d, name, 1, job, sizeof(job))) {
            d->event_fn(job, event, detail, stopped, d->event_ud);
        } else {
            snprintf(id, sizeof(id), "~%s", name + strlen(POOL_PREFIX));
            d->event_fn(id, event, detail, stopped, d->event_ud);
        }
    }
    return 0;
}

int nodeagent_libvirt_watch(struct nodeagent_driver *dd, nodeagent_event_fn fn, void *ud,
                            struct wlm_error *err)
{
    if (!dd || dd->ops != &lv_ops)
        return wlm_error_set(err, WLM_EINVAL, "not a libvirt driver");
    struct lv_driver *d = LV(dd);
    if (!fn) {
        if (d->callback_id >= 0)
            virConnectDomainEventDeregisterAny(d->conn, d->callback_id);
        d->callback_id = -1;
        d->event_fn = NULL;
        return 0;
    }
    d->event_fn = fn;
    d->event_ud = ud;
    d->callback_id =
        virConnectDomainEventRegisterAny(d->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                         VIR_DOMAIN_EVENT_CALLBACK(lv_lifecycle_cb), d, NULL);
    if (d->callback_id < 0)
        return lv_fail(err, "register lifecycle events", NULL);
    return 0;
}

/* libvirt's default event loop is process-wide; it runs in one detached
 * thread for the life of the process. */
static pthread_once_t ev_once = PTHREAD_ONCE_INIT;
static int ev_status;

static void *ev_thread(void *arg)
{
    (void)arg;
    for (;;) {
        if (virEventRunDefaultImpl() < 0)
            usleep(100000);
    }
    return NULL;
}

static void ev_init(void)
{
    virSetErrorFunc(NULL, lv_quiet);
    if (virEventRegisterDefaultImpl() < 0) {
        ev_status = -1;
        return;
    }
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    ev_status = pthread_create(&t, &at, ev_thread, NULL) == 0 ? 0 : -1;
    pthread_attr_destroy(&at);
}

int nodeagent_libvirt_event_thread_start(struct wlm_error *err)
{
    pthread_once(&ev_once, ev_init);
    if (ev_status < 0)
        return wlm_error_set(err, WLM_EINTERNAL, "cannot start libvirt's event loop thread");
    return 0;
}

const char *nodeagent_wl_state_name(enum nodeagent_wl_state s)
{
    switch (s) {
    case NODEAGENT_WL_NONE: return "none";
    case NODEAGENT_WL_RUNNING: return "running";
    case NODEAGENT_WL_PAUSED: return "paused";
    case NODEAGENT_WL_SHUTOFF: return "shutoff";
    case NODEAGENT_WL_CRASHED: return "crashed";
    default: return "other";
    }
}
