/* libvirt driver, warm pool side: claimed pool domains (the job id in the
 * domain's metadata, cached in an alias table), the pool's domain list, and
 * the domain facts error messages and reconcile need (state text, disk). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drv_libvirt_int.h"

void lv_alias_set(struct lv_driver *d, const char *job, const char *dom)
{
    pthread_mutex_lock(&d->mu);
    size_t i;
    for (i = 0; i < d->nalias; i++)
        if (!strcmp(d->alias[i].job, job) || !strcmp(d->alias[i].dom, dom))
            break;
    if (i == d->nalias) {
        struct lv_alias *na = realloc(d->alias, (d->nalias + 1) * sizeof(*na));
        if (!na) {
            pthread_mutex_unlock(&d->mu);
            return;
        }
        d->alias = na;
        d->nalias++;
    }
    wlm_strlcpy(d->alias[i].job, job, sizeof(d->alias[i].job));
    wlm_strlcpy(d->alias[i].dom, dom, sizeof(d->alias[i].dom));
    pthread_mutex_unlock(&d->mu);
}

/* Domain name of a claimed job, or "" ; `by_dom` looks up the other way. */
int lv_alias_get(struct lv_driver *d, const char *key, int by_dom, char *out, size_t n)
{
    int found = 0;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->nalias && !found; i++) {
        if (!strcmp(by_dom ? d->alias[i].dom : d->alias[i].job, key)) {
            wlm_strlcpy(out, by_dom ? d->alias[i].job : d->alias[i].dom, n);
            found = 1;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return found;
}

void lv_alias_drop(struct lv_driver *d, const char *job)
{
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->nalias; i++) {
        if (!strcmp(d->alias[i].job, job)) {
            d->alias[i] = d->alias[--d->nalias];
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

/* The job id in a pool domain's metadata ("" when unclaimed). */
void lv_meta_job(virDomainPtr dom, char *out, size_t n)
{
    out[0] = '\0';
    char *m =
        virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, META_NS, VIR_DOMAIN_AFFECT_LIVE);
    virResetLastError();
    if (!m)
        return;
    const char *p = strstr(m, "id=");
    if (p && (p[3] == '\'' || p[3] == '"')) {
        char q = p[3];
        const char *e = strchr(p + 4, q);
        if (e && (size_t)(e - (p + 4)) < n) {
            memcpy(out, p + 4, (size_t)(e - (p + 4)));
            out[e - (p + 4)] = '\0';
        }
    }
    free(m);
}

/* Refresh the alias table from the metadata of live pool domains. */
void lv_alias_scan(struct lv_driver *d)
{
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(d->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    for (int i = 0; i < n; i++) {
        const char *name = virDomainGetName(doms[i]);
        if (name && !strncmp(name, POOL_PREFIX, strlen(POOL_PREFIX))) {
            char job[128];
            lv_meta_job(doms[i], job, sizeof(job));
            if (job[0])
                lv_alias_set(d, job, name);
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    virResetLastError();
}

int nodeagent_libvirt_claim(struct nodeagent_driver *dd, const char *pool_id, const char *job,
                            struct wlm_error *err)
{
    if (!dd || dd->ops != &lv_ops || pool_id[0] != '~')
        return wlm_error_set(err, WLM_EINVAL, "claim: not a pool domain of a libvirt driver");
    struct lv_driver *d = LV(dd);
    virDomainPtr dom = lv_lookup(d, pool_id, err);
    if (!dom)
        return err ? err->code : -WLM_ENOTFOUND;
    struct wlm_buf b;
    wlm_buf_init(&b);
    wlm_buf_printf(&b, "<job id='");
    lv_xml_esc(&b, job);
    wlm_buf_printf(&b, "'/>");
    char *xml = wlm_buf_steal(&b);
    int r = 0;
    if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, "wlm", META_NS,
                             VIR_DOMAIN_AFFECT_LIVE) < 0) {
        r = lv_fail(err, "claim (set metadata)", pool_id);
    } else {
        lv_alias_set(d, job, virDomainGetName(dom));
        if (!d->is_test) {
            /* Pool VMs boot at low CPU shares; the job gets the default. */
            virTypedParameterPtr params = NULL;
            int n = 0, maxp = 0;
            virTypedParamsAddULLong(&params, &n, &maxp, VIR_DOMAIN_SCHEDULER_CPU_SHARES, 1024);
            virDomainSetSchedulerParametersFlags(dom, params, n, VIR_DOMAIN_AFFECT_LIVE);
            virTypedParamsFree(params, n);
            virResetLastError();
        }
    }
    free(xml);
    virDomainFree(dom);
    return r;
}

int nodeagent_libvirt_pool_list(struct nodeagent_driver *dd, const char *prefix,
                                struct nodeagent_wl_info **out, size_t *nout, struct wlm_error *err)
{
    if (!dd || dd->ops != &lv_ops)
        return wlm_error_set(err, WLM_EINVAL, "not a libvirt driver");
    struct lv_driver *d = LV(dd);
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(d->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (n < 0)
        return lv_fail(err, "list domains", NULL);
    struct nodeagent_wl_info *arr = calloc((size_t)n + 1, sizeof(*arr));
    size_t k = 0;
    char want[200];
    snprintf(want, sizeof(want), POOL_PREFIX "%s", prefix ? prefix : "");
    for (int i = 0; i < n; i++) {
        const char *name = virDomainGetName(doms[i]);
        if (arr && name && !strncmp(name, want, strlen(want))) {
            lv_fill_info(d, doms[i], &arr[k]);
            if (arr[k].id[0] == '~')
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

static const char *reason_text(int state, int reason)
{
    switch (state) {
    case VIR_DOMAIN_RUNNING: (void)reason; return "running";
    case VIR_DOMAIN_PAUSED:
        switch (reason) {
        case VIR_DOMAIN_PAUSED_USER: return "paused by the agent";
        case VIR_DOMAIN_PAUSED_STARTING_UP: return "QEMU still starting up";
        case VIR_DOMAIN_PAUSED_IOERROR: return "I/O error";
        case VIR_DOMAIN_PAUSED_CRASHED: return "guest crashed";
        default: return "paused";
        }
    case VIR_DOMAIN_BLOCKED: return "blocked";
    case VIR_DOMAIN_SHUTOFF: return "shut off";
    case VIR_DOMAIN_CRASHED: return "crashed";
    default: return "state unknown";
    }
}

void nodeagent_libvirt_state_text(struct nodeagent_driver *dd, const char *id, char *out, size_t n)
{
    snprintf(out, n, "gone");
    if (!dd || dd->ops != &lv_ops)
        return;
    virDomainPtr dom = lv_lookup(LV(dd), id, NULL);
    if (!dom)
        return;
    int st = 0, reason = 0;
    if (virDomainGetState(dom, &st, &reason, 0) == 0) {
        virDomainInfo di;
        double cpu = virDomainGetInfo(dom, &di) == 0 ? (double)di.cpuTime / 1e9 : -1;
        snprintf(out, n, "%s, %.2f s of guest CPU used", reason_text(st, reason), cpu);
    }
    virResetLastError();
    virDomainFree(dom);
}

/* The quoted value that follows `attr` (e.g. "<source path=") after the first
 * `elem` in a domain's live XML, copied to out[n]: the file behind its serial
 * console or its disk. -WLM_ENOTFOUND when there is none (or it does not
 * fit). */
static int domain_xml_source(struct nodeagent_driver *dd, const char *id, const char *elem,
                             const char *attr, char *out, size_t n)
{
    out[0] = '\0';
    if (!dd || dd->ops != &lv_ops)
        return -WLM_EINVAL;
    virDomainPtr dom = lv_lookup(LV(dd), id, NULL);
    if (!dom)
        return -WLM_ENOTFOUND;
    char *xml = virDomainGetXMLDesc(dom, 0);
    virResetLastError();
    virDomainFree(dom);
    const char *at = xml ? strstr(xml, elem) : NULL;
    const char *src = at ? strstr(at, attr) : NULL;
    if (src) {
        size_t al = strlen(attr);
        char q = src[al];
        const char *b = src + al + 1, *e = strchr(b, q);
        if (e && (size_t)(e - b) < n) {
            memcpy(out, b, (size_t)(e - b));
            out[e - b] = '\0';
        }
    }
    free(xml);
    return out[0] ? 0 : -WLM_ENOTFOUND;
}

int nodeagent_libvirt_console_path(struct nodeagent_driver *dd, const char *id, char *out, size_t n)
{
    return domain_xml_source(dd, id, "<serial type='file'>", "<source path=", out, n);
}

int nodeagent_libvirt_disk_path(struct nodeagent_driver *dd, const char *id, char *out, size_t n)
{
    return domain_xml_source(dd, id, "<disk", "<source file=", out, n);
}

const char *nodeagent_libvirt_describe(struct nodeagent_driver *dd)
{
    return dd && dd->ops == &lv_ops ? LV(dd)->describe : "not libvirt";
}

int nodeagent_libvirt_job_active(struct nodeagent_driver *dd, const char *id)
{
    if (!dd || dd->ops != &lv_ops)
        return 0;
    virDomainPtr dom = lv_lookup(LV(dd), id, NULL);
    if (!dom)
        return 0;
    virDomainJobInfo ji;
    int active = virDomainGetJobInfo(dom, &ji) == 0 && ji.type != VIR_DOMAIN_JOB_NONE;
    virResetLastError();
    virDomainFree(dom);
    return active;
}
