/* Image pool: qcow2 overlays on one base image, as libvirt storage volumes.
 *
 * Creating an overlay is cheap but not free (a qemu-img run inside
 * libvirtd); pre-creating K of them takes that off the job start path. A
 * released image is scrubbed by deleting and re-creating its overlay, which
 * drops everything the previous job wrote. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "nodeagent.h"

struct pool_img {
    char name[64];
    char *path;
    int used;
};

struct nodeagent_pool {
    pthread_mutex_t mu;
    virConnectPtr conn;
    virStoragePoolPtr pool;
    char *base_path;
    struct pool_img *img;
    int n, max;
    double create_seconds;
};

static int pool_fail(struct wlm_error *err, const char *what)
{
    virErrorPtr e = virGetLastError();
    int r = wlm_error_set(err, WLM_EIO, "image pool: %s: %s", what,
                          e && e->message ? e->message : "unknown libvirt error");
    virResetLastError();
    return r;
}

static char *vol_path(virStoragePoolPtr pool, const char *name)
{
    virStorageVolPtr v = virStorageVolLookupByName(pool, name);
    if (!v) {
        virResetLastError();
        return NULL;
    }
    char *p = virStorageVolGetPath(v);
    virStorageVolFree(v);
    return p;
}

/* Create overlay `name` backed by the base image; returns its path. */
static char *create_overlay(struct nodeagent_pool *p, const char *name, struct wlm_error *err)
{
    char *xml = wlm_asprintf("<volume><name>%s</name><capacity unit='M'>16</capacity>"
                             "<target><format type='qcow2'/></target>"
                             "<backingStore><path>%s</path><format type='qcow2'/></backingStore>"
                             "</volume>",
                             name, p->base_path);
    double t0 = wlm_now_mono();
    virStorageVolPtr v = virStorageVolCreateXML(p->pool, xml, 0);
    free(xml);
    if (!v) {
        pool_fail(err, "create overlay");
        return NULL;
    }
    p->create_seconds = wlm_now_mono() - t0;
    char *path = virStorageVolGetPath(v);
    virStorageVolFree(v);
    return path;
}

static int add_image(struct nodeagent_pool *p, struct wlm_error *err)
{
    if (p->n >= p->max)
        return wlm_error_set(err, WLM_ELIMIT, "image pool is at its maximum of %d images", p->max);
    struct pool_img *arr = realloc(p->img, (size_t)(p->n + 1) * sizeof(*arr));
    if (!arr)
        return wlm_error_set(err, ENOMEM, "out of memory");
    p->img = arr;
    struct pool_img *im = &p->img[p->n];
    memset(im, 0, sizeof(*im));
    /* The lowest index no entry has (entries adopted after a restart may
     * have any index). */
    for (int k = p->n;; k++) {
        snprintf(im->name, sizeof(im->name), "img-%d.qcow2", k);
        int taken = 0;
        for (int i = 0; i < p->n && !taken; i++)
            taken = !strcmp(p->img[i].name, im->name);
        if (!taken)
            break;
    }
    /* An overlay left by a previous run is reused as it is: it was scrubbed
     * when released, or is marked used by reconcile. */
    im->path = vol_path(p->pool, im->name);
    if (!im->path)
        im->path = create_overlay(p, im->name, err);
    if (!im->path)
        return err ? err->code : -WLM_EIO;
    p->n++;
    return 0;
}

struct nodeagent_pool *nodeagent_pool_new(const struct nodeagent_pool_opts *o,
                                          struct wlm_error *err)
{
    struct nodeagent_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        wlm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->conn = o->conn;
    p->max = o->max;
    if (!p->conn) {
        wlm_error_set(err, WLM_EINVAL, "image pool needs a libvirt connection");
        goto fail;
    }
    p->pool = virStoragePoolLookupByName(p->conn, o->name);
    if (p->pool && (virStoragePoolIsActive(p->pool) != 1 || virStoragePoolRefresh(p->pool, 0) < 0)) {
        /* A transient pool whose directory went away: start afresh. */
        if (virStoragePoolIsPersistent(p->pool) == 1)
            virStoragePoolUndefine(p->pool);
        virStoragePoolDestroy(p->pool);
        virStoragePoolFree(p->pool);
        p->pool = NULL;
    }
    if (!p->pool) {
        virResetLastError();
        /* The test driver keeps pools in memory; any absolute path will do. */
        char *xml = wlm_asprintf("<pool type='dir'><name>%s</name><target><path>%s</path>"
                                 "</target></pool>",
                                 o->name, o->dir && *o->dir ? o->dir : "/wlm-test-pool");
        /* Real drivers build (mkdir) the directory; the test driver has
         * nothing to build and rejects the flag. */
        int is_dir = o->dir && *o->dir;
        p->pool = virStoragePoolCreateXML(p->conn, xml,
                                          is_dir ? VIR_STORAGE_POOL_CREATE_WITH_BUILD : 0);
        free(xml);
        if (!p->pool) {
            pool_fail(err, "create storage pool");
            goto fail;
        }
    }
    virStoragePoolRefresh(p->pool, 0);
    virResetLastError();
    p->base_path = vol_path(p->pool, "base.qcow2");
    if (!p->base_path) {
        char *xml = wlm_asprintf("<volume><name>base.qcow2</name><capacity unit='M'>%lld</capacity>"
                                 "<target><format type='qcow2'/></target></volume>",
                                 o->base_mb > 0 ? o->base_mb : 16);
        virStorageVolPtr v = virStorageVolCreateXML(p->pool, xml, 0);
        free(xml);
        if (!v) {
            pool_fail(err, "create base image");
            goto fail;
        }
        p->base_path = virStorageVolGetPath(v);
        virStorageVolFree(v);
    }
    for (int i = 0; i < o->size; i++)
        if (add_image(p, err) < 0)
            goto fail;
    return p;
fail:
    nodeagent_pool_free(p);
    return NULL;
}

void nodeagent_pool_free(struct nodeagent_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        free(p->img[i].path);
    free(p->img);
    free(p->base_path);
    if (p->pool)
        virStoragePoolFree(p->pool);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int nodeagent_pool_take(struct nodeagent_pool *p, char **path, struct wlm_error *err)
{
    pthread_mutex_lock(&p->mu);
    int idx = -1;
    for (int i = 0; i < p->n && idx < 0; i++)
        if (!p->img[i].used)
            idx = i;
    if (idx < 0) {
        int r = add_image(p, err);
        if (r < 0) {
            pthread_mutex_unlock(&p->mu);
            return r;
        }
        idx = p->n - 1;
    }
    p->img[idx].used = 1;
    *path = wlm_strdup(p->img[idx].path);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int nodeagent_pool_release(struct nodeagent_pool *p, const char *path, struct wlm_error *err)
{
    pthread_mutex_lock(&p->mu);
    int r = wlm_error_set(err, WLM_ENOTFOUND, "image '%s' is not in the pool", path);
    for (int i = 0; i < p->n; i++) {
        struct pool_img *im = &p->img[i];
        if (strcmp(im->path, path) != 0)
            continue;
        if (err)
            wlm_error_clear(err);
        r = 0;
        virStorageVolPtr v = virStorageVolLookupByName(p->pool, im->name);
        if (v) {
            virStorageVolDelete(v, 0);
            virStorageVolFree(v);
        }
        virResetLastError();
        char *np = create_overlay(p, im->name, err);
        if (!np) {
            r = err ? err->code : -WLM_EIO;
            break;
        }
        free(im->path);
        im->path = np;
        im->used = 0;
        break;
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

int nodeagent_pool_mark_used(struct nodeagent_pool *p, const char *path)
{
    if (!p || !path || !*path)
        return 0;
    int found = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++) {
        if (!strcmp(p->img[i].path, path)) {
            p->img[i].used = 1;
            found = 1;
        }
    }
    /* An overlay of ours the pool has not listed since the restart (it had
     * grown beyond its start-up size): list it, in use. */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!found && p->n < p->max && !strncmp(base, "img-", 4) && strlen(base) < 64) {
        char *vp = vol_path(p->pool, base);
        struct pool_img *arr = vp && !strcmp(vp, path)
                                   ? realloc(p->img, (size_t)(p->n + 1) * sizeof(*arr))
                                   : NULL;
        if (arr) {
            p->img = arr;
            memset(&p->img[p->n], 0, sizeof(p->img[p->n]));
            wlm_strlcpy(p->img[p->n].name, base, sizeof(p->img[p->n].name));
            p->img[p->n].path = vp;
            p->img[p->n].used = 1;
            p->n++;
            found = 1;
            vp = NULL;
        }
        free(vp);
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

void nodeagent_pool_status(struct nodeagent_pool *p, struct nodeagent_pool_status *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++) {
        if (p->img[i].used)
            st->used++;
        else
            st->free++;
    }
    st->max = p->max;
    st->create_seconds = p->create_seconds;
    pthread_mutex_unlock(&p->mu);
}
