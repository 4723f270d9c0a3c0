/* bench_vm_ops: time of each job-VM operation with the real libvirt driver
 * (qemu:///system, TCG unless --vm-type kvm), median of several runs, as the
 * runtime table of VM operations in the design description: domain create
 * (from the pre-created pool vs cold, i.e. creating the overlay first), boot
 * (create -> the job's first output on the serial console), process start
 * (web instance: fork/exec until it prints), suspend (save), restore, copy
 * checkpoint, copy image, and move (suspend + copy + restore).
 *
 * Warm pool parking, both ways: a VM booted to the waiting init and paused,
 * then resumed and handed a job over its virtio-serial channel, against the
 * same VM saved to a checkpoint and restored: time to the job's first
 * output, resident memory of a paused VM, size of a checkpoint.
 *
 * A domain that does not reach its init within --boot-timeout seconds (KVM
 * that never starts running, a broken kernel) is destroyed and reported
 * with libvirt's view of it. SIGINT/SIGTERM destroy every domain the bench
 * made and remove its files before exiting.
 *
 * Usage: bench_vm_ops [--runs N] [--memory-mb M] [--vm-type qemu|kvm] [--boot-timeout S]
 * Needs root and a running libvirtd (scripts/start-libvirt). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "nodeagent.h"

#ifndef WLM_SOURCE_DIR
#define WLM_SOURCE_DIR "."
#endif

enum { OP_POOL, OP_COLD, OP_BOOT, OP_BOOT_BZ, OP_PROC, OP_SUSPEND, OP_RESTORE, OP_COPYCK, OP_COPYIMG,
       OP_MOVE, OP_PARK_BOOT, OP_PARK_RESUME, OP_PARK_RESTORE, OP_N };
static const char *op_names[OP_N] = {
    "create domain (image from pool)", "create domain (cold: new overlay)",
    "boot to job start (PVH vmlinux)", "boot to job start (bzImage)",
    "process start (web instance)",    "suspend (save checkpoint)",          "restore",
    "copy checkpoint",                 "copy image",                         "move (suspend+copy+restore)",
    "pool VM: boot to waiting init",   "parked paused: resume to output",    "parked saved: restore to output"};

/* Every domain the bench made, for cleanup on a signal. */
static volatile sig_atomic_t stop_sig;
static struct nodeagent_driver *cleanup_drv;
static char made[256][96];
static int nmade;
static double boot_timeout = 120;
static long long park_rss_kb, park_save_bytes;

static void on_signal(int sig) { stop_sig = sig; }

static void remember(const char *id)
{
    if (nmade < 256)
        snprintf(made[nmade++], sizeof(made[0]), "%s", id);
}

static void destroy_all(void)
{
    for (int i = 0; cleanup_drv && i < nmade; i++)
        cleanup_drv->ops->destroy(cleanup_drv, made[i], NULL);
}

static double samples[OP_N][64];
static int nsamples[OP_N];
static long long ck_bytes, img_bytes;

static void add(int op, double s)
{
    if (nsamples[op] < 64)
        samples[op][nsamples[op]++] = s;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(int op)
{
    int n = nsamples[op];
    if (!n)
        return -1;
    qsort(samples[op], (size_t)n, sizeof(double), cmp);
    return n % 2 ? samples[op][n / 2] : (samples[op][n / 2 - 1] + samples[op][n / 2]) / 2;
}

static int wait_for(const char *path, const char *needle, double timeout)
{
    double t0 = wlm_now_mono();
    char buf[65536];
    while (wlm_now_mono() - t0 < timeout && !stop_sig) {
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof(buf) - 1, f);
            fclose(f);
            buf[n] = '\0';
            if (strstr(buf, needle))
                return 0;
        }
        usleep(20000);
    }
    return -1;
}

static double copy_file(const char *from, const char *to, long long *bytes)
{
    double t0 = wlm_now_mono();
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[1 << 16];
    size_t n;
    long long total = 0;
    while (in && out && (n = fread(buf, 1, sizeof(buf), in)) > 0) {
        fwrite(buf, 1, n, out);
        total += (long long)n;
    }
    if (out) {
        fflush(out);
        fsync(fileno(out));
        fclose(out);
    }
    if (in)
        fclose(in);
    *bytes = total;
    return wlm_now_mono() - t0;
}

/* Wait for the init's marker; on the deadline say why and destroy. */
static int wait_boot(struct nodeagent_driver *d, const char *id, const char *console,
                     const char *marker)
{
    if (wait_for(console, marker, boot_timeout) == 0)
        return 0;
    if (!stop_sig) {
        char st[160];
        nodeagent_libvirt_state_text(d, id, st, sizeof(st));
        fprintf(stderr, "bench_vm_ops: domain %s%s did not reach its init within %.0f s (%s; %s); "
                        "destroyed\n", id[0] == '~' ? NODEAGENT_POOL_DOM_PREFIX : "wlm-",
                id[0] == '~' ? id + 1 : id, boot_timeout, nodeagent_libvirt_describe(d), st);
    }
    d->ops->destroy(d, id, NULL);
    return -1;
}

/* Hand a job to a VM waiting on its channel (the agent's protocol). */
static int send_job(const char *sock, const char *cpio, const char *job)
{
    FILE *f = fopen(cpio, "rb");
    if (!f)
        return -1;
    char data[8192];
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    char hdr[256];
    int hl = snprintf(hdr, sizeof(hdr), "WLM-JOB %zu %s - -\n", n, job);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        write(fd, hdr, (size_t)hl) != hl || write(fd, data, n) != (ssize_t)n) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd; /* kept open until the guest has read it */
}

static long long rss_kb_of(const char *dom)
{
    char path[300], line[256];
    snprintf(path, sizeof(path), "/var/run/libvirt/qemu/%s.pid", dom);
    FILE *f = fopen(path, "r");
    long pid = 0;
    long long kb = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if (pid <= 0 || !(f = fopen(path, "r")))
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* One parked VM: boot to WLM-READY, park (pause or save), start a job on
 * it, time to the job's first output. */
static void park_run(struct nodeagent_driver *d, const char *dir, const char *base, long long mem,
                     int r, int saved)
{
    char id[64], name[96], console[512], sock[512], cpio[512], save[512];
    snprintf(id, sizeof(id), "~bench-%d-%d-%d", (int)getpid(), r, saved);
    snprintf(name, sizeof(name), NODEAGENT_POOL_DOM_PREFIX "%s", id + 1);
    snprintf(console, sizeof(console), "%s/park-%d-%d.log", dir, r, saved);
    snprintf(sock, sizeof(sock), "%s/park-%d-%d.sock", dir, r, saved);
    snprintf(cpio, sizeof(cpio), "%s/park-%d-%d.cpio", dir, r, saved);
    snprintf(save, sizeof(save), "%s/park-%d-%d.save", dir, r, saved);
    FILE *cf = fopen(console, "w");
    if (cf)
        fclose(cf);
    const char *names[] = {"cmd"}, *data[] = {"echo first-output; sleep 1"};
    struct wlm_error err = {0};
    if (nodeagent_cpio_write(cpio, NULL, "job", names, data, 1, &err) < 0)
        return;
    struct nodeagent_spec s = {.id = id, .command = "", .initrd = base, .console = console,
                               .channel = sock, .vcpus = 1, .memory_mb = mem};
    double t0 = wlm_now_mono();
    remember(id);
    if (d->ops->start(d, &s, &err) < 0) {
        fprintf(stderr, "park start: %s\n", err.msg);
        return;
    }
    if (wait_boot(d, id, console, "WLM-READY") < 0)
        return;
    add(OP_PARK_BOOT, wlm_now_mono() - t0);
    if (d->ops->pause(d, id, &err) < 0) {
        fprintf(stderr, "park pause: %s\n", err.msg);
        d->ops->destroy(d, id, NULL);
        return;
    }
    if (!saved)
        park_rss_kb = rss_kb_of(name);
    if (saved) {
        if (d->ops->suspend(d, id, save, &err) < 0) {
            fprintf(stderr, "park save: %s\n", err.msg);
            d->ops->destroy(d, id, NULL);
            return;
        }
        struct stat sb;
        if (stat(save, &sb) == 0)
            park_save_bytes = (long long)sb.st_size;
    }
    double a = wlm_now_mono();
    int rc = saved ? d->ops->restore(d, id, save, NULL, &err) : d->ops->resume(d, id, &err);
    if (saved)
        unlink(save);
    int fd = rc == 0 ? send_job(sock, cpio, id + 1) : -1;
    if (fd >= 0 && wait_for(console, "first-output", boot_timeout) == 0)
        add(saved ? OP_PARK_RESTORE : OP_PARK_RESUME, wlm_now_mono() - a);
    else if (!stop_sig)
        fprintf(stderr, "park %s: no job output (%s)\n", saved ? "restore" : "resume",
                rc ? err.msg : "channel");
    if (fd >= 0)
        close(fd);
    d->ops->destroy(d, id, NULL);
}

/* The job initrd: cpio of /job/cmd followed by the base initramfs. */
static int job_initrd(const char *dir, const char *base, const char *cmd, char *out, size_t n)
{
    struct wlm_error err = {0};
    snprintf(out, n, "%s/initrd.img", dir);
    const char *names[] = {"cmd"}, *data[] = {cmd};
    if (nodeagent_cpio_write(out, NULL, "job", names, data, 1, &err) < 0)
        return -1;
    char c[2048];
    snprintf(c, sizeof(c), "cat '%s' >> '%s'", base, out);
    return system(c) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int runs = 3;
    long long mem = 128;
    const char *vm_type = "qemu";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--memory-mb") && i + 1 < argc)
            mem = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--vm-type") && i + 1 < argc)
            vm_type = argv[++i];
        else if (!strcmp(argv[i], "--boot-timeout") && i + 1 < argc)
            boot_timeout = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_vm_ops [--runs N] [--memory-mb M] [--vm-type qemu|kvm] "
                            "[--boot-timeout S]\n");
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (runs < 1 || runs > 64 || mem < 32 || boot_timeout < 1) {
        fprintf(stderr, "bench_vm_ops: --runs must be 1-64, --memory-mb >= 32, --boot-timeout >= 1\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    wlm_log_set_level(WLM_LOG_WARN);
    char dir[] = "/tmp/wlm-bench-vm-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    chmod(dir, 0755);
    char cmd[1024], base[256], kernel[512] = "";
    snprintf(cmd, sizeof(cmd), "%s/scripts/start-libvirt && %s/scripts/build-initramfs %s/base.cpio.gz",
             WLM_SOURCE_DIR, WLM_SOURCE_DIR, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_vm_ops: cannot start libvirtd or build the initramfs\n");
        return 1;
    }
    snprintf(base, sizeof(base), "%s/base.cpio.gz", dir);
    FILE *p = popen("ls -1 /boot/vmlinuz-* | sort -V | tail -n 1", "r");
    if (p) {
        if (fgets(kernel, sizeof(kernel), p))
            kernel[strcspn(kernel, "\n")] = '\0';
        pclose(p);
    }
    struct wlm_error err = {0};
    /* The agent boots the extracted PVH vmlinux when it can; the bzImage is
     * measured too, for comparison. */
    char pvh[600];
    int have_pvh = nodeagent_kernel_pvh(kernel, "/var/tmp", pvh, sizeof(pvh)) == 0;
    struct nodeagent_libvirt_opts lo = {
        .uri = "qemu:///system", .kernel = have_pvh ? pvh : kernel, .initramfs = base,
        .vm_type = vm_type};
    struct nodeagent_driver *d = nodeagent_libvirt_new(&lo, &err);
    struct nodeagent_libvirt_opts lbz = lo;
    lbz.kernel = kernel;
    struct nodeagent_driver *dbz = have_pvh ? nodeagent_libvirt_new(&lbz, &err) : NULL;
    if (!d) {
        fprintf(stderr, "bench_vm_ops: %s\n", err.msg);
        return 1;
    }
    cleanup_drv = d;
    char pooldir[300], poolname[64];
    snprintf(pooldir, sizeof(pooldir), "%s/images", dir);
    snprintf(poolname, sizeof(poolname), "wlm-bench-%d", (int)getpid());
    struct nodeagent_pool_opts po = {.conn = nodeagent_libvirt_conn(d), .dir = pooldir,
                                     .name = poolname, .size = runs, .max = 2 * runs + 2,
                                     .base_mb = 64};
    struct nodeagent_pool *pool = nodeagent_pool_new(&po, &err);
    if (!pool) {
        fprintf(stderr, "bench_vm_ops: %s\n", err.msg);
        return 1;
    }
    char colddir[300], coldname[64];
    snprintf(colddir, sizeof(colddir), "%s/cold", dir);
    snprintf(coldname, sizeof(coldname), "wlm-bench-cold-%d", (int)getpid());
    struct nodeagent_pool_opts co = {.conn = nodeagent_libvirt_conn(d), .dir = colddir,
                                     .name = coldname, .size = 0, .max = runs + 1, .base_mb = 64};
    struct nodeagent_pool *cold_pool = nodeagent_pool_new(&co, &err);
    if (!cold_pool) {
        fprintf(stderr, "bench_vm_ops: %s\n", err.msg);
        return 1;
    }
    struct nodeagent_driver *pd = nodeagent_process_new("wlm-bench", 2000, &err);
    const char *job = "i=0; while true; do i=$((i+1)); echo count $i; sleep 0.2; done";
    int failures = 0;
    for (int r = 0; r < runs * (dbz ? 3 : 2) && !stop_sig; r++) {
        int cold = r % 2; /* alternate pool and cold creates */
        if (r >= runs * 2) {
            /* bzImage boots, for comparison. */
            char id[64], jd[400], console[512], initrd[512];
            snprintf(id, sizeof(id), "bench-%d-%d", (int)getpid(), r);
            snprintf(jd, sizeof(jd), "%s/%s", dir, id);
            mkdir(jd, 0755);
            snprintf(console, sizeof(console), "%s/console.log", jd);
            fclose(fopen(console, "w"));
            if (job_initrd(jd, base, job, initrd, sizeof(initrd)) < 0)
                continue;
            struct nodeagent_spec s = {.id = id, .command = job, .initrd = initrd,
                                       .console = console, .vcpus = 1, .memory_mb = mem};
            double t0 = wlm_now_mono();
            remember(id);
            if (dbz->ops->start(dbz, &s, &err) == 0 && wait_boot(dbz, id, console, "WLM-START") == 0)
                add(OP_BOOT_BZ, wlm_now_mono() - t0);
            dbz->ops->destroy(dbz, id, NULL);
            continue;
        }
        char id[64], jd[400], console[512], initrd[512], save[512], copy[512];
        snprintf(id, sizeof(id), "bench-%d-%d", (int)getpid(), r);
        snprintf(jd, sizeof(jd), "%s/%s", dir, id);
        mkdir(jd, 0755);
        snprintf(console, sizeof(console), "%s/console.log", jd);
        fclose(fopen(console, "w"));
        if (job_initrd(jd, base, job, initrd, sizeof(initrd)) < 0) {
            failures++;
            continue;
        }
        char *image = NULL;
        double t0 = wlm_now_mono();
        if (cold) {
            /* Cold: a pool with nothing pre-created makes a new overlay
             * volume as part of the create (and never gets it back). */
            if (nodeagent_pool_take(cold_pool, &image, &err) < 0) {
                fprintf(stderr, "cold image: %s\n", err.msg);
                failures++;
                continue;
            }
        } else if (nodeagent_pool_take(pool, &image, &err) < 0) {
            failures++;
            continue;
        }
        struct nodeagent_spec s = {.id = id, .command = job, .image = image, .initrd = initrd,
                                   .console = console, .vcpus = 1, .memory_mb = mem};
        remember(id);
        if (d->ops->start(d, &s, &err) < 0) {
            fprintf(stderr, "start: %s\n", err.msg);
            failures++;
            free(image);
            continue;
        }
        double t_created = wlm_now_mono();
        add(cold ? OP_COLD : OP_POOL, t_created - t0);
        if (wait_boot(d, id, console, "WLM-START") < 0) {
            failures++;
            if (!cold)
                nodeagent_pool_release(pool, image, NULL);
            free(image);
            continue;
        }
        add(OP_BOOT, wlm_now_mono() - t_created);
        if (!cold) {
            /* Suspend, copy checkpoint + image, restore: only on pool runs
             * so each run boots once. */
            wait_for(console, "count 2", 60);
            snprintf(save, sizeof(save), "%s/ck.save", jd);
            snprintf(copy, sizeof(copy), "%s/ck-copy.save", jd);
            double a = wlm_now_mono();
            if (d->ops->suspend(d, id, save, &err) == 0) {
                double sus = wlm_now_mono() - a;
                add(OP_SUSPEND, sus);
                double ck = copy_file(save, copy, &ck_bytes);
                add(OP_COPYCK, ck);
                char imgcopy[600];
                snprintf(imgcopy, sizeof(imgcopy), "%s/img-copy.qcow2", jd);
                double ic = copy_file(image, imgcopy, &img_bytes);
                add(OP_COPYIMG, ic);
                a = wlm_now_mono();
                if (d->ops->restore(d, id, copy, NULL, &err) == 0) {
                    double rs = wlm_now_mono() - a;
                    add(OP_RESTORE, rs);
                    add(OP_MOVE, sus + ck + ic + rs);
                } else {
                    fprintf(stderr, "restore: %s\n", err.msg);
                    failures++;
                }
            } else {
                fprintf(stderr, "suspend: %s\n", err.msg);
                failures++;
            }
        }
        d->ops->destroy(d, id, NULL);
        if (!cold)
            nodeagent_pool_release(pool, image, NULL);
        free(image);
        if (pd) {
            char plog[512];
            snprintf(plog, sizeof(plog), "%s/proc.log", jd);
            struct nodeagent_spec ps = {.id = id, .command = "echo up; exec sleep 30",
                                        .console = plog, .port = 9000 + r};
            double b = wlm_now_mono();
            if (pd->ops->start(pd, &ps, &err) == 0 && wait_for(plog, "up", 10) == 0)
                add(OP_PROC, wlm_now_mono() - b);
            pd->ops->stop(pd, id, 1, NULL);
        }
    }
    for (int r = 0; r < runs && !stop_sig; r++) {
        park_run(d, dir, base, mem, r, 0);
        if (!stop_sig)
            park_run(d, dir, base, mem, r, 1);
    }
    if (stop_sig) {
        fprintf(stderr, "bench_vm_ops: signal %d: destroying %d domain(s) and removing %s\n",
                (int)stop_sig, nmade, dir);
        destroy_all();
        snprintf(cmd, sizeof(cmd),
                 "virsh -q -c qemu:///system pool-destroy %s >/dev/null 2>&1; "
                 "virsh -q -c qemu:///system pool-destroy %s >/dev/null 2>&1; rm -rf %s",
                 poolname, coldname, dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_vm_ops: cleanup of %s incomplete\n", dir);
        nodeagent_pool_free(pool);
        nodeagent_pool_free(cold_pool);
        if (pd)
            pd->ops->free(pd);
        if (dbz)
            dbz->ops->free(dbz);
        d->ops->free(d);
        return 130;
    }
    printf("\nVM operations, qemu:///system (%s), %lld MiB guest, median of %d runs\n", vm_type,
           mem, runs);
    printf("kernel %s\n", have_pvh ? pvh : kernel);
    printf("checkpoint %.1f MiB, image overlay %.1f MiB\n\n", (double)ck_bytes / 1048576.0,
           (double)img_bytes / 1048576.0);
    printf("%-36s %10s %6s\n", "operation", "median s", "runs");
    for (int i = 0; i < OP_N; i++) {
        if (nsamples[i])
            printf("%-36s %10.3f %6d\n", op_names[i], median(i), nsamples[i]);
        else
            printf("%-36s %10s %6d\n", op_names[i], "n/a", 0);
    }
    printf("\nparked VM: paused holds %.0f MiB resident; saved holds a %.1f MiB checkpoint and no "
           "memory\n", (double)park_rss_kb / 1024.0, (double)park_save_bytes / 1048576.0);
    if (failures)
        printf("\n%d run(s) failed\n", failures);
    destroy_all();
    nodeagent_pool_free(pool);
    nodeagent_pool_free(cold_pool);
    if (pd)
        pd->ops->free(pd);
    if (dbz)
        dbz->ops->free(dbz);
    d->ops->free(d);
    snprintf(cmd, sizeof(cmd),
             "virsh -q -c qemu:///system pool-destroy %s >/dev/null 2>&1; "
             "virsh -q -c qemu:///system pool-destroy %s >/dev/null 2>&1; rm -rf %s",
             poolname, coldname, dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_vm_ops: cleanup of %s incomplete\n", dir);
    return failures ? 1 : 0;
}
