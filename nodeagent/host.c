/* Host facts from /proc and /sys, the power model, and the console-log and
 * cpio helpers job VMs need. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "nodeagent.h"

int nodeagent_proc_node_info(struct nodeagent_node_info *out, struct wlm_error *err)
{
    memset(out, 0, sizeof(*out));
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    out->cores = n > 0 ? (int)n : 1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    double mhz = 0;
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            if (!strncmp(line, "cpu MHz", 7)) {
                const char *c = strchr(line, ':');
                if (c)
                    mhz = atof(c + 1);
                break;
            }
        }
        fclose(f);
    }
    out->mhz = mhz > 0 ? (int)(mhz + 0.5) : 1000;
    f = fopen("/proc/meminfo", "r");
    if (!f)
        return wlm_error_set(err, errno, "cannot read /proc/meminfo: %s", strerror(errno));
    while (fgets(line, sizeof(line), f)) {
        long long kb;
        if (sscanf(line, "MemTotal: %lld kB", &kb) == 1) {
            out->memory_mb = kb / 1024;
            break;
        }
    }
    fclose(f);
    struct utsname u;
    wlm_strlcpy(out->arch, uname(&u) == 0 ? u.machine : "unknown", sizeof(out->arch));
    return 0;
}

double nodeagent_power_linear(double idle_w, double max_w, double util)
{
    if (util < 0)
        util = 0;
    if (util > 1)
        util = 1;
    return idle_w + (max_w - idle_w) * util;
}

void nodeagent_energy_split(double joules, const double *cpu_seconds, size_t n, double *out)
{
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += cpu_seconds[i] > 0 ? cpu_seconds[i] : 0;
    for (size_t i = 0; i < n; i++)
        out[i] = total > 0 && cpu_seconds[i] > 0 ? joules * cpu_seconds[i] / total : 0;
}

int nodeagent_rapl_read_uj(unsigned long long *uj)
{
    DIR *d = opendir("/sys/class/powercap");
    if (!d)
        return -ENOENT;
    struct dirent *e;
    unsigned long long sum = 0;
    int found = 0;
    while ((e = readdir(d))) {
        /* Packages only ("intel-rapl:0"), not sub-zones ("intel-rapl:0:0"),
         * which are already included in their package. */
        if (strncmp(e->d_name, "intel-rapl:", 11) || strchr(e->d_name + 11, ':'))
            continue;
        char path[512];
        snprintf(path, sizeof(path), "/sys/class/powercap/%s/energy_uj", e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long v;
        if (f && fscanf(f, "%llu", &v) == 1) {
            sum += v;
            found = 1;
        }
        if (f)
            fclose(f);
    }
    closedir(d);
    if (!found)
        return -ENOENT;
    *uj = sum;
    return 0;
}

void nodeagent_console_parse(const char *text, size_t len, struct nodeagent_console_state *st,
                             char **output)
{
    memset(st, 0, sizeof(*st));
    st->exit_status = -1;
    struct wlm_buf out;
    wlm_buf_init(&out);
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        size_t l = j - i;
        const char *ln = text + i;
        while (l > 0 && (ln[l - 1] == '\r'))
            l--;
        /* Markers may be preceded by kernel noise on the same line. */
        const char *m;
        char tmp[256];
        size_t tl = l < sizeof(tmp) - 1 ? l : sizeof(tmp) - 1;
        memcpy(tmp, ln, tl);
        tmp[tl] = '\0';
        if ((m = strstr(tmp, "WLM-EXIT "))) {
            st->exit_status = atoi(m + 9);
        } else if ((m = strstr(tmp, "WLM-PROGRESS "))) {
            wlm_strlcpy(st->progress, m + 13, sizeof(st->progress));
        } else if (strstr(tmp, "WLM-START")) {
            st->started = 1;
        } else if (st->started && st->exit_status < 0 && output) {
            wlm_buf_append(&out, ln, l);
            wlm_buf_append(&out, "\n", 1);
        }
        i = j + 1;
    }
    if (output) {
        if (!out.data)
            wlm_buf_append(&out, "", 0);
        *output = wlm_buf_steal(&out);
        if (!*output)
            *output = wlm_strdup("");
    } else {
        wlm_buf_fini(&out);
    }
}

/* newc cpio: "070701", 13 eight-digit hex fields, the name, padding to 4. */
static int cpio_entry(FILE *f, const char *name, unsigned mode, const void *data, size_t len,
                      unsigned ino)
{
    size_t nl = strlen(name) + 1;
    if (fprintf(f, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", ino, mode, 0u,
                0u, 1u, 0u, len, 0u, 0u, 0u, 0u, nl, 0u) < 0)
        return -1;
    fwrite(name, 1, nl, f);
    static const char zeros[4] = {0};
    size_t hdr = 110 + nl;
    fwrite(zeros, 1, (4 - hdr % 4) % 4, f);
    if (len) {
        fwrite(data, 1, len, f);
        fwrite(zeros, 1, (4 - len % 4) % 4, f);
    }
    return ferror(f) ? -1 : 0;
}

int nodeagent_cpio_write(const char *out_path, const char *dir, const char *prefix,
                         const char *const *extra_names, const char *const *extra_data,
                         size_t nextra, struct wlm_error *err)
{
    FILE *f = fopen(out_path, "wb");
    if (!f)
        return wlm_error_set(err, errno, "cannot write %s: %s", out_path, strerror(errno));
    unsigned ino = 1000;
    int r = cpio_entry(f, prefix, 040755, NULL, 0, ino++);
    if (dir && *dir) {
        DIR *d = opendir(dir);
        if (!d) {
            fclose(f);
            return wlm_error_setf(err, WLM_EINVAL, "job_dir", "cannot read job dir %s: %s", dir,
                                  strerror(errno));
        }
        struct dirent *e;
        while (!r && (e = readdir(d))) {
            char path[1024], name[512];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            struct stat sb;
            if (e->d_name[0] == '.' || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
                continue;
            FILE *in = fopen(path, "rb");
            if (!in)
                continue;
            char *buf = malloc((size_t)sb.st_size + 1);
            size_t got = buf ? fread(buf, 1, (size_t)sb.st_size, in) : 0;
            fclose(in);
            snprintf(name, sizeof(name), "%s/%s", prefix, e->d_name);
            r = cpio_entry(f, name, 0100000 | (sb.st_mode & 0777), buf, got, ino++);
            free(buf);
        }
        closedir(d);
    }
    for (size_t i = 0; !r && i < nextra; i++) {
        char name[512];
        snprintf(name, sizeof(name), "%s/%s", prefix, extra_names[i]);
        r = cpio_entry(f, name, 0100755, extra_data[i], strlen(extra_data[i]), ino++);
    }
    if (!r)
        r = cpio_entry(f, "TRAILER!!!", 0, NULL, 0, 0);
    if (fclose(f) != 0 || r)
        return wlm_error_set(err, WLM_EIO, "cannot write %s", out_path);
    return 0;
}

/* The init of job VMs; scripts/build-initramfs writes the same one.
 *
 * Cold boot: the job's files came in the initrd (/job/cmd exists) and run at
 * once. Warm pool: no /job/cmd, so the init loads the virtio modules, finds
 * the "wlm.job" virtio-serial port, prints "WLM-READY" and waits (the agent
 * pauses the VM there). The agent resumes it and writes one line
 * "WLM-JOB <bytes> <job> <hostname> <ip>" and a newc cpio of /job on the
 * port. The port stays open the whole time: closing it would drop data the
 * host already sent. */
static const char job_init[] =
    "#!/bin/busybox sh\n"
    "/bin/busybox --install -s /bin\n"
    "mount -t proc proc /proc\n"
    "mount -t sysfs sys /sys\n"
    "mount -t devtmpfs dev /dev 2>/dev/null\n"
    "for a in $(cat /proc/cmdline); do\n"
    "  case \"$a\" in\n"
    "    wlm.hostname=*) hostname \"${a#*=}\" ;;\n"
    "    wlm.ip=*) ip=${a#*=} ;;\n"
    "    wlm.job=*) job=${a#*=} ;;\n"
    "  esac\n"
    "done\n"
    "exec </dev/null >/dev/console 2>&1\n"
    "if [ ! -f /job/cmd ]; then\n"
    "  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci "
    "virtio_console; do\n"
    "    [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null\n"
    "  done\n"
    "  dev=\n"
    "  for i in $(seq 400); do\n"
    "    for p in /sys/class/virtio-ports/*; do\n"
    "      [ \"$(cat $p/name 2>/dev/null)\" = wlm.job ] && dev=/dev/${p##*/}\n"
    "    done\n"
    "    [ -n \"$dev\" ] && [ -e \"$dev\" ] && break\n"
    "    sleep 0.05\n"
    "  done\n"
    "  if [ -z \"$dev\" ] || [ ! -e \"$dev\" ]; then\n"
    "    echo \"WLM-POOL-ERROR no virtio-serial port wlm.job (virtio modules missing?)\"\n"
    "    poweroff -f\n"
    "  fi\n"
    "  exec 3<\"$dev\"\n"
    "  echo WLM-READY\n"
    "  while ! read -r tag len job hn ip <&3; do sleep 0.02; done\n"
    "  head -c \"$len\" <&3 >/tmp/job.cpio\n"
    "  exec 3<&-\n"
    "  [ \"$hn\" != - ] && hostname \"$hn\"\n"
    "  [ \"$ip\" = - ] && ip=\n"
    "  (cd / && cpio -id </tmp/job.cpio 2>/dev/null)\n"
    "  rm -f /tmp/job.cpio\n"
    "fi\n"
    "if [ -n \"$ip\" ] && [ -e /sys/class/net/eth0 ]; then\n"
    "  ip link set eth0 up 2>/dev/null && ip addr add \"$ip/24\" dev eth0 2>/dev/null\n"
    "fi\n"
    "echo \"WLM-START job=$job\"\n"
    "cd /job\n"
    "[ -f /job/.env ] && . /job/.env\n"
    "sh /job/cmd\n"
    "rc=$?\n"
    "echo \"WLM-EXIT $rc\"\n"
    "sync\n"
    "poweroff -f\n";

/* Modules the waiting init loads, in dependency order. */
static const char *const pool_modules[] = {
    "virtio/virtio_ring",           "virtio/virtio", "virtio/virtio_pci_legacy_dev",
    "virtio/virtio_pci_modern_dev", "virtio/virtio_pci", "char/virtio_console"};

static int read_whole(const char *path, struct wlm_buf *b)
{
    FILE *in = fopen(path, "rb");
    if (!in)
        return -errno;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        wlm_buf_append(b, buf, n);
    fclose(in);
    return 0;
}

int nodeagent_kernel_version(const char *kernel, char *out, size_t n)
{
    const char *base = strrchr(kernel, '/');
    base = base ? base + 1 : kernel;
    const char *v = NULL;
    if (!strncmp(base, "vmlinuz-", 8))
        v = base + 8;
    else if (!strncmp(base, "wlm-vmlinux-", 12))
        v = base + 12;
    if (!v || !*v)
        return -ENOENT;
    snprintf(out, n, "%s", v);
    char dir[600];
    snprintf(dir, sizeof(dir), "/lib/modules/%s/kernel/drivers/char/virtio_console.ko", out);
    return access(dir, R_OK) == 0 ? 0 : -ENOENT;
}

int nodeagent_initramfs_write(const char *out_path, const char *busybox, const char *kver,
                              struct wlm_error *err)
{
    struct wlm_buf bb;
    wlm_buf_init(&bb);
    int rr = read_whole(busybox, &bb);
    if (rr < 0)
        return wlm_error_set(err, -rr, "cannot read %s (install busybox-static): %s", busybox,
                             strerror(-rr));
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", out_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        wlm_buf_fini(&bb);
        return wlm_error_set(err, errno, "cannot write %s: %s", tmp, strerror(errno));
    }
    static const char *const dirs[] = {"bin", "sbin", "proc", "sys", "dev", "tmp", "job", "etc",
                                       "lib", "lib/modules"};
    unsigned ino = 1;
    int r = 0;
    for (size_t i = 0; i < WLM_ARRAY_LEN(dirs) && !r; i++)
        r = cpio_entry(f, dirs[i], 040755, NULL, 0, ino++);
    if (!r)
        r = cpio_entry(f, "bin/busybox", 0100755, bb.data, bb.len, ino++);
    if (!r)
        r = cpio_entry(f, "init", 0100755, job_init, strlen(job_init), ino++);
    for (size_t i = 0; kver && *kver && i < WLM_ARRAY_LEN(pool_modules) && !r; i++) {
        char path[700], name[128];
        snprintf(path, sizeof(path), "/lib/modules/%s/kernel/drivers/%s.ko", kver, pool_modules[i]);
        struct wlm_buf m;
        wlm_buf_init(&m);
        if (read_whole(path, &m) == 0) {
            const char *slash = strrchr(pool_modules[i], '/');
            snprintf(name, sizeof(name), "lib/modules/%s.ko", slash + 1);
            r = cpio_entry(f, name, 0100644, m.data, m.len, ino++);
        }
        wlm_buf_fini(&m);
    }
    if (!r)
        r = cpio_entry(f, "TRAILER!!!", 0, NULL, 0, 0);
    wlm_buf_fini(&bb);
    if (fclose(f) != 0 || r || chmod(tmp, 0644) != 0 || rename(tmp, out_path) != 0) {
        unlink(tmp);
        return wlm_error_set(err, WLM_EIO, "cannot write %s", out_path);
    }
    return 0;
}

/* A Debian bzImage carries an XZ-compressed ELF vmlinux. Under TCG the
 * guest spends most of its boot decompressing it (about 15 s here), while
 * QEMU boots the ELF directly through its PVH entry in a few seconds. So
 * the agent extracts it once into a cache and boots that when the kernel
 * was built with CONFIG_PVH. Any failure keeps the bzImage. */
int nodeagent_kernel_pvh(const char *bzimage, const char *cache_dir, char *out, size_t n)
{
    const char *base = strrchr(bzimage, '/');
    base = base ? base + 1 : bzimage;
    if (strncmp(base, "vmlinuz-", 8) != 0)
        return -ENOENT;
    const char *ver = base + 8;
    char cfg[1024], line[256];
    snprintf(cfg, sizeof(cfg), "%.*s/config-%s", (int)(base - bzimage), bzimage, ver);
    if (base == bzimage)
        snprintf(cfg, sizeof(cfg), "config-%s", ver);
    FILE *f = fopen(cfg, "r");
    int pvh = 0;
    if (f) {
        while (!pvh && fgets(line, sizeof(line), f))
            pvh = !strncmp(line, "CONFIG_PVH=y", 12);
        fclose(f);
    }
    if (!pvh)
        return -ENOTSUP;
    snprintf(out, n, "%s/wlm-vmlinux-%s", cache_dir, ver);
    struct stat sb;
    if (stat(out, &sb) == 0 && sb.st_size > (1 << 20))
        return 0;
    f = fopen(bzimage, "rb");
    if (!f)
        return -errno;
    struct wlm_buf b;
    wlm_buf_init(&b);
    int rd = wlm_buf_read_file(&b, f);
    fclose(f);
    if (rd) {
        wlm_buf_fini(&b);
        return rd;
    }
    static const char xz_magic[6] = {(char)0xfd, '7', 'z', 'X', 'Z', 0};
    const char *m = b.data ? memmem(b.data, b.len, xz_magic, 6) : NULL;
    int r = -ENOTSUP;
    if (m) {
        char payload[1100], tmp[1100];
        snprintf(payload, sizeof(payload), "%s.xz.%d", out, (int)getpid());
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", out, (int)getpid());
        FILE *pf = fopen(payload, "wb");
        if (pf) {
            fwrite(m, 1, b.len - (size_t)(m - b.data), pf);
            fclose(pf);
            char *cmd = wlm_asprintf("xz -dc --single-stream '%s' > '%s' 2>/dev/null", payload, tmp);
            int rc = cmd ? system(cmd) : -1;
            free(cmd);
            unlink(payload);
            FILE *tf = rc == 0 ? fopen(tmp, "rb") : NULL;
            char magic[4] = {0};
            if (tf) {
                if (fread(magic, 1, 4, tf) != 4)
                    magic[0] = 0;
                fclose(tf);
            }
            if (!memcmp(magic, "\x7f" "ELF", 4) && chmod(tmp, 0644) == 0 && rename(tmp, out) == 0)
                r = 0;
            else
                unlink(tmp);
        }
    }
    wlm_buf_fini(&b);
    return r;
}
