/* wlm-nodeagent: wires the node agent library to a libuv loop and signals. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "nodeagent.h"

struct main_state {
    uv_loop_t *loop;
    struct nodeagent *agent;
    uv_signal_t sigint, sigterm;
    int stopping;
};

static void on_stopped(void *ud)
{
    struct main_state *m = ud;
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct main_state *m = h->data;
    if (m->stopping)
        return;
    m->stopping = 1;
    wlm_info("nodeagent", "stopping", "signal=%d", sig);
    nodeagent_stop(m->agent, on_stopped, m);
}

int main(int argc, char **argv)
{
    struct nodeagent_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    struct wlm_error err = {0};
    int r = wlm_daemon_args(argc, argv, "wlm-nodeagent",
                            "node agent: registers this server with the wlm controller, reports "
                            "capacity, usage and power, and runs job VMs (libvirt) and web "
                            "application instances (processes)",
                            nodeagent_cfg_fields, nodeagent_cfg_nfields, &cfg, &err);
    if (r == 1)
        return 0;
    if (r < 0) {
        fprintf(stderr, "wlm-nodeagent: %s\n", err.msg);
        return 2;
    }
    /* test://node.xml names a host "node.xml", not a file: libvirt's
     * error would not say so. */
    if (!strncmp(cfg.libvirt_uri, "test://", 7) && cfg.libvirt_uri[7] != '/') {
        fprintf(stderr,
                "wlm-nodeagent: libvirt_uri: '%s' is not a test-driver file; use "
                "test:///ABS/PATH/node.xml (three slashes, an absolute path) or test:///default\n",
                cfg.libvirt_uri);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Job starts hold a pool thread until the guest runs the job (up to
     * boot_timeout_s); libuv's default of 4 threads would let a few slow
     * boots hold up heartbeats. Set before the pool's first use. */
    setenv("UV_THREADPOOL_SIZE", "32", 0);
    struct main_state m = {0};
    m.loop = uv_default_loop();
    m.agent = nodeagent_new(m.loop, &cfg, &err);
    if (!m.agent) {
        fprintf(stderr, "wlm-nodeagent: %s\n", err.msg);
        return err.code == -WLM_EINVAL ? 2 : 1;
    }
    if (nodeagent_start(m.agent, &err) < 0) {
        fprintf(stderr, "wlm-nodeagent: %s\n", err.msg);
        nodeagent_free(m.agent);
        return 1;
    }
    uv_signal_init(m.loop, &m.sigint);
    uv_signal_init(m.loop, &m.sigterm);
    m.sigint.data = m.sigterm.data = &m;
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_run(m.loop, UV_RUN_DEFAULT);
    nodeagent_free(m.agent);
    uv_loop_close(m.loop);
    return 0;
}
