/* ha.c - leader election on etcd, standby redirects, stepping down (see ha.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd.h"
#include "ha.h"
#include "store.h"

#define COMP "ha"

static struct {
    int on;
    uv_loop_t *loop;
    struct controller_config cfg;
    char **argv;
    struct wlm_store *ws;
    struct wlm_etcd *e;
    int64_t lease;
    double lease_until, last_renew; /* monotonic */
    char key[192], url[256], leader_url[256];
    int64_t rev;
    int leader, stepping_down, stopping;
    uv_timer_t timer;
    struct wlm_http_server *standby; /* the bare redirecting listener */
    struct controller *ctl;          /* leading */
    struct controller *follower;     /* standby serving reads of stored state */
    struct controller *to_free;      /* a stopped follower, released by the timer */
    int transition;                  /* a listener is closing; `next` comes after */
    int next;                        /* NEXT_FOLLOWER or NEXT_LEADER */
    int store_ok;                    /* the last read of the store worked */
    int64_t store_rev, loaded_rev;   /* the store's revision; the follower's copy's */
    double next_reload, next_upgrade;
    /* A follower's copy is the store's watched copy (wlm_store_mirror_*):
     * each applied batch of changes schedules a reload of the follower's
     * memory from it, at most a fifth of the time. */
    uv_timer_t reload_timer;
    int mirror_on;
    uint64_t loaded_changes; /* changes of the tables the follower holds, at its last load */
    uv_signal_t sigint, sigterm;
    int exit_code;
    unsigned errors_logged;
    /* The leader renews its lease on a thread of its own, with its own
     * connection: a busy event loop (thousands of agents, a large reload)
     * must not cost the lead. A stopped process stops the thread too. */
    pthread_t ka_thread;
    int ka_running;
    struct wlm_etcd *ka_etcd;
    _Atomic long long ka_until_us; /* lease valid until (monotonic us) */
    atomic_int ka_lost, ka_stop;
} ha;

enum { NEXT_FOLLOWER = 1, NEXT_LEADER = 2 };

const char *ctl_ha_role(void) { return !ha.on ? "single" : ha.leader ? "leader" : "standby"; }
/* The leader's URL; "" when unknown, or when the key still names this very
 * process (a previous incarnation whose lease has not expired yet). */
const char *ctl_ha_leader_url(void)
{
    return !ha.leader && strcmp(ha.leader_url, ha.url) == 0 ? "" : ha.leader_url;
}

/* ------------------------------------------------------------ stepping down */

static void log_error(const char *what, const struct wlm_error *err);
static int standby_listen(struct wlm_error *err);

static void step_down(const char *why)
{
    if (ha.stepping_down)
        return;
    ha.stepping_down = 1;
    ha.leader = 0;
    wlm_warn(COMP, "lost the leadership: restarting as a standby", "reason=\"%s\"", why);
    /* Nothing of this process's memory may act any more: replace it. The
     * sockets are close-on-exec. */
    execv("/proc/self/exe", ha.argv);
    wlm_errorlog(COMP, "restart failed: exiting", "error=\"%s\"", strerror(errno));
    _exit(3);
}

int ctl_ha_may_act(void)
{
    if (!ha.on)
        return 1;
    if (!ha.leader)
        return 0;
    if (ha.ka_running) {
        long long until = atomic_load(&ha.ka_until_us);
        if ((double)until / 1e6 > ha.lease_until)
            ha.lease_until = (double)until / 1e6;
        if (atomic_load(&ha.ka_lost))
            step_down("the lease expired in etcd");
    }
    if (!ha.leader)
        return 0;
    if (wlm_now_mono() >= ha.lease_until)
        step_down("lease expired before it was renewed");
    else if (ha.ws && wlm_store_fenced_out(ha.ws))
        step_down("a write was refused: another controller leads");
    else if (ha.ctl && controller_stale(ha.ctl))
        step_down("memory no longer matches the store (a reload failed)");
    return ha.leader;
}

/* ------------------------------------------------------------ standby server */

static void standby_healthz(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    wlm_http_respond_json(req, 200,
                          json_pack("{s:s,s:s,s:s,s:s}", "status", "ok", "version", WLM_VERSION,
                                    "role", "standby", "leader", ctl_ha_leader_url()));
}

static void standby_redirect(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    if (!ctl_ha_leader_url()[0]) {
        wlm_http_respond_error(req, 503, "unavailable",
                               "this controller is a standby and no leader is elected yet; retry");
        return;
    }
    char *hdr = wlm_asprintf("Location: %s%s", ctl_ha_leader_url(), req->url);
    wlm_http_respond(req, 307, "text/plain", hdr, "see the leader\n", 15);
    free(hdr);
}

static int standby_listen(struct wlm_error *err)
{
    struct wlm_http_server_opts o = {.host = ha.cfg.listen_host,
                                     .port = (int)ha.cfg.listen_port,
                                     .tls_cert = ha.cfg.tls_cert,
                                     .tls_key = ha.cfg.tls_key};
    ha.standby = wlm_http_server_new(ha.loop, &o);
    if (!ha.standby)
        return wlm_error_set(err, ENOMEM, "out of memory");
    wlm_http_server_route(ha.standby, "GET", "/healthz", 0, standby_healthz, NULL);
    wlm_http_server_route(ha.standby, NULL, "/*", 0, standby_redirect, NULL);
    return wlm_http_server_listen(ha.standby, err);
}

/* ------------------------------------------------------------ the watched copy */

static void on_tick(uv_timer_t *t);

/* Changes of the tables a follower holds in memory (controller_reload);
 * the others (audit log, tokens, job histories) are read per request. */
static uint64_t held_changes(void)
{
    static const char *const held[] = {"jobs", "job_profiles", "apps", "instances"};
    uint64_t n = 0;
    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
        n += wlm_store_mirror_changes(ha.ws, held[i]);
    return n;
}

/* Reload the follower's memory from the copy when what it holds changed. */
static void on_reload(uv_timer_t *t)
{
    (void)t;
    if (!ha.follower || ha.transition || ha.stopping || !ha.mirror_on)
        return;
    struct wlm_store_mirror_stats ms;
    wlm_store_mirror_stats(ha.ws, &ms);
    if (ms.rev == ha.loaded_rev)
        return;
    uint64_t changes = held_changes();
    if (changes == ha.loaded_changes) { /* only tables read per request moved */
        ha.loaded_rev = ms.rev;
        return;
    }
    struct wlm_error err = {0};
    double t0 = wlm_now_mono();
    if (controller_reload(ha.follower, &err)) {
        log_error("standby refresh failed", &err);
        ha.next_reload = t0 + 1;
        uv_timer_start(&ha.reload_timer, on_reload, 1000, 0);
        return;
    }
    double t1 = wlm_now_mono();
    if (t1 - t0 > 0.2)
        wlm_info(COMP, "standby: slow refresh from the copy", "ms=%.0f revision=%lld keys=%zu",
                 (t1 - t0) * 1000, (long long)ms.rev, ms.keys);
    ha.loaded_rev = ms.rev;
    ha.loaded_changes = changes;
    /* Reloading is not free (it grows with the jobs): at most a fifth of the time. */
    ha.next_reload = t1 + (t1 - t0) * 4;
}

static void schedule_reload(void)
{
    if (!ha.follower || ha.transition || uv_is_active((uv_handle_t *)&ha.reload_timer))
        return;
    double wait = ha.next_reload - wlm_now_mono();
    uv_timer_start(&ha.reload_timer, on_reload, wait > 0 ? (uint64_t)(wait * 1000) + 1 : 0, 0);
}

static void on_mirror_change(void *ud)
{
    (void)ud;
    if (ha.leader || ha.stopping)
        return;
    /* The leader key is in the copy too: its deletion (the leader's lease
     * expired or was revoked) starts a campaign now, not at the next tick. */
    const char *leader = wlm_store_mirror_raw(ha.ws, ha.key);
    if (!leader && ha.leader_url[0] && !ha.transition) {
        wlm_info(COMP, "the leader key is gone: campaigning now", "leader_was=%s", ha.leader_url);
        ha.leader_url[0] = 0;
        long long tick = ha.cfg.lease_ttl_s * 1000 / 6;
        uv_timer_start(&ha.timer, on_tick, 0, (uint64_t)(tick > 250 ? 250 : tick));
    } else if (leader && strcmp(leader, ha.leader_url) != 0) {
        wlm_info(COMP, "standby", "leader=%s", leader[0] ? leader : "(none)");
        wlm_strlcpy(ha.leader_url, leader, sizeof(ha.leader_url));
    }
    schedule_reload();
}

static int mirror_start(struct wlm_error *err)
{
    int rc = wlm_store_mirror_start(ha.ws, ha.loop, on_mirror_change, NULL, err);
    if (rc == 0)
        ha.mirror_on = 1;
    return rc;
}

static void mirror_stop(void)
{
    if (!ha.mirror_on)
        return;
    uv_timer_stop(&ha.reload_timer);
    wlm_store_mirror_stop(ha.ws);
    ha.mirror_on = 0;
}

/* ------------------------------------------------------------ listeners
 *
 * One process, one port: the bare standby server, a follower controller
 * (reads from its copy of the store) or the leading controller. Moving from
 * one to the next closes the listener first (`transition`), then starts
 * what `next` says. */

static void start_next(void)
{
    struct wlm_error err = {0};
    double t0 = wlm_now_mono();
    ha.transition = 0;
    if (ha.stopping)
        return;
    if (ha.next == NEXT_LEADER) {
        if (controller_new_on(ha.loop, &ha.cfg, ha.ws, &ha.ctl, &err) ||
            controller_start(ha.ctl, &err)) {
            wlm_errorlog(COMP, "taking over failed", "error=\"%s\"", err.msg);
            step_down("could not load the state");
            return;
        }
        wlm_info(COMP, "leading: state loaded", "load_ms=%.0f url=%s",
                 (wlm_now_mono() - t0) * 1000, ha.url);
        return;
    }
    /* A follower: reads served from a copy of the store, kept warm by a watch. */
    if ((!ha.mirror_on && mirror_start(&err)) ||
        controller_new_follower(ha.loop, &ha.cfg, ha.ws, &ha.follower, &err) ||
        controller_listen_only(ha.follower, &err)) {
        wlm_warn(COMP, "standby serves redirects only for now", "error=\"%s\"", err.msg);
        if (ha.follower) {
            ha.to_free = ha.follower; /* never listened: nothing to close but its server */
            ha.follower = NULL;
        }
        ha.next_upgrade = wlm_now_mono() + 5;
        struct wlm_error e2 = {0};
        if (standby_listen(&e2))
            wlm_errorlog(COMP, "standby cannot listen", "error=\"%s\"", e2.msg);
        return;
    }
    struct wlm_store_mirror_stats ms;
    wlm_store_mirror_stats(ha.ws, &ms);
    ha.loaded_rev = ms.rev;
    ha.loaded_changes = held_changes();
    ha.next_reload = 0;
    wlm_info(COMP, "standby: serving reads from the store's watched copy", "load_ms=%.0f keys=%zu",
             (wlm_now_mono() - t0) * 1000, ms.keys);
}

static void on_standby_closed(void *ud)
{
    (void)ud;
    ha.standby = NULL;
    start_next();
}

static void on_follower_stopped(void *ud)
{
    (void)ud;
    ha.to_free = ha.follower; /* freed by the next tick, outside its own callback */
    ha.follower = NULL;
    start_next();
}

/* Close whichever listener runs, then start `next`. */
static void switch_to(int next)
{
    ha.next = next;
    ha.transition = 1;
    if (ha.follower)
        controller_stop(ha.follower, on_follower_stopped, NULL);
    else if (ha.standby)
        wlm_http_server_close(ha.standby, on_standby_closed, NULL);
    else
        start_next();
}

static void *keepalive_main(void *arg)
{
    (void)arg;
    long long period_us = ha.cfg.lease_ttl_s * 1000000LL / 3;
    double next = wlm_now_mono() + (double)period_us / 1e6;
    while (!atomic_load(&ha.ka_stop)) {
        double now = wlm_now_mono();
        if (now < next) {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        struct wlm_error err = {0};
        int64_t ttl = 0;
        double t0 = wlm_now_mono();
        if (wlm_etcd_lease_keepalive(ha.ka_etcd, ha.lease, &ttl, &err) == 0) {
            if (ttl > 0)
                atomic_store(&ha.ka_until_us, (long long)((t0 + (double)ttl) * 1e6));
            else
                atomic_store(&ha.ka_lost, 1);
            next = t0 + (double)period_us / 1e6;
        } else {
            next = wlm_now_mono() + 0.2; /* retry soon: the lease is running out */
        }
    }
    return NULL;
}

static void keepalive_start(void)
{
    struct wlm_error err = {0};
    if (wlm_etcd_open(ha.cfg.store + 7, 1000, &ha.ka_etcd, &err)) {
        wlm_warn(COMP, "lease renewal thread not started: renewing from the loop",
                 "error=\"%s\"", err.msg);
        return;
    }
    atomic_store(&ha.ka_until_us, (long long)(ha.lease_until * 1e6));
    atomic_store(&ha.ka_lost, 0);
    atomic_store(&ha.ka_stop, 0);
    if (pthread_create(&ha.ka_thread, NULL, keepalive_main, NULL) == 0)
        ha.ka_running = 1;
    else {
        wlm_etcd_close(ha.ka_etcd);
        ha.ka_etcd = NULL;
    }
}

static void keepalive_stop(void)
{
    if (!ha.ka_running)
        return;
    atomic_store(&ha.ka_stop, 1);
    pthread_join(ha.ka_thread, NULL);
    ha.ka_running = 0;
    wlm_etcd_close(ha.ka_etcd);
    ha.ka_etcd = NULL;
}

static void become_leader(int64_t rev, double t0)
{
    ha.leader = 1;
    ha.rev = rev;
    (void)t0;
    /* The lease runs from its last renewal, not from the campaign. */
    ha.lease_until = ha.last_renew + (double)ha.cfg.lease_ttl_s;
    wlm_strlcpy(ha.leader_url, ha.url, sizeof(ha.leader_url));
    /* The leader reads etcd itself: its own writes are there at once. */
    mirror_stop();
    wlm_store_set_fence(ha.ws, ha.key, rev);
    wlm_store_set_readonly(ha.ws, 0);
    keepalive_start();
    wlm_info(COMP, "elected leader", "key=%s revision=%lld url=%s", ha.key, (long long)rev,
             ha.url);
    switch_to(NEXT_LEADER);
}

/* ------------------------------------------------------------ the timer */

static void log_error(const char *what, const struct wlm_error *err)
{
    /* A dead store is logged once, then every 20th failure. */
    if (ha.errors_logged++ % 20 == 0)
        wlm_warn(COMP, what, "error=\"%s\"", err->msg);
}

static void renew(void)
{
    struct wlm_error err = {0};
    double t0 = wlm_now_mono();
    int64_t ttl = 0;
    if (wlm_etcd_lease_keepalive(ha.e, ha.lease, &ttl, &err)) {
        log_error("lease renewal failed", &err);
        return;
    }
    ha.errors_logged = 0;
    ha.last_renew = t0;
    if (ttl > 0) {
        ha.lease_until = t0 + (double)ttl;
        return;
    }
    if (ha.leader) {
        step_down("the lease expired in etcd");
        return;
    }
    /* A standby whose lease expired (etcd was away): take a new one. */
    ha.lease = 0;
}

static void campaign(void)
{
    struct wlm_error err = {0};
    struct wlm_etcd_txn t;
    wlm_etcd_txn_init(&t);
    wlm_etcd_txn_cmp_create(&t, ha.key, 0);
    wlm_etcd_txn_put(&t, ha.key, ha.url, strlen(ha.url), ha.lease);
    int ok = 0;
    int64_t rev = 0;
    double t0 = wlm_now_mono();
    int rc = wlm_etcd_txn_commit(ha.e, &t, &ok, &rev, &err);
    wlm_etcd_txn_fini(&t);
    if (rc) {
        log_error("campaign failed", &err);
        return;
    }
    if (ok) {
        become_leader(rev, t0);
        return;
    }
    struct wlm_etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t srev = 0;
    ha.store_ok = 0;
    if (wlm_etcd_range(ha.e, ha.key, 0, &kvs, &n, &srev, &err) == 0) {
        ha.store_ok = 1;
        ha.store_rev = srev;
        wlm_store_mirror_check(ha.ws, srev); /* a watch silent past srev is restarted */
        const char *now = n ? kvs[0].value : "";
        if (strcmp(now, ha.leader_url) != 0)
            wlm_info(COMP, "standby", "leader=%s", now[0] ? now : "(none)");
        wlm_strlcpy(ha.leader_url, now, sizeof(ha.leader_url));
    }
    wlm_etcd_kvs_free(kvs, n);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    if (ha.stopping)
        return;
    double now = wlm_now_mono();
    double period = (double)ha.cfg.lease_ttl_s / 3.0;
    if (ha.leader) {
        /* Woken up late (stopped, starved)? Check before anything else. */
        if (!ctl_ha_may_act())
            return;
        if (!ha.ka_running && now - ha.last_renew >= period)
            renew();
        ctl_ha_may_act();
        return;
    }
    if (!ha.lease) {
        struct wlm_error err = {0};
        if (wlm_etcd_lease_grant(ha.e, (int)ha.cfg.lease_ttl_s, &ha.lease, &err)) {
            ha.lease = 0;
            log_error("waiting for etcd (lease grant)", &err);
            return;
        }
        ha.errors_logged = 0;
        ha.last_renew = now;
    } else if (now - ha.last_renew >= period) {
        renew();
    }
    if (ha.to_free) {
        controller_free(ha.to_free);
        ha.to_free = NULL;
    }
    if (ha.transition || !ha.lease)
        return; /* a listener is changing hands, or no lease */
    campaign();
    if (ha.leader || ha.transition)
        return;
    if (!ha.follower && ha.standby && ha.store_ok && now >= ha.next_upgrade)
        switch_to(NEXT_FOLLOWER);
    else
        schedule_reload(); /* normally the watch's batches do this */
}

/* ------------------------------------------------------------ start and stop */

static void on_all_closed(void *ud)
{
    (void)ud;
    uv_close((uv_handle_t *)&ha.sigint, NULL);
    uv_close((uv_handle_t *)&ha.sigterm, NULL);
    uv_close((uv_handle_t *)&ha.timer, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    wlm_info("controller", "stopping", "signal=%d role=%s", signum, ctl_ha_role());
    ha.stopping = 1;
    uv_signal_stop(&ha.sigint);
    uv_signal_stop(&ha.sigterm);
    uv_timer_stop(&ha.timer);
    keepalive_stop();
    mirror_stop();
    uv_close((uv_handle_t *)&ha.reload_timer, NULL);
    /* Hand the lead over at once: a standby need not wait for the TTL. */
    struct wlm_error err = {0};
    if (ha.lease && wlm_etcd_lease_revoke(ha.e, ha.lease, &err))
        wlm_warn(COMP, "lease revoke failed", "error=\"%s\"", err.msg);
    ha.leader = 0;
    if (ha.ctl)
        controller_stop(ha.ctl, on_all_closed, NULL);
    else if (ha.follower)
        controller_stop(ha.follower, on_all_closed, NULL);
    else if (ha.standby)
        wlm_http_server_close(ha.standby, on_all_closed, NULL);
    else
        on_all_closed(NULL);
}

int ctl_ha_main(uv_loop_t *loop, const struct controller_config *cfg, char **argv)
{
    struct wlm_error err = {0};
    memset(&ha, 0, sizeof(ha));
    ha.on = 1;
    ha.loop = loop;
    ha.cfg = *cfg;
    ha.argv = argv;
    if (wlm_store_new_etcd(cfg->store, cfg->store_prefix, &ha.ws, &err)) {
        fprintf(stderr, "wlm-controller: %s\n", err.msg);
        return 2;
    }
    ha.e = wlm_store_etcd(ha.ws);
    wlm_store_set_readonly(ha.ws, 1); /* until elected */
    snprintf(ha.key, sizeof(ha.key), "%sleader", wlm_store_prefix(ha.ws));
    if (cfg->advertise_url[0])
        wlm_strlcpy(ha.url, cfg->advertise_url, sizeof(ha.url));
    if (cfg->advertise_url[0] && strncmp(ha.url, "http://", 7) && strncmp(ha.url, "https://", 8)) {
        fprintf(stderr,
                "wlm-controller: field 'advertise_url': '%s' must start with http:// or https://\n",
                cfg->advertise_url);
        wlm_store_free(ha.ws);
        return 2;
    }
    /* Standby port first: with port 0 the advertised URL needs the real one. */
    if (standby_listen(&err)) {
        fprintf(stderr, "wlm-controller: %s\n", err.msg);
        wlm_http_server_close(ha.standby, NULL, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        wlm_store_free(ha.ws);
        return 1;
    }
    int port = wlm_http_server_port(ha.standby);
    ha.cfg.listen_port = port; /* the leader listens where the standby did */
    if (!ha.url[0])
        snprintf(ha.url, sizeof(ha.url), "%s://%s:%d", cfg->tls_cert[0] ? "https" : "http",
                 cfg->listen_host, port);
    /* The lease is taken by the timer (and taken again after etcd lost it):
     * a standby without etcd answers 503 meanwhile. */
    wlm_info(COMP, "standby, campaigning", "store=%s prefix=%s url=%s lease_ttl_s=%lld",
             wlm_etcd_endpoint(ha.e), wlm_store_prefix(ha.ws), ha.url, cfg->lease_ttl_s);
    uv_timer_init(loop, &ha.timer);
    uv_timer_init(loop, &ha.reload_timer);
    long long tick = cfg->lease_ttl_s * 1000 / 6;
    if (tick > 250)
        tick = 250;
    uv_timer_start(&ha.timer, on_tick, 0, (uint64_t)tick);
    uv_signal_init(loop, &ha.sigint);
    uv_signal_init(loop, &ha.sigterm);
    uv_signal_start(&ha.sigint, on_signal, SIGINT);
    uv_signal_start(&ha.sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    controller_free(ha.ctl);
    controller_free(ha.follower);
    controller_free(ha.to_free);
    wlm_store_free(ha.ws);
    uv_loop_close(loop);
    wlm_info("controller", "stopped", NULL);
    return ha.exit_code;
}
