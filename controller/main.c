/* wlm-controller: the cluster's control plane. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "controller.h"
#include "ha.h"

static struct controller *ctl;
static uv_signal_t sigint, sigterm;

static void on_stopped(void *ud)
{
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    wlm_info("controller", "stopping", "signal=%d", signum);
    uv_signal_stop(&sigint);
    uv_signal_stop(&sigterm);
    controller_stop(ctl, on_stopped, NULL);
}

int main(int argc, char **argv)
{
    struct controller_config cfg;
    struct wlm_error err = {0};
    int rc = wlm_daemon_args(argc, argv, "wlm-controller",
                             "The wlm control plane: REST API, node registry, job scheduler,\n"
                             "placement and flow control loops.",
                             controller_cfg_fields, controller_cfg_nfields, &cfg, &err);
    if (rc == 1)
        return 0;
    if (rc) {
        fprintf(stderr, "wlm-controller: %s\n", err.msg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    if (cfg.store[0])
        return ctl_ha_main(loop, &cfg, argv);
    if (controller_new(loop, &cfg, &ctl, &err) || controller_start(ctl, &err)) {
        fprintf(stderr, "wlm-controller: %s\n", err.msg);
        if (ctl)
            controller_stop(ctl, NULL, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        controller_free(ctl);
        return 1;
    }
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    controller_free(ctl);
    uv_loop_close(loop);
    wlm_info("controller", "stopped", NULL);
    return 0;
}
