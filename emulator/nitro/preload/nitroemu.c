/*
 * libnitroemu: runs an unmodified Nitro Enclave program against the emulator.
 *
 * Loaded with LD_PRELOAD, it gives the program the two devices of a Nitro Enclave:
 *
 *   /dev/nsm   open() returns a placeholder descriptor; ioctl(fd, NSM_IOCTL_RAW, &raw)
 *              sends raw.request to the emulated NSM (one frame of the vsock framing,
 *              an 8-byte little-endian length and the CBOR bytes, over a fresh
 *              connection to $NITRO_EMU_NSM_SOCKET), copies the answer into
 *              raw.response, truncated to its length, and sets raw.response.len, as
 *              the Linux driver (drivers/misc/nsm.c) does.
 *   AF_VSOCK   socket(AF_VSOCK, SOCK_STREAM, 0) returns an AF_UNIX socket; bind,
 *              listen, connect, accept, getsockname and getpeername take and give
 *              struct sockaddr_vm. A listener on (cid, port) is the Unix socket
 *              $NITRO_EMU_VSOCK_DIR/vsock-<cid>-<port>.sock (the layout of
 *              vault/common/transport.py); VMADDR_CID_ANY means $NITRO_EMU_VSOCK_CID.
 *              A connecting socket first binds the abstract name
 *              "nitro-emu-vsock:<cid>:<port>" (an ephemeral port), so that the
 *              acceptor can tell who connected; a peer without a name (a plain Unix
 *              client) is reported as $NITRO_EMU_VSOCK_PEER_CID (default 3, the
 *              parent) with an ephemeral port.
 *   /dev/vsock IOCTL_VM_SOCKETS_GET_LOCAL_CID answers $NITRO_EMU_VSOCK_CID.
 *
 * Once loaded, AF_VSOCK never reaches the kernel: without $NITRO_EMU_VSOCK_DIR,
 * socket(AF_VSOCK, ...) fails with EAFNOSUPPORT. Without $NITRO_EMU_NSM_SOCKET,
 * /dev/nsm does not exist (ENOENT).
 *
 * Emulated descriptors are tracked per fd together with the inode they had when they
 * were made, so a descriptor closed behind the library's back (close_range, a raw
 * syscall) and reused for another file is not mistaken for an emulated one. dup,
 * dup2, dup3 and fcntl(F_DUPFD[_CLOEXEC]) copy the tracking. The table is guarded by a
 * mutex, NSM requests by another (the driver serializes them too); a fork hands both
 * to the child unlocked. Only SOCK_STREAM is offered, as
 * Nitro Enclaves offer. Statically linked programs and raw system calls bypass
 * LD_PRELOAD and therefore this library.
 */
/* Not _GNU_SOURCE: it turns the socket functions' address arguments into transparent
 * unions, which the definitions below could not match. Fortified wrappers would clash
 * with the definitions of open and friends. */
#undef _FORTIFY_SOURCE
#define _DEFAULT_SOURCE
#define _LARGEFILE64_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* GNU declarations, given here because _GNU_SOURCE is not defined (see above). */
#ifndef RTLD_NEXT
#define RTLD_NEXT ((void *)-1L)
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
int memfd_create(const char *name, unsigned int flags);

/* include/uapi/linux/nsm.h */
#define NSM_MAGIC 0x0A
#define NSM_REQUEST_MAX_SIZE 0x1000
#define NSM_RESPONSE_MAX_SIZE 0x3000
struct nsm_iovec {
    uint64_t addr;
    uint64_t len;
};
struct nsm_raw {
    struct nsm_iovec request;
    struct nsm_iovec response;
};
#define NSM_IOCTL_RAW _IOWR(NSM_MAGIC, 0x0, struct nsm_raw)

/* include/uapi/linux/vm_sockets.h (defined here so the build needs no kernel headers) */
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define VMADDR_CID_ANY 0xFFFFFFFFU
#define VMADDR_CID_LOCAL 1U
#define VMADDR_PORT_ANY 0xFFFFFFFFU
#define IOCTL_VM_SOCKETS_GET_LOCAL_CID _IO(7, 0xb9)
struct emu_sockaddr_vm {
    sa_family_t svm_family;
    unsigned short svm_reserved1;
    unsigned int svm_port;
    unsigned int svm_cid;
    unsigned char svm_flags;
    unsigned char svm_zero[sizeof(struct sockaddr) - sizeof(sa_family_t) - sizeof(unsigned short) -
                           sizeof(unsigned int) - sizeof(unsigned int) - sizeof(unsigned char)];
};
_Static_assert(sizeof(struct emu_sockaddr_vm) == 16, "struct sockaddr_vm is 16 bytes");

#define NSM_DEVICE "/dev/nsm"
#define VSOCK_DEVICE "/dev/vsock"
#define ABSTRACT_PREFIX "nitro-emu-vsock:"
#define DEFAULT_PEER_CID 3U
#define NSM_TIMEOUT_SECONDS 120
/* Ephemeral ports as Linux picks them: above the reserved range. */
#define FIRST_EPHEMERAL_PORT 1024U
#define BIND_ATTEMPTS 64

enum kind { KIND_NONE = 0, KIND_NSM, KIND_VSOCK_DEVICE, KIND_VSOCK };

struct entry {
    enum kind kind;
    ino_t ino;
    dev_t dev;
    int bound;
    int connected;
    unsigned int local_cid;
    unsigned int local_port;
    unsigned int remote_cid;
    unsigned int remote_port;
};

/* The real functions, resolved once. */
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_socket)(int, int, int);
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_listen)(int, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_getsockname)(int, struct sockaddr *, socklen_t *);
static int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_fcntl64)(int, int, ...);

/* Configuration, read from the environment once. */
static const char *nsm_socket_path;
static const char *vsock_dir;
static unsigned int local_cid = VMADDR_CID_ANY;
static unsigned int peer_cid = DEFAULT_PEER_CID;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
/* One NSM request at a time per process, as the driver's own mutex serializes them. */
static pthread_mutex_t nsm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *table;
static size_t table_size;

static void *resolve(const char *name) { return dlsym(RTLD_NEXT, name); }

static int parse_u32(const char *text, unsigned int *out) {
    char *end = NULL;
    unsigned long value;
    if (text == NULL || *text == '\0') return -1;
    errno = 0;
    value = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || value > 0xFFFFFFFFUL) return -1;
    *out = (unsigned int)value;
    return 0;
}

static void diagnose(const char *what, const char *detail) {
    /* One line on stderr (the enclave's log): the program itself only sees an errno. */
    fprintf(stderr, "libnitroemu: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

/* A fork while another thread holds the table lock must not leave the child locked out. */
static void before_fork(void) {
    pthread_mutex_lock(&nsm_lock);
    pthread_mutex_lock(&table_lock);
}
static void after_fork(void) {
    pthread_mutex_unlock(&table_lock);
    pthread_mutex_unlock(&nsm_lock);
}

static void initialize(void) {
    const char *value;
    pthread_atfork(before_fork, after_fork, after_fork);
    real_open = resolve("open");
    real_open64 = resolve("open64");
    real_openat = resolve("openat");
    real_openat64 = resolve("openat64");
    real_fopen = resolve("fopen");
    real_fopen64 = resolve("fopen64");
    real_close = resolve("close");
    real_ioctl = resolve("ioctl");
    real_socket = resolve("socket");
    real_bind = resolve("bind");
    real_connect = resolve("connect");
    real_listen = resolve("listen");
    real_accept = resolve("accept");
    real_accept4 = resolve("accept4");
    real_getsockname = resolve("getsockname");
    real_getpeername = resolve("getpeername");
    real_getsockopt = resolve("getsockopt");
    real_setsockopt = resolve("setsockopt");
    real_dup = resolve("dup");
    real_dup2 = resolve("dup2");
    real_dup3 = resolve("dup3");
    real_fcntl = resolve("fcntl");
    real_fcntl64 = resolve("fcntl64");

    value = getenv("NITRO_EMU_NSM_SOCKET");
    nsm_socket_path = (value && *value) ? strdup(value) : NULL;
    value = getenv("NITRO_EMU_VSOCK_DIR");
    vsock_dir = (value && *value) ? strdup(value) : NULL;
    value = getenv("NITRO_EMU_VSOCK_CID");
    if (value && parse_u32(value, &local_cid) != 0) {
        diagnose("NITRO_EMU_VSOCK_CID is not a CID", value);
        vsock_dir = NULL; /* refuse vsock rather than guess who this side is */
    }
    if (vsock_dir && local_cid == VMADDR_CID_ANY) {
        diagnose("NITRO_EMU_VSOCK_DIR needs NITRO_EMU_VSOCK_CID", NULL);
        vsock_dir = NULL;
    }
    value = getenv("NITRO_EMU_VSOCK_PEER_CID");
    if (value && parse_u32(value, &peer_cid) != 0) {
        diagnose("NITRO_EMU_VSOCK_PEER_CID is not a CID", value);
        peer_cid = DEFAULT_PEER_CID;
    }
}

static void init(void) { pthread_once(&init_once, initialize); }

/* -- the descriptor table ---------------------------------------------------------------- */

static int identity(int fd, dev_t *dev, ino_t *ino) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

/* Record fd as emulated (entry->dev/ino are filled in here). Returns -1 on ENOMEM. */
static int track(int fd, struct entry *entry) {
    if (fd < 0) return -1;
    if (identity(fd, &entry->dev, &entry->ino) != 0) return -1;
    pthread_mutex_lock(&table_lock);
    if ((size_t)fd >= table_size) {
        size_t size = table_size ? table_size : 64;
        struct entry *grown;
        while (size <= (size_t)fd) size *= 2;
        grown = realloc(table, size * sizeof(*table));
        if (grown == NULL) {
            pthread_mutex_unlock(&table_lock);
            errno = ENOMEM;
            return -1;
        }
        memset(grown + table_size, 0, (size - table_size) * sizeof(*table));
        table = grown;
        table_size = size;
    }
    table[fd] = *entry;
    pthread_mutex_unlock(&table_lock);
    return 0;
}

static void untrack(int fd) {
    pthread_mutex_lock(&table_lock);
    if (fd >= 0 && (size_t)fd < table_size) table[fd].kind = KIND_NONE;
    pthread_mutex_unlock(&table_lock);
}

/* Copy fd's entry into *out if fd is still the descriptor it was when tracked. */
static int lookup(int fd, struct entry *out) {
    dev_t dev;
    ino_t ino;
    int found = 0;
    if (fd < 0) return 0;
    pthread_mutex_lock(&table_lock);
    if ((size_t)fd < table_size && table[fd].kind != KIND_NONE) {
        *out = table[fd];
        found = 1;
    }
    pthread_mutex_unlock(&table_lock);
    if (!found) return 0;
    if (identity(fd, &dev, &ino) != 0 || dev != out->dev || ino != out->ino) {
        untrack(fd); /* closed and reused without close() */
        return 0;
    }
    return 1;
}

static void update(int fd, const struct entry *entry) {
    pthread_mutex_lock(&table_lock);
    if (fd >= 0 && (size_t)fd < table_size && table[fd].kind != KIND_NONE) table[fd] = *entry;
    pthread_mutex_unlock(&table_lock);
}

static void copy_tracking(int from, int to) {
    struct entry entry;
    if (to < 0) return;
    if (lookup(from, &entry)) {
        track(to, &entry);
    } else {
        untrack(to);
    }
}

/* -- /dev/nsm ------------------------------------------------------------------------------ */

static int is_device(const char *path, const char *device) { return path != NULL && strcmp(path, device) == 0; }

/* A descriptor with an inode of its own stands for the device. */
static int open_placeholder(const char *name, int flags, enum kind kind) {
    struct entry entry;
    int fd = memfd_create(name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0) return -1;
    memset(&entry, 0, sizeof(entry));
    entry.kind = kind;
    if (track(fd, &entry) != 0) {
        int saved = errno;
        real_close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Returns 1 and sets *result when path is an emulated device, 0 to pass the call on. */
static int open_device(const char *path, int flags, int *result) {
    if (is_device(path, NSM_DEVICE)) {
        if (nsm_socket_path == NULL) {
            errno = ENOENT;
            *result = -1;
        } else {
            *result = open_placeholder("nsm", flags, KIND_NSM);
        }
        return 1;
    }
    if (is_device(path, VSOCK_DEVICE) && vsock_dir != NULL) {
        *result = open_placeholder("vsock", flags, KIND_VSOCK_DEVICE);
        return 1;
    }
    return 0;
}

static int wait_ready(int fd, short events, time_t deadline) {
    struct pollfd pfd;
    for (;;) {
        int left = (int)(deadline - time(NULL));
        int rc;
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, left * 1000);
        if (rc > 0) return 0;
        if (rc < 0 && errno != EINTR) return -1;
    }
}

static int send_all(int fd, const unsigned char *data, size_t length, time_t deadline) {
    while (length > 0) {
        ssize_t n = send(fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            data += n;
            length -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_ready(fd, POLLOUT, deadline) != 0) return -1;
        } else if (n < 0 && errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static int recv_all(int fd, unsigned char *data, size_t length, time_t deadline) {
    while (length > 0) {
        ssize_t n = recv(fd, data, length, MSG_DONTWAIT);
        if (n > 0) {
            data += n;
            length -= (size_t)n;
        } else if (n == 0) {
            errno = ECONNRESET;
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_ready(fd, POLLIN, deadline) != 0) return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static int unix_address(const char *path, struct sockaddr_un *addr, socklen_t *length) {
    size_t n = strlen(path);
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (n >= sizeof(addr->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(addr->sun_path, path, n);
    *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

/* One request, one response, on a connection of its own: the NSM ends idle connections. */
static int nsm_exchange(const unsigned char *request, size_t request_length, unsigned char **response,
                        size_t *response_length) {
    struct sockaddr_un addr;
    socklen_t addr_length;
    unsigned char header[8];
    uint64_t length = 0;
    time_t deadline = time(NULL) + NSM_TIMEOUT_SECONDS;
    int fd, i;

    if (unix_address(nsm_socket_path, &addr, &addr_length) != 0) return -1;
    fd = real_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (real_connect(fd, (struct sockaddr *)&addr, addr_length) != 0) {
        diagnose("cannot reach the emulated NSM", strerror(errno));
        real_close(fd);
        errno = EIO;
        return -1;
    }
    for (i = 0; i < 8; i++) header[i] = (unsigned char)(((uint64_t)request_length >> (8 * i)) & 0xFF);
    if (send_all(fd, header, sizeof(header), deadline) != 0 || send_all(fd, request, request_length, deadline) != 0 ||
        recv_all(fd, header, sizeof(header), deadline) != 0) {
        diagnose("the emulated NSM did not answer", strerror(errno));
        real_close(fd);
        errno = EIO;
        return -1;
    }
    for (i = 0; i < 8; i++) length |= (uint64_t)header[i] << (8 * i);
    /* The device's response buffer holds NSM_RESPONSE_MAX_SIZE bytes; nothing larger exists. */
    if (length > NSM_RESPONSE_MAX_SIZE) {
        diagnose("the emulated NSM sent an oversized response", NULL);
        real_close(fd);
        errno = EIO;
        return -1;
    }
    *response = malloc(length ? (size_t)length : 1);
    if (*response == NULL) {
        real_close(fd);
        errno = ENOMEM;
        return -1;
    }
    if (recv_all(fd, *response, (size_t)length, deadline) != 0) {
        diagnose("the emulated NSM response was cut short", strerror(errno));
        free(*response);
        *response = NULL;
        real_close(fd);
        errno = EIO;
        return -1;
    }
    real_close(fd);
    *response_length = (size_t)length;
    return 0;
}

static int nsm_ioctl(unsigned long request, void *argument) {
    struct nsm_raw raw;
    unsigned char *response = NULL;
    size_t response_length = 0;
    int rc;

    if (request != NSM_IOCTL_RAW) {
        errno = EINVAL;
        return -1;
    }
    if (argument == NULL) {
        errno = EFAULT;
        return -1;
    }
    memcpy(&raw, argument, sizeof(raw));
    if (raw.request.len > NSM_REQUEST_MAX_SIZE) {
        errno = EMSGSIZE;
        return -1;
    }
    if (raw.request.len > 0 && raw.request.addr == 0) {
        errno = EFAULT;
        return -1;
    }
    pthread_mutex_lock(&nsm_lock);
    rc = nsm_exchange((const unsigned char *)(uintptr_t)raw.request.addr, (size_t)raw.request.len, &response,
                      &response_length);
    pthread_mutex_unlock(&nsm_lock);
    if (rc != 0) return -1;
    /* Truncate any message that does not fit (drivers/misc/nsm.c, parse_resp_raw). */
    if (raw.response.len > response_length) raw.response.len = response_length;
    if (raw.response.len > 0) {
        if (raw.response.addr == 0) {
            free(response);
            errno = EFAULT;
            return -1;
        }
        memcpy((void *)(uintptr_t)raw.response.addr, response, (size_t)raw.response.len);
    }
    free(response);
    memcpy(argument, &raw, sizeof(raw));
    return 0;
}

/* -- AF_VSOCK ------------------------------------------------------------------------------ */

static unsigned int ephemeral_port(void) {
    unsigned int value = 0;
    if (getrandom(&value, sizeof(value), 0) != (ssize_t)sizeof(value)) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        value = (unsigned int)now.tv_nsec ^ ((unsigned int)getpid() << 16);
    }
    return FIRST_EPHEMERAL_PORT + value % (VMADDR_PORT_ANY - FIRST_EPHEMERAL_PORT);
}

static int listener_path(unsigned int cid, unsigned int port, struct sockaddr_un *addr, socklen_t *length) {
    char path[sizeof(addr->sun_path) + 1];
    int n = snprintf(path, sizeof(path), "%s/vsock-%u-%u.sock", vsock_dir, cid, port);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return unix_address(path, addr, length);
}

static void abstract_name(unsigned int cid, unsigned int port, struct sockaddr_un *addr, socklen_t *length) {
    int n;
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    n = snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1, ABSTRACT_PREFIX "%u:%u", cid, port);
    *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Who a Unix socket address stands for in vsock terms; 0 if it is not one of ours. */
static int vsock_of_unix(const struct sockaddr_un *addr, socklen_t length, unsigned int *cid, unsigned int *port) {
    size_t path_length;
    const char *name;
    char buffer[sizeof(addr->sun_path) + 1];
    int consumed = 0;
    if (length <= offsetof(struct sockaddr_un, sun_path) || addr->sun_family != AF_UNIX) return 0;
    path_length = (size_t)length - offsetof(struct sockaddr_un, sun_path);
    if (path_length > sizeof(addr->sun_path)) path_length = sizeof(addr->sun_path);
    memcpy(buffer, addr->sun_path, path_length);
    buffer[path_length] = '\0';
    if (buffer[0] == '\0') {
        size_t prefix = strlen(ABSTRACT_PREFIX);
        if (path_length < 1 + prefix) return 0;
        buffer[path_length] = '\0';
        name = buffer + 1;
        if (strncmp(name, ABSTRACT_PREFIX, prefix) != 0) return 0;
        return sscanf(name + prefix, "%u:%u", cid, port) == 2;
    }
    name = strrchr(buffer, '/');
    name = name ? name + 1 : buffer;
    if (strncmp(name, "vsock-", 6) != 0 || name[6] < '0' || name[6] > '9') return 0;
    if (sscanf(name, "vsock-%u-%u%n", cid, port, &consumed) != 2) return 0;
    return strcmp(name + consumed, ".sock") == 0;
}

static void give_address(unsigned int cid, unsigned int port, struct sockaddr *addr, socklen_t *length) {
    struct emu_sockaddr_vm vm;
    size_t n;
    if (addr == NULL || length == NULL) return;
    memset(&vm, 0, sizeof(vm));
    vm.svm_family = AF_VSOCK;
    vm.svm_cid = cid;
    vm.svm_port = port;
    n = *length < sizeof(vm) ? *length : sizeof(vm);
    memcpy(addr, &vm, n);
    *length = sizeof(vm);
}

static int take_address(const struct sockaddr *addr, socklen_t length, struct emu_sockaddr_vm *vm) {
    if (addr == NULL) {
        errno = EFAULT;
        return -1;
    }
    if (length < (socklen_t)sizeof(*vm)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(vm, addr, sizeof(*vm));
    if (vm->svm_family != AF_VSOCK) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    return 0;
}

/* Bind fd to the listener path of (cid, port); a path left by a listener that is gone is replaced. */
static int bind_path(int fd, unsigned int cid, unsigned int port) {
    struct sockaddr_un addr;
    socklen_t length;
    if (listener_path(cid, port, &addr, &length) != 0) return -1;
    if (real_bind(fd, (struct sockaddr *)&addr, length) == 0) return 0;
    if (errno == EADDRINUSE) {
        int probe = real_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int alive;
        if (probe < 0) return -1;
        alive = real_connect(probe, (struct sockaddr *)&addr, length) == 0 || errno != ECONNREFUSED;
        real_close(probe);
        if (alive) {
            errno = EADDRINUSE;
            return -1;
        }
        unlink(addr.sun_path);
        return real_bind(fd, (struct sockaddr *)&addr, length);
    }
    if (errno == ENOENT) errno = EADDRNOTAVAIL; /* the vsock directory is missing */
    return -1;
}

static int vsock_bind(int fd, struct entry *entry, const struct sockaddr *addr, socklen_t length) {
    struct emu_sockaddr_vm vm;
    unsigned int cid, port;
    int attempt;
    if (take_address(addr, length, &vm) != 0) return -1;
    if (entry->bound) {
        errno = EINVAL;
        return -1;
    }
    cid = vm.svm_cid;
    if (cid != VMADDR_CID_ANY && cid != local_cid && cid != VMADDR_CID_LOCAL) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    /* The path names the concrete CID (transport.py does the same for VMADDR_CID_ANY). */
    for (attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
        port = vm.svm_port == VMADDR_PORT_ANY ? ephemeral_port() : vm.svm_port;
        if (bind_path(fd, local_cid, port) == 0) {
            entry->bound = 1;
            entry->local_cid = cid == VMADDR_CID_LOCAL ? local_cid : cid;
            entry->local_port = port;
            update(fd, entry);
            return 0;
        }
        if (vm.svm_port != VMADDR_PORT_ANY || errno != EADDRINUSE) return -1;
    }
    return -1;
}

static int vsock_connect(int fd, struct entry *entry, const struct sockaddr *addr, socklen_t length) {
    struct emu_sockaddr_vm vm;
    struct sockaddr_un target;
    socklen_t target_length;
    unsigned int cid;
    int attempt;
    if (take_address(addr, length, &vm) != 0) return -1;
    if (entry->connected) {
        errno = EISCONN;
        return -1;
    }
    cid = vm.svm_cid == VMADDR_CID_LOCAL ? local_cid : vm.svm_cid;
    if (listener_path(cid, vm.svm_port, &target, &target_length) != 0) return -1;
    if (!entry->bound) {
        /* A name the acceptor can read back as this side's (cid, port). */
        for (attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
            struct sockaddr_un own;
            socklen_t own_length;
            unsigned int port = ephemeral_port();
            abstract_name(local_cid, port, &own, &own_length);
            if (real_bind(fd, (struct sockaddr *)&own, own_length) == 0) {
                entry->bound = 1;
                entry->local_cid = local_cid;
                entry->local_port = port;
                break;
            }
            if (errno != EADDRINUSE) return -1;
        }
        if (!entry->bound) return -1;
    }
    entry->remote_cid = cid;
    entry->remote_port = vm.svm_port;
    if (entry->local_cid == VMADDR_CID_ANY) entry->local_cid = local_cid;
    if (real_connect(fd, (struct sockaddr *)&target, target_length) != 0) {
        int saved = errno;
        update(fd, entry);
        /* virtio-vsock answers a port nobody listens on with a reset. */
        errno = (saved == ENOENT || saved == ECONNREFUSED) ? ECONNRESET : saved;
        return -1;
    }
    entry->connected = 1;
    update(fd, entry);
    return 0;
}

static int vsock_accept(int fd, struct entry *listener, struct sockaddr *addr, socklen_t *length, int flags) {
    struct sockaddr_un peer;
    socklen_t peer_length = sizeof(peer);
    struct entry accepted;
    unsigned int cid, port;
    int conn;
    memset(&peer, 0, sizeof(peer));
    conn = real_accept4(fd, (struct sockaddr *)&peer, &peer_length, flags);
    if (conn < 0) return -1;
    if (!vsock_of_unix(&peer, peer_length, &cid, &port)) {
        cid = peer_cid;
        port = ephemeral_port();
    }
    memset(&accepted, 0, sizeof(accepted));
    accepted.kind = KIND_VSOCK;
    accepted.bound = 1;
    accepted.connected = 1;
    accepted.local_cid = listener->local_cid == VMADDR_CID_ANY ? local_cid : listener->local_cid;
    accepted.local_port = listener->local_port;
    accepted.remote_cid = cid;
    accepted.remote_port = port;
    if (track(conn, &accepted) != 0) {
        int saved = errno;
        real_close(conn);
        errno = saved;
        return -1;
    }
    give_address(cid, port, addr, length);
    return conn;
}

/* -- the interposed functions ---------------------------------------------------------------- */

static mode_t mode_argument(int flags, va_list ap) {
    if ((flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE) return (mode_t)va_arg(ap, int);
    return 0;
}

EXPORT int open(const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    int fd;
    init();
    if (open_device(path, flags, &fd)) return fd;
    va_start(ap, flags);
    mode = mode_argument(flags, ap);
    va_end(ap);
    return real_open(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    int fd;
    init();
    if (open_device(path, flags, &fd)) return fd;
    va_start(ap, flags);
    mode = mode_argument(flags, ap);
    va_end(ap);
    return (real_open64 ? real_open64 : real_open)(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    int fd;
    init();
    if (open_device(path, flags, &fd)) return fd;
    va_start(ap, flags);
    mode = mode_argument(flags, ap);
    va_end(ap);
    return real_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    int fd;
    init();
    if (open_device(path, flags, &fd)) return fd;
    va_start(ap, flags);
    mode = mode_argument(flags, ap);
    va_end(ap);
    return (real_openat64 ? real_openat64 : real_openat)(dirfd, path, flags, mode);
}

/* The fortified entry points that glibc's headers call with -D_FORTIFY_SOURCE. */
EXPORT int __open_2(const char *path, int flags) { return open(path, flags); }
EXPORT int __open64_2(const char *path, int flags) { return open64(path, flags); }
EXPORT int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
EXPORT int __openat64_2(int dirfd, const char *path, int flags) { return openat64(dirfd, path, flags); }

static FILE *fopen_device(const char *path, const char *mode, int *handled) {
    int flags = O_RDWR, fd;
    FILE *file;
    *handled = 0;
    if (!is_device(path, NSM_DEVICE) && !(is_device(path, VSOCK_DEVICE) && vsock_dir != NULL)) return NULL;
    *handled = 1;
    if (mode != NULL && strchr(mode, 'e') != NULL) flags |= O_CLOEXEC;
    if (!open_device(path, flags, &fd) || fd < 0) return NULL;
    file = fdopen(fd, mode);
    if (file == NULL) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return file;
}

EXPORT FILE *fopen(const char *path, const char *mode) {
    int handled;
    FILE *file;
    init();
    file = fopen_device(path, mode, &handled);
    return handled ? file : real_fopen(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode) {
    int handled;
    FILE *file;
    init();
    file = fopen_device(path, mode, &handled);
    return handled ? file : (real_fopen64 ? real_fopen64 : real_fopen)(path, mode);
}

EXPORT int close(int fd) {
    init();
    untrack(fd);
    return real_close(fd);
}

EXPORT int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    void *argument;
    struct entry entry;
    init();
    va_start(ap, request);
    argument = va_arg(ap, void *);
    va_end(ap);
    if (lookup(fd, &entry)) {
        if (entry.kind == KIND_NSM) return nsm_ioctl(request, argument);
        if (entry.kind == KIND_VSOCK_DEVICE) {
            if (request != IOCTL_VM_SOCKETS_GET_LOCAL_CID) {
                errno = ENOTTY;
                return -1;
            }
            if (argument == NULL) {
                errno = EFAULT;
                return -1;
            }
            memcpy(argument, &local_cid, sizeof(local_cid));
            return 0;
        }
    }
    return real_ioctl(fd, request, argument);
}

EXPORT int socket(int domain, int type, int protocol) {
    struct entry entry;
    int fd;
    init();
    if (domain != AF_VSOCK) return real_socket(domain, type, protocol);
    if (vsock_dir == NULL) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    /* Nitro Enclaves carry stream sockets only. */
    if ((type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != SOCK_STREAM) {
        errno = ESOCKTNOSUPPORT;
        return -1;
    }
    if (protocol != 0) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    fd = real_socket(AF_UNIX, type, 0);
    if (fd < 0) return -1;
    memset(&entry, 0, sizeof(entry));
    entry.kind = KIND_VSOCK;
    if (track(fd, &entry) != 0) {
        int saved = errno;
        real_close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t length) {
    struct entry entry;
    init();
    if (lookup(fd, &entry) && entry.kind == KIND_VSOCK) return vsock_bind(fd, &entry, addr, length);
    return real_bind(fd, addr, length);
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t length) {
    struct entry entry;
    init();
    if (lookup(fd, &entry) && entry.kind == KIND_VSOCK) return vsock_connect(fd, &entry, addr, length);
    return real_connect(fd, addr, length);
}

EXPORT int listen(int fd, int backlog) {
    struct entry entry;
    init();
    if (lookup(fd, &entry) && entry.kind == KIND_VSOCK && !entry.bound) {
        /* An AF_VSOCK socket must be bound before it listens. */
        errno = EINVAL;
        return -1;
    }
    return real_listen(fd, backlog);
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *length, int flags) {
    struct entry entry;
    init();
    if (lookup(fd, &entry) && entry.kind == KIND_VSOCK) return vsock_accept(fd, &entry, addr, length, flags);
    return real_accept4(fd, addr, length, flags);
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *length) {
    struct entry entry;
    init();
    if (lookup(fd, &entry) && entry.kind == KIND_VSOCK) return vsock_accept(fd, &entry, addr, length, 0);
    return real_accept(fd, addr, length);
}

EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *length) {
    struct entry entry;
    init();
    if (lookup(fd, &entry) && entry.kind == KIND_VSOCK) {
        if (addr == NULL || length == NULL) {
            errno = EFAULT;
            return -1;
        }
        if (entry.bound) {
            give_address(entry.local_cid, entry.local_port, addr, length);
        } else {
            give_address(VMADDR_CID_ANY, VMADDR_PORT_ANY, addr, length);
        }
        return 0;
    }
    return real_getsockname(fd, addr, length);
}

EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *length) {
    struct entry entry;
    init();
    if (lookup(fd, &entry) && entry.kind == KIND_VSOCK) {
        if (!entry.connected) {
            errno = ENOTCONN;
            return -1;
        }
        if (addr == NULL || length == NULL) {
            errno = EFAULT;
            return -1;
        }
        give_address(entry.remote_cid, entry.remote_port, addr, length);
        return 0;
    }
    return real_getpeername(fd, addr, length);
}

EXPORT int getsockopt(int fd, int level, int name, void *value, socklen_t *length) {
    struct entry entry;
    init();
    if (level == SOL_SOCKET && name == SO_DOMAIN && lookup(fd, &entry) && entry.kind == KIND_VSOCK) {
        int domain = AF_VSOCK;
        if (value == NULL || length == NULL || *length < (socklen_t)sizeof(domain)) {
            errno = EINVAL;
            return -1;
        }
        memcpy(value, &domain, sizeof(domain));
        *length = sizeof(domain);
        return 0;
    }
    return real_getsockopt(fd, level, name, value, length);
}

EXPORT int setsockopt(int fd, int level, int name, const void *value, socklen_t length) {
    struct entry entry;
    init();
    /* vsock's own options (buffer sizes, connect timeout) mean nothing to a Unix socket. */
    if (level == AF_VSOCK && lookup(fd, &entry) && entry.kind == KIND_VSOCK) return 0;
    return real_setsockopt(fd, level, name, value, length);
}

EXPORT int dup(int fd) {
    int copy;
    init();
    copy = real_dup(fd);
    if (copy >= 0) copy_tracking(fd, copy);
    return copy;
}

EXPORT int dup2(int fd, int target) {
    int copy;
    init();
    copy = real_dup2(fd, target);
    if (copy >= 0 && copy != fd) copy_tracking(fd, copy);
    return copy;
}

EXPORT int dup3(int fd, int target, int flags) {
    int copy;
    init();
    copy = real_dup3(fd, target, flags);
    if (copy >= 0) copy_tracking(fd, copy);
    return copy;
}

static int fcntl_common(int (*real)(int, int, ...), int fd, int command, void *argument) {
    int result = real(fd, command, argument);
    if (result >= 0 && (command == F_DUPFD || command == F_DUPFD_CLOEXEC)) copy_tracking(fd, result);
    return result;
}

EXPORT int fcntl(int fd, int command, ...) {
    va_list ap;
    void *argument;
    init();
    va_start(ap, command);
    argument = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real_fcntl, fd, command, argument);
}

EXPORT int fcntl64(int fd, int command, ...) {
    va_list ap;
    void *argument;
    init();
    va_start(ap, command);
    argument = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real_fcntl64 ? real_fcntl64 : real_fcntl, fd, command, argument);
}
