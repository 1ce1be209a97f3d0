/* LD_PRELOAD shim: IPv4 sockets connect from the address in BIND_SOURCE (e.g. 127.0.0.2), or
 * from each address of a comma-separated list in turn, one per connection (127.0.0.3,127.0.0.4).
 *
 * wrk has no option for its source address, and Linux picks 127.0.0.1 as the source for any
 * 127.x destination unless the socket is bound first. Scenario 9 needs the flooding client on an
 * address of its own (per-address fairness and limits are otherwise unmeasurable on one machine),
 * so the harness builds this at run time (bench/bind_source.py) and runs wrk with
 * LD_PRELOAD=<built .so> BIND_SOURCE=127.0.0.2. A socket already bound is left as it is.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    static unsigned next;
    const char *list = getenv("BIND_SOURCE");
    if (list && addr && addr->sa_family == AF_INET) {
        unsigned count = 1;
        for (const char *p = list; *p; p++) count += *p == ',';
        const char *source = list;
        for (unsigned skip = next++ % count; skip > 0; skip--) source = strchr(source, ',') + 1;
        char one[INET_ADDRSTRLEN] = {0};
        size_t length = strcspn(source, ",");
        if (length < sizeof one) memcpy(one, source, length);
        struct sockaddr_in local;
        memset(&local, 0, sizeof local);
        local.sin_family = AF_INET;
        if (inet_pton(AF_INET, one, &local.sin_addr) == 1)
            bind(fd, (struct sockaddr *)&local, sizeof local); /* port 0: any; EINVAL if bound: ignored */
    }
    return real_connect(fd, addr, len);
}
