/*
 * agentd: the lab guest's QEMU guest agent. It answers, over the virtio-serial port
 * org.qemu.guest_agent.0, the commands libvirt sends for virDomainGetGuestInfo (host name,
 * OS) and virDomainInterfaceAddresses (source agent), so the collection's agent support is
 * tested against a real QEMU channel and libvirt's real agent client. Any other command
 * gets the CommandNotFound error a real agent gives.
 *
 * The protocol: one JSON object per command, answered by one JSON object and a newline.
 * libvirt first sends guest-sync with a random id and drops replies until it gets
 * {"return": id} back. The commands here carry no strings worth parsing beyond
 * "execute" and "id", so a small scanner is enough.
 *
 * It exits quietly when the guest has no agent port (a guest defined without the channel).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#define PORT_NAME "org.qemu.guest_agent.0"
#define REPLY_MAX 16384

static char reply[REPLY_MAX];

static int open_port(void)
{
    /* the port's driver may still be loading: look for a few seconds */
    for (int attempt = 0; attempt < 50; attempt++) {
        DIR *ports = opendir("/sys/class/virtio-ports");
        struct dirent *entry;
        while (ports && (entry = readdir(ports)) != NULL) {
            char path[512], name[128] = "";
            snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", entry->d_name);
            FILE *file = fopen(path, "r");
            if (!file)
                continue;
            if (fgets(name, sizeof name, file))
                name[strcspn(name, "\n")] = 0;
            fclose(file);
            if (strcmp(name, PORT_NAME) == 0) {
                snprintf(path, sizeof path, "/dev/%s", entry->d_name);
                closedir(ports);
                return open(path, O_RDWR | O_NOCTTY);
            }
        }
        if (ports)
            closedir(ports);
        usleep(100000);
    }
    return -1;
}

/* The value of "key": "value" in a command, copied into out; 0 when absent. */
static int string_field(const char *json, const char *key, char *out, size_t size)
{
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = strstr(json, quoted);
    if (!at || !(at = strchr(at + strlen(quoted), '"')))
        return 0;
    const char *end = strchr(++at, '"');
    if (!end || (size_t)(end - at) >= size)
        return 0;
    memcpy(out, at, end - at);
    out[end - at] = 0;
    return 1;
}

static long long number_field(const char *json, const char *key)
{
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = strstr(json, quoted);
    if (!at || !(at = strchr(at, ':')))
        return 0;
    return strtoll(at + 1, NULL, 10);
}

static void bring_up_loopback(void)
{
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq request = {0};
    strcpy(request.ifr_name, "lo");
    if (sock >= 0 && ioctl(sock, SIOCGIFFLAGS, &request) == 0) {
        request.ifr_flags |= IFF_UP;
        ioctl(sock, SIOCSIFFLAGS, &request);
    }
    if (sock >= 0)
        close(sock);
}

static size_t append(size_t used, const char *format, const char *a, const char *b)
{
    if (used < REPLY_MAX)
        used += snprintf(reply + used, REPLY_MAX - used, format, a, b);
    return used;
}

static void network_interfaces(void)
{
    struct ifaddrs *all = NULL, *item, *other;
    size_t used = append(0, "{\"return\": [%s%s", "", "");
    int first = 1;
    getifaddrs(&all);
    for (item = all; item; item = item->ifa_next) {
        if (!item->ifa_addr || item->ifa_addr->sa_family != AF_PACKET)
            continue; /* one entry per interface: its link-layer address */
        const unsigned char *mac = ((struct sockaddr_ll *)item->ifa_addr)->sll_addr;
        char hwaddr[32];
        snprintf(hwaddr, sizeof hwaddr, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
        used = append(used, "%s{\"name\": \"%s\", ", first ? "" : ", ", item->ifa_name);
        used = append(used, "\"hardware-address\": \"%s\", \"ip-addresses\": [%s", hwaddr, "");
        first = 0;
        int first_address = 1;
        for (other = all; other; other = other->ifa_next) {
            int family = other->ifa_addr ? other->ifa_addr->sa_family : 0;
            if (strcmp(other->ifa_name, item->ifa_name) != 0 || (family != AF_INET && family != AF_INET6))
                continue;
            char text[INET6_ADDRSTRLEN];
            const void *raw = family == AF_INET ? (void *)&((struct sockaddr_in *)other->ifa_addr)->sin_addr
                                                : (void *)&((struct sockaddr_in6 *)other->ifa_addr)->sin6_addr;
            inet_ntop(family, raw, text, sizeof text);
            used = append(used, "%s{\"ip-address-type\": \"%s\", ", first_address ? "" : ", ",
                          family == AF_INET ? "ipv4" : "ipv6");
            used = append(used, "\"ip-address\": \"%s\", \"prefix\": %s}", text, family == AF_INET ? "8" : "128");
            first_address = 0;
        }
        used = append(used, "]}%s%s", "", "");
    }
    append(used, "]}%s%s", "", "");
    if (all)
        freeifaddrs(all);
}

static void answer(const char *command)
{
    char execute[64];
    struct utsname name;
    uname(&name);
    if (!string_field(command, "execute", execute, sizeof execute)) {
        reply[0] = 0; /* not a command (a stray delimiter): nothing to answer */
    } else if (strcmp(execute, "guest-sync") == 0 || strcmp(execute, "guest-sync-delimited") == 0) {
        snprintf(reply, REPLY_MAX, "%s{\"return\": %lld}", strcmp(execute, "guest-sync") ? "\xff" : "",
                 number_field(command, "id"));
    } else if (strcmp(execute, "guest-ping") == 0) {
        snprintf(reply, REPLY_MAX, "{\"return\": {}}");
    } else if (strcmp(execute, "guest-get-host-name") == 0) {
        snprintf(reply, REPLY_MAX, "{\"return\": {\"host-name\": \"%s\"}}", name.nodename);
    } else if (strcmp(execute, "guest-get-osinfo") == 0) {
        snprintf(reply, REPLY_MAX,
                 "{\"return\": {\"id\": \"kvmops-lab\", \"name\": \"kvmops.virt lab guest\", "
                 "\"pretty-name\": \"kvmops.virt lab guest\", \"version-id\": \"1\", \"version\": \"1\", "
                 "\"kernel-release\": \"%s\", \"machine\": \"%s\"}}", name.release, name.machine);
    } else if (strcmp(execute, "guest-network-get-interfaces") == 0) {
        network_interfaces();
    } else {
        snprintf(reply, REPLY_MAX, "{\"error\": {\"class\": \"CommandNotFound\", "
                 "\"desc\": \"The command %s has not been found\"}}", execute);
    }
    if (reply[0]) {
        strncat(reply, "\n", REPLY_MAX - strlen(reply) - 1);
        if (write(STDOUT_FILENO, reply, strlen(reply)) < 0)
            perror("agentd: write");
    }
}

int main(void)
{
    char buffer[8192];
    size_t used = 0;
    int port = open_port();
    if (port < 0)
        return 0;
    dup2(port, STDOUT_FILENO);
    bring_up_loopback();
    /* the host name libvirt's guest-get-host-name shows: the guest's name, from the cmdline */
    FILE *cmdline = fopen("/proc/cmdline", "r");
    char line[1024] = "", *at;
    if (cmdline && fgets(line, sizeof line, cmdline) && (at = strstr(line, "kvmops.hostname=")) != NULL) {
        at += strlen("kvmops.hostname=");
        sethostname(at, strcspn(at, " \n"));
    }
    if (cmdline)
        fclose(cmdline);
    for (;;) {
        ssize_t got = read(port, buffer + used, sizeof buffer - 1 - used);
        if (got <= 0) {
            /* the host side is not connected yet (or went away): wait and read again */
            usleep(200000);
            continue;
        }
        used += got;
        buffer[used] = 0;
        /* answer every complete object; keep an incomplete one for the next read */
        size_t begin = 0, consumed = 0;
        int depth = 0;
        for (size_t i = 0; i < used; i++) {
            if (buffer[i] == '{' && depth++ == 0)
                begin = i;
            else if (buffer[i] == '}' && depth > 0 && --depth == 0) {
                char saved = buffer[i + 1];
                buffer[i + 1] = 0;
                answer(buffer + begin);
                buffer[i + 1] = saved;
                consumed = i + 1;
            } else if (depth == 0)
                consumed = i + 1; /* delimiters and newlines between commands */
        }
        used -= consumed;
        memmove(buffer, buffer + consumed, used + 1);
        if (used >= sizeof buffer - 1)
            used = 0; /* a command too long for any we know: drop it */
    }
}
