/*
 * ha.h - several wlm-controllers on one etcd cluster: one leader.
 *
 * Every controller holds an etcd lease (lease_ttl_s) and campaigns with a
 * transaction that creates PREFIX/leader (bound to its lease) only when the
 * key does not exist. The winner loads the state from etcd and runs the
 * controller; each of its writes compares the leader key's create revision
 * (fencing). A standby listens on its port and answers every request with a
 * 307 to the leader (503 while there is none). A leader that cannot renew
 * its lease before it expires, or whose write is refused by the fence,
 * stops acting at once and restarts itself as a standby (exec).
 */
#ifndef WLM_CONTROLLER_HA_H
#define WLM_CONTROLLER_HA_H

#include "controller.h"

/* Run wlm-controller on etcd until SIGINT/SIGTERM; returns the exit code.
 * argv is what the process was started with (for the restart as standby). */
int ctl_ha_main(uv_loop_t *loop, const struct controller_config *cfg, char **argv);

/* 1 when this process may act (send actions, decide): not in HA mode, or
 * leader with a lease that has not expired. A leader that finds it may not
 * act steps down. */
int ctl_ha_may_act(void);
/* "single", "leader" or "standby". */
const char *ctl_ha_role(void);
/* The leader's URL as last seen ("" when unknown). */
const char *ctl_ha_leader_url(void);

#endif
