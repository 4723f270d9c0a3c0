/* Configuration table of wlm-nodeagent and the defaults that depend on the
 * machine (hostname, state directory). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodeagent.h"

#define F(field) offsetof(struct nodeagent_config, field)
#define S(field) sizeof(((struct nodeagent_config *)0)->field)

const struct wlm_cfg_field nodeagent_cfg_fields[] = {
    {"name", WLM_CFG_STR, F(name), S(name), "WLM_NODE_NAME", "", 0, -1,
     "node name (default: the hostname)"},
    {"controller", WLM_CFG_STR, F(controller), S(controller), "WLM_CONTROLLER",
     "http://127.0.0.1:7700", 0, -1,
     "controller base URL; several comma separated (HA: the next on failure, redirects followed)"},
    {"token", WLM_CFG_STR, F(token), S(token), "WLM_TOKEN", "", 0, -1,
     "bearer token presented to the controller (an agent token for this node, or the shared "
     "token); also protects this agent's API unless --api-token is given"},
    {"api_token", WLM_CFG_STR, F(api_token), S(api_token), "WLM_AGENT_API_TOKEN", "", 0, -1,
     "bearer token required on this agent's API and presented to peer agents (migration); "
     "the controller's --agent-token"},
    {"tls_cert", WLM_CFG_STR, F(tls_cert), S(tls_cert), "WLM_TLS_CERT", "", 0, -1,
     "serve the agent API over HTTPS with this certificate chain (PEM)"},
    {"tls_key", WLM_CFG_STR, F(tls_key), S(tls_key), "WLM_TLS_KEY", "", 0, -1,
     "private key (PEM) of --tls-cert"},
    {"ca", WLM_CFG_STR, F(ca), S(ca), "WLM_CA", "", 0, -1,
     "CA certificates (PEM) that https:// controller and peer agents are checked against "
     "(default: the system's)"},
    {"libvirt_uri", WLM_CFG_STR, F(libvirt_uri), S(libvirt_uri), "WLM_LIBVIRT_URI",
     "test:///default", 0, -1,
     "libvirt connection URI (test:///ABS/PATH.xml, qemu:///system) or 'none'"},
    {"listen_host", WLM_CFG_STR, F(listen_host), S(listen_host), NULL, "127.0.0.1", 0, -1,
     "address of the agent API"},
    {"listen_port", WLM_CFG_INT, F(listen_port), 0, NULL, "0", 0, 65535,
     "port of the agent API (0 = pick a free one)"},
    {"state_dir", WLM_CFG_STR, F(state_dir), S(state_dir), "WLM_STATE_DIR", "", 0, -1,
     "repository, job dirs, console logs (default /tmp/wlm-nodeagent-NAME)"},
    {"shared_dir", WLM_CFG_STR, F(shared_dir), S(shared_dir), "WLM_SHARED_DIR", "", 0, -1,
     "shared storage for VM save files (default: wlm-shared beside STATE_DIR)"},
    {"cgroup", WLM_CFG_STR, F(cgroup), S(cgroup), NULL, "", 0, -1,
     "cgroup (under the cpu and cpuacct hierarchies) that app instances run in (default "
     "wlm-NAME); two agents on one machine need different ones"},
    {"heartbeat_ms", WLM_CFG_INT, F(heartbeat_ms), 0, NULL, "2000", 50, 3600000,
     "heartbeat period in milliseconds"},
    {"labels", WLM_CFG_STR, F(labels), S(labels), NULL, "", 0, -1, "node labels k=v,k=v"},
    {"pool_size", WLM_CFG_INT, F(pool_size), 0, NULL, "1", 0, 1000,
     "warm pool: job VMs kept booted and paused per VM shape (real hypervisors; the controller's "
     "pool_hint can ask for more); also the disk images pre-created at start-up"},
    {"pool_memory_mb", WLM_CFG_INT, F(pool_memory_mb), 0, NULL, "2048", 0, 1LL << 30,
     "warm pool: most memory (MiB, resident) its parked VMs may hold"},
    {"pool_reserve_mb", WLM_CFG_INT, F(pool_reserve_mb), 0, NULL, "1024", 0, 1LL << 30,
     "warm pool: memory (MiB) always left available to placed workloads; parked VMs are "
     "destroyed when available memory falls below it"},
    {"boot_timeout_s", WLM_CFG_INT, F(boot_timeout_s), 0, NULL, "90", 1, 3600,
     "a job VM that does not reach its init within this many seconds is destroyed and its "
     "start fails"},
    {"pool_max", WLM_CFG_INT, F(pool_max), 0, NULL, "8", 0, 1000,
     "the image pool grows on demand up to this many images"},
    {"base_image_mb", WLM_CFG_INT, F(base_image_mb), 0, NULL, "16", 1, 1048576,
     "size of the base disk image (MiB)"},
    {"kernel", WLM_CFG_STR, F(kernel), S(kernel), "WLM_KERNEL", "", 0, -1,
     "job VM kernel (default: newest /boot/vmlinuz-*, booted as its extracted PVH vmlinux when "
     "possible)"},
    {"initramfs", WLM_CFG_STR, F(initramfs), S(initramfs), "WLM_INITRAMFS", "", 0, -1,
     "job VM initramfs (default: STATE_DIR/initramfs.cpio, built from /bin/busybox)"},
    {"vm_memory_mb", WLM_CFG_INT, F(vm_memory_mb), 0, NULL, "192", 32, 1048576,
     "default memory of a job VM (MiB)"},
    {"images_shared", WLM_CFG_BOOL, F(images_shared), 0, NULL, "false", 0, -1,
     "the image pool's directory is storage the migration targets see too (one machine, "
     "NFS): live migration moves VMs with their disks"},
    {"vm_type", WLM_CFG_STR, F(vm_type), S(vm_type), "WLM_VM_TYPE", "qemu", 0, -1,
     "libvirt domain type of job VMs: qemu (TCG, works everywhere) or kvm"},
    {"ip_pool", WLM_CFG_STR, F(ip_pool), S(ip_pool), NULL, "10.77.0.10", 0, -1,
     "first IP address handed to job VMs"},
    {"idle_watts", WLM_CFG_NUM, F(idle_watts), 0, NULL, "100", 0, 100000,
     "power model: watts when idle"},
    {"max_watts", WLM_CFG_NUM, F(max_watts), 0, NULL, "250", 0, 100000,
     "power model: watts at full load"},
    {"cpufreq_dir", WLM_CFG_STR, F(cpufreq_dir), S(cpufreq_dir), NULL, "/sys/devices/system/cpu",
     0, -1, "power budget: lower CPU frequency through DIR/cpu*/cpufreq/scaling_max_freq when "
     "writable, else cap CPU of workloads (\"\" = caps only)"},
    {"power_on_cmd", WLM_CFG_STR, F(power_on_cmd), S(power_on_cmd), NULL, "", 0, -1,
     "command run to power the node on (default: simulated power state)"},
    {"power_off_cmd", WLM_CFG_STR, F(power_off_cmd), S(power_off_cmd), NULL, "", 0, -1,
     "command run to power the node off (default: simulated power state)"},
    {"app_user", WLM_CFG_STR, F(app_user), S(app_user), "WLM_APP_USER", "wlm-app", 0, -1,
     "unprivileged user app instances run as when their app names none (root agents only)"},
    {"app_dir", WLM_CFG_STR, F(app_dir), S(app_dir), "WLM_APP_DIR", "", 0, -1,
     "private working directories of app instances (default: /var/lib/wlm/apps/NAME-HASH as root, "
     "else STATE_DIR.apps)"},
};
const size_t nodeagent_cfg_nfields = WLM_ARRAY_LEN(nodeagent_cfg_fields);

void nodeagent_config_finish(struct nodeagent_config *c)
{
    if (!c->name[0]) {
        if (gethostname(c->name, sizeof(c->name) - 1) != 0 || !c->name[0])
            wlm_strlcpy(c->name, "node", sizeof(c->name));
    }
    if (!c->state_dir[0])
        snprintf(c->state_dir, sizeof(c->state_dir), "/tmp/wlm-nodeagent-%s", c->name);
    if (!c->cgroup[0])
        snprintf(c->cgroup, sizeof(c->cgroup), "wlm-%.80s", c->name);
    if (!c->shared_dir[0]) {
        /* Agents whose state dirs are siblings (one machine, a demo or a
         * test) share save files by default, so suspend on one node and
         * restore on another works without extra flags. */
        char tmp[sizeof(c->state_dir) + 16];
        wlm_strlcpy(tmp, c->state_dir, sizeof(tmp));
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/')
            tmp[--n] = '\0';
        char *slash = strrchr(tmp, '/');
        if (slash && slash != tmp)
            *slash = '\0';
        else
            wlm_strlcpy(tmp, "", sizeof(tmp));
        char out[sizeof(tmp) + 16];
        snprintf(out, sizeof(out), "%s/wlm-shared", tmp);
        wlm_strlcpy(c->shared_dir, out, sizeof(c->shared_dir));
    }
    if (!c->app_dir[0]) {
        /* Never inside the state dir: nothing an instance writes lands in
         * the agent's state. A root agent uses /var/lib/wlm/apps (its
         * parents must be traversable by the instances' user, which a
         * private state dir's parent need not be); one directory per
         * agent, named after the node and its state dir. */
        unsigned h = 2166136261u;
        for (const char *p = c->state_dir; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        if (geteuid() == 0) {
            snprintf(c->app_dir, sizeof(c->app_dir), "/var/lib/wlm/apps/%.60s-%08x", c->name, h);
        } else {
            char tmp[sizeof(c->state_dir)];
            wlm_strlcpy(tmp, c->state_dir, sizeof(tmp));
            size_t n = strlen(tmp);
            while (n > 1 && tmp[n - 1] == '/')
                tmp[--n] = '\0';
            snprintf(c->app_dir, sizeof(c->app_dir), "%.480s.apps", tmp);
        }
    }
    /* A trailing slash on the controller URL would double up in paths. */
    size_t n = strlen(c->controller);
    while (n > 0 && c->controller[n - 1] == '/')
        c->controller[--n] = '\0';
}

json_t *nodeagent_parse_labels(const char *s, struct wlm_error *err)
{
    json_t *o = json_object();
    if (!o) {
        wlm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    if (!s || !*s)
        return o;
    char *copy = wlm_strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) {
            wlm_error_setf(err, WLM_EINVAL, "labels", "label '%s' is not of the form key=value",
                           tok);
            free(copy);
            json_decref(o);
            return NULL;
        }
        *eq = '\0';
        json_object_set_new(o, tok, json_string(eq + 1));
    }
    free(copy);
    return o;
}
