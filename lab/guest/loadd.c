/*
 * loadd - CPU and memory load for the kvmops.virt lab guest.
 *
 * Runs inside the tiny lab guest (started by /init). It burns a chosen share of every
 * online vCPU, optionally dirties memory at a chosen rate, and talks over the first
 * serial port, because the guest has no network: the host reaches that port through
 * libvirt's console stream (virDomainOpenConsole), which works over any libvirt URI.
 *
 * Host -> guest, one command per line, optionally ending in " #<tag>" (echoed in the reply,
 * so the host can tell its answer from replies to anything else on the line):
 *   load <0-100>      share of each vCPU to keep busy, in percent
 *   dirty <0-4096>    MiB of guest memory to rewrite per second (for migration tests)
 *   status            report the current settings
 * Guest -> host, every line starts with "kvmops-lab: " so it stands out from kernel text:
 *   kvmops-lab: tick=<n> up=<seconds> load=<pct> dirty=<MiB/s> cpus=<n> mem_total_kib=<n> cpus_online=<n>
 *                                                                       (once a second)
 *   kvmops-lab: ok load=<pct> dirty=<MiB/s> #<tag>                        (after a command)
 *   kvmops-lab: error <reason> #<tag>
 * Initial values come from the kernel command line: kvmops.load=<pct> kvmops.dirty=<MiB/s>.
 *
 * Being in guest RAM, the settings and the running threads move with a live migration.
 *
 * There is no udev: loadd brings hot-plugged vCPUs online itself (once a second), and the
 * tick reports MemTotal (which the virtio balloon lowers) and the online vCPUs, so tests
 * can see live vCPU and memory changes from inside the guest.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 100000000LL /* duty-cycle period: 100 ms */
#define MAX_WORKERS 256
#define MAX_DIRTY_MIB 4096
#define PAGE 4096

static atomic_int load_pct;
static atomic_int dirty_mibps;
static int console_fd = -1;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(long long deadline_ns)
{
    struct timespec ts = {deadline_ns / 1000000000LL, deadline_ns % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void say(const char *fmt, ...)
{
    char line[256];
    int n = snprintf(line, sizeof line, "kvmops-lab: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - n - 2, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 3)
        n = sizeof line - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    if (write(console_fd, line, n) < 0) {
        /* nobody to tell: the console is the only channel */
    }
}

/* One worker per vCPU: busy for load% of each period, asleep for the rest. */
static void *burn(void *arg)
{
    long cpu = (long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
    long long start = now_ns();
    for (;;) {
        long long busy_until = start + PERIOD_NS * atomic_load(&load_pct) / 100;
        while (now_ns() < busy_until)
            ;
        start += PERIOD_NS;
        long long t = now_ns();
        if (start < t) /* fell behind (guest paused or migrated): resynchronise */
            start = t;
        sleep_until(start);
    }
    return NULL;
}

/* Rewrites dirty_mibps MiB of a private buffer every second, a tenth at a time. */
static void *dirty(void *arg)
{
    (void)arg;
    unsigned char *ring = NULL;
    size_t ring_pages = 0, next = 0;
    unsigned char stamp = 0;
    long long tick = now_ns();
    for (;;) {
        size_t rate = (size_t)atomic_load(&dirty_mibps);
        size_t want_pages = rate * (1024 * 1024 / PAGE);
        if (want_pages > ring_pages) {
            unsigned char *bigger = realloc(ring, want_pages * PAGE);
            if (bigger) {
                ring = bigger;
                ring_pages = want_pages;
            }
        }
        if (rate && ring_pages) {
            size_t per_tick = want_pages / 10 ? want_pages / 10 : 1;
            stamp++;
            for (size_t i = 0; i < per_tick; i++) {
                ring[next * PAGE] = stamp;
                next = (next + 1) % ring_pages;
            }
        }
        tick += PERIOD_NS;
        sleep_until(tick);
    }
    return NULL;
}

static int parse_setting(const char *text, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || end == text || *end || v < 0 || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static void handle_command(char *line)
{
    int value;
    const char *tag = "";
    char *hash = strstr(line, " #");
    if (hash) {
        *hash = 0;
        tag = hash + 2;
    }
    while (*line == ' ' || *line == '\t')
        line++;
    if (!*line)
        return;
    if (!strncmp(line, "load ", 5)) {
        if (parse_setting(line + 5, 100, &value)) {
            say("error load takes a whole percentage from 0 to 100 #%s", tag);
            return;
        }
        atomic_store(&load_pct, value);
    } else if (!strncmp(line, "dirty ", 6)) {
        if (parse_setting(line + 6, MAX_DIRTY_MIB, &value)) {
            say("error dirty takes MiB per second from 0 to %d #%s", MAX_DIRTY_MIB, tag);
            return;
        }
        atomic_store(&dirty_mibps, value);
    } else if (strcmp(line, "status")) {
        say("error unknown command (expected: load N, dirty N, status) #%s", tag);
        return;
    }
    say("ok load=%d dirty=%d #%s", atomic_load(&load_pct), atomic_load(&dirty_mibps), tag);
}

static void read_kernel_cmdline(void)
{
    char buf[4096] = "";
    FILE *f = fopen("/proc/cmdline", "r");
    if (!f)
        return;
    if (!fgets(buf, sizeof buf, f))
        buf[0] = 0;
    fclose(f);
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
        int value;
        if (!strncmp(tok, "kvmops.load=", 12) && !parse_setting(tok + 12, 100, &value))
            atomic_store(&load_pct, value);
        else if (!strncmp(tok, "kvmops.dirty=", 13) && !parse_setting(tok + 13, MAX_DIRTY_MIB, &value))
            atomic_store(&dirty_mibps, value);
    }
}

static double uptime_seconds(void)
{
    double up = 0;
    FILE *f = fopen("/proc/uptime", "r");
    if (f) {
        if (fscanf(f, "%lf", &up) != 1)
            up = 0;
        fclose(f);
    }
    return up;
}

static long mem_total_kib(void)
{
    char line[128];
    long kib = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* A hot-plugged vCPU arrives offline; without udev, nobody else would bring it online.
 * (A vCPU taken offline on purpose comes back too: the lab has no use for offline vCPUs.) */
static void online_new_cpus(void)
{
    DIR *dir = opendir("/sys/devices/system/cpu");
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        char path[300], state = 0;
        if (strncmp(entry->d_name, "cpu", 3) || entry->d_name[3] < '0' || entry->d_name[3] > '9')
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/online", entry->d_name);
        int fd = open(path, O_RDWR);
        if (fd < 0)
            continue; /* cpu0 cannot go offline and has no such file */
        if (read(fd, &state, 1) == 1 && state == '0' && pwrite(fd, "1", 1, 0) < 0) {
            /* the kernel refused: try again next tick */
        }
        close(fd);
    }
    closedir(dir);
}

static void start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
}

int main(int argc, char **argv)
{
    const char *port = argc > 1 ? argv[1] : "/dev/ttyS0";
    console_fd = open(port, O_RDWR | O_NOCTTY);
    if (console_fd < 0) {
        perror(port);
        return 1;
    }
    struct termios tio;
    if (tcgetattr(console_fd, &tio) == 0) {
        cfmakeraw(&tio); /* no echo, no line editing: the host sends whole lines */
        tcsetattr(console_fd, TCSANOW, &tio);
    }
    tcflush(console_fd, TCIFLUSH); /* drop what arrived while the tty still echoed it */
    read_kernel_cmdline();

    long workers = 0;
    start_thread(dirty, NULL);

    char line[128];
    size_t used = 0;
    unsigned long ticks = 0;
    long long next_tick = now_ns();
    for (;;) {
        /* vCPUs can be hot-plugged: give each online one its worker */
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (; workers < online && workers < MAX_WORKERS; workers++)
            start_thread(burn, (void *)workers);

        long long wait_ms = (next_tick - now_ns()) / 1000000;
        struct pollfd pfd = {console_fd, POLLIN, 0};
        if (wait_ms > 0 && poll(&pfd, 1, (int)wait_ms) > 0 && (pfd.revents & POLLIN)) {
            char c;
            while (read(console_fd, &c, 1) == 1) {
                if (c == '\n' || c == '\r') {
                    line[used] = 0;
                    handle_command(line);
                    used = 0;
                } else if (used < sizeof line - 1) {
                    line[used++] = c;
                }
                struct pollfd more = {console_fd, POLLIN, 0};
                if (poll(&more, 1, 0) <= 0)
                    break;
            }
        }
        if (now_ns() >= next_tick) {
            ticks++;
            online_new_cpus();
            say("tick=%lu up=%.1f load=%d dirty=%d cpus=%ld mem_total_kib=%ld cpus_online=%ld", ticks,
                uptime_seconds(), atomic_load(&load_pct), atomic_load(&dirty_mibps), workers, mem_total_kib(),
                sysconf(_SC_NPROCESSORS_ONLN));
            next_tick += 1000000000LL;
            if (next_tick < now_ns()) /* paused or migrated for a while: do not burst */
                next_tick = now_ns() + 1000000000LL;
        }
    }
}
