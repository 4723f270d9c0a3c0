/* Private to the libvirt driver (drv_libvirt*.c). */
#ifndef WLM_NODEAGENT_DRV_LIBVIRT_INT_H
#define WLM_NODEAGENT_DRV_LIBVIRT_INT_H

#include <pthread.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "nodeagent.h"

#define DOM_PREFIX "wlm-"
#define POOL_PREFIX NODEAGENT_POOL_DOM_PREFIX
#define META_NS "urn:wlm:nodeagent"

/* A claimed warm pool domain: the job it runs. */
struct lv_alias {
    char job[128];
    char dom[160];
};

struct lv_driver {
    struct nodeagent_driver base;
    virConnectPtr conn;
    char *uri;
    char *kernel;
    char *initramfs;
    int is_test;
    char vm_type[16];
    int disks_shared;
    int callback_id;
    nodeagent_event_fn event_fn;
    void *event_ud;
    pthread_mutex_t mu; /* guards the alias table */
    struct lv_alias *alias;
    size_t nalias;
    char describe[640];
};

extern const struct nodeagent_driver_ops lv_ops;
static inline struct lv_driver *LV(struct nodeagent_driver *d)
{
    return (struct lv_driver *)d;
}

/* drv_libvirt.c */
void lv_quiet(void *ud, virErrorPtr e);
/* libvirt's last error (thread-local) as a wlm error with libvirt's text. */
int lv_fail(struct wlm_error *err, const char *what, const char *id);
/* "wlm-ID", or "wlmpool-NAME" for "~NAME". */
void lv_dom_name(const char *id, char *out, size_t n);
/* The domain of a job id (also a claimed pool domain); caller frees. */
virDomainPtr lv_lookup(struct lv_driver *d, const char *id, struct wlm_error *err);
/* Escape text for an XML attribute or element. */
void lv_xml_esc(struct wlm_buf *b, const char *s);
void lv_fill_info(struct lv_driver *d, virDomainPtr dom, struct nodeagent_wl_info *out);

/* drv_libvirt_pool.c: job id <-> claimed pool domain name */
void lv_alias_set(struct lv_driver *d, const char *job, const char *dom);
/* 1 and the domain (by job) or the job (by_dom) in `out`, else 0. */
int lv_alias_get(struct lv_driver *d, const char *key, int by_dom, char *out, size_t n);
void lv_alias_drop(struct lv_driver *d, const char *job);
/* The job id in a pool domain's metadata ("" when unclaimed). */
void lv_meta_job(virDomainPtr dom, char *out, size_t n);
/* Refresh the alias table from the metadata of live pool domains. */
void lv_alias_scan(struct lv_driver *d);

#endif
