/* The agent: registration, heartbeat, power reporting, the HTTP server and
 * the bridge from libvirt's event thread to the libuv loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actions_int.h"
#include "internal.h"

static void hb_schedule(struct nodeagent *a, uint64_t ms);
static void reg_schedule(struct nodeagent *a, uint64_t ms);
static void na_proc_exit_json(struct nodeagent *a, const struct nodeagent_wl_info *wi, json_t *o);

void na_pending_inc(struct nodeagent *a)
{
    a->pending++;
}

void na_pending_dec(struct nodeagent *a)
{
    if (--a->pending == 0 && a->stopping && a->stop_done) {
        void (*done)(void *) = a->stop_done;
        a->stop_done = NULL;
        done(a->stop_ud);
    }
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[1024];
    wlm_strlcpy(tmp, path, sizeof(tmp));
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, mode) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Newest /boot/vmlinuz-* (lexical order is good enough for Debian names). */
static void find_kernel(char *out, size_t size)
{
    FILE *p = popen("ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1", "r");
    out[0] = '\0';
    if (!p)
        return;
    if (fgets(out, (int)size, p))
        out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

/* ------------------------------------------------------------ events */

static void ev_from_libvirt(const char *id, int event, int detail, int stopped, void *ud)
{
    /* Runs on libvirt's event thread: queue and wake the loop. */
    struct nodeagent *a = ud;
    pthread_mutex_lock(&a->ev_mu);
    if (a->nev == a->capev) {
        size_t nc = a->capev ? a->capev * 2 : 16;
        struct na_event *q = realloc(a->evq, nc * sizeof(*q));
        if (!q) {
            pthread_mutex_unlock(&a->ev_mu);
            return;
        }
        a->evq = q;
        a->capev = nc;
    }
    struct na_event *e = &a->evq[a->nev++];
    wlm_strlcpy(e->id, id, sizeof(e->id));
    e->event = event;
    e->detail = detail;
    e->stopped = stopped;
    pthread_mutex_unlock(&a->ev_mu);
    uv_async_send(&a->ev_async);
}

static void on_ev_async(uv_async_t *h)
{
    struct nodeagent *a = h->data;
    pthread_mutex_lock(&a->ev_mu);
    struct na_event *q = a->evq;
    size_t n = a->nev;
    a->evq = NULL;
    a->nev = a->capev = 0;
    pthread_mutex_unlock(&a->ev_mu);
    for (size_t i = 0; i < n && !a->stopping; i++)
        na_handle_event(a, &q[i]);
    free(q);
}

/* ------------------------------------------------------------ registration */

static void on_register_done(const struct wlm_http_response *resp, const struct wlm_error *err,
                             void *ud)
{
    struct nodeagent *a = ud;
    a->reg_inflight = 0;
    if (!a->stopping) {
        if (err && err->code) {
            a->reg_failures++;
            wlm_warn(NA_COMP, "controller unreachable, will retry", "controller=%s error=\"%s\"",
                     a->cfg.controller, err->msg);
        } else if (resp->status == 200 || resp->status == 201) {
            a->registered = 1;
            a->reg_failures = 0;
            wlm_info(NA_COMP, "registered with controller", "name=%s controller=%s url=%s",
                     a->cfg.name, a->cfg.controller, a->agent_url);
            wlm_counter_add(wlm_metrics_counter(a->metrics, "wlm_nodeagent_registrations_total",
                                                "Successful registrations", NULL),
                            1);
        } else {
            a->reg_failures++;
            wlm_warn(NA_COMP, "registration refused, will retry", "status=%d body=\"%.200s\"",
                     resp->status, resp->body ? resp->body : "");
        }
        if (a->registered) {
            hb_schedule(a, 0); /* tell the controller our usage at once */
        } else {
            /* Exponential backoff from 200 ms up to 10 s. */
            uint64_t ms = 200;
            for (int i = 1; i < a->reg_failures && ms < 10000; i++)
                ms *= 2;
            reg_schedule(a, ms > 10000 ? 10000 : ms);
        }
    }
    na_pending_dec(a);
}

static void do_register(struct nodeagent *a)
{
    json_t *body = json_object();
    json_object_set_new(body, "name", json_string(a->cfg.name));
    json_object_set_new(body, "cores", json_integer(a->node.cores));
    json_object_set_new(body, "mhz", json_integer(a->node.mhz));
    json_object_set_new(body, "memory_mb", json_integer(a->node.memory_mb));
    json_object_set_new(body, "arch", json_string(a->node.arch));
    json_object_set_new(body, "labels", json_deep_copy(a->labels));
    json_object_set_new(body, "agent_url", json_string(a->agent_url));
    char *s = wlm_json_dumps(body);
    json_decref(body);
    char *url = wlm_asprintf("%s/v1/nodes", a->cfg.controller);
    struct wlm_error err = {0};
    a->reg_inflight = 1;
    na_pending_inc(a);
    int r = wlm_http_client_request(a->client, "POST", url, a->cfg.token[0] ? a->cfg.token : NULL,
                                    "application/json", s, s ? strlen(s) : 0, 5000,
                                    on_register_done, a);
    if (r < 0) {
        err.code = r;
        snprintf(err.msg, sizeof(err.msg), "request failed (%d)", r);
        on_register_done(NULL, &err, a);
    }
    free(url);
    free(s);
}

/* ------------------------------------------------------------ heartbeat */

struct hb_work {
    uv_work_t w;
    struct nodeagent *a;
    struct nodeagent_wl_info *vms, *procs;
    size_t nvms, nprocs;
    unsigned long long rapl_uj;
    int rapl_ok;
};

static void hb_collect(uv_work_t *w)
{
    struct hb_work *hw = w->data;
    struct nodeagent *a = hw->a;
    struct wlm_error err = {0};
    if (a->vm && a->vm->ops->list(a->vm, &hw->vms, &hw->nvms, &err) < 0)
        hw->nvms = 0;
    if (a->proc && a->proc->ops->list(a->proc, &hw->procs, &hw->nprocs, &err) < 0)
        hw->nprocs = 0;
    hw->rapl_ok = nodeagent_rapl_read_uj(&hw->rapl_uj) == 0;
}

static struct na_sample *sample_get(struct nodeagent *a, const char *key)
{
    for (size_t i = 0; i < a->nsamples; i++)
        if (!strcmp(a->samples[i].id, key))
            return &a->samples[i];
    struct na_sample *s = realloc(a->samples, (a->nsamples + 1) * sizeof(*s));
    if (!s)
        return NULL;
    a->samples = s;
    s = &a->samples[a->nsamples++];
    memset(s, 0, sizeof(*s));
    wlm_strlcpy(s->id, key, sizeof(s->id));
    s->cpu_seconds = -1;
    return s;
}

static void on_hb_done(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct nodeagent *a = ud;
    a->hb_inflight = 0;
    if (!a->stopping) {
        if (err && err->code) {
            wlm_warn(NA_COMP, "heartbeat failed", "error=\"%s\"", err->msg);
        } else if (resp->status == 404) {
            /* The controller forgot us (new database): register again. */
            wlm_warn(NA_COMP, "controller does not know this node, registering again", "name=%s",
                     a->cfg.name);
            a->registered = 0;
            reg_schedule(a, 0);
        } else if (resp->status >= 300) {
            wlm_warn(NA_COMP, "heartbeat refused", "status=%d body=\"%.200s\"", resp->status,
                     resp->body ? resp->body : "");
        } else {
            wlm_counter_add(wlm_metrics_counter(a->metrics, "wlm_nodeagent_heartbeats_total",
                                                "Heartbeats accepted by the controller", NULL),
                            1);
            /* The answer carries the power budget to keep until the next. */
            json_t *reply = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
            json_t *bw = reply ? json_object_get(reply, "power_budget_w") : NULL;
            if (json_is_number(bw))
                na_budget_set(a, json_number_value(bw), json_object_get(reply, "throttle_order"));
            json_decref(reply);
        }
        hb_schedule(a, (uint64_t)a->cfg.heartbeat_ms);
    }
    na_pending_dec(a);
}

/* Build usage/power from the collected lists and post it. */
static void hb_after(uv_work_t *w, int status)
{
    struct hb_work *hw = w->data;
    struct nodeagent *a = hw->a;
    (void)status;
    if (a->stopping) {
        free(hw->vms);
        free(hw->procs);
        free(hw);
        a->hb_inflight = 0;
        na_pending_dec(a);
        return;
    }
    na_check_jobs(a, hw->vms, hw->nvms);
    double now = wlm_now_mono();
    double dt = a->last_hb_t > 0 ? now - a->last_hb_t : 0;
    a->last_hb_t = now;
    na_sim_tick(a, dt);
    size_t n = hw->nvms + hw->nprocs;
    double *cpu_delta = calloc(n + 1, sizeof(double));
    double *mhz = calloc(n + 1, sizeof(double));
    double mhz_used = 0, mem_used_mb = 0;
    for (size_t i = 0; i < n; i++) {
        const struct nodeagent_wl_info *wi = i < hw->nvms ? &hw->vms[i] : &hw->procs[i - hw->nvms];
        char key[140];
        snprintf(key, sizeof(key), "%s:%s", i < hw->nvms ? "vm" : "proc", wi->id);
        struct na_sample *s = sample_get(a, key);
        if (s && s->cpu_seconds >= 0 && dt > 0 && wi->cpu_seconds >= s->cpu_seconds) {
            cpu_delta[i] = wi->cpu_seconds - s->cpu_seconds;
            mhz[i] = cpu_delta[i] / dt * a->node.mhz;
        }
        if (s) {
            s->cpu_seconds = wi->cpu_seconds;
            s->t = now;
        }
        mhz_used += mhz[i];
        mem_used_mb += (double)wi->memory_kb / 1024.0;
    }
    double cap = (double)a->node.cores * a->node.mhz;
    double util = cap > 0 ? mhz_used / cap : 0;
    double joules = 0;
    const char *source = "model";
    if (!a->powered_on) {
        a->watts = 0;
    } else if (hw->rapl_ok && a->rapl_ok && hw->rapl_uj >= a->rapl_last_uj && dt > 0) {
        joules = (double)(hw->rapl_uj - a->rapl_last_uj) / 1e6;
        a->watts = joules / dt;
        source = "rapl";
    } else {
        a->watts = nodeagent_power_model(a->cfg.idle_watts, a->cfg.max_watts, util,
                                         na_budget_freq_frac(a));
        joules = a->watts * dt;
    }
    if (hw->rapl_ok) {
        a->rapl_ok = 1;
        a->rapl_last_uj = hw->rapl_uj;
    }
    a->energy_j += joules;
    /* Attribute the whole energy of the interval, idle power included, to
     * the workloads by their CPU time (a VM's is its QEMU process's: vCPUs
     * and emulation threads). An interval where nothing used CPU stays with
     * the node (unattributed_j). */
    double *share = calloc(n + 1, sizeof(double));
    nodeagent_energy_split(joules, cpu_delta, n, share);
    double given = 0;
    for (size_t i = 0; i < n; i++)
        given += share[i];
    a->unattributed_j += joules - given;
    struct na_budget_item *items = calloc(n + 1, sizeof(*items));

    json_t *doms = json_array(), *procs = json_array();
    json_t *jobs = na_jobs_json(a); /* job id -> record fields */
    for (size_t i = 0; i < n; i++) {
        const struct nodeagent_wl_info *wi = i < hw->nvms ? &hw->vms[i] : &hw->procs[i - hw->nvms];
        char key[140];
        snprintf(key, sizeof(key), "%s:%s", i < hw->nvms ? "vm" : "proc", wi->id);
        struct na_sample *s = sample_get(a, key);
        if (s)
            s->energy_j += share[i];
        json_t *o = json_object();
        json_object_set_new(o, i < hw->nvms ? "job" : "instance", json_string(wi->id));
        json_object_set_new(o, "state", json_string(nodeagent_wl_state_name(wi->state)));
        json_object_set_new(o, "domain_state", json_string(nodeagent_wl_state_name(wi->state)));
        json_object_set_new(o, "cpu_mhz", json_real(mhz[i]));
        json_object_set_new(o, "memory_mb", json_real((double)wi->memory_kb / 1024.0));
        json_object_set_new(o, "energy_j", json_real(s ? s->energy_j : 0));
        if (items) {
            items[i].id = wi->id;
            items[i].is_vm = i < hw->nvms;
            items[i].vcpus = wi->vcpus;
            items[i].mhz = mhz[i];
            items[i].quota = wi->vcpu_quota_us;
            items[i].period = wi->period_us;
        }
        if (i < hw->nvms) {
            json_object_set_new(o, "vcpus", json_integer(wi->vcpus));
            json_object_set_new(o, "cpu_seconds", json_real(wi->cpu_seconds));
            if (wi->vcpu_seconds > 0)
                json_object_set_new(o, "vcpu_seconds", json_real(wi->vcpu_seconds));
            json_t *rec = jobs ? json_object_get(jobs, wi->id) : NULL;
            if (rec) {
                /* "state" is the job's state in the repository (running,
                 * paused, finished, failed, ...); the hypervisor's view is
                 * domain_state. */
                json_object_update_missing(o, rec);
                json_object_set(o, "state", json_object_get(rec, "job_state"));
            }
            json_array_append_new(doms, o);
        } else {
            json_object_set_new(o, "pid", json_integer(wi->pid));
            /* Measured, cumulative: the profiler divides the CPU by the
             * requests completed; the wait is CPU delay, not app delay. */
            json_object_set_new(o, "cpu_seconds", json_real(wi->cpu_seconds));
            json_object_set_new(o, "cpu_wait_seconds", json_real(wi->cpu_wait_seconds));
            if (wi->cpu_source)
                json_object_set_new(o, "cpu_source", json_string(wi->cpu_source));
            if (wi->state == NODEAGENT_WL_SHUTOFF)
                na_proc_exit_json(a, wi, o);
            json_array_append_new(procs, o);
        }
    }
    /* Jobs without a live domain (finished, suspended) still matter to the
     * controller: it learns completion and exit status from here. */
    const char *jk;
    json_t *jv;
    json_object_foreach(jobs, jk, jv)
    {
        int live = 0;
        for (size_t i = 0; i < hw->nvms; i++)
            if (!strcmp(hw->vms[i].id, jk))
                live = 1;
        if (!live) {
            json_t *o = json_deep_copy(jv);
            json_object_set_new(o, "job", json_string(jk));
            json_object_set(o, "state", json_object_get(jv, "job_state"));
            json_object_set_new(o, "domain_state", json_string("none"));
            json_array_append_new(doms, o);
        }
    }
    json_decref(jobs);

    json_t *usage = json_object();
    json_object_set_new(usage, "cpu_mhz_used", json_real(mhz_used));
    json_object_set_new(usage, "memory_mb_used", json_real(mem_used_mb));
    a->placed_mem_mb = (long long)mem_used_mb; /* read by the warm pool thread */
    json_object_set_new(usage, "domains", doms);
    json_object_set_new(usage, "processes", procs);
    json_t *power = json_object();
    json_object_set_new(power, "state", json_string(a->powered_on ? "on" : "off"));
    json_object_set_new(power, "watts", json_real(a->watts));
    json_object_set_new(power, "energy_j", json_real(a->energy_j));
    json_object_set_new(power, "source", json_string(source));
    json_object_set_new(power, "idle_w", json_real(a->cfg.idle_watts));
    json_object_set_new(power, "max_w", json_real(a->cfg.max_watts));
    json_object_set_new(power, "unattributed_j", json_real(a->unattributed_j));
    /* Keep the budget: act on this measurement, report what was done. */
    if (items) {
        size_t ni = 0;
        for (size_t i = 0; i < n; i++)
            if (items[i].id && items[i].id[0] != '~') /* parked pool VMs are not workloads */
                items[ni++] = items[i];
        na_budget_tick(a, a->watts, items, ni);
    }
    json_t *bj = na_budget_json(a);
    if (bj)
        json_object_set_new(power, "budget", bj);
    json_t *body = json_object();
    json_object_set_new(body, "usage", usage);
    json_object_set_new(body, "power", power);
    /* The controller learns what the node can do: "test" runs nothing
     * inside its VMs (jobs there are simulated). */
    json_object_set_new(body, "driver",
                        json_string(!strncmp(a->cfg.libvirt_uri, "test:", 5) ? "test"
                                    : !strcmp(a->cfg.libvirt_uri, "none")    ? "none"
                                                                             : "libvirt"));
    if (a->pool) {
        struct nodeagent_pool_status ps;
        nodeagent_pool_status(a->pool, &ps);
        wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_pool_images",
                                        "Job VM images in the pool", "state=\"free\""),
                      ps.free);
        wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_pool_images",
                                        "Job VM images in the pool", "state=\"used\""),
                      ps.used);
        wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_pool_max_images",
                                        "Maximum size of the image pool", NULL),
                      ps.max);
        json_object_set_new(
            body, "pool",
            json_pack("{s:i,s:i,s:i}", "free", ps.free, "used", ps.used, "max", ps.max));
    }
    json_t *warm = na_warm_json(a);
    if (warm) {
        json_t *pool = json_object_get(body, "pool");
        if (!pool) {
            pool = json_object();
            json_object_set_new(body, "pool", pool);
        }
        json_object_update(pool, warm);
        /* Parked VMs give their memory back on demand. */
        json_object_set(pool, "reclaimable_mb", json_object_get(warm, "memory_mb"));
        wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_pool_parked_vms",
                                        "Warm pool VMs booted and paused", NULL),
                      (double)json_integer_value(json_object_get(warm, "parked")));
        wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_pool_memory_mb",
                                        "Resident memory of warm pool VMs (MiB)", NULL),
                      (double)json_integer_value(json_object_get(warm, "memory_mb")));
        json_decref(warm);
    }
    json_object_set_new(body, "starts",
                        json_pack("{s:I,s:I}", "pool", (json_int_t)a->warm_starts, "cold",
                                  (json_int_t)a->cold_starts));
    wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_cpu_mhz_used",
                                    "CPU used by jobs and processes (MHz)", NULL),
                  mhz_used);
    wlm_gauge_set(
        wlm_metrics_gauge(a->metrics, "wlm_nodeagent_power_watts", "Node power (W)", NULL),
        a->watts);
    wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_energy_joules_total",
                                    "Node energy since start (J)", NULL),
                  a->energy_j);
    wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_power_on",
                                    "1 when the node is powered on", NULL),
                  a->powered_on);
    wlm_gauge_set(wlm_metrics_gauge(a->metrics, "wlm_nodeagent_domains", "Live job domains", NULL),
                  (double)hw->nvms);
    free(cpu_delta);
    free(mhz);
    free(share);
    free(items);
    free(hw->vms);
    free(hw->procs);
    free(hw);

    if (!a->registered) {
        /* Usage, power and job ends are still tracked; the controller
         * hears about them once registration succeeds. */
        json_decref(body);
        a->hb_inflight = 0;
        hb_schedule(a, (uint64_t)a->cfg.heartbeat_ms);
        na_pending_dec(a);
        return;
    }
    char *s = wlm_json_dumps(body);
    json_decref(body);
    char *url = wlm_asprintf("%s/v1/nodes/%s/heartbeat", a->cfg.controller, a->cfg.name);
    /* hb_inflight stays set; the pending count carries over to the request. */
    int r = wlm_http_client_request(a->client, "POST", url, a->cfg.token[0] ? a->cfg.token : NULL,
                                    "application/json", s, s ? strlen(s) : 0, 5000, on_hb_done, a);
    if (r < 0) {
        struct wlm_error err = {.code = r};
        snprintf(err.msg, sizeof(err.msg), "request failed (%d)", r);
        on_hb_done(NULL, &err, a);
    }
    free(url);
    free(s);
}

static void on_hb_timer(uv_timer_t *t)
{
    struct nodeagent *a = t->data;
    if (a->stopping || a->hb_inflight)
        return;
    struct hb_work *hw = calloc(1, sizeof(*hw));
    if (!hw)
        return;
    hw->a = a;
    hw->w.data = hw;
    a->hb_inflight = 1;
    na_pending_inc(a);
    if (uv_queue_work(a->loop, &hw->w, hb_collect, hb_after) != 0) {
        free(hw);
        a->hb_inflight = 0;
        na_pending_dec(a);
    }
}

static void hb_schedule(struct nodeagent *a, uint64_t ms)
{
    if (!a->stopping)
        uv_timer_start(&a->hb_timer, on_hb_timer, ms, 0);
}

static void on_reg_timer(uv_timer_t *t)
{
    struct nodeagent *a = t->data;
    if (!a->stopping && !a->registered && !a->reg_inflight)
        do_register(a);
}

static void reg_schedule(struct nodeagent *a, uint64_t ms)
{
    if (!a->stopping)
        uv_timer_start(&a->reg_timer, on_reg_timer, ms, 0);
}

/* An app instance that ended: its exit status and the last lines of its
 * output (stdout and stderr share the file), for `wlm app show`. */
static void na_proc_exit_json(struct nodeagent *a, const struct nodeagent_wl_info *wi, json_t *o)
{
    if (wi->exit_status >= 0)
        json_object_set_new(o, "exit_status", json_integer(wi->exit_status));
    char path[1200];
    na_job_path(a, wi->id, "stdout.log", path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char buf[1025];
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        fseek(f, sz > 1024 ? sz - 1024 : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    /* The last 5 lines, valid UTF-8 or not: bytes outside ASCII become '?'. */
    size_t start = n, lines = 0;
    while (start > 0 && lines < 5)
        if (buf[--start] == '\n')
            lines++;
    if (buf[start] == '\n')
        start++;
    for (size_t i = start; i < n; i++)
        if ((unsigned char)buf[i] >= 0x80 || ((unsigned char)buf[i] < 0x20 && buf[i] != '\n'))
            buf[i] = '?';
    json_object_set_new(o, "output_tail", json_string(buf + start));
}

/* ------------------------------------------------------------ HTTP */

static void h_healthz(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    json_t *o = json_pack("{s:s,s:s,s:b}", "status", "ok", "name", a->cfg.name, "registered",
                          a->registered);
    wlm_http_respond_json(req, 200, o);
}

static void h_node(struct wlm_http_req *req, void *ud)
{
    struct nodeagent *a = ud;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(a->cfg.name));
    json_object_set_new(o, "cores", json_integer(a->node.cores));
    json_object_set_new(o, "mhz", json_integer(a->node.mhz));
    json_object_set_new(o, "memory_mb", json_integer(a->node.memory_mb));
    json_object_set_new(o, "arch", json_string(a->node.arch));
    json_object_set_new(o, "labels", json_deep_copy(a->labels));
    json_object_set_new(o, "libvirt_uri", json_string(a->cfg.libvirt_uri));
    json_object_set_new(o, "registered", json_boolean(a->registered));
    json_t *pw =
        json_pack("{s:s,s:f,s:f,s:f,s:f}", "state", a->powered_on ? "on" : "off", "watts", a->watts,
                  "energy_j", a->energy_j, "idle_w", a->cfg.idle_watts, "max_w", a->cfg.max_watts);
    json_t *bj = na_budget_json(a);
    if (bj)
        json_object_set_new(pw, "budget", bj);
    json_object_set_new(o, "power", pw);
    json_object_set_new(o, "cpu_cap_mode",
                        json_string(a->proc ? nodeagent_process_cap_mode(a->proc) : "uncapped"));
    if (a->pool) {
        struct nodeagent_pool_status ps;
        nodeagent_pool_status(a->pool, &ps);
        json_object_set_new(o, "pool",
                            json_pack("{s:i,s:i,s:i,s:f}", "free", ps.free, "used", ps.used, "max",
                                      ps.max, "create_seconds", ps.create_seconds));
    }
    json_t *warm = na_warm_json(a);
    if (warm) {
        json_t *pool = json_object_get(o, "pool");
        if (!pool) {
            pool = json_object();
            json_object_set_new(o, "pool", pool);
        }
        json_object_update(pool, warm);
        json_decref(warm);
    }
    json_object_set_new(o, "starts",
                        json_pack("{s:I,s:I}", "pool", (json_int_t)a->warm_starts, "cold",
                                  (json_int_t)a->cold_starts));
    json_t *insts = json_array();
    struct nodeagent_wl_info *pl = NULL;
    size_t npl = 0;
    if (a->proc && a->proc->ops->list(a->proc, &pl, &npl, NULL) == 0) {
        for (size_t i = 0; i < npl; i++) {
            json_t *io = json_pack("{s:s,s:s,s:I,s:f,s:f,s:s}", "instance", pl[i].id, "state",
                                   nodeagent_wl_state_name(pl[i].state), "pid",
                                   (json_int_t)pl[i].pid, "cpu_seconds", pl[i].cpu_seconds,
                                   "cpu_wait_seconds", pl[i].cpu_wait_seconds, "cpu_source",
                                   pl[i].cpu_source ? pl[i].cpu_source : "none");
            json_array_append_new(insts, io);
        }
        free(pl);
    }
    json_object_set_new(o, "instances", insts);
    json_t *orph = json_array();
    for (size_t i = 0; i < a->norphans; i++)
        json_array_append_new(orph, json_string(a->orphans[i]));
    json_object_set_new(o, "orphans", orph);
    wlm_http_respond_json(req, 200, o);
}

/* ------------------------------------------------------------ lifecycle */

struct nodeagent *nodeagent_new(uv_loop_t *loop, const struct nodeagent_config *cfg,
                                struct wlm_error *err)
{
    struct nodeagent *a = calloc(1, sizeof(*a));
    if (!a) {
        wlm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->cfg = *cfg;
    nodeagent_config_finish(&a->cfg);
    a->powered_on = 1;
    pthread_mutex_init(&a->ev_mu, NULL);
    if (a->cfg.max_watts < a->cfg.idle_watts) {
        wlm_error_setf(err, WLM_EINVAL, "max_watts", "max_watts (%g) is below idle_watts (%g)",
                       a->cfg.max_watts, a->cfg.idle_watts);
        goto fail;
    }
    if (a->cfg.pool_max < a->cfg.pool_size) {
        wlm_error_setf(err, WLM_EINVAL, "pool_max", "pool_max (%lld) is below pool_size (%lld)",
                       a->cfg.pool_max, a->cfg.pool_size);
        goto fail;
    }
    if (na_budget_init(a) < 0) {
        wlm_error_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    if (strncmp(a->cfg.controller, "http://", 7) && strncmp(a->cfg.controller, "https://", 8)) {
        wlm_error_setf(err, WLM_EINVAL, "controller",
                       "controller URL '%s' must start with http:// or https://",
                       a->cfg.controller);
        goto fail;
    }
    struct in_addr ip;
    if (inet_pton(AF_INET, a->cfg.ip_pool, &ip) != 1) {
        wlm_error_setf(err, WLM_EINVAL, "ip_pool", "ip_pool '%s' is not an IPv4 address",
                       a->cfg.ip_pool);
        goto fail;
    }
    if (strcmp(a->cfg.vm_type, "qemu") && strcmp(a->cfg.vm_type, "kvm")) {
        wlm_error_setf(err, WLM_EINVAL, "vm_type", "vm_type '%s' must be qemu or kvm",
                       a->cfg.vm_type);
        goto fail;
    }
    a->labels = nodeagent_parse_labels(a->cfg.labels, err);
    if (!a->labels)
        goto fail;
    int r = mkdir_p(a->cfg.state_dir, 0755);
    if (r == 0)
        r = mkdir_p(a->cfg.shared_dir, 0755);
    if (r < 0) {
        wlm_error_setf(err, -r, "state_dir", "cannot create %s: %s", a->cfg.state_dir,
                       strerror(-r));
        goto fail;
    }
    /* QEMU runs as an unprivileged user and must reach console logs and
     * images under the state directory. */
    chmod(a->cfg.state_dir, 0755);
    char path[1100];
    snprintf(path, sizeof(path), "%s/jobs", a->cfg.state_dir);
    mkdir_p(path, 0755);
    int is_real =
        strncmp(a->cfg.libvirt_uri, "test:", 5) != 0 && strcmp(a->cfg.libvirt_uri, "none") != 0;
    if (!a->cfg.kernel[0]) {
        find_kernel(a->cfg.kernel, sizeof(a->cfg.kernel));
        char pvh[600];
        if (is_real && a->cfg.kernel[0] &&
            (nodeagent_kernel_pvh(a->cfg.kernel, "/var/tmp", pvh, sizeof(pvh)) == 0 ||
             nodeagent_kernel_pvh(a->cfg.kernel, a->cfg.state_dir, pvh, sizeof(pvh)) == 0)) {
            wlm_info(NA_COMP, "job VMs boot the uncompressed kernel", "kernel=%s", pvh);
            wlm_strlcpy(a->cfg.kernel, pvh, sizeof(a->cfg.kernel));
        }
    }
    if (a->cfg.initramfs[0])
        wlm_strlcpy(a->initramfs, a->cfg.initramfs, sizeof(a->initramfs));
    else
        snprintf(a->initramfs, sizeof(a->initramfs), "%s/initramfs.cpio", a->cfg.state_dir);
    if (!a->cfg.initramfs[0] && is_real) {
        /* Real hypervisor and no initramfs given: build the default one
         * (every start, so it always has this version's init), with the
         * virtio modules of the job VM kernel for the warm pool. */
        struct wlm_error e2 = {0};
        char kver[256] = "";
        char newest[512];
        find_kernel(newest, sizeof(newest));
        if (nodeagent_kernel_version(a->cfg.kernel, kver, sizeof(kver)) < 0 &&
            nodeagent_kernel_version(newest, kver, sizeof(kver)) < 0) {
            wlm_warn(NA_COMP,
                     "no virtio modules for the job VM kernel; the warm pool cannot "
                     "hand jobs over",
                     "kernel=%s", a->cfg.kernel);
            kver[0] = '\0';
        }
        if (nodeagent_initramfs_write(a->initramfs, "/bin/busybox", kver, &e2) < 0)
            wlm_warn(NA_COMP, "no job VM initramfs; job starts will fail", "error=\"%s\"", e2.msg);
    }

    if (strcmp(a->cfg.libvirt_uri, "none") != 0) {
        if (nodeagent_libvirt_event_thread_start(err) < 0)
            goto fail;
        struct nodeagent_libvirt_opts lo = {.uri = a->cfg.libvirt_uri,
                                            .kernel = a->cfg.kernel,
                                            .initramfs = a->initramfs,
                                            .vm_type = a->cfg.vm_type,
                                            .disks_shared = a->cfg.images_shared};
        a->vm = nodeagent_libvirt_new(&lo, err);
        if (!a->vm)
            goto fail;
        if (a->vm->ops->node_info(a->vm, &a->node, err) < 0)
            goto fail;
        if (strncmp(a->cfg.libvirt_uri, "test:", 5) != 0) {
            /* Real hypervisor: the node arch is the host's. */
            struct nodeagent_node_info pi;
            if (nodeagent_proc_node_info(&pi, NULL) == 0)
                wlm_strlcpy(a->node.arch, pi.arch, sizeof(a->node.arch));
        }
    } else if (nodeagent_proc_node_info(&a->node, err) < 0) {
        goto fail;
    }
    a->proc = nodeagent_process_new(a->cfg.cgroup, a->node.mhz, err);
    if (!a->proc)
        goto fail;
    snprintf(path, sizeof(path), "%s/vmrepo.db", a->cfg.state_dir);
    if (nodeagent_repo_open(path, &a->repo, err) < 0)
        goto fail;
    a->metrics = wlm_metrics_new();
    a->client = wlm_http_client_new(loop);
    if (!a->metrics || !a->client) {
        wlm_error_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    if (a->cfg.ca[0] && wlm_http_client_set_ca(a->client, a->cfg.ca, err) < 0)
        goto fail;
    return a;
fail:
    nodeagent_free(a);
    return NULL;
}

static void pool_start(struct nodeagent *a)
{
    if (!a->vm || a->cfg.pool_max <= 0)
        return;
    char dir[1100], name[128];
    int is_test = !strncmp(a->cfg.libvirt_uri, "test:", 5);
    snprintf(dir, sizeof(dir), "%s/images", a->cfg.state_dir);
    /* One libvirtd may serve several agents (tests, or a node name reused
     * with another state dir): the pool name carries the directory. */
    unsigned h = 2166136261u;
    for (const char *c = a->cfg.state_dir; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    snprintf(name, sizeof(name), "wlm-%.60s-%08x", a->cfg.name, h);
    struct nodeagent_pool_opts po = {
        .conn = nodeagent_libvirt_conn(a->vm),
        .dir = is_test ? "" : dir,
        .name = name,
        .size = (int)a->cfg.pool_size,
        .max = (int)a->cfg.pool_max,
        .base_mb = a->cfg.base_image_mb,
    };
    struct wlm_error err = {0};
    double t0 = wlm_now_mono();
    a->pool = nodeagent_pool_new(&po, &err);
    if (!a->pool)
        wlm_warn(NA_COMP, "image pool unavailable; jobs start without a disk", "error=\"%s\"",
                 err.msg);
    else
        wlm_info(NA_COMP, "image pool ready", "size=%lld max=%lld seconds=%.3f", a->cfg.pool_size,
                 a->cfg.pool_max, wlm_now_mono() - t0);
}

int nodeagent_start(struct nodeagent *a, struct wlm_error *err)
{
    struct wlm_http_server_opts so = {
        .host = a->cfg.listen_host,
        .port = (int)a->cfg.listen_port,
        .token = na_api_token(a),
        .tls_cert = a->cfg.tls_cert,
        .tls_key = a->cfg.tls_key,
    };
    a->http = wlm_http_server_new(a->loop, &so);
    if (!a->http)
        return wlm_error_set(err, ENOMEM, "cannot create HTTP server");
    wlm_http_server_set_metrics(a->http, a->metrics);
    wlm_http_server_route(a->http, "GET", "/healthz", 0, h_healthz, a);
    wlm_http_server_route(a->http, "GET", "/v1/node", 1, h_node, a);
    na_actions_routes(a);
    if (wlm_http_server_listen(a->http, err) < 0)
        return err ? err->code : -WLM_EIO;
    int tls = wlm_http_server_is_tls(a->http);
    if (!tls && wlm_host_is_loopback(a->cfg.listen_host))
        wlm_info(NA_COMP, "plain HTTP on loopback only: tokens never leave this machine",
                 "addr=%s", a->cfg.listen_host);
    else if (!tls)
        wlm_warn(NA_COMP,
                 "plain HTTP on a non-loopback address: tokens cross the network in clear text; "
                 "give --tls-cert and --tls-key",
                 "addr=%s", a->cfg.listen_host);
    snprintf(a->agent_url, sizeof(a->agent_url), tls ? "https://%s:%d" : "http://%s:%d",
             strcmp(a->cfg.listen_host, "0.0.0.0") ? a->cfg.listen_host : "127.0.0.1",
             wlm_http_server_port(a->http));
    pool_start(a);
    na_recover_instances(a);
    na_recover_actions_pre(a);
    if (na_reconcile(a, err) < 0)
        return err ? err->code : -WLM_EINTERNAL;
    na_recover_actions(a);
    if (na_warm_start(a, err) < 0)
        return err ? err->code : -WLM_EINTERNAL;
    if (a->vm) {
        uv_async_init(a->loop, &a->ev_async, on_ev_async);
        a->ev_async.data = a;
        na_pending_inc(a);
        struct wlm_error e2 = {0};
        if (nodeagent_libvirt_watch(a->vm, ev_from_libvirt, a, &e2) < 0)
            wlm_warn(NA_COMP, "no libvirt lifecycle events; relying on heartbeat polling",
                     "error=\"%s\"", e2.msg);
    }
    uv_timer_init(a->loop, &a->hb_timer);
    a->hb_timer.data = a;
    na_pending_inc(a);
    uv_timer_init(a->loop, &a->reg_timer);
    a->reg_timer.data = a;
    na_pending_inc(a);
    a->started = 1;
    wlm_info(NA_COMP, "node agent listening",
             "name=%s url=%s libvirt=%s cores=%d mhz=%d memory_mb=%lld", a->cfg.name, a->agent_url,
             a->cfg.libvirt_uri, a->node.cores, a->node.mhz, a->node.memory_mb);
    reg_schedule(a, 0);
    hb_schedule(a, (uint64_t)a->cfg.heartbeat_ms);
    return 0;
}

int nodeagent_port(const struct nodeagent *a)
{
    return a && a->http ? wlm_http_server_port(a->http) : 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    na_pending_dec(h->data);
}

static void on_http_closed(void *ud)
{
    na_pending_dec(ud);
}

void nodeagent_stop(struct nodeagent *a, void (*done)(void *ud), void *ud)
{
    if (a->stopping)
        return;
    a->stopping = 1;
    a->stop_done = done;
    a->stop_ud = ud;
    na_pending_inc(a); /* held until everything below is started */
    if (a->vm)
        nodeagent_libvirt_watch(a->vm, NULL, NULL, NULL);
    na_warm_stop(a); /* parked VMs are destroyed; running jobs stay */
    /* App instances are this agent's children: a restarted agent would not
     * know them, so they end with it (a controller re-places them). */
    struct nodeagent_wl_info *procs = NULL;
    size_t np = 0;
    if (a->proc && a->proc->ops->list(a->proc, &procs, &np, NULL) == 0) {
        if (np)
            wlm_info(NA_COMP, "stopping app instances", "n=%zu", np);
        for (size_t i = 0; i < np; i++) {
            struct nodeagent_inst_rec who = {0};
            nodeagent_process_identity(a->proc, procs[i].id, &who, NULL);
            a->proc->ops->stop(a->proc, procs[i].id, 0, NULL);
            nodeagent_repo_inst_delete(a->repo, procs[i].id, NULL);
            char wd[1200];
            snprintf(wd, sizeof(wd), "%s/%s", a->cfg.app_dir, procs[i].id);
            nodeagent_process_remove_workdir(wd, who.user[0] ? who.user : NULL, NULL);
        }
        free(procs);
    }
    if (a->started) {
        uv_timer_stop(&a->hb_timer);
        uv_close((uv_handle_t *)&a->hb_timer, on_handle_closed);
        uv_timer_stop(&a->reg_timer);
        uv_close((uv_handle_t *)&a->reg_timer, on_handle_closed);
        if (a->vm)
            uv_close((uv_handle_t *)&a->ev_async, on_handle_closed);
    }
    if (a->http) {
        na_pending_inc(a);
        wlm_http_server_close(a->http, on_http_closed, a);
        a->http = NULL;
    }
    if (a->client) {
        /* Requests in flight complete with an error (their callbacks drop
         * their pending count). */
        wlm_http_client_free(a->client);
        a->client = NULL;
    }
    na_pending_dec(a);
}

void nodeagent_free(struct nodeagent *a)
{
    if (!a)
        return;
    na_warm_free(a);
    na_actions_free(a);
    na_budget_free(a);
    wlm_http_client_free(a->client);
    nodeagent_pool_free(a->pool);
    if (a->vm)
        a->vm->ops->free(a->vm);
    if (a->proc)
        a->proc->ops->free(a->proc);
    nodeagent_repo_close(a->repo);
    wlm_metrics_free(a->metrics);
    json_decref(a->labels);
    free(a->samples);
    free(a->evq);
    free(a->orphans);
    pthread_mutex_destroy(&a->ev_mu);
    free(a);
}
