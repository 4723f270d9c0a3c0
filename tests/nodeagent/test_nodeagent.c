/* Node agent units on libvirt's test driver: several simulated nodes in one
 * process (one test:///PATH.xml each), every VM operation, the image pool,
 * the VM-ID repository and reconcile, the process driver, and the agent's
 * action API over HTTP (idempotent ids, 4xx errors, suspend on A -> restore
 * on B, power state). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nodeagent.h"

static char tmpdir[256];

static void node_xml(const char *name, int cores, int mhz, long long mem_mb, char *uri, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.xml", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "<node><cpu><mhz>%d</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
            "<cores>%d</cores><threads>1</threads><active>%d</active></cpu>"
            "<memory>%lld</memory></node>\n",
            mhz, cores, cores, mem_mb * 1024);
    fclose(f);
    snprintf(uri, n, "test://%s", path);
}

static struct nodeagent_driver *open_node(const char *name, int cores)
{
    char uri[600];
    node_xml(name, cores, 2000, 4096, uri, sizeof(uri));
    struct nodeagent_libvirt_opts o = {.uri = uri};
    struct wlm_error err = {0};
    struct nodeagent_driver *d = nodeagent_libvirt_new(&o, &err);
    if (!d)
        fail_msg("open %s: %s", uri, err.msg);
    return d;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/wlm-test-nodeagent-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_node_info_per_node(void **state)
{
    (void)state;
    struct nodeagent_driver *a = open_node("ninfo-a", 4), *b = open_node("ninfo-b", 8);
    struct nodeagent_node_info ia, ib;
    struct wlm_error err = {0};
    assert_int_equal(a->ops->node_info(a, &ia, &err), 0);
    assert_int_equal(b->ops->node_info(b, &ib, &err), 0);
    assert_int_equal(ia.cores, 4);
    assert_int_equal(ib.cores, 8);
    assert_int_equal(ia.mhz, 2000);
    assert_int_equal(ia.memory_mb, 4096);
    a->ops->free(a);
    b->ops->free(b);
}

static void test_vm_operations(void **state)
{
    (void)state;
    struct nodeagent_driver *a = open_node("ops-a", 4), *b = open_node("ops-b", 4);
    struct wlm_error err = {0};
    struct nodeagent_spec s = {.id = "job1", .command = "echo hi", .vcpus = 1, .memory_mb = 128};
    assert_int_equal(a->ops->start(a, &s, &err), 0);
    /* Starting the same job twice is refused by libvirt (name taken). */
    assert_true(a->ops->start(a, &s, &err) < 0);
    struct nodeagent_wl_info wi;
    assert_int_equal(a->ops->info(a, "job1", &wi, &err), 0);
    assert_int_equal(wi.state, NODEAGENT_WL_RUNNING);
    assert_int_equal(wi.vcpus, 1);

    assert_int_equal(a->ops->pause(a, "job1", &err), 0);
    a->ops->info(a, "job1", &wi, &err);
    assert_int_equal(wi.state, NODEAGENT_WL_PAUSED);
    assert_int_equal(a->ops->resume(a, "job1", &err), 0);
    a->ops->info(a, "job1", &wi, &err);
    assert_int_equal(wi.state, NODEAGENT_WL_RUNNING);

    /* Resize: vCPUs and pinning work; a CPU cap is clearly unsupported. */
    struct nodeagent_resize r = {.vcpus = 2, .pin = "0;1-2"};
    assert_int_equal(a->ops->resize(a, "job1", &r, &err), 0);
    a->ops->info(a, "job1", &wi, &err);
    assert_int_equal(wi.vcpus, 2);
    struct nodeagent_resize bad = {.pin = "7"};
    assert_int_equal(a->ops->resize(a, "job1", &bad, &err), -WLM_EINVAL);
    struct nodeagent_resize cap = {.vcpu_quota_us = 50000};
    wlm_error_clear(&err);
    assert_int_equal(a->ops->resize(a, "job1", &cap, &err), -WLM_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "unsupported"));

    /* Suspend on A, restore on B: the job lives on B only. */
    char save[512];
    snprintf(save, sizeof(save), "%s/job1.save", tmpdir);
    assert_int_equal(a->ops->suspend(a, "job1", save, &err), 0);
    assert_int_equal(a->ops->info(a, "job1", &wi, &err), -WLM_ENOTFOUND);
    assert_int_equal(access(save, R_OK), 0);
    assert_int_equal(b->ops->restore(b, "job1", save, NULL, &err), 0);
    assert_int_equal(b->ops->info(b, "job1", &wi, &err), 0);
    assert_int_equal(wi.state, NODEAGENT_WL_RUNNING);

    /* Migration is unsupported by the test driver: the agent falls back. */
    assert_int_equal(b->ops->migrate(b, "job1", "test:///default", NULL, &err), -WLM_EUNSUPPORTED);

    struct nodeagent_wl_info *list = NULL;
    size_t n = 0;
    assert_int_equal(b->ops->list(b, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, "job1");
    free(list);
    assert_int_equal(a->ops->list(a, &list, &n, &err), 0);
    assert_int_equal(n, 0);
    free(list);

    assert_int_equal(b->ops->stop(b, "job1", 1, &err), 0);
    assert_int_equal(b->ops->info(b, "job1", &wi, &err), -WLM_ENOTFOUND);
    /* Destroy of a gone domain is a no-op; of a running one removes it. */
    assert_int_equal(b->ops->destroy(b, "job1", &err), 0);
    assert_int_equal(a->ops->start(a, &s, &err), 0);
    assert_int_equal(a->ops->destroy(a, "job1", &err), 0);
    assert_int_equal(a->ops->info(a, "job1", &wi, &err), -WLM_ENOTFOUND);
    /* Unknown jobs: not found, with the job named. */
    assert_int_equal(a->ops->pause(a, "nope", &err), -WLM_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope"));
    a->ops->free(a);
    b->ops->free(b);
}

/* Warm pool domains: "~NAME" is the domain wlmpool-NAME; it is no job
 * until claimed; once claimed every call by the job id reaches it, list()
 * reports it as the job, and it is gone after destroy. */
static void test_pool_domain_claim(void **state)
{
    (void)state;
    struct nodeagent_driver *a = open_node("claim-a", 4);
    struct wlm_error err = {0};
    struct nodeagent_spec s = {.id = "~claim-a-1", .command = "", .vcpus = 1, .memory_mb = 128};
    assert_int_equal(a->ops->start(a, &s, &err), 0);
    struct nodeagent_wl_info *l = NULL;
    size_t n = 0;
    assert_int_equal(a->ops->list(a, &l, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(l[i].id, "~claim-a-1");
    free(l);
    assert_int_equal(nodeagent_libvirt_pool_list(a, "claim-a", &l, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].id, "~claim-a-1");
    free(l);
    assert_int_equal(nodeagent_libvirt_pool_list(a, "other", &l, &n, &err), 0);
    assert_int_equal(n, 0);
    free(l);
    struct nodeagent_wl_info wi;
    assert_int_equal(a->ops->info(a, "jobx", &wi, &err), -WLM_ENOTFOUND);
    assert_int_equal(nodeagent_libvirt_claim(a, "~claim-a-1", "jobx", &err), 0);
    assert_int_equal(a->ops->info(a, "jobx", &wi, &err), 0);
    assert_string_equal(wi.id, "jobx");
    assert_int_equal(a->ops->pause(a, "jobx", &err), 0);
    a->ops->info(a, "jobx", &wi, &err);
    assert_int_equal(wi.state, NODEAGENT_WL_PAUSED);
    assert_int_equal(a->ops->list(a, &l, &n, &err), 0);
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        seen += !strcmp(l[i].id, "jobx");
    free(l);
    assert_int_equal(seen, 1);
    assert_int_equal(nodeagent_libvirt_pool_list(a, "claim-a", &l, &n, &err), 0);
    assert_int_equal(n, 0); /* claimed: a job now, not a pool VM */
    free(l);
    /* libvirt's view, for error messages. */
    char st[160];
    nodeagent_libvirt_state_text(a, "jobx", st, sizeof(st));
    assert_non_null(strstr(st, "paused"));
    assert_int_equal(a->ops->destroy(a, "jobx", &err), 0);
    assert_int_equal(a->ops->info(a, "jobx", &wi, &err), -WLM_ENOTFOUND);
    assert_int_equal(nodeagent_libvirt_claim(a, "~claim-a-1", "jobx", &err), -WLM_ENOTFOUND);
    assert_non_null(strstr(nodeagent_libvirt_describe(a), "domain type test"));
    a->ops->free(a);
}

static void test_image_pool(void **state)
{
    (void)state;
    struct nodeagent_driver *a = open_node("pool-a", 2);
    struct wlm_error err = {0};
    struct nodeagent_pool_opts po = {.conn = nodeagent_libvirt_conn(a),
                                     .dir = "",
                                     .name = "wlm-pool-a",
                                     .size = 2,
                                     .max = 3,
                                     .base_mb = 16};
    struct nodeagent_pool *p = nodeagent_pool_new(&po, &err);
    if (!p)
        fail_msg("pool: %s", err.msg);
    struct nodeagent_pool_status st;
    nodeagent_pool_status(p, &st);
    assert_int_equal(st.free, 2);
    assert_int_equal(st.used, 0);
    char *i1, *i2, *i3, *i4 = NULL;
    assert_int_equal(nodeagent_pool_take(p, &i1, &err), 0);
    assert_int_equal(nodeagent_pool_take(p, &i2, &err), 0);
    assert_string_not_equal(i1, i2);
    /* Grown on demand up to max, then refused. */
    assert_int_equal(nodeagent_pool_take(p, &i3, &err), 0);
    nodeagent_pool_status(p, &st);
    assert_int_equal(st.used, 3);
    assert_int_equal(nodeagent_pool_take(p, &i4, &err), -WLM_ELIMIT);
    /* Released images are scrubbed (re-created) and dispensed again. */
    assert_int_equal(nodeagent_pool_release(p, i2, &err), 0);
    assert_int_equal(nodeagent_pool_release(p, "/not/ours", &err), -WLM_ENOTFOUND);
    nodeagent_pool_status(p, &st);
    assert_int_equal(st.free, 1);
    assert_int_equal(nodeagent_pool_take(p, &i4, &err), 0);
    assert_string_equal(i4, i2);
    char *grown = wlm_strdup(i3); /* the third image: beyond the start-up size */
    free(i1);
    free(i2);
    free(i3);
    free(i4);
    nodeagent_pool_free(p);
    /* A second pool on the same connection (an agent restart) finds the
     * overlays again; an image still in use beyond its start-up size is
     * listed as used when reconcile marks it, and never handed out again. */
    p = nodeagent_pool_new(&po, &err);
    assert_non_null(p);
    nodeagent_pool_status(p, &st);
    assert_int_equal(st.free, 2);
    assert_int_equal(nodeagent_pool_mark_used(p, grown), 1);
    assert_int_equal(nodeagent_pool_mark_used(p, "/not/ours/img-9.qcow2"), 0);
    nodeagent_pool_status(p, &st);
    assert_int_equal(st.used, 1);
    assert_int_equal(st.free, 2);
    char *t1, *t2, *t3;
    assert_int_equal(nodeagent_pool_take(p, &t1, &err), 0);
    assert_int_equal(nodeagent_pool_take(p, &t2, &err), 0);
    assert_string_not_equal(t1, grown);
    assert_string_not_equal(t2, grown);
    assert_int_equal(nodeagent_pool_take(p, &t3, &err), -WLM_ELIMIT);
    free(t1);
    free(t2);
    free(grown);
    nodeagent_pool_free(p);
    a->ops->free(a);
}

static void test_repo_and_reconcile(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/repo.db", tmpdir);
    struct nodeagent_repo *r;
    struct wlm_error err = {0};
    assert_int_equal(nodeagent_repo_open(path, &r, &err), 0);
    struct nodeagent_vm_rec v = {.exit_status = -1};
    const char *jobs[] = {"alive", "gone", "saved", "done"};
    const char *states[] = {"running", "running", "suspended", "finished"};
    for (int i = 0; i < 4; i++) {
        wlm_strlcpy(v.job, jobs[i], sizeof(v.job));
        snprintf(v.domain, sizeof(v.domain), "wlm-%s", jobs[i]);
        wlm_strlcpy(v.state, states[i], sizeof(v.state));
        assert_int_equal(nodeagent_repo_put(r, &v, &err), 0);
    }
    struct nodeagent_vm_rec got;
    assert_int_equal(nodeagent_repo_get(r, "saved", &got, &err), 0);
    assert_string_equal(got.state, "suspended");
    assert_int_equal(nodeagent_repo_get(r, "x", &got, &err), -WLM_ENOTFOUND);
    /* Persisted: a reopened repository has the same records. */
    nodeagent_repo_close(r);
    assert_int_equal(nodeagent_repo_open(path, &r, &err), 0);
    struct nodeagent_vm_rec *recs;
    size_t n;
    assert_int_equal(nodeagent_repo_list(r, &recs, &n, &err), 0);
    assert_int_equal(n, 4);

    struct nodeagent_wl_info live[2] = {{.id = "alive", .state = NODEAGENT_WL_PAUSED},
                                        {.id = "stranger", .state = NODEAGENT_WL_RUNNING}};
    struct nodeagent_reconcile rc;
    assert_int_equal(nodeagent_reconcile_compute(recs, n, live, 2, &rc), 0);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(recs[i].job, "alive")) {
            assert_int_equal(rc.verdict[i], NODEAGENT_ADOPT);
            assert_int_equal(rc.live_state[i], NODEAGENT_WL_PAUSED);
        } else if (!strcmp(recs[i].job, "gone")) {
            assert_int_equal(rc.verdict[i], NODEAGENT_LOST);
        } else if (!strcmp(recs[i].job, "saved")) {
            assert_int_equal(rc.verdict[i], NODEAGENT_SUSPENDED);
        } else {
            assert_int_equal(rc.verdict[i], NODEAGENT_KEEP);
        }
    }
    assert_int_equal(rc.norphans, 1);
    assert_string_equal(rc.orphans[0], "stranger");
    nodeagent_reconcile_fini(&rc);
    free(recs);
    assert_int_equal(nodeagent_repo_delete(r, "done", &err), 0);
    assert_int_equal(nodeagent_repo_get(r, "done", &got, &err), -WLM_ENOTFOUND);
    nodeagent_repo_close(r);
}

/* Actions and instances persist across a reopen (an agent restart). */
static void test_repo_actions_instances(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/repo2.db", tmpdir);
    struct nodeagent_repo *r;
    struct wlm_error err = {0};
    assert_int_equal(nodeagent_repo_open(path, &r, &err), 0);
    struct nodeagent_action_rec a = {.id = "a1",
                                     .kind = "start",
                                     .target = "j1",
                                     .status = "running",
                                     .params = "{\"id\":\"a1\"}"};
    assert_int_equal(nodeagent_repo_action_put(r, &a, &err), 0);
    struct nodeagent_action_rec b = {.id = "a2",
                                     .kind = "pause",
                                     .target = "j1",
                                     .status = "succeeded",
                                     .doc = "{\"status\":\"succeeded\"}"};
    assert_int_equal(nodeagent_repo_action_put(r, &b, &err), 0);
    struct nodeagent_inst_rec in = {.id = "web1", .pid = 42, .start_ticks = 7, .port = 8080};
    wlm_strlcpy(in.command, "exec app", sizeof(in.command));
    assert_int_equal(nodeagent_repo_inst_put(r, &in, &err), 0);
    nodeagent_repo_close(r);
    assert_int_equal(nodeagent_repo_open(path, &r, &err), 0);
    struct nodeagent_action_rec *run = NULL;
    size_t n = 0;
    assert_int_equal(nodeagent_repo_action_running(r, &run, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(run[0].id, "a1");
    assert_string_equal(run[0].params, "{\"id\":\"a1\"}");
    nodeagent_action_rec_fini(&run[0]);
    free(run);
    struct nodeagent_action_rec got;
    assert_int_equal(nodeagent_repo_action_get(r, "a2", &got, &err), 0);
    assert_string_equal(got.doc, "{\"status\":\"succeeded\"}");
    nodeagent_action_rec_fini(&got);
    assert_int_equal(nodeagent_repo_action_get(r, "zz", &got, &err), -WLM_ENOTFOUND);
    struct nodeagent_inst_rec *ins = NULL;
    assert_int_equal(nodeagent_repo_inst_list(r, &ins, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ins[0].pid, 42);
    assert_int_equal(ins[0].start_ticks, 7);
    assert_string_equal(ins[0].command, "exec app");
    free(ins);
    assert_int_equal(nodeagent_repo_inst_delete(r, "web1", &err), 0);
    assert_int_equal(nodeagent_repo_inst_list(r, &ins, &n, &err), 0);
    assert_int_equal(n, 0);
    free(ins);
    nodeagent_repo_close(r);
}

/* A pid is the instance only with its start time, marker and command. */
static void test_proc_check(void **state)
{
    (void)state;
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"sleep", "30", NULL};
        char *envp[] = {"WLM_INSTANCE=u1", NULL};
        execve("/bin/sleep", argv, envp);
        _exit(127);
    }
    assert_true(pid > 0);
    char why[400];
    unsigned long long ticks = 0;
    /* Wait for the exec (the marker is in the new image's environment). */
    int rc = -1;
    for (int i = 0; i < 200 && rc != 0; i++) {
        usleep(10000);
        assert_int_equal(nodeagent_proc_start_ticks(pid, &ticks), 0);
        rc = nodeagent_proc_check(pid, ticks, "u1", "exec sleep 30", why, sizeof(why));
    }
    assert_int_equal(rc, 0);
    assert_int_equal(nodeagent_proc_check(pid, ticks + 1, "u1", "exec sleep 30", why, sizeof(why)),
                     -WLM_ENOTFOUND);
    assert_non_null(strstr(why, "reused"));
    assert_int_equal(nodeagent_proc_check(pid, ticks, "u2", "exec sleep 30", why, sizeof(why)),
                     -WLM_ENOTFOUND);
    assert_int_equal(
        nodeagent_proc_check(pid, ticks, "u1", "exec python3 app.py", why, sizeof(why)),
        -WLM_ENOTFOUND);
    struct nodeagent_proc_usage u;
    assert_int_equal(nodeagent_proc_session_usage(pid, &u), 0);
    assert_int_equal(u.start_ticks, ticks);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(nodeagent_proc_check(pid, ticks, "u1", NULL, why, sizeof(why)),
                     -WLM_ENOTFOUND);
}

static void test_console_and_power(void **state)
{
    (void)state;
    const char *log = "[    0.1] kernel noise\nWLM-START\ncount 1\nWLM-PROGRESS 50%\ncount 2\r\n"
                      "WLM-EXIT 3\n[ 9.0] reboot: Power down\n";
    struct nodeagent_console_state cs;
    char *out = NULL;
    nodeagent_console_parse(log, strlen(log), &cs, &out);
    assert_int_equal(cs.exit_status, 3);
    assert_string_equal(cs.progress, "50%");
    assert_string_equal(out, "count 1\ncount 2\n");
    free(out);
    nodeagent_console_parse("WLM-START\nrunning\n", 18, &cs, NULL);
    assert_int_equal(cs.exit_status, -1);

    assert_true(nodeagent_power_linear(100, 200, 0) == 100);
    assert_true(nodeagent_power_linear(100, 200, 0.5) == 150);
    assert_true(nodeagent_power_linear(100, 200, 7) == 200);
    double cpu[3] = {1, 3, 0}, e[3];
    nodeagent_energy_split(40, cpu, 3, e);
    assert_true(e[0] == 10 && e[1] == 30 && e[2] == 0);

    char path[512];
    snprintf(path, sizeof(path), "%s/t.cpio", tmpdir);
    const char *names[] = {"cmd"}, *data[] = {"echo hello"};
    struct wlm_error err = {0};
    assert_int_equal(nodeagent_cpio_write(path, NULL, "job", names, data, 1, &err), 0);
    FILE *f = fopen(path, "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(n > 110 && !memcmp(buf, "070701", 6));
    assert_non_null(memmem(buf, n, "job/cmd", 7));
    assert_non_null(memmem(buf, n, "echo hello", 10));
    assert_non_null(memmem(buf, n, "TRAILER!!!", 10));
    assert_int_equal(n % 4, 0);

    if (access("/bin/busybox", R_OK) == 0) {
        snprintf(path, sizeof(path), "%s/initramfs.cpio", tmpdir);
        assert_int_equal(nodeagent_initramfs_write(path, "/bin/busybox", NULL, &err), 0);
        f = fopen(path, "rb");
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        assert_true(!memcmp(buf, "070701", 6));
        assert_non_null(memmem(buf, n, "bin/busybox", 11));
        /* With the job kernel's version, the waiting init's modules ride along. */
        char kver[256];
        if (nodeagent_kernel_version("/boot/vmlinuz-does-not-matter", kver, sizeof(kver)) < 0) {
            FILE *p = popen("ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1", "r");
            char k[512] = "";
            if (p) {
                if (!fgets(k, sizeof(k), p))
                    k[0] = '\0';
                pclose(p);
            }
            k[strcspn(k, "\n")] = '\0';
            if (k[0] && nodeagent_kernel_version(k, kver, sizeof(kver)) == 0) {
                assert_int_equal(nodeagent_initramfs_write(path, "/bin/busybox", kver, &err), 0);
                struct stat sb;
                assert_int_equal(stat(path, &sb), 0);
                char *all = malloc((size_t)sb.st_size);
                f = fopen(path, "rb");
                size_t got = fread(all, 1, (size_t)sb.st_size, f);
                fclose(f);
                assert_non_null(memmem(all, got, "lib/modules/virtio_console.ko", 29));
                assert_non_null(memmem(all, got, "lib/modules/virtio_pci.ko", 25));
                assert_non_null(memmem(all, got, "WLM-READY", 9));
                free(all);
            }
        }
    }
    char kv[64];
    assert_int_equal(nodeagent_kernel_version("/boot/bzImage", kv, sizeof(kv)), -ENOENT);
    assert_int_equal(nodeagent_initramfs_write(path, "/no/busybox", NULL, &err), -ENOENT);

    json_t *l = nodeagent_parse_labels("zone=a, gpu=no", &err);
    assert_non_null(l);
    assert_string_equal(json_string_value(json_object_get(l, "gpu")), "no");
    json_decref(l);
    assert_null(nodeagent_parse_labels("zone", &err));
    assert_string_equal(err.field, "labels");
}

static void test_process_driver(void **state)
{
    (void)state;
    struct wlm_error err = {0};
    char cg[64];
    snprintf(cg, sizeof(cg), "wlm-unit-%d", (int)getpid());
    struct nodeagent_driver *d = nodeagent_process_new(cg, 2000, &err);
    assert_non_null(d);
    char log[512];
    snprintf(log, sizeof(log), "%s/web.log", tmpdir);
    struct nodeagent_spec s = {.id = "web1",
                               .command = "echo port={port} $PORT; exec sleep 30",
                               .console = log,
                               .port = 8123};
    assert_int_equal(d->ops->start(d, &s, &err), 0);
    assert_int_equal(d->ops->start(d, &s, &err), -WLM_ECONFLICT);
    /* Let the child run its echo before it is stopped and signalled. */
    struct stat sb;
    for (int i = 0; i < 500 && (stat(log, &sb) != 0 || sb.st_size == 0); i++)
        usleep(10000);
    struct nodeagent_wl_info wi;
    assert_int_equal(d->ops->info(d, "web1", &wi, &err), 0);
    assert_true(wi.pid > 0);
    struct nodeagent_resize r = {.cpu_cap_mhz = 500};
    int rc = d->ops->resize(d, "web1", &r, &err);
    if (!strcmp(nodeagent_process_cap_mode(d), "uncapped")) {
        assert_int_equal(rc, -WLM_EUNSUPPORTED);
    } else {
        /* 500 MHz of a 2000 MHz core = a quarter of each period. */
        assert_int_equal(rc, 0);
        d->ops->info(d, "web1", &wi, &err);
        assert_int_equal(wi.vcpu_quota_us, 25000);
        assert_int_equal(wi.period_us, 100000);
    }
    assert_int_equal(d->ops->pause(d, "web1", &err), 0);
    usleep(50000);
    d->ops->info(d, "web1", &wi, &err);
    assert_int_equal(wi.state, NODEAGENT_WL_PAUSED);
    assert_int_equal(d->ops->resume(d, "web1", &err), 0);
    struct nodeagent_resize vc = {.vcpus = 2};
    assert_int_equal(d->ops->resize(d, "web1", &vc, &err), -WLM_EUNSUPPORTED);
    assert_int_equal(d->ops->suspend(d, "web1", "/tmp/x", &err), -WLM_EUNSUPPORTED);
    assert_int_equal(d->ops->stop(d, "web1", 0, &err), 0);
    assert_int_equal(d->ops->info(d, "web1", &wi, &err), -WLM_ENOTFOUND);
    FILE *f = fopen(log, "r");
    char line[128] = "";
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "port=8123 8123\n");

    /* CPU burnt by a child of the instance's shell is the instance's. */
    struct nodeagent_spec burn = {.id = "burn", .command = "(while :; do :; done) & wait"};
    assert_int_equal(d->ops->start(d, &burn, &err), 0);
    double cpu = 0;
    for (int i = 0; i < 100 && cpu < 0.05; i++) {
        usleep(20000);
        assert_int_equal(d->ops->info(d, "burn", &wi, &err), 0);
        cpu = wi.cpu_seconds;
    }
    assert_true(cpu >= 0.05);
    assert_int_equal(d->ops->stop(d, "burn", 1, &err), 0);
    d->ops->free(d);
}

/* ---------------------------------------------------------------- agent over HTTP */

struct agents {
    uv_loop_t loop;
    uv_async_t stop;
    struct nodeagent *a, *b;
    pthread_t thr;
    int stopped;
};

static void agent_stopped(void *ud)
{
    struct agents *g = ud;
    if (++g->stopped == 2)
        uv_close((uv_handle_t *)&g->stop, NULL);
}

static void on_stop(uv_async_t *h)
{
    struct agents *g = h->data;
    nodeagent_stop(g->a, agent_stopped, g);
    nodeagent_stop(g->b, agent_stopped, g);
}

static void *loop_thread(void *arg)
{
    struct agents *g = arg;
    uv_run(&g->loop, UV_RUN_DEFAULT);
    return NULL;
}

static struct nodeagent *make_agent(struct agents *g, const char *name, const char *shared)
{
    struct nodeagent_config c;
    memset(&c, 0, sizeof(c));
    struct wlm_error err = {0};
    assert_int_equal(wlm_config_load(nodeagent_cfg_fields, nodeagent_cfg_nfields, &c, NULL, &err),
                     0);
    wlm_strlcpy(c.name, name, sizeof(c.name));
    node_xml(name, 4, 2400, 8192, c.libvirt_uri, sizeof(c.libvirt_uri));
    snprintf(c.state_dir, sizeof(c.state_dir), "%s/%s", tmpdir, name);
    wlm_strlcpy(c.shared_dir, shared, sizeof(c.shared_dir));
    /* No controller listens here: the agent keeps retrying, quietly. */
    wlm_strlcpy(c.controller, "http://127.0.0.1:1", sizeof(c.controller));
    wlm_strlcpy(c.token, "tok", sizeof(c.token));
    c.heartbeat_ms = 50;
    struct nodeagent *a = nodeagent_new(&g->loop, &c, &err);
    if (!a)
        fail_msg("agent %s: %s", name, err.msg);
    if (nodeagent_start(a, &err) < 0)
        fail_msg("start %s: %s", name, err.msg);
    return a;
}

static json_t *call(struct nodeagent *a, const char *method, const char *path, const char *body,
                    int *status)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", nodeagent_port(a), path);
    struct wlm_http_response resp = {0};
    struct wlm_error err = {0};
    int r = wlm_http_fetch(method, url, "tok", body ? "application/json" : NULL, body,
                           body ? strlen(body) : 0, 5000, &resp, &err);
    if (r < 0)
        fail_msg("%s %s: %s", method, url, err.msg);
    *status = resp.status;
    json_t *o = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL);
    wlm_http_response_fini(&resp);
    return o;
}

/* POST an action and poll until it is no longer running. */
static json_t *act(struct nodeagent *a, const char *body, int *post_status)
{
    json_t *r = call(a, "POST", "/v1/actions", body, post_status);
    if (*post_status != 202) {
        return r;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/actions/%s", json_string_value(json_object_get(r, "id")));
    json_decref(r);
    for (int i = 0; i < 200; i++) {
        int st;
        json_t *g = call(a, "GET", path, NULL, &st);
        assert_int_equal(st, 200);
        const char *s = json_string_value(json_object_get(g, "status"));
        if (strcmp(s, "running") && strcmp(s, "accepted"))
            return g;
        json_decref(g);
        usleep(20000);
    }
    fail_msg("action did not finish: %s", body);
    return NULL;
}

static const char *status_of(json_t *o)
{
    return json_string_value(json_object_get(o, "status"));
}

static void test_agent_actions(void **state)
{
    (void)state;
    struct agents g;
    memset(&g, 0, sizeof(g));
    uv_loop_init(&g.loop);
    uv_async_init(&g.loop, &g.stop, on_stop);
    g.stop.data = &g;
    char shared[512];
    snprintf(shared, sizeof(shared), "%s/shared", tmpdir);
    mkdir(shared, 0755);
    g.a = make_agent(&g, "agent-a", shared);
    g.b = make_agent(&g, "agent-b", shared);
    pthread_create(&g.thr, NULL, loop_thread, &g);

    int st;
    json_t *r;
    /* Health without a token; the API needs one. */
    r = call(g.a, "GET", "/healthz", NULL, &st);
    assert_int_equal(st, 200);
    json_decref(r);

    r = act(g.a, "{\"id\":\"s1\",\"kind\":\"start\",\"job\":\"j1\",\"command\":\"count\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_t *res = json_object_get(r, "result");
    assert_string_equal(json_string_value(json_object_get(res, "ip")), "10.77.0.10");
    assert_non_null(strstr(json_string_value(json_object_get(res, "image")), "img-"));
    /* The test driver has no warm pool: every start is a cold one. */
    assert_string_equal(json_string_value(json_object_get(res, "path")), "cold");
    json_decref(r);
    /* Bad environment and bad pool hints are refused and change nothing. */
    r = call(g.a, "POST", "/v1/actions",
             "{\"id\":\"e1\",\"kind\":\"start\",\"job\":\"je\",\"command\":\"x\","
             "\"env\":{\"1BAD\":\"v\"}}",
             &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(json_string_value(json_object_get(r, "detail")), "1BAD"));
    json_decref(r);
    r = call(g.a, "GET", "/v1/jobs/je", NULL, &st);
    assert_int_equal(st, 404);
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions",
             "{\"id\":\"e2\",\"kind\":\"start\",\"job\":\"je\",\"command\":\"x\",\"env\":[1]}",
             &st);
    assert_int_equal(st, 400);
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions",
             "{\"id\":\"h1\",\"kind\":\"pool_hint\",\"shapes\":[{\"vcpus\":1,\"memory_mb\":8,"
             "\"starts\":1}]}",
             &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(json_string_value(json_object_get(r, "detail")), "shapes[0]"));
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions", "{\"id\":\"h2\",\"kind\":\"pool_hint\",\"shapes\":3}",
             &st);
    assert_int_equal(st, 400);
    json_decref(r);
    r = act(g.a,
            "{\"id\":\"h3\",\"kind\":\"pool_hint\",\"shapes\":[{\"vcpus\":2,\"memory_mb\":256,"
            "\"starts\":3}]}",
            &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    /* Same id again: the first result, nothing started twice. */
    r = call(g.a, "POST", "/v1/actions",
             "{\"id\":\"s1\",\"kind\":\"start\",\"job\":\"j1\",\"command\":\"count\"}", &st);
    assert_int_equal(st, 200);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    /* A new id starting the same job: conflict. */
    r = call(g.a, "POST", "/v1/actions",
             "{\"id\":\"s1b\",\"kind\":\"start\",\"job\":\"j1\",\"command\":\"count\"}", &st);
    assert_int_equal(st, 409);
    json_decref(r);
    /* Clear 4xx: unknown kind, unknown job, conflicting state, bad params. */
    r = call(g.a, "POST", "/v1/actions", "{\"id\":\"x1\",\"kind\":\"fly\",\"job\":\"j1\"}", &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(json_string_value(json_object_get(r, "detail")), "fly"));
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions", "{\"id\":\"x2\",\"kind\":\"pause\",\"job\":\"zz\"}", &st);
    assert_int_equal(st, 404);
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions", "{\"id\":\"x3\",\"kind\":\"resume\",\"job\":\"j1\"}", &st);
    assert_int_equal(st, 409);
    assert_non_null(strstr(json_string_value(json_object_get(r, "detail")), "running"));
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions",
             "{\"id\":\"x4\",\"kind\":\"resize\",\"job\":\"j1\",\"vcpus\":0}", &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(json_string_value(json_object_get(r, "detail")), "vcpus"));
    json_decref(r);
    r = call(g.a, "GET", "/v1/actions/none", NULL, &st);
    assert_int_equal(st, 404);
    json_decref(r);

    r = act(g.a, "{\"id\":\"p1\",\"kind\":\"pause\",\"job\":\"j1\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    r = act(g.a, "{\"id\":\"r1\",\"kind\":\"resume\",\"job\":\"j1\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    r = act(g.a, "{\"id\":\"z1\",\"kind\":\"resize\",\"job\":\"j1\",\"vcpus\":2}", &st);
    assert_string_equal(status_of(r), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "result"), "vcpus")), 2);
    json_decref(r);
    r = act(g.a, "{\"id\":\"z2\",\"kind\":\"resize\",\"job\":\"j1\",\"vcpu_quota\":5000}", &st);
    assert_string_equal(status_of(r), "failed");
    assert_string_equal(json_string_value(json_object_get(r, "error")), "unsupported");
    json_decref(r);

    /* Migrate A -> B through the suspend/copy/restore fallback. */
    char body[512];
    snprintf(
        body, sizeof(body),
        "{\"id\":\"m1\",\"kind\":\"migrate\",\"job\":\"j1\",\"target\":\"http://127.0.0.1:%d\"}",
        nodeagent_port(g.b));
    r = act(g.a, body, &st);
    assert_string_equal(status_of(r), "succeeded");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "result"), "mode")),
                        "suspend-copy-restore");
    json_decref(r);
    r = call(g.b, "GET", "/v1/jobs/j1", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "running");
    json_decref(r);
    r = call(g.a, "GET", "/v1/jobs/j1", NULL, &st);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "migrated");
    json_decref(r);

    /* Suspend on B, restore on A explicitly. */
    r = act(g.b, "{\"id\":\"sb\",\"kind\":\"suspend\",\"job\":\"j1\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    r = call(g.b, "POST", "/v1/actions", "{\"id\":\"pb\",\"kind\":\"pause\",\"job\":\"j1\"}", &st);
    assert_int_equal(st, 409);
    json_decref(r);
    r = act(g.a, "{\"id\":\"ra\",\"kind\":\"restore\",\"job\":\"j1\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    /* The save file was consumed: restoring again cannot run it twice. */
    r = call(g.b, "POST", "/v1/actions", "{\"id\":\"rb\",\"kind\":\"restore\",\"job\":\"j1\"}",
             &st);
    assert_int_equal(st, 404);
    json_decref(r);

    /* Power: refused while jobs run; once off, starts are refused. */
    r = call(g.a, "POST", "/v1/actions", "{\"id\":\"off1\",\"kind\":\"power_off\"}", &st);
    assert_int_equal(st, 409);
    json_decref(r);
    r = act(g.a, "{\"id\":\"d1\",\"kind\":\"destroy\",\"job\":\"j1\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    assert_true(json_is_true(json_object_get(json_object_get(r, "result"), "scrubbed")));
    json_decref(r);
    /* A simulated job (test driver) finishes after its running time. */
    r = act(g.b,
            "{\"id\":\"sim1\",\"kind\":\"start\",\"job\":\"js\",\"command\":\"x\","
            "\"sim_seconds\":0.3}",
            &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    const char *jst = NULL;
    for (int i = 0; i < 250; i++) {
        r = call(g.b, "GET", "/v1/jobs/js", NULL, &st);
        jst = json_string_value(json_object_get(r, "state"));
        if (!strcmp(jst, "finished"))
            break;
        json_decref(r);
        r = NULL;
        usleep(20000);
    }
    assert_non_null(r);
    assert_string_equal(jst, "finished");
    assert_int_equal(json_integer_value(json_object_get(r, "exit_status")), 0);
    assert_non_null(strstr(json_string_value(json_object_get(r, "output")), "simulated"));
    assert_string_equal(json_string_value(json_object_get(r, "progress_source")), "simulated");
    json_decref(r);

    /* Stop: the job is "stopped" (not failed) and its image is back. */
    r = act(g.a, "{\"id\":\"s2\",\"kind\":\"start\",\"job\":\"j2\",\"command\":\"x\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    r = act(g.a, "{\"id\":\"t2\",\"kind\":\"stop\",\"job\":\"j2\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    r = call(g.a, "GET", "/v1/jobs/j2", NULL, &st);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "stopped");
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions", "{\"id\":\"t3\",\"kind\":\"stop\",\"job\":\"j2\"}", &st);
    assert_int_equal(st, 409);
    json_decref(r);
    r = act(g.a, "{\"id\":\"off2\",\"kind\":\"power_off\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    r = call(g.a, "POST", "/v1/actions",
             "{\"id\":\"s9\",\"kind\":\"start\",\"job\":\"j9\",\"command\":\"x\"}", &st);
    assert_int_equal(st, 409);
    assert_non_null(strstr(json_string_value(json_object_get(r, "detail")), "powered off"));
    json_decref(r);
    r = act(g.a, "{\"id\":\"on1\",\"kind\":\"power_on\"}", &st);
    assert_string_equal(status_of(r), "succeeded");
    json_decref(r);
    r = call(g.a, "GET", "/v1/node", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "power"), "state")),
                        "on");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "pool"), "used")), 0);
    json_decref(r);

    uv_async_send(&g.stop);
    pthread_join(g.thr, NULL);
    nodeagent_free(g.a);
    nodeagent_free(g.b);
    uv_loop_close(&g.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_info_per_node), cmocka_unit_test(test_vm_operations),
        cmocka_unit_test(test_pool_domain_claim),  cmocka_unit_test(test_image_pool),
        cmocka_unit_test(test_repo_and_reconcile), cmocka_unit_test(test_repo_actions_instances),
        cmocka_unit_test(test_proc_check),         cmocka_unit_test(test_console_and_power),
        cmocka_unit_test(test_process_driver),     cmocka_unit_test(test_agent_actions),
    };
    wlm_log_set_level(WLM_LOG_ERROR);
    return cmocka_run_group_tests(tests, setup, teardown);
}
