/*
 * nodeagent.h - the one public header of libwlm_nodeagent (wlm-nodeagent).
 *
 * The node agent runs on every server. It registers the server with the
 * controller, heartbeats capacity/usage/power, and carries out actions on job
 * VMs (libvirt) and web application instances (processes). The controller
 * never touches a hypervisor directly.
 *
 * Layers, bottom up:
 *   - drivers behind one function table (struct nodeagent_driver): "libvirt"
 *     for any connection URI (test:///..., qemu:///system) and "process";
 *     calls are blocking and synchronous, so the agent runs them on the libuv
 *     thread pool and unit tests call them directly;
 *   - the VM-ID repository (SQLite) and the pure reconcile function;
 *   - the agent (struct nodeagent): HTTP API, actions, registration, heartbeat.
 */
#ifndef WLM_NODEAGENT_H
#define WLM_NODEAGENT_H

#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- config */

struct nodeagent_config {
    char name[64];
    char controller[256];
    char token[256];
    char api_token[256];              /* required on this agent's API; "" = token (issue 17) */
    char tls_cert[512], tls_key[512]; /* HTTPS for this agent's API */
    char ca[512];                     /* CA file for https:// controller and peer agents */
    char libvirt_uri[512];            /* "none" = no hypervisor: capacity from /proc */
    char listen_host[64];
    long long listen_port;
    char state_dir[512];  /* repository, job dirs, console logs; default /tmp/wlm-nodeagent-NAME */
    char shared_dir[512]; /* shared storage for save files; default STATE/shared */
    char cgroup[96];      /* app instances' cgroup (cpu, cpuacct); default wlm-NAME */
    long long heartbeat_ms;
    char labels[512];                          /* "k=v,k=v" */
    long long pool_size;                       /* images pre-created at start-up */
    long long pool_max;                        /* the pool grows on demand up to this */
    long long pool_memory_mb, pool_reserve_mb; /* warm pool bounds */
    long long boot_timeout_s;
    long long base_image_mb;
    char kernel[512];    /* "" = newest /boot/vmlinuz-* */
    char initramfs[512]; /* "" = STATE/initramfs.cpio, written at start from /bin/busybox */
    long long vm_memory_mb;
    char vm_type[16];
    int images_shared; /* job VM disks are on storage migration targets see */
    char ip_pool[64];  /* first address of the pool: "10.77.0.10" */
    double idle_watts, max_watts;
    char cpufreq_dir[512]; /* where cpuN/cpufreq/scaling_max_freq live ("" = never use cpufreq) */
    char power_on_cmd[512], power_off_cmd[512];
    char app_user[64]; /* app instances run as this user unless the app names one */
    char app_dir[512]; /* private working directories of app instances (never
                          inside the state dir) */
};

/* The flag/config table (for wlm_daemon_args) and its length. */
extern const struct wlm_cfg_field nodeagent_cfg_fields[];
extern const size_t nodeagent_cfg_nfields;

/* Defaults that depend on the machine (name = hostname, state dir). Call
 * after wlm_daemon_args. */
void nodeagent_config_finish(struct nodeagent_config *c);

/* Parse "k=v,k=v" into a JSON object (caller decrefs); NULL + err when bad. */
json_t *nodeagent_parse_labels(const char *s, struct wlm_error *err);

/* ---------------------------------------------------------------- drivers */

struct nodeagent_node_info {
    int cores;
    int mhz;
    long long memory_mb;
    char arch[32];
};

/* What to run. Strings are borrowed for the duration of the call. */
struct nodeagent_spec {
    const char *id;      /* job id / instance id; names the domain or process */
    const char *command; /* job command (run by the VM's init) or process command line */
    const char *job_dir; /* files copied into the VM's /job (optional) */
    const char *image;   /* disk image path from the pool (optional) */
    const char *initrd;  /* per-job initramfs (libvirt; NULL = the driver's default) */
    const char *console; /* serial console log path (libvirt) or stdout log (process) */
    const char *hostname, *mac, *ip; /* configuration management */
    int vcpus;
    long long memory_mb;
    int port;             /* process: exported as $PORT and substituted for {port} */
    const char *channel;  /* libvirt: host side (unix socket) of the "wlm.job" virtio-serial
                             port the guest's init waits on (warm pool VMs) */
    long long cpu_shares; /* libvirt: initial CPU shares (0 = default) */
    /* Processes: run as this user (setgid/setuid, supplementary groups
     * dropped; NULL = as the agent), in this private working directory
     * (created, owned by the user, mode 0700; NULL = none). */
    const char *user;
    const char *workdir;
};

/* Resize request: 0 / NULL fields are left as they are. */
struct nodeagent_resize {
    int vcpus;
    const char *pin; /* per-vCPU host CPU lists, ";"-separated: "0-1;2" */
    long long cpu_shares;
    long long vcpu_quota_us; /* -1 = uncapped */
    long long period_us;
    double cpu_cap_mhz; /* processes: cap in MHz (converted with the node's MHz) */
};

enum nodeagent_wl_state {
    NODEAGENT_WL_NONE = 0, /* no such domain/process */
    NODEAGENT_WL_RUNNING,
    NODEAGENT_WL_PAUSED,
    NODEAGENT_WL_SHUTOFF,
    NODEAGENT_WL_CRASHED,
    NODEAGENT_WL_OTHER,
};
const char *nodeagent_wl_state_name(enum nodeagent_wl_state s);

struct nodeagent_wl_info {
    char id[128];
    char uuid[40];
    enum nodeagent_wl_state state;
    double cpu_seconds;  /* cumulative CPU time (a VM's: QEMU's threads, vCPUs included) */
    double vcpu_seconds; /* VMs: of which in vCPUs (0 = unknown) */
    long long memory_kb; /* current memory */
    int vcpus;
    long long cpu_shares;    /* -1 when unknown */
    long long vcpu_quota_us; /* -1 = uncapped, 0 = unknown */
    long long period_us;
    long pid; /* processes */
    /* Processes: time the instance's threads were runnable but waiting for
     * a CPU (schedstat run delay), and where cpu_seconds came from: "cgroup"
     * (the instance's own cgroup: cpu.stat or cpuacct.usage, counting
     * processes that already exited) or "proc" (its live process tree). */
    double cpu_wait_seconds;
    const char *cpu_source;
    unsigned long long start_ticks; /* processes: start time, clock ticks since boot */
    int exit_status; /* processes that ended: exit code, or 128 + signal; -1 otherwise */
};

/* What the hypervisor measured of a live migration; -1 when unknown. */
struct nodeagent_migrate_stats {
    double downtime_ms;   /* the guest was paused this long at the switch-over */
    double total_ms;      /* the whole migration job */
    long long data_bytes; /* memory sent */
};

/* One driver instance. All calls are blocking and may run on any thread;
 * one instance may be used by several threads at once. */
struct nodeagent_driver;
struct nodeagent_driver_ops {
    const char *name;
    int (*node_info)(struct nodeagent_driver *d, struct nodeagent_node_info *out,
                     struct wlm_error *err);
    int (*start)(struct nodeagent_driver *d, const struct nodeagent_spec *s, struct wlm_error *err);
    int (*pause)(struct nodeagent_driver *d, const char *id, struct wlm_error *err);
    int (*resume)(struct nodeagent_driver *d, const char *id, struct wlm_error *err);
    /* Save the state to `path` and remove the running instance. */
    int (*suspend)(struct nodeagent_driver *d, const char *id, const char *path,
                   struct wlm_error *err);
    /* Start from a save file; `console` replaces the console log path. */
    int (*restore)(struct nodeagent_driver *d, const char *id, const char *path,
                   const char *console, struct wlm_error *err);
    /* Live migration to another hypervisor URI; -WLM_EUNSUPPORTED when the
     * driver cannot (the agent then falls back to suspend/copy/restore).
     * `st` (may be NULL) gets the hypervisor's figures of the migration. */
    int (*migrate)(struct nodeagent_driver *d, const char *id, const char *dest_uri,
                   struct nodeagent_migrate_stats *st, struct wlm_error *err);
    int (*resize)(struct nodeagent_driver *d, const char *id, const struct nodeagent_resize *r,
                  struct wlm_error *err);
    /* Graceful stop (ACPI shutdown / SIGTERM); force = kill at once. */
    int (*stop)(struct nodeagent_driver *d, const char *id, int force, struct wlm_error *err);
    /* Kill if running and remove every trace (definition, cgroup). */
    int (*destroy)(struct nodeagent_driver *d, const char *id, struct wlm_error *err);
    int (*info)(struct nodeagent_driver *d, const char *id, struct nodeagent_wl_info *out,
                struct wlm_error *err);
    /* Every instance this driver sees (for reconcile and heartbeat); *out is
     * malloc'd, caller frees. */
    int (*list)(struct nodeagent_driver *d, struct nodeagent_wl_info **out, size_t *n,
                struct wlm_error *err);
    void (*free)(struct nodeagent_driver *d);
};
struct nodeagent_driver {
    const struct nodeagent_driver_ops *ops;
};

/* libvirt driver on `uri`. Domains are named "wlm-<id>"; their XML uses
 * `kernel`/`initramfs` (may be NULL for the test driver, which boots nothing). */
struct nodeagent_libvirt_opts {
    const char *uri;
    const char *kernel;
    const char *initramfs;
    const char *vm_type; /* domain type: "qemu" (TCG, default) or "kvm" */
    /* Disks are on storage the destination sees: live migration may move
     * them (libvirt cannot tell shared from local on a local filesystem and
     * refuses otherwise). */
    int disks_shared;
};
struct nodeagent_driver *nodeagent_libvirt_new(const struct nodeagent_libvirt_opts *o,
                                               struct wlm_error *err);
/* The libvirt connection of a libvirt driver (virConnectPtr), for the pool. */
void *nodeagent_libvirt_conn(struct nodeagent_driver *d);
/* Domain lifecycle events of a libvirt driver: `fn(id, stopped, ud)` runs on
 * libvirt's event thread (the agent hands it to its loop with uv_async_send).
 * `stopped` is 1 when the domain is gone (shutdown, crash, destroy). */
typedef void (*nodeagent_event_fn)(const char *id, int event, int detail, int stopped, void *ud);
int nodeagent_libvirt_watch(struct nodeagent_driver *d, nodeagent_event_fn fn, void *ud,
                            struct wlm_error *err);
/* Warm pool domains: an id "~NAME" names the domain "wlmpool-NAME". Such
 * domains are not jobs: list() leaves them out until they are claimed. A
 * claim records the job id in the domain's metadata (it survives an agent
 * restart) and from then on every call taking a job id reaches the domain
 * by that id, and list() and events report it as the job. */
#define NODEAGENT_POOL_DOM_PREFIX "wlmpool-"
int nodeagent_libvirt_claim(struct nodeagent_driver *d, const char *pool_id, const char *job,
                            struct wlm_error *err);
/* Unclaimed pool domains whose names start with "wlmpool-<prefix>": ids
 * ("~NAME") and states; *out malloc'd. */
int nodeagent_libvirt_pool_list(struct nodeagent_driver *d, const char *prefix,
                                struct nodeagent_wl_info **out, size_t *n, struct wlm_error *err);
/* libvirt's state and reason of a domain as text ("paused (booting)"), for
 * error messages. */
void nodeagent_libvirt_state_text(struct nodeagent_driver *d, const char *id, char *out, size_t n);
/* 1 while libvirt runs a job on the domain (a save or migration that goes
 * on even when the client that started it is gone), else 0. */
int nodeagent_libvirt_job_active(struct nodeagent_driver *d, const char *id);
/* After a live migration cut off with the agent that drove it: what became
 * of the guest's copy (by UUID) on the destination hypervisor. An incoming
 * copy that never ran is removed there (NODEAGENT_PEER_ABSENT after it);
 * NODEAGENT_PEER_RUNNING when the guest went on there; NODEAGENT_PEER_UNKNOWN
 * when the destination cannot be asked or its copy's state says nothing
 * sure. `detail` says which, for the log and the action's outcome. */
enum { NODEAGENT_PEER_UNKNOWN = -1, NODEAGENT_PEER_ABSENT = 0, NODEAGENT_PEER_RUNNING = 1 };
int nodeagent_libvirt_peer_outcome(struct nodeagent_driver *d, const char *dest_uri,
                                   const char *uuid, char *detail, size_t n);
/* The file the serial console of a domain writes to; -WLM_ENOTFOUND when none. */
int nodeagent_libvirt_console_path(struct nodeagent_driver *d, const char *id, char *out, size_t n);
/* The disk image file of a domain (its first disk); -WLM_ENOTFOUND when none. */
int nodeagent_libvirt_disk_path(struct nodeagent_driver *d, const char *id, char *out, size_t n);
/* Domain type of job VMs ("qemu", "kvm", "test") and the connection URI. */
const char *nodeagent_libvirt_describe(struct nodeagent_driver *d);

/* Register libvirt's default event loop and run it in its own thread (once
 * per process: libvirt's event loop is process-wide by design). */
int nodeagent_libvirt_event_thread_start(struct wlm_error *err);

/* Process driver: processes in cgroup `cgroup_name` under the cpu controller
 * (v2 cpu.max or v1 cpu.cfs_quota_us), or "uncapped" when neither works. */
struct nodeagent_driver *nodeagent_process_new(const char *cgroup_name, int node_mhz,
                                               struct wlm_error *err);
/* "v2", "v1" or "uncapped". */
const char *nodeagent_process_cap_mode(struct nodeagent_driver *d);
struct nodeagent_inst_rec;
/* What identifies a running instance after an agent restart: pid, start
 * ticks, the shell line run, its user and cap (rec->port is left as is). */
int nodeagent_process_identity(struct nodeagent_driver *d, const char *id,
                               struct nodeagent_inst_rec *rec, struct wlm_error *err);
/* Take back an instance an earlier run of the agent started: 0 when its
 * pid still runs with the recorded start time, carries WLM_INSTANCE=ID in
 * its environment and runs the recorded command; else -WLM_ENOTFOUND with
 * the reason in err, and the instance is listed as shut off (so the
 * controller replaces it) until it is stopped. */
int nodeagent_process_adopt(struct nodeagent_driver *d, const struct nodeagent_inst_rec *rec,
                            struct wlm_error *err);

/* Remove an instance's private working directory after it stopped: its
 * contents as `user` (NULL = as the agent), then the directory itself. */
int nodeagent_process_remove_workdir(const char *dir, const char *user, struct wlm_error *err);

/* /proc facts of an instance (procstat.c). */
struct nodeagent_proc_usage {
    double cpu_seconds;  /* the session's live processes plus reaped children */
    double wait_seconds; /* run-queue delay of their threads */
    long long rss_kb;
    char state; /* of the leader: R, S, T, Z, ... */
    unsigned long long start_ticks;
};
/* Usage of the session led by `leader`; -ENOENT when it is gone. */
int nodeagent_proc_session_usage(long leader, struct nodeagent_proc_usage *out);
int nodeagent_proc_start_ticks(long pid, unsigned long long *out);
/* 0 when `pid` is still the instance `id` started at `start_ticks`
 * running `command` (the shell line, or the program it exec'd); else
 * -WLM_ENOTFOUND with the reason in `why`. */
int nodeagent_proc_check(long pid, unsigned long long start_ticks, const char *id,
                         const char *command, char *why, size_t n);

/* Capacity from /proc (cores, MHz from /proc/cpuinfo, MemTotal). */
int nodeagent_proc_node_info(struct nodeagent_node_info *out, struct wlm_error *err);

/* ---------------------------------------------------------------- image pool */

/* K qcow2 overlays on a base image as libvirt storage volumes (a "dir" pool
 * at `dir`; with the test driver, volumes in its existing pool). */
struct nodeagent_pool;
struct nodeagent_pool_opts {
    void *conn;       /* virConnectPtr */
    const char *dir;  /* directory of the pool ("" with the test driver) */
    const char *name; /* libvirt pool name to create or reuse */
    int size, max;
    long long base_mb;
};
struct nodeagent_pool *nodeagent_pool_new(const struct nodeagent_pool_opts *o,
                                          struct wlm_error *err);
void nodeagent_pool_free(struct nodeagent_pool *p);
/* Take an image (growing the pool up to max); *path is malloc'd. */
int nodeagent_pool_take(struct nodeagent_pool *p, char **path, struct wlm_error *err);
/* Scrub (re-create the overlay) and return an image to the pool. */
int nodeagent_pool_release(struct nodeagent_pool *p, const char *path, struct wlm_error *err);
/* Mark an image as in use without taking it (reconcile after restart);
 * 1 when the pool knows the image, else 0. */
int nodeagent_pool_mark_used(struct nodeagent_pool *p, const char *path);
struct nodeagent_pool_status {
    int free, used, max;
    double create_seconds; /* time of the last overlay creation */
};
void nodeagent_pool_status(struct nodeagent_pool *p, struct nodeagent_pool_status *st);

/* ---------------------------------------------------------------- repository */

/* VM-ID repository: job id <-> domain, image, save file, state. */
struct nodeagent_repo;
struct nodeagent_vm_rec {
    char job[128];
    char domain[160];
    char uuid[40];
    char image[512];
    char save_path[512];
    char state[24]; /* starting, running, paused, suspended, finished, failed, stopped,
                       destroyed, migrated */
    char command[1024];
    int exit_status; /* -1 until finished */
    char hostname[64], mac[24], ip[40];
    /* Simulated jobs (test driver): seconds of running time left and in
     * total; -1 when the job is real. */
    double sim_remaining, sim_total;
};
int nodeagent_repo_open(const char *path, struct nodeagent_repo **out, struct wlm_error *err);
void nodeagent_repo_close(struct nodeagent_repo *r);
int nodeagent_repo_put(struct nodeagent_repo *r, const struct nodeagent_vm_rec *v,
                       struct wlm_error *err);
/* -WLM_ENOTFOUND when absent. */
int nodeagent_repo_get(struct nodeagent_repo *r, const char *job, struct nodeagent_vm_rec *out,
                       struct wlm_error *err);
int nodeagent_repo_delete(struct nodeagent_repo *r, const char *job, struct wlm_error *err);
/* Every record; *out malloc'd. */
int nodeagent_repo_list(struct nodeagent_repo *r, struct nodeagent_vm_rec **out, size_t *n,
                        struct wlm_error *err);

/* Actions and their outcomes, so a retried action id after an agent restart
 * gets the recorded outcome and an action cut off by a crash is settled at
 * the next start. `params` is the request body and `doc` the answer of
 * GET /v1/actions/ID once finished (JSON text; "" while running); both
 * malloc'd in records read back (nodeagent_action_rec_fini frees them). */
struct nodeagent_action_rec {
    char id[128];
    char kind[24];
    char target[128]; /* job or instance id; "" for node actions */
    char status[16];  /* running, succeeded, failed */
    char *params;
    char *doc;
};
/* Insert or update by id; the newest 4096 finished actions are kept. */
int nodeagent_repo_action_put(struct nodeagent_repo *r, const struct nodeagent_action_rec *a,
                              struct wlm_error *err);
/* -WLM_ENOTFOUND when absent. */
int nodeagent_repo_action_get(struct nodeagent_repo *r, const char *id,
                              struct nodeagent_action_rec *out, struct wlm_error *err);
/* Actions still "running" (cut off by a crash), oldest first; *out malloc'd
 * (fini each record, then free). */
int nodeagent_repo_action_running(struct nodeagent_repo *r, struct nodeagent_action_rec **out,
                                  size_t *n, struct wlm_error *err);
void nodeagent_action_rec_fini(struct nodeagent_action_rec *a);

/* App instances (processes) the agent started, for re-adoption after an
 * agent restart: identified by pid + the process's start time (clock ticks
 * since boot, /proc/PID/stat field 22) + its command. */
struct nodeagent_inst_rec {
    char id[128];
    long pid;
    unsigned long long start_ticks;
    char command[1024]; /* the shell line run ({port} substituted) */
    int port;
    char user[64];
    double cap_mhz;
};
int nodeagent_repo_inst_put(struct nodeagent_repo *r, const struct nodeagent_inst_rec *in,
                            struct wlm_error *err);
int nodeagent_repo_inst_delete(struct nodeagent_repo *r, const char *id, struct wlm_error *err);
int nodeagent_repo_inst_list(struct nodeagent_repo *r, struct nodeagent_inst_rec **out, size_t *n,
                             struct wlm_error *err);

/* Pure reconcile of repository records with live domains. For each record:
 * adopt (domain alive), suspended (no domain, save file recorded), lost (no
 * domain, no save file), or keep (finished/destroyed). Live domains whose
 * names carry our prefix but have no record are orphans. */
enum nodeagent_reconcile_verdict {
    NODEAGENT_ADOPT,
    NODEAGENT_KEEP,
    NODEAGENT_SUSPENDED,
    NODEAGENT_LOST,
};
struct nodeagent_reconcile {
    enum nodeagent_reconcile_verdict *verdict; /* one per record */
    enum nodeagent_wl_state *live_state;       /* one per record */
    char (*orphans)[128];                      /* live ids with no record */
    size_t norphans;
};
int nodeagent_reconcile_compute(const struct nodeagent_vm_rec *recs, size_t nrecs,
                                const struct nodeagent_wl_info *live, size_t nlive,
                                struct nodeagent_reconcile *out);
void nodeagent_reconcile_fini(struct nodeagent_reconcile *r);

/* ---------------------------------------------------------------- power */

/* Linear power model: idle + (max - idle) * util, util in [0,1]. Pure. */
double nodeagent_power_linear(double idle_w, double max_w, double util);
/* Energy attribution: share `joules` over items by CPU seconds. Pure. */
void nodeagent_energy_split(double joules, const double *cpu_seconds, size_t n, double *out);
/* Read RAPL package energy in microjoules (sum over packages); -ENOENT when
 * /sys/class/powercap is not readable. */
int nodeagent_rapl_read_uj(unsigned long long *uj);
/* The model with the CPU frequency limited to freq_frac of its maximum:
 * dynamic power scales with it. Pure. */
double nodeagent_power_model(double idle_w, double max_w, double util, double freq_frac);

/* Power budget: which workloads to cap, and to what, so that the node gets
 * back under budget_w. `wl` is in throttling order (cheapest first), mhz =
 * what each uses now; caps[i] = new cap in MHz, 0 = leave it. Watts per MHz
 * come from what runs now (watts - idle over the MHz used). Returns how many
 * workloads get a cap. Pure. */
#define NODEAGENT_BUDGET_MIN_MHZ 20.0 /* a cap never goes below this */
struct nodeagent_budget_wl {
    const char *id;
    double mhz;
    int fixed; /* counts in the power, cannot be capped (the driver refused) */
};
size_t nodeagent_budget_plan(double budget_w, double watts, double idle_w,
                             const struct nodeagent_budget_wl *wl, size_t n, double *caps);
/* Set scaling_max_freq of every DIR/cpuN/cpufreq to frac of its
 * cpuinfo_max_freq (not below cpuinfo_min_freq; *min_frac gets their ratio).
 * Returns the CPUs written or -errno. */
int nodeagent_cpufreq_set(const char *dir, double frac, double *min_frac);

/* ---------------------------------------------------------------- console */

/* Parse a job console log: the last "WLM-PROGRESS <text>" and the
 * "WLM-EXIT <status>" line. exit_status = -1 when not finished. `output`
 * (may be NULL) receives the job's own output lines (caller frees). Pure
 * over the text given. */
struct nodeagent_console_state {
    int exit_status;
    int started; /* "WLM-START" seen */
    char progress[128];
};
void nodeagent_console_parse(const char *text, size_t len, struct nodeagent_console_state *st,
                             char **output);

/* Write a newc cpio archive of the regular files under `dir`, placed under
 * `prefix` (e.g. "job") in the archive, plus extra in-memory files. */
int nodeagent_cpio_write(const char *out_path, const char *dir, const char *prefix,
                         const char *const *extra_names, const char *const *extra_data,
                         size_t nextra, struct wlm_error *err);

/* Write the job VM initramfs (uncompressed newc cpio) from a static busybox:
 * its /init runs /job/cmd and reports "WLM-START", the output and
 * "WLM-EXIT <status>" on the console, then powers off. Without /job/cmd
 * (warm pool VMs) it loads the virtio modules of kernel `kver` (copied from
 * /lib/modules/KVER; NULL = none), prints "WLM-READY" and waits for the job
 * on the "wlm.job" virtio-serial port. */
int nodeagent_initramfs_write(const char *out_path, const char *busybox, const char *kver,
                              struct wlm_error *err);
/* Kernel version from a kernel path ("vmlinuz-VER" or "wlm-vmlinux-VER");
 * 0 when /lib/modules/VER has the virtio console module, else -ENOENT. */
int nodeagent_kernel_version(const char *kernel, char *out, size_t n);

/* For a Debian kernel /boot/vmlinuz-VER built with CONFIG_PVH: extract its
 * ELF vmlinux once into cache_dir/wlm-vmlinux-VER (QEMU boots it directly,
 * several times faster under TCG) and put that path in `out`. Negative
 * errno when the kernel does not qualify or extraction fails. */
int nodeagent_kernel_pvh(const char *bzimage, const char *cache_dir, char *out, size_t n);

/* ---------------------------------------------------------------- agent */

struct nodeagent;
struct nodeagent *nodeagent_new(uv_loop_t *loop, const struct nodeagent_config *cfg,
                                struct wlm_error *err);
/* Listen, reconcile, start registering and heartbeating. */
int nodeagent_start(struct nodeagent *a, struct wlm_error *err);
int nodeagent_port(const struct nodeagent *a);
/* Stop timers and the server; `done` runs once every handle is closed. */
void nodeagent_stop(struct nodeagent *a, void (*done)(void *ud), void *ud);
void nodeagent_free(struct nodeagent *a);

#ifdef __cplusplus
}
#endif
#endif /* WLM_NODEAGENT_H */
