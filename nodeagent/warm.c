/* Warm pool: job VMs booted ahead of time to a waiting init and parked
 * (paused), so a job starts by resuming one and handing it the job over its
 * virtio-serial channel instead of booting a VM.
 *
 * Parking: paused, not saved. Measured here (TCG, 128 MiB guest): resume +
 * hand-over to the job's first output 0.06 s; restore from a checkpoint
 * 0.74 s. A paused VM holds its resident memory (about 250 MiB for a
 * 128 MiB guest under TCG) where a checkpoint holds none, so the pool is
 * bounded by memory (--pool-memory-mb, --pool-reserve-mb) and reported in
 * the heartbeat as reclaimable: the agent destroys parked VMs when memory
 * gets short.
 *
 * Isolation: a VM that ran a job is never reused. Its domain powers off
 * when the job ends (transient: it vanishes), its disk overlay is scrubbed
 * like any job's, and the pool thread boots a fresh VM in its place at low
 * CPU shares.
 *
 * One thread per agent boots and parks VMs one at a time; claims run on the
 * libuv thread pool (start actions). Shared state is under `mu`. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define MAX_SHAPES 16
#define LOW_SHARES 128

struct warm_vm {
    char id[96]; /* "~<prefix>-<seq>" */
    int vcpus;
    long long memory_mb;
    int parked; /* 0 = booting */
    char image[512];
    char console[600], sock[600];
    long long rss_kb;
};

struct warm_shape {
    int vcpus;
    long long memory_mb;
    int hint; /* expected starts in the next placement period (controller) */
};

struct na_warm {
    struct nodeagent *a;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, thread_ok;
    struct warm_vm *vms;
    size_t n;
    struct warm_shape shapes[MAX_SHAPES];
    size_t nshapes;
    char prefix[80]; /* "<node>-<hash>" */
    char dir[600];
    unsigned seq;
    double refill_seconds; /* last boot to parked */
    long long rss_kb_last; /* resident memory of the last parked VM */
    char last_error[512];
    double error_until; /* back off after a failed boot */
    unsigned long claims, evicted, failed_boots;
};

static double now(void)
{
    return wlm_now_mono();
}

/* ------------------------------------------------------------ helpers */

long long na_mem_available_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

/* Resident memory of a domain's QEMU process (libvirt's pid file). */
static long long dom_rss_kb(const char *dom)
{
    char path[300];
    snprintf(path, sizeof(path), "/var/run/libvirt/qemu/%s.pid", dom);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void last_line(const char *text, size_t len, char *out, size_t n)
{
    out[0] = '\0';
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    size_t s = len;
    while (s > 0 && text[s - 1] != '\n')
        s--;
    size_t l = len - s < n - 1 ? len - s : n - 1;
    memcpy(out, text + s, l);
    out[l] = '\0';
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 32)
            *p = ' ';
}

int na_wait_console(struct nodeagent *a, const char *id, const char *console, const char *marker,
                    double timeout_s, struct wlm_error *err)
{
    double t0 = now(), last_check = t0;
    char dom[200];
    if (id[0] == '~')
        snprintf(dom, sizeof(dom), NODEAGENT_POOL_DOM_PREFIX "%s", id + 1);
    else
        snprintf(dom, sizeof(dom), "wlm-%s", id);
    struct wlm_buf b;
    wlm_buf_init(&b);
    for (;;) {
        wlm_buf_fini(&b);
        wlm_buf_init(&b);
        FILE *f = fopen(console, "rb");
        if (f) {
            char buf[65536];
            size_t got;
            while ((got = fread(buf, 1, sizeof(buf), f)) > 0 && b.len < (4u << 20))
                wlm_buf_append(&b, buf, got);
            fclose(f);
        }
        if (b.data && memmem(b.data, b.len, marker, strlen(marker))) {
            wlm_buf_fini(&b);
            return 0;
        }
        char tail[200] = "";
        if (b.data)
            last_line(b.data, b.len, tail, sizeof(tail));
        if (b.data && memmem(b.data, b.len, "WLM-POOL-ERROR", 14)) {
            a->vm->ops->destroy(a->vm, id, NULL);
            wlm_error_set(err, WLM_EIO, "job VM %s failed in its init: %s (%s)", dom, tail,
                          nodeagent_libvirt_describe(a->vm));
            wlm_buf_fini(&b);
            return err ? err->code : -WLM_EIO;
        }
        double t = now();
        if (t - last_check >= 0.5) {
            last_check = t;
            struct nodeagent_wl_info wi;
            if (a->vm->ops->info(a->vm, id, &wi, NULL) == -WLM_ENOTFOUND ||
                (wi.state == NODEAGENT_WL_SHUTOFF || wi.state == NODEAGENT_WL_CRASHED)) {
                /* One more look: it may have printed the marker and ended. */
                FILE *f2 = fopen(console, "rb");
                int seen = 0;
                if (f2) {
                    char buf[65536];
                    size_t got;
                    struct wlm_buf c;
                    wlm_buf_init(&c);
                    while ((got = fread(buf, 1, sizeof(buf), f2)) > 0 && c.len < (4u << 20))
                        wlm_buf_append(&c, buf, got);
                    fclose(f2);
                    seen = c.data && memmem(c.data, c.len, marker, strlen(marker));
                    wlm_buf_fini(&c);
                }
                if (seen) {
                    wlm_buf_fini(&b);
                    return 0;
                }
                a->vm->ops->destroy(a->vm, id, NULL);
                wlm_error_set(err, WLM_EIO,
                              "job VM %s stopped before reaching its init after %.1f s (%s); "
                              "last console line: '%s'",
                              dom, t - t0, nodeagent_libvirt_describe(a->vm),
                              tail[0] ? tail : "(none)");
                wlm_buf_fini(&b);
                return err ? err->code : -WLM_EIO;
            }
        }
        if (t - t0 > timeout_s || (a->warm && a->warm->stop && id[0] == '~')) {
            char st[160];
            nodeagent_libvirt_state_text(a->vm, id, st, sizeof(st));
            a->vm->ops->destroy(a->vm, id, NULL);
            wlm_error_set(err, WLM_ETIMEOUT,
                          "job VM %s did not reach its init within %.0f s (%s; domain was %s; "
                          "last console line: '%s'); destroyed",
                          dom, timeout_s, nodeagent_libvirt_describe(a->vm), st,
                          tail[0] ? tail : "(none)");
            wlm_buf_fini(&b);
            return err ? err->code : -WLM_ETIMEOUT;
        }
        usleep(t - t0 < 2 ? 10000 : 50000);
    }
}

/* ------------------------------------------------------------ pool thread */

static struct warm_shape *shape_get(struct na_warm *w, int vcpus, long long mem)
{
    for (size_t i = 0; i < w->nshapes; i++)
        if (w->shapes[i].vcpus == vcpus && w->shapes[i].memory_mb == mem)
            return &w->shapes[i];
    if (w->nshapes == MAX_SHAPES)
        return NULL;
    struct warm_shape *s = &w->shapes[w->nshapes++];
    memset(s, 0, sizeof(*s));
    s->vcpus = vcpus;
    s->memory_mb = mem;
    return s;
}

static int shape_target(struct na_warm *w, const struct warm_shape *s)
{
    int t = s->hint;
    if (s == &w->shapes[0] && w->a->cfg.pool_size > t)
        t = (int)w->a->cfg.pool_size;
    return t;
}

/* Resident memory the pool holds (parked and booting), MiB. */
static long long pool_mb_locked(struct na_warm *w)
{
    long long kb = 0;
    for (size_t i = 0; i < w->n; i++)
        kb += w->vms[i].rss_kb > 0 ? w->vms[i].rss_kb : w->vms[i].memory_mb * 1024;
    return kb / 1024;
}

/* What one more VM of `mem` MiB will hold: the last measured overhead
 * ratio, or guest memory x 2 before anything was measured. */
static long long cost_mb_locked(struct na_warm *w, long long mem)
{
    if (w->rss_kb_last > 0 && w->n > 0) {
        long long guest = 0;
        for (size_t i = 0; i < w->n; i++)
            guest += w->vms[i].memory_mb;
        if (guest > 0)
            return mem * (pool_mb_locked(w) + 1) / guest + 1;
    }
    return mem * 2;
}

static void vm_remove_locked(struct na_warm *w, size_t i)
{
    w->vms[i] = w->vms[--w->n];
}

/* Destroy a pool VM and give its image back (no lock held). */
static void vm_discard(struct nodeagent *a, const struct warm_vm *v)
{
    a->vm->ops->destroy(a->vm, v->id, NULL);
    if (a->pool && v->image[0])
        nodeagent_pool_release(a->pool, v->image, NULL);
    unlink(v->console);
    unlink(v->sock);
}

/* Boot one VM of shape (vcpus, mem) and park it. */
static void boot_one(struct na_warm *w, int vcpus, long long mem)
{
    struct nodeagent *a = w->a;
    struct warm_vm v;
    memset(&v, 0, sizeof(v));
    pthread_mutex_lock(&w->mu);
    snprintf(v.id, sizeof(v.id), "~%s-%u", w->prefix, ++w->seq);
    v.vcpus = vcpus;
    v.memory_mb = mem;
    snprintf(v.console, sizeof(v.console), "%s/%u.console", w->dir, w->seq);
    snprintf(v.sock, sizeof(v.sock), "%s/%u.sock", w->dir, w->seq);
    size_t idx = w->n;
    struct warm_vm *arr = realloc(w->vms, (w->n + 1) * sizeof(*arr));
    if (!arr) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    w->vms = arr;
    w->vms[w->n++] = v;
    pthread_mutex_unlock(&w->mu);

    double t0 = now();
    struct wlm_error err = {0};
    char *image = NULL;
    unlink(v.sock);
    int fd = open(v.console, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    if (a->pool && nodeagent_pool_take(a->pool, &image, &err) < 0)
        image = NULL; /* boot without a disk rather than not at all */
    if (image)
        wlm_strlcpy(v.image, image, sizeof(v.image));
    free(image);
    struct nodeagent_spec s = {
        .id = v.id,
        .command = "",
        .image = v.image[0] ? v.image : NULL,
        .initrd = a->initramfs,
        .console = v.console,
        .channel = v.sock,
        .vcpus = vcpus,
        .memory_mb = mem,
        .cpu_shares = LOW_SHARES,
    };
    int r = a->vm->ops->start(a->vm, &s, &err);
    if (r == 0)
        r = na_wait_console(a, v.id, v.console, "WLM-READY", (double)a->cfg.boot_timeout_s, &err);
    if (r == 0)
        r = a->vm->ops->pause(a->vm, v.id, &err);
    char dom[200];
    snprintf(dom, sizeof(dom), NODEAGENT_POOL_DOM_PREFIX "%s", v.id + 1);
    long long rss = r == 0 ? dom_rss_kb(dom) : 0;
    pthread_mutex_lock(&w->mu);
    size_t i;
    for (i = 0; i < w->n; i++)
        if (!strcmp(w->vms[i].id, v.id))
            break;
    (void)idx;
    if (r == 0 && i < w->n && !w->stop) {
        w->vms[i] = v;
        w->vms[i].parked = 1;
        w->vms[i].rss_kb = rss;
        w->refill_seconds = now() - t0;
        if (rss > 0)
            w->rss_kb_last = rss;
        w->last_error[0] = '\0';
        pthread_mutex_unlock(&w->mu);
        wlm_info(NA_COMP, "warm pool: VM parked",
                 "vm=%s vcpus=%d memory_mb=%lld seconds=%.2f "
                 "rss_mb=%.0f",
                 dom, vcpus, mem, now() - t0, (double)rss / 1024);
        return;
    }
    if (i < w->n)
        vm_remove_locked(w, i);
    if (r != 0) {
        w->failed_boots++;
        wlm_strlcpy(w->last_error, err.msg, sizeof(w->last_error));
        w->error_until = now() + 10; /* do not spin on a broken kernel */
    }
    pthread_mutex_unlock(&w->mu);
    if (r != 0) {
        /* Keep the console of the last failed boot for a post-mortem. */
        char keep[700];
        snprintf(keep, sizeof(keep), "%s/last-failed.console", w->dir);
        rename(v.console, keep);
        wlm_warn(NA_COMP, "warm pool: boot failed", "vm=%s error=\"%s\" console=%s", dom, err.msg,
                 keep);
    }
    vm_discard(a, &v);
}

/* Drop parked VMs that vanished (destroyed by hand) and VMs beyond what
 * memory allows. Returns with the lock held. */
static void check_parked_locked(struct na_warm *w)
{
    struct nodeagent *a = w->a;
    struct nodeagent_wl_info *live = NULL;
    size_t nl = 0;
    pthread_mutex_unlock(&w->mu);
    int ok = nodeagent_libvirt_pool_list(a->vm, w->prefix, &live, &nl, NULL) == 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; ok && i < w->n;) {
        int found = 0;
        for (size_t j = 0; j < nl && !found; j++)
            found = !strcmp(live[j].id, w->vms[i].id);
        if (!found && w->vms[i].parked) {
            struct warm_vm v = w->vms[i];
            vm_remove_locked(w, i);
            wlm_warn(NA_COMP, "warm pool: parked VM vanished", "vm=%s", v.id + 1);
            pthread_mutex_unlock(&w->mu);
            vm_discard(a, &v);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        i++;
    }
    free(live);
}

/* Parked VMs to give back: memory below the reserve, or more than a shape's
 * target. Takes one victim out of the list; 0 when none. */
static int pick_victim_locked(struct na_warm *w, struct warm_vm *out)
{
    long long avail = na_mem_available_mb();
    /* A powered-off node keeps nothing parked. */
    long long room = w->a->node.memory_mb - w->a->placed_mem_mb - w->a->cfg.pool_reserve_mb;
    int short_mem = (avail >= 0 && avail < w->a->cfg.pool_reserve_mb) || !w->a->powered_on ||
                    pool_mb_locked(w) > room;
    for (size_t i = 0; i < w->n; i++) {
        struct warm_vm *v = &w->vms[i];
        if (!v->parked)
            continue;
        struct warm_shape *s = shape_get(w, v->vcpus, v->memory_mb);
        int have = 0;
        for (size_t j = 0; j < w->n; j++)
            have += w->vms[j].vcpus == v->vcpus && w->vms[j].memory_mb == v->memory_mb;
        if (short_mem || (s && have > shape_target(w, s)) ||
            pool_mb_locked(w) > w->a->cfg.pool_memory_mb) {
            *out = *v;
            vm_remove_locked(w, i);
            return 1;
        }
    }
    return 0;
}

static void *warm_thread(void *arg)
{
    struct na_warm *w = arg;
    struct nodeagent *a = w->a;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        check_parked_locked(w);
        struct warm_vm victim;
        if (pick_victim_locked(w, &victim)) {
            w->evicted++;
            pthread_mutex_unlock(&w->mu);
            wlm_info(NA_COMP, "warm pool: parked VM destroyed to give memory back", "vm=%s",
                     victim.id + 1);
            vm_discard(a, &victim);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        /* The first shape short of its target, if memory allows one more. */
        int boot = 0, vcpus = 0;
        long long mem = 0;
        if (now() >= w->error_until && a->powered_on) {
            for (size_t i = 0; i < w->nshapes && !boot; i++) {
                struct warm_shape *s = &w->shapes[i];
                int have = 0;
                for (size_t j = 0; j < w->n; j++)
                    have += w->vms[j].vcpus == s->vcpus && w->vms[j].memory_mb == s->memory_mb;
                if (have >= shape_target(w, s))
                    continue;
                long long cost = cost_mb_locked(w, s->memory_mb);
                long long avail = na_mem_available_mb();
                /* The node's memory as the controller sees it: what placed
                 * jobs and instances use now, plus the reserve, comes first. */
                long long room = a->node.memory_mb - a->placed_mem_mb - a->cfg.pool_reserve_mb;
                if (pool_mb_locked(w) + cost > a->cfg.pool_memory_mb ||
                    pool_mb_locked(w) + cost > room ||
                    (avail >= 0 && avail - cost < a->cfg.pool_reserve_mb))
                    continue;
                boot = 1;
                vcpus = s->vcpus;
                mem = s->memory_mb;
            }
        }
        if (boot) {
            pthread_mutex_unlock(&w->mu);
            boot_one(w, vcpus, mem);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    /* Stopping: parked VMs are ours alone; nothing else would reclaim them. */
    struct warm_vm *vms = w->vms;
    size_t n = w->n;
    w->vms = NULL;
    w->n = 0;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++)
        vm_discard(a, &vms[i]);
    free(vms);
    return NULL;
}

/* A pool VM found at start: parked and untouched? Then it joins the pool. */
static int adopt_parked(struct na_warm *w, const struct nodeagent_wl_info *li)
{
    struct nodeagent *a = w->a;
    if (li->state != NODEAGENT_WL_PAUSED)
        return 0;
    const char *dash = strrchr(li->id, '-');
    if (!dash)
        return 0;
    struct warm_vm v;
    memset(&v, 0, sizeof(v));
    wlm_strlcpy(v.id, li->id, sizeof(v.id));
    snprintf(v.console, sizeof(v.console), "%s/%s.console", w->dir, dash + 1);
    snprintf(v.sock, sizeof(v.sock), "%s/%s.sock", w->dir, dash + 1);
    struct stat sb;
    if (stat(v.sock, &sb) != 0 || !S_ISSOCK(sb.st_mode))
        return 0;
    struct wlm_buf b;
    wlm_buf_init(&b);
    FILE *f = fopen(v.console, "rb");
    if (f) {
        char buf[65536];
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), f)) > 0 && b.len < (4u << 20))
            wlm_buf_append(&b, buf, got);
        fclose(f);
    }
    int ready =
        b.data && memmem(b.data, b.len, "WLM-READY", 9) && !memmem(b.data, b.len, "WLM-START", 9);
    wlm_buf_fini(&b);
    if (!ready)
        return 0;
    /* Its disk must be one the image pool knows, or it could be handed out
     * twice. */
    if (a->pool && (nodeagent_libvirt_disk_path(a->vm, v.id, v.image, sizeof(v.image)) < 0 ||
                    !nodeagent_pool_mark_used(a->pool, v.image)))
        return 0;
    v.vcpus = li->vcpus > 0 ? li->vcpus : 1;
    v.memory_mb = li->memory_kb / 1024;
    v.parked = 1;
    char dom[200];
    snprintf(dom, sizeof(dom), NODEAGENT_POOL_DOM_PREFIX "%s", v.id + 1);
    v.rss_kb = dom_rss_kb(dom);
    struct warm_vm *arr = realloc(w->vms, (w->n + 1) * sizeof(*arr));
    if (!arr)
        return 0;
    w->vms = arr;
    w->vms[w->n++] = v;
    if (v.rss_kb > 0)
        w->rss_kb_last = v.rss_kb;
    shape_get(w, v.vcpus, v.memory_mb);
    return 1;
}

/* ------------------------------------------------------------ API */

int na_warm_start(struct nodeagent *a, struct wlm_error *err)
{
    if (!a->vm || !strncmp(a->cfg.libvirt_uri, "test:", 5))
        return 0; /* the test driver boots nothing */
    struct na_warm *w = calloc(1, sizeof(*w));
    if (!w)
        return wlm_error_set(err, ENOMEM, "out of memory");
    w->a = a;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    unsigned h = 2166136261u;
    for (const char *c = a->cfg.state_dir; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    snprintf(w->prefix, sizeof(w->prefix), "%.40s-%08x", a->cfg.name, h);
    snprintf(w->dir, sizeof(w->dir), "%s/pool", a->cfg.state_dir);
    mkdir(w->dir, 0755);
    shape_get(w, 1, a->cfg.vm_memory_mb); /* the default shape comes first */
    /* Names stay unique across restarts: a job may still run on a pool VM
     * an earlier run of this agent named. */
    w->seq = (unsigned)time(NULL);
    a->warm = w;
    /* Pool VMs a previous run of this agent left (kill -9). Claimed ones are
     * jobs and were adopted by reconcile. A parked one (paused at its
     * waiting init, nothing handed over) is adopted; anything else (still
     * booting, or resumed for a hand-over that never finished) goes. */
    struct nodeagent_wl_info *left = NULL;
    size_t nl = 0;
    if (nodeagent_libvirt_pool_list(a->vm, w->prefix, &left, &nl, NULL) == 0) {
        for (size_t i = 0; i < nl; i++) {
            if (adopt_parked(w, &left[i])) {
                wlm_info(NA_COMP, "warm pool: adopted a parked VM left by a previous run", "vm=%s",
                         left[i].id + 1);
                continue;
            }
            wlm_info(NA_COMP, "warm pool: destroying a VM left by a previous run", "vm=%s",
                     left[i].id + 1);
            a->vm->ops->destroy(a->vm, left[i].id, NULL);
        }
        free(left);
    }
    char sock[700];
    snprintf(sock, sizeof(sock), "%s/%u.sock", w->dir, 4000000000u);
    if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        wlm_warn(NA_COMP, "warm pool disabled: state_dir too long for a unix socket path",
                 "path=%s", sock);
        return 0;
    }
    if (a->cfg.pool_size <= 0)
        wlm_info(NA_COMP, "warm pool empty until the controller hints", "pool_size=0");
    if (pthread_create(&w->th, NULL, warm_thread, w) != 0)
        return wlm_error_set(err, WLM_EINTERNAL, "cannot start the warm pool thread");
    w->thread_ok = 1;
    return 0;
}

void na_warm_stop(struct nodeagent *a)
{
    struct na_warm *w = a->warm;
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->thread_ok)
        pthread_join(w->th, NULL);
    w->thread_ok = 0;
}

void na_warm_free(struct nodeagent *a)
{
    struct na_warm *w = a->warm;
    if (!w)
        return;
    na_warm_stop(a);
    free(w->vms);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    a->warm = NULL;
}

void na_warm_kick(struct nodeagent *a)
{
    struct na_warm *w = a->warm;
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int na_warm_hint(struct nodeagent *a, json_t *shapes, struct wlm_error *err)
{
    struct na_warm *w = a->warm;
    if (!json_is_array(shapes))
        return wlm_error_setf(err, WLM_EINVAL, "shapes",
                              "'shapes' must be an array of {vcpus, memory_mb, starts}");
    size_t i;
    json_t *s;
    json_array_foreach(shapes, i, s)
    {
        long long v = 0, m = 0, n = 0;
        if (!json_is_object(s) || wlm_json_get_int(s, "vcpus", 1, 1, 64, &v, err) < 0 ||
            wlm_json_get_int(s, "memory_mb", 1, 32, 1 << 20, &m, err) < 0 ||
            wlm_json_get_int(s, "starts", 1, 0, 1000, &n, err) < 0) {
            char why[512];
            wlm_strlcpy(why, err && err->code ? err->msg : "not an object", sizeof(why));
            return wlm_error_setf(err, WLM_EINVAL, "shapes", "shapes[%zu]: %s", i, why);
        }
    }
    if (!w)
        return 0; /* accepted; nothing to warm on this driver */
    pthread_mutex_lock(&w->mu);
    for (size_t k = 0; k < w->nshapes; k++)
        w->shapes[k].hint = 0;
    json_array_foreach(shapes, i, s)
    {
        long long v = 0, m = 0, n = 0;
        wlm_json_get_int(s, "vcpus", 1, 1, 64, &v, NULL);
        wlm_json_get_int(s, "memory_mb", 1, 32, 1 << 20, &m, NULL);
        wlm_json_get_int(s, "starts", 1, 0, 1000, &n, NULL);
        struct warm_shape *sh = shape_get(w, (int)v, m);
        if (sh)
            sh->hint = (int)n;
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

/* Write the whole buffer to a unix socket. */
static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int na_warm_claim(struct nodeagent *a, const struct na_warm_job *job, struct na_warm_claim *out,
                  struct wlm_error *err)
{
    struct na_warm *w = a->warm;
    memset(out, 0, sizeof(*out));
    if (!w)
        return 1;
    pthread_mutex_lock(&w->mu);
    struct warm_shape *sh = shape_get(w, job->vcpus, job->memory_mb);
    (void)sh; /* a shape asked for is remembered; the controller's hint sizes it */
    size_t i;
    for (i = 0; i < w->n; i++)
        if (w->vms[i].parked && w->vms[i].vcpus == job->vcpus &&
            w->vms[i].memory_mb == job->memory_mb)
            break;
    if (i == w->n) {
        int booting = 0;
        for (size_t j = 0; j < w->n; j++)
            booting += w->vms[j].vcpus == job->vcpus && w->vms[j].memory_mb == job->memory_mb;
        snprintf(out->why, sizeof(out->why),
                 "no parked VM of shape %d vCPU / %lld MiB (%d "
                 "booting)",
                 job->vcpus, job->memory_mb, booting);
        pthread_mutex_unlock(&w->mu);
        return 1;
    }
    struct warm_vm v = w->vms[i];
    vm_remove_locked(w, i);
    w->claims++;
    pthread_cond_broadcast(&w->cv); /* refill in the background */
    pthread_mutex_unlock(&w->mu);

    double t0 = now();
    wlm_strlcpy(out->image, v.image, sizeof(out->image));
    snprintf(out->domain, sizeof(out->domain), NODEAGENT_POOL_DOM_PREFIX "%s", v.id + 1);
    /* The console keeps its inode: QEMU goes on writing into the job's log. */
    if (rename(v.console, job->console) != 0) {
        wlm_error_set(err, errno, "warm pool: cannot move %s to %s: %s", v.console, job->console,
                      strerror(errno));
        goto fail;
    }
    FILE *pf = fopen(job->payload, "rb");
    if (!pf) {
        wlm_error_set(err, errno, "cannot read job payload %s: %s", job->payload, strerror(errno));
        goto fail;
    }
    struct wlm_buf b;
    wlm_buf_init(&b);
    fseek(pf, 0, SEEK_END);
    long plen = ftell(pf);
    fseek(pf, 0, SEEK_SET);
    wlm_buf_printf(&b, "WLM-JOB %ld %s %s %s\n", plen, job->job,
                   job->hostname && *job->hostname ? job->hostname : "-",
                   job->ip && *job->ip ? job->ip : "-");
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), pf)) > 0)
        wlm_buf_append(&b, buf, got);
    fclose(pf);
    /* Claimed (the job's id in the domain's metadata) while still paused: a
     * short job may finish and power the guest off before the hand-over
     * below returns. */
    if (nodeagent_libvirt_claim(a->vm, v.id, job->job, err) < 0) {
        wlm_buf_fini(&b);
        goto fail;
    }
    if (a->vm->ops->resume(a->vm, v.id, err) < 0) {
        wlm_buf_fini(&b);
        goto fail;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    wlm_strlcpy(sa.sun_path, v.sock, sizeof(sa.sun_path));
    int rc = fd < 0 ? -errno : 0;
    if (!rc && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        rc = -errno;
    if (!rc)
        rc = send_all(fd, b.data, b.len);
    wlm_buf_fini(&b);
    if (rc) {
        if (fd >= 0)
            close(fd);
        wlm_error_set(err, WLM_EIO, "warm pool: cannot hand the job to %s over %s: %s", out->domain,
                      v.sock, strerror(-rc));
        goto fail;
    }
    out->handoff_seconds = now() - t0;
    /* The guest reads the job, prints WLM-START and runs it. The socket
     * stays open until then: a closed host side would end the guest's read. */
    int wr =
        na_wait_console(a, v.id, job->console, "WLM-START", (double)a->cfg.boot_timeout_s, err);
    close(fd);
    if (wr < 0) {
        vm_discard(a, &v);
        return -1;
    }
    out->start_seconds = now() - t0;
    out->rss_kb = v.rss_kb;
    unlink(v.sock);
    return 0;
fail:
    vm_discard(a, &v);
    return -1;
}

int na_warm_evict(struct nodeagent *a, long long need_mb)
{
    struct na_warm *w = a->warm;
    if (!w)
        return 0;
    int n = 0;
    for (;;) {
        long long avail = na_mem_available_mb();
        if (avail < 0 || avail - need_mb >= a->cfg.pool_reserve_mb)
            break;
        pthread_mutex_lock(&w->mu);
        size_t i;
        for (i = 0; i < w->n; i++)
            if (w->vms[i].parked)
                break;
        if (i == w->n) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        struct warm_vm v = w->vms[i];
        vm_remove_locked(w, i);
        w->evicted++;
        pthread_mutex_unlock(&w->mu);
        vm_discard(a, &v);
        n++;
    }
    return n;
}

json_t *na_warm_json(struct nodeagent *a)
{
    struct na_warm *w = a->warm;
    if (!w)
        return NULL;
    pthread_mutex_lock(&w->mu);
    int parked = 0, booting = 0, target = 0;
    json_t *shapes = json_array();
    for (size_t i = 0; i < w->nshapes; i++) {
        struct warm_shape *s = &w->shapes[i];
        int p = 0, b = 0;
        for (size_t j = 0; j < w->n; j++) {
            if (w->vms[j].vcpus != s->vcpus || w->vms[j].memory_mb != s->memory_mb)
                continue;
            if (w->vms[j].parked)
                p++;
            else
                b++;
        }
        int t = shape_target(w, s);
        parked += p;
        booting += b;
        target += t;
        if (t || p || b)
            json_array_append_new(shapes, json_pack("{s:i,s:I,s:i,s:i,s:i,s:i}", "vcpus", s->vcpus,
                                                    "memory_mb", (json_int_t)s->memory_mb, "parked",
                                                    p, "booting", b, "target", t, "hint", s->hint));
    }
    json_t *o = json_pack("{s:s,s:i,s:i,s:i,s:I,s:I,s:f,s:f,s:I,s:I,s:I,s:o}", "park", "paused",
                          "parked", parked, "booting", booting, "target", target, "memory_mb",
                          (json_int_t)pool_mb_locked(w), "memory_limit_mb",
                          (json_int_t)a->cfg.pool_memory_mb, "refill_seconds", w->refill_seconds,
                          "parked_rss_mb", (double)w->rss_kb_last / 1024.0, "claims",
                          (json_int_t)w->claims, "evicted", (json_int_t)w->evicted, "failed_boots",
                          (json_int_t)w->failed_boots, "shapes", shapes);
    if (w->last_error[0])
        json_object_set_new(o, "last_error", json_string(w->last_error));
    pthread_mutex_unlock(&w->mu);
    return o;
}
