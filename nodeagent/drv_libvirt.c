/* libvirt driver: job VMs as transient domains named "wlm-<id>".
 *
 * Transient domains (virDomainCreateXML) vanish when they stop, so a stopped
 * job leaves nothing to clean up in libvirt, and a domain that is alive after
 * an agent restart is exactly one the agent must adopt. libvirt's API is
 * thread-safe per connection, so the agent calls these from its thread pool. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "drv_libvirt_int.h"

void lv_quiet(void *ud, virErrorPtr e)
{
    /* Errors are reported to callers with libvirt's text; nothing to stderr. */
    (void)ud;
    (void)e;
}

/* Turn libvirt's last error (thread-local) into a wlm error carrying
 * libvirt's own text. */
int lv_fail(struct wlm_error *err, const char *what, const char *id)
{
    virErrorPtr e = virGetLastError();
    int code = WLM_EIO;
    const char *msg = e && e->message ? e->message : "unknown libvirt error";
    if (e) {
        switch (e->code) {
        case VIR_ERR_NO_DOMAIN:
        case VIR_ERR_NO_STORAGE_VOL:
        case VIR_ERR_NO_STORAGE_POOL: code = WLM_ENOTFOUND; break;
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_ARGUMENT_UNSUPPORTED: code = WLM_EUNSUPPORTED; break;
        case VIR_ERR_OPERATION_INVALID:
        case VIR_ERR_OPERATION_DENIED: code = WLM_ECONFLICT; break;
        case VIR_ERR_INVALID_ARG:
        case VIR_ERR_XML_ERROR: code = WLM_EINVAL; break;
        default: break;
        }
    }
    int r = id && *id ? wlm_error_set(err, code, "%s %s: %s", what, id, msg)
                      : wlm_error_set(err, code, "%s: %s", what, msg);
    virResetLastError();
    return r;
}

void lv_dom_name(const char *id, char *out, size_t n)
{
    if (id[0] == '~')
        snprintf(out, n, POOL_PREFIX "%s", id + 1);
    else
        snprintf(out, n, DOM_PREFIX "%s", id);
}

virDomainPtr lv_lookup(struct lv_driver *d, const char *id, struct wlm_error *err)
{
    char name[200];
    lv_dom_name(id, name, sizeof(name));
    virDomainPtr dom = virDomainLookupByName(d->conn, name);
    if (!dom && id[0] != '~') {
        /* A job on a claimed warm pool domain. */
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN) {
            virResetLastError();
            char pd[160];
            for (int pass = 0; pass < 2 && !dom; pass++) {
                if (pass == 1)
                    lv_alias_scan(d);
                if (lv_alias_get(d, id, 0, pd, sizeof(pd))) {
                    dom = virDomainLookupByName(d->conn, pd);
                    if (!dom) {
                        virResetLastError();
                        lv_alias_drop(d, id);
                    }
                }
            }
            if (!dom) {
                wlm_error_set(err, WLM_ENOTFOUND, "no domain for job '%s'", id);
                return NULL;
            }
            return dom;
        }
    }
    if (!dom) {
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN) {
            virResetLastError();
            wlm_error_set(err, WLM_ENOTFOUND, "no domain for job '%s'", id);
        } else {
            lv_fail(err, "lookup", id);
        }
    }
    return dom;
}

static int lv_node_info(struct nodeagent_driver *dd, struct nodeagent_node_info *out,
                        struct wlm_error *err)
{
    struct lv_driver *d = LV(dd);
    virNodeInfo ni;
    if (virNodeGetInfo(d->conn, &ni) < 0)
        return lv_fail(err, "virNodeGetInfo", NULL);
    memset(out, 0, sizeof(*out));
    out->cores = (int)ni.cpus;
    out->mhz = (int)ni.mhz;
    out->memory_mb = (long long)(ni.memory / 1024);
    wlm_strlcpy(out->arch, ni.model, sizeof(out->arch));
    /* libvirt reports "i686" for the test driver; for real hosts it is the
     * host arch. */
    return 0;
}

/* Escape text for an XML attribute or element. */
void lv_xml_esc(struct wlm_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': wlm_buf_append(b, "&lt;", 4); break;
        case '>': wlm_buf_append(b, "&gt;", 4); break;
        case '&': wlm_buf_append(b, "&amp;", 5); break;
        case '\'': wlm_buf_append(b, "&apos;", 6); break;
        case '"': wlm_buf_append(b, "&quot;", 6); break;
        default: wlm_buf_append(b, s, 1);
        }
    }
}

static char *lv_domain_xml(struct lv_driver *d, const struct nodeagent_spec *s)
{
    struct wlm_buf b;
    wlm_buf_init(&b);
    int vcpus = s->vcpus > 0 ? s->vcpus : 1;
    /* Room to grow the vCPU count live (resize) up to 4. */
    int maxv = vcpus > 4 ? vcpus : 4;
    long long mem = s->memory_mb > 0 ? s->memory_mb : 128;
    const char *type = d->is_test ? "test" : d->vm_type;
    char name[200];
    lv_dom_name(s->id, name, sizeof(name));
    wlm_buf_printf(&b, "<domain type='%s'><name>", type);
    lv_xml_esc(&b, name);
    wlm_buf_printf(&b, "</name><memory unit='MiB'>%lld</memory>", mem);
    wlm_buf_printf(&b, "<vcpu placement='static' current='%d'>%d</vcpu>", vcpus, maxv);
    if (s->cpu_shares > 0 && !d->is_test)
        wlm_buf_printf(&b, "<cputune><shares>%lld</shares></cputune>", s->cpu_shares);
    if (d->is_test) {
        wlm_buf_printf(&b, "<os><type>hvm</type></os>");
    } else {
        const char *initrd = s->initrd ? s->initrd : d->initramfs;
        wlm_buf_printf(&b, "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>");
        lv_xml_esc(&b, d->kernel);
        wlm_buf_printf(&b, "</kernel>");
        if (initrd && *initrd) {
            wlm_buf_printf(&b, "<initrd>");
            lv_xml_esc(&b, initrd);
            wlm_buf_printf(&b, "</initrd>");
        }
        /* no_timer_check: on a loaded host TCG is too slow for the
         * kernel's IO-APIC timer check, which then panics at boot. */
        wlm_buf_printf(&b, "<cmdline>console=ttyS0 panic=-1 quiet no_timer_check wlm.job=");
        lv_xml_esc(&b, s->id[0] == '~' ? s->id + 1 : s->id);
        if (s->hostname) {
            wlm_buf_printf(&b, " wlm.hostname=");
            lv_xml_esc(&b, s->hostname);
        }
        if (s->ip) {
            wlm_buf_printf(&b, " wlm.ip=");
            lv_xml_esc(&b, s->ip);
        }
        /* Without ACPI the guest's poweroff only halts and the domain
         * would never stop. */
        wlm_buf_printf(&b, "</cmdline></os><features><acpi/></features>");
    }
    wlm_buf_printf(&b, "<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>"
                       "<on_crash>destroy</on_crash><devices>");
    if (s->image && *s->image && !d->is_test) {
        wlm_buf_printf(&b, "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                           "<source file='");
        lv_xml_esc(&b, s->image);
        wlm_buf_printf(&b, "'/><target dev='vda' bus='virtio'/></disk>");
    }
    if (s->mac && *s->mac && !d->is_test) {
        wlm_buf_printf(&b, "<interface type='user'><mac address='");
        lv_xml_esc(&b, s->mac);
        wlm_buf_printf(&b, "'/><model type='virtio'/></interface>");
    }
    if (s->console && *s->console && !d->is_test) {
        wlm_buf_printf(&b, "<serial type='file'><source path='");
        lv_xml_esc(&b, s->console);
        wlm_buf_printf(&b, "' append='on'/><target port='0'/></serial>");
    }
    if (s->channel && *s->channel && !d->is_test) {
        wlm_buf_printf(&b, "<channel type='unix'><source mode='bind' path='");
        lv_xml_esc(&b, s->channel);
        wlm_buf_printf(&b, "'/><target type='virtio' name='wlm.job'/></channel>");
    }
    if (!d->is_test)
        wlm_buf_printf(&b, "<memballoon model='none'/>");
    wlm_buf_printf(&b, "</devices></domain>");
    return wlm_buf_steal(&b);
}

static int lv_start(struct nodeagent_driver *dd, const struct nodeagent_spec *s,
                    struct wlm_error *err)
{
    struct lv_driver *d = LV(dd);
    if (!d->is_test && (!d->kernel || !*d->kernel))
        return wlm_error_setf(err, WLM_EINVAL, "kernel", "no kernel configured for job VMs");
    char *xml = lv_domain_xml(d, s);
    if (!xml)
        return wlm_error_set(err, ENOMEM, "out of memory");
    virDomainPtr dom = virDomainCreateXML(d->conn, xml, 0);
    free(xml);
    if (!dom) {
        char name[200], what[900];
        lv_dom_name(s->id, name, sizeof(name));
        snprintf(what, sizeof(what), "cannot create job VM %s (%s)", name, d->describe);
        return lv_fail(err, what, NULL);
    }
    virDomainFree(dom);
    return 0;
}

static int lv_simple(struct nodeagent_driver *dd, const char *id, int (*fn)(virDomainPtr),
                     const char *what, struct wlm_error *err)
{
    virDomainPtr dom = lv_lookup(LV(dd), id, err);
    if (!dom)
        return err ? err->code : -WLM_ENOTFOUND;
    int r = fn(dom) < 0 ? lv_fail(err, what, id) : 0;
    virDomainFree(dom);
    return r;
}

static int lv_pause(struct nodeagent_driver *d, const char *id, struct wlm_error *err)
{
    return lv_simple(d, id, virDomainSuspend, "pause", err);
}

static int lv_resume(struct nodeagent_driver *d, const char *id, struct wlm_error *err)
{
    return lv_simple(d, id, virDomainResume, "resume", err);
}

static int lv_suspend(struct nodeagent_driver *dd, const char *id, const char *path,
                      struct wlm_error *err)
{
    virDomainPtr dom = lv_lookup(LV(dd), id, err);
    if (!dom)
        return err ? err->code : -WLM_ENOTFOUND;
    /* Save running, whatever state it was in, so a restore continues the job. */
    /* The test driver takes no flags. */
    unsigned flags = LV(dd)->is_test ? 0 : VIR_DOMAIN_SAVE_RUNNING;
    int r = virDomainSaveFlags(dom, path, NULL, flags) < 0 ? lv_fail(err, "save", id) : 0;
    virDomainFree(dom);
    return r;
}

/* Replace the console path inside a saved domain's XML so the restored
 * domain logs into this node's job directory. */
static char *replace_console(const char *xml, const char *console)
{
    const char *p = strstr(xml, "<serial type='file'>");
    if (!p)
        p = strstr(xml, "<serial type=\"file\">");
    if (!p || !console)
        return wlm_strdup(xml);
    const char *src = strstr(p, "path=");
    if (!src)
        return wlm_strdup(xml);
    char q = src[5];
    const char *start = src + 6;
    const char *end = strchr(start, q);
    if (!end)
        return wlm_strdup(xml);
    struct wlm_buf b;
    wlm_buf_init(&b);
    wlm_buf_append(&b, xml, (size_t)(start - xml));
    lv_xml_esc(&b, console);
    wlm_buf_append(&b, end, strlen(end));
    return wlm_buf_steal(&b);
}

static int lv_restore(struct nodeagent_driver *dd, const char *id, const char *path,
                      const char *console, struct wlm_error *err)
{
    struct lv_driver *d = LV(dd);
    char *dxml = NULL;
    if (console && !d->is_test) {
        char *orig = virDomainSaveImageGetXMLDesc(d->conn, path, VIR_DOMAIN_SAVE_IMAGE_XML_SECURE);
        if (!orig)
            return lv_fail(err, "read save image", id);
        dxml = replace_console(orig, console);
        free(orig);
    }
    unsigned flags = d->is_test ? 0 : VIR_DOMAIN_SAVE_RUNNING;
    int r = virDomainRestoreFlags(d->conn, path, dxml, flags) < 0 ? lv_fail(err, "restore", id) : 0;
    free(dxml);
    return r;
}

/* Live migration, managed by this client (no peer-to-peer: the two
 * hypervisors need not trust each other). On success the transient source
 * domain is gone and the destination runs the guest; the destination
 * keeps the completed job's statistics (downtime) from the migration
 * cookie. */
static int lv_migrate(struct nodeagent_driver *dd, const char *id, const char *dest_uri,
                      struct nodeagent_migrate_stats *st, struct wlm_error *err)
{
    struct lv_driver *d = LV(dd);
    if (st)
        *st = (struct nodeagent_migrate_stats){-1, -1, -1};
    if (d->is_test)
        return wlm_error_set(err, WLM_EUNSUPPORTED,
                             "migrate %s: the test driver does not support migration", id);
    if (!dest_uri || !*dest_uri || !strcmp(dest_uri, d->uri))
        return wlm_error_set(err, WLM_EUNSUPPORTED,
                             "migrate %s: no distinct destination hypervisor", id);
    virDomainPtr dom = lv_lookup(d, id, err);
    if (!dom)
        return err ? err->code : -WLM_ENOTFOUND;
    virConnectPtr dconn = virConnectOpen(dest_uri);
    int r = 0;
    if (!dconn) {
        r = lv_fail(err, "connect to destination", dest_uri);
    } else {
        /* Disks on storage both sides see (the operator says so): libvirt
         * cannot tell that from a local filesystem, hence UNSAFE. */
        unsigned flags = VIR_MIGRATE_LIVE | (d->disks_shared ? VIR_MIGRATE_UNSAFE : 0);
        virDomainPtr nd = virDomainMigrate3(dom, dconn, NULL, 0, flags);
        if (!nd) {
            r = lv_fail(err, "migrate", id);
        } else {
            int type = 0, np = 0;
            virTypedParameterPtr params = NULL;
            if (st && virDomainGetJobStats(nd, &type, &params, &np,
                                           VIR_DOMAIN_JOB_STATS_COMPLETED) == 0) {
                unsigned long long v;
                if (virTypedParamsGetULLong(params, np, VIR_DOMAIN_JOB_DOWNTIME, &v) == 1)
                    st->downtime_ms = (double)v;
                if (virTypedParamsGetULLong(params, np, VIR_DOMAIN_JOB_TIME_ELAPSED, &v) == 1)
                    st->total_ms = (double)v;
                if (virTypedParamsGetULLong(params, np, VIR_DOMAIN_JOB_MEMORY_PROCESSED, &v) == 1)
                    st->data_bytes = (long long)v;
                virTypedParamsFree(params, np);
            }
            virResetLastError();
            virDomainFree(nd);
        }
        virConnectClose(dconn);
    }
    virDomainFree(dom);
    return r;
}

/* "0-1,3" -> bitmap; returns -1 on a bad list. */
static int parse_cpulist(const char *s, unsigned char *map, int maplen, int ncpus)
{
    memset(map, 0, (size_t)maplen);
    char *copy = wlm_strdup(s), *save = NULL;
    int ok = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        long a = strtol(t, &end, 10), b = a;
        if (end == t)
            goto bad;
        if (*end == '-') {
            char *e2;
            b = strtol(end + 1, &e2, 10);
            if (e2 == end + 1 || *e2)
                goto bad;
        } else if (*end) {
            goto bad;
        }
        if (a < 0 || b < a || b >= ncpus)
            goto bad;
        for (long c = a; c <= b; c++)
            map[c / 8] |= (unsigned char)(1u << (c % 8));
        ok = 1;
    }
    free(copy);
    return ok ? 0 : -1;
bad:
    free(copy);
    return -1;
}

static int lv_resize(struct nodeagent_driver *dd, const char *id, const struct nodeagent_resize *r,
                     struct wlm_error *err)
{
    struct lv_driver *d = LV(dd);
    virDomainPtr dom = lv_lookup(d, id, err);
    if (!dom)
        return err ? err->code : -WLM_ENOTFOUND;
    int rc = 0;
    if (r->vcpus > 0 &&
        virDomainSetVcpusFlags(dom, (unsigned)r->vcpus, VIR_DOMAIN_AFFECT_LIVE) < 0) {
        rc = lv_fail(err, "set vcpus", id);
        goto out;
    }
    if (r->pin && *r->pin) {
        virNodeInfo ni;
        if (virNodeGetInfo(d->conn, &ni) < 0) {
            rc = lv_fail(err, "virNodeGetInfo", id);
            goto out;
        }
        int ncpus = (int)ni.cpus, maplen = VIR_CPU_MAPLEN(ncpus);
        unsigned char *map = calloc(1, (size_t)maplen);
        char *copy = wlm_strdup(r->pin), *save = NULL;
        unsigned v = 0;
        for (char *t = strtok_r(copy, ";", &save); t && !rc; t = strtok_r(NULL, ";", &save), v++) {
            if (parse_cpulist(t, map, maplen, ncpus) < 0) {
                rc = wlm_error_setf(err, WLM_EINVAL, "pin",
                                    "pin: '%s' is not a CPU list within 0-%d", t, ncpus - 1);
            } else if (virDomainPinVcpu(dom, v, map, maplen) < 0) {
                rc = lv_fail(err, "pin vcpu", id);
            }
        }
        free(copy);
        free(map);
        if (rc)
            goto out;
    }
    if (r->cpu_shares > 0 || r->vcpu_quota_us != 0 || r->period_us > 0) {
        virTypedParameterPtr params = NULL;
        int n = 0, maxp = 0;
        if (r->cpu_shares > 0)
            virTypedParamsAddULLong(&params, &n, &maxp, VIR_DOMAIN_SCHEDULER_CPU_SHARES,
                                    (unsigned long long)r->cpu_shares);
        if (r->period_us > 0)
            virTypedParamsAddULLong(&params, &n, &maxp, VIR_DOMAIN_SCHEDULER_VCPU_PERIOD,
                                    (unsigned long long)r->period_us);
        if (r->vcpu_quota_us != 0)
            virTypedParamsAddLLong(&params, &n, &maxp, VIR_DOMAIN_SCHEDULER_VCPU_QUOTA,
                                   r->vcpu_quota_us);
        if (virDomainSetSchedulerParametersFlags(dom, params, n, VIR_DOMAIN_AFFECT_LIVE) < 0) {
            virErrorPtr e = virGetLastError();
            if (d->is_test ||
                (e && (e->code == VIR_ERR_NO_SUPPORT || e->code == VIR_ERR_ARGUMENT_UNSUPPORTED ||
                       e->code == VIR_ERR_INVALID_ARG))) {
                rc = wlm_error_set(err, WLM_EUNSUPPORTED,
                                   "resize %s: CPU cap (cpu_shares/vcpu_quota) unsupported by "
                                   "this driver: %s",
                                   id, e && e->message ? e->message : "no support");
                virResetLastError();
            } else {
                rc = lv_fail(err, "set scheduler parameters", id);
            }
        }
        virTypedParamsFree(params, n);
    }
out:
    virDomainFree(dom);
    return rc;
}

static int lv_stop(struct nodeagent_driver *dd, const char *id, int force, struct wlm_error *err)
{
    struct lv_driver *d = LV(dd);
    virDomainPtr dom = lv_lookup(d, id, err);
    if (!dom)
        return err ? err->code : -WLM_ENOTFOUND;
    int r = 0;
    if (!force) {
        /* ACPI shutdown; a guest that ignores it (a busybox init has no
         * acpid) is destroyed after a grace period. */
        if (virDomainShutdown(dom) == 0) {
            for (int i = 0; i < 50 && virDomainIsActive(dom) == 1; i++)
                usleep(100000);
        }
        virResetLastError();
    }
    if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
        r = lv_fail(err, "destroy", id);
    virResetLastError();
    virDomainFree(dom);
    return r;
}

static int lv_destroy(struct nodeagent_driver *dd, const char *id, struct wlm_error *err)
{
    struct wlm_error e2 = {0};
    virDomainPtr dom = lv_lookup(LV(dd), id, &e2);
    if (!dom)
        return e2.code == -WLM_ENOTFOUND ? 0 : (err ? (*err = e2, e2.code) : e2.code);
    int r = 0;
    int active = virDomainIsActive(dom);
    if (active == 1 && virDomainDestroy(dom) < 0)
        r = lv_fail(err, "destroy", id);
    /* A persistent definition (someone defined it by hand) goes too. */
    if (!r && virDomainIsPersistent(dom) == 1 && virDomainUndefine(dom) < 0)
        r = lv_fail(err, "undefine", id);
    virResetLastError();
    virDomainFree(dom);
    if (!r)
        lv_alias_drop(LV(dd), id);
    return r;
}

static enum nodeagent_wl_state map_state(int s)
{
    switch (s) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED: return NODEAGENT_WL_RUNNING;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED: return NODEAGENT_WL_PAUSED;
    case VIR_DOMAIN_SHUTOFF:
    case VIR_DOMAIN_SHUTDOWN: return NODEAGENT_WL_SHUTOFF;
    case VIR_DOMAIN_CRASHED: return NODEAGENT_WL_CRASHED;
    default: return NODEAGENT_WL_OTHER;
    }
}

/* CPU time of the whole VM for energy attribution: the domain cgroup's
 * cpu_time counts the vCPUs and QEMU's own threads (emulation, I/O); the
 * vCPUs alone are vcpu_seconds. Kept as virDomainGetInfo's when the
 * hypervisor has no cgroup statistics. */
static void lv_cpu_time(virDomainPtr dom, struct nodeagent_wl_info *out)
{
    int n = virDomainGetCPUStats(dom, NULL, 0, -1, 1, 0);
    if (n <= 0) {
        virResetLastError();
        return;
    }
    virTypedParameterPtr p = calloc((size_t)n, sizeof(*p));
    if (p && virDomainGetCPUStats(dom, p, (unsigned)n, -1, 1, 0) > 0) {
        unsigned long long v;
        if (virTypedParamsGetULLong(p, n, VIR_DOMAIN_CPU_STATS_CPUTIME, &v) == 1 &&
            (double)v / 1e9 >= out->cpu_seconds)
            out->cpu_seconds = (double)v / 1e9;
        if (virTypedParamsGetULLong(p, n, VIR_DOMAIN_CPU_STATS_VCPUTIME, &v) == 1)
            out->vcpu_seconds = (double)v / 1e9;
        virTypedParamsClear(p, n);
    }
    free(p);
    if (out->vcpu_seconds <= 0 && out->vcpus > 0) {
        /* Older libvirt has no vcpu_time in the totals: sum the vCPUs. */
        virVcpuInfoPtr vi = calloc((size_t)out->vcpus, sizeof(*vi));
        int nv = vi ? virDomainGetVcpus(dom, vi, out->vcpus, NULL, 0) : -1;
        double sum = 0;
        for (int i = 0; i < nv; i++)
            sum += (double)vi[i].cpuTime / 1e9;
        if (nv > 0)
            out->vcpu_seconds = sum;
        free(vi);
    }
    virResetLastError();
}

void lv_fill_info(struct lv_driver *d, virDomainPtr dom, struct nodeagent_wl_info *out)
{
    memset(out, 0, sizeof(*out));
    const char *name = virDomainGetName(dom);
    if (name && !strncmp(name, DOM_PREFIX, strlen(DOM_PREFIX))) {
        wlm_strlcpy(out->id, name + strlen(DOM_PREFIX), sizeof(out->id));
    } else if (name && !strncmp(name, POOL_PREFIX, strlen(POOL_PREFIX))) {
        char job[128];
        lv_meta_job(dom, job, sizeof(job));
        if (job[0]) {
            lv_alias_set(d, job, name);
            wlm_strlcpy(out->id, job, sizeof(out->id));
        } else {
            snprintf(out->id, sizeof(out->id), "~%s", name + strlen(POOL_PREFIX));
        }
    } else {
        wlm_strlcpy(out->id, name ? name : "", sizeof(out->id));
    }
    virDomainGetUUIDString(dom, out->uuid);
    virDomainInfo di;
    if (virDomainGetInfo(dom, &di) == 0) {
        out->state = map_state(di.state);
        out->cpu_seconds = (double)di.cpuTime / 1e9;
        out->memory_kb = (long long)di.memory;
        out->vcpus = di.nrVirtCpu;
    }
    out->cpu_shares = -1;
    out->vcpu_quota_us = 0;
    if (!d->is_test && out->state != NODEAGENT_WL_SHUTOFF)
        lv_cpu_time(dom, out);
    if (!d->is_test && out->state != NODEAGENT_WL_SHUTOFF) {
        virTypedParameterPtr params = NULL;
        int n = 0;
        char *type = virDomainGetSchedulerType(dom, &n);
        free(type);
        if (n > 0) {
            params = calloc((size_t)n, sizeof(*params));
            if (params && virDomainGetSchedulerParametersFlags(dom, params, &n,
                                                               VIR_DOMAIN_AFFECT_LIVE) == 0) {
                unsigned long long u;
                long long l;
                if (virTypedParamsGetULLong(params, n, VIR_DOMAIN_SCHEDULER_CPU_SHARES, &u) == 1)
                    out->cpu_shares = (long long)u;
                if (virTypedParamsGetLLong(params, n, VIR_DOMAIN_SCHEDULER_VCPU_QUOTA, &l) == 1)
                    out->vcpu_quota_us = l;
                if (virTypedParamsGetULLong(params, n, VIR_DOMAIN_SCHEDULER_VCPU_PERIOD, &u) == 1)
                    out->period_us = (long long)u;
                virTypedParamsClear(params, n);
            }
            free(params);
        }
    }
    virResetLastError();
}

static int lv_info(struct nodeagent_driver *dd, const char *id, struct nodeagent_wl_info *out,
                   struct wlm_error *err)
{
    virDomainPtr dom = lv_lookup(LV(dd), id, err);
    if (!dom)
        return err ? err->code : -WLM_ENOTFOUND;
    lv_fill_info(LV(dd), dom, out);
    virDomainFree(dom);
    return 0;
}

static int lv_list(struct nodeagent_driver *dd, struct nodeagent_wl_info **out, size_t *nout,
                   struct wlm_error *err)
{
    struct lv_driver *d = LV(dd);
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(d->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (n < 0)
        return lv_fail(err, "list domains", NULL);
    struct nodeagent_wl_info *arr = calloc((size_t)n + 1, sizeof(*arr));
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const char *name = virDomainGetName(doms[i]);
        if (arr && name && !strncmp(name, DOM_PREFIX, strlen(DOM_PREFIX))) {
            lv_fill_info(d, doms[i], &arr[k++]);
        } else if (arr && name && !strncmp(name, POOL_PREFIX, strlen(POOL_PREFIX))) {
            /* Claimed pool domains are jobs; parked ones are not. */
            lv_fill_info(d, doms[i], &arr[k]);
            if (arr[k].id[0] != '~')
                k++;
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    if (!arr)
        return wlm_error_set(err, ENOMEM, "out of memory");
    *out = arr;
    *nout = k;
    return 0;
}

static void lv_free(struct nodeagent_driver *dd)
{
    struct lv_driver *d = LV(dd);
    if (!d)
        return;
    if (d->callback_id >= 0)
        virConnectDomainEventDeregisterAny(d->conn, d->callback_id);
    if (d->conn)
        virConnectClose(d->conn);
    free(d->alias);
    pthread_mutex_destroy(&d->mu);
    free(d->uri);
    free(d->kernel);
    free(d->initramfs);
    free(d);
}

const struct nodeagent_driver_ops lv_ops = {
    .name = "libvirt",
    .node_info = lv_node_info,
    .start = lv_start,
    .pause = lv_pause,
    .resume = lv_resume,
    .suspend = lv_suspend,
    .restore = lv_restore,
    .migrate = lv_migrate,
    .resize = lv_resize,
    .stop = lv_stop,
    .destroy = lv_destroy,
    .info = lv_info,
    .list = lv_list,
    .free = lv_free,
};

struct nodeagent_driver *nodeagent_libvirt_new(const struct nodeagent_libvirt_opts *o,
                                               struct wlm_error *err)
{
    struct lv_driver *d = calloc(1, sizeof(*d));
    if (!d) {
        wlm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    d->base.ops = &lv_ops;
    d->callback_id = -1;
    pthread_mutex_init(&d->mu, NULL);
    d->uri = wlm_strdup(o->uri);
    d->kernel = wlm_strdup(o->kernel ? o->kernel : "");
    d->initramfs = wlm_strdup(o->initramfs ? o->initramfs : "");
    d->is_test = !strncmp(o->uri, "test:", 5);
    wlm_strlcpy(d->vm_type, o->vm_type && *o->vm_type ? o->vm_type : "qemu", sizeof(d->vm_type));
    d->disks_shared = o->disks_shared;
    virSetErrorFunc(NULL, lv_quiet);
    d->conn = virConnectOpen(o->uri);
    if (!d->conn) {
        virErrorPtr e = virGetLastError();
        wlm_error_setf(err, WLM_EIO, "libvirt_uri", "cannot connect to libvirt at '%s': %s", o->uri,
                       e && e->message ? e->message : "unknown error");
        virResetLastError();
        lv_free(&d->base);
        return NULL;
    }
    virConnSetErrorFunc(d->conn, NULL, lv_quiet);
    snprintf(d->describe, sizeof(d->describe), "libvirt %s, domain type %s", o->uri,
             d->is_test ? "test" : d->vm_type);
    return &d->base;
}

void *nodeagent_libvirt_conn(struct nodeagent_driver *d)
{
    return d && d->ops == &lv_ops ? LV(d)->conn : NULL;
}
