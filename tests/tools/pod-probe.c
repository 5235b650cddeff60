/*
 * pod-probe - what a hostile pod would try, as one small program the
 * confinement tests run inside a pod (pods may run programs from stampd's
 * libexec directory, where the build puts this one).  Each mode prints one
 * line, "ALLOWED what" or "DENIED what: reason", and exits 0 either way.
 *
 *   pod-probe bind PORT     listen on 127.0.0.1:PORT (squatting a port)
 *   pod-probe uring         io_uring_setup (sockets without socket())
 *   pod-probe unix PATH     connect to a unix socket by its path
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int report(const char *what, int ok, int err) {
    if (ok) printf("ALLOWED %s\n", what);
    else printf("DENIED %s: %s\n", what, strerror(err));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "bind") == 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return report("bind", 0, errno);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)strtol(argv[2], NULL, 10))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0;
        int err = errno;
        close(fd);
        return report("bind", ok, err);
    }
    if (argc >= 2 && strcmp(argv[1], "uring") == 0) {
        unsigned char params[120];
        memset(params, 0, sizeof(params));
        long fd = syscall(SYS_io_uring_setup, 4, params);
        int err = errno;
        if (fd >= 0) close((int)fd);
        return report("io_uring", fd >= 0, err);
    }
    if (argc >= 3 && strcmp(argv[1], "unix") == 0) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return report("unix", 0, errno);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(argv[2]) >= sizeof(sa.sun_path)) return report("unix", 0, ENAMETOOLONG);
        memcpy(sa.sun_path, argv[2], strlen(argv[2]) + 1);
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        int err = errno;
        close(fd);
        return report("unix", ok, err);
    }
    fprintf(stderr, "usage: pod-probe bind PORT | uring | unix PATH\n");
    return 2;
}
