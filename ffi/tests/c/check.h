/*
 * Test scaffolding shared by the C tests: checks that name the failed expression, the
 * status and the library's error text; a loopback client; bounded waits.
 */
#ifndef RF_TEST_CHECK_H
#define RF_TEST_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ringfort.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* Checks that `expr` returns `want`, printing both statuses and the error text if not. */
#define CHECK_STATUS(expr, want)                                                          \
    do {                                                                                  \
        rf_status got_ = (expr);                                                          \
        if (got_ != (want)) {                                                             \
            fprintf(stderr, "%s:%d: %s returned %s, want %s (last error: %s)\n", __FILE__, \
                    __LINE__, #expr, rf_status_name(got_), rf_status_name(want),          \
                    rf_last_error_message());                                             \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, RF_OK)

/* Checks that the last error text on this thread contains `needle`. */
#define CHECK_ERROR_TEXT(needle)                                                         \
    do {                                                                                 \
        const char *text_ = rf_last_error_message();                                     \
        if (text_ == NULL || strstr(text_, (needle)) == NULL) {                          \
            fprintf(stderr, "%s:%d: last error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                    text_ ? text_ : "(null)", (needle));                                 \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Waits for `cond` to hold, checking every 5 ms; fails the test after 60 s so that a
 * missing event stops the run with a message instead of hanging it. No test asserts on
 * how long anything took.
 */
#define WAIT_FOR(cond)                                                                   \
    do {                                                                                 \
        int waited_ = 0;                                                                 \
        while (!(cond)) {                                                                \
            if (waited_++ > 12000) {                                                     \
                fprintf(stderr, "%s:%d: gave up waiting for %s\n", __FILE__, __LINE__, #cond); \
                exit(1);                                                                 \
            }                                                                            \
            sleep_ms(5);                                                                 \
        }                                                                                \
    } while (0)

/*
 * Valgrind 3.19 (Debian 12) keeps its global lock while a thread sits in io_uring_enter:
 * it does not treat that system call as one that may block. Under valgrind, a core asleep
 * in the kernel would therefore stop every other thread of the process. A timer every
 * millisecond bounds each core's sleep, so the other threads get their turns: the tests
 * arm it in on_start and re-arm it in on_timer. Natively it costs a wake-up per ms.
 */
#define HEARTBEAT_TOKEN UINT64_MAX

static inline void heartbeat(rf_core *core) {
    rf_timer t;
    CHECK_OK(rf_core_timer(core, 1, HEARTBEAT_TOKEN, &t));
}

/* A blocking loopback connection to `port`, retried while the listener comes up. */
static inline int connect_loopback(uint16_t port) {
    for (int attempt = 0; attempt < 500; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct timeval tv = {60, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            return fd;
        }
        close(fd);
        sleep_ms(10);
    }
    fprintf(stderr, "could not connect to 127.0.0.1:%u\n", port);
    exit(1);
}

static inline void write_all(int fd, const void *buf, size_t len) {
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static inline void read_exact(int fd, void *buf, size_t len) {
    char *p = (char *)buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "read_exact: %s with %zu bytes to go\n",
                    n == 0 ? "end of stream" : strerror(errno), len);
            exit(1);
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Reads until the peer closes; returns the bytes read (0 means it closed at once). */
static inline size_t read_to_eof(int fd) {
    char buf[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return total;
        total += (size_t)n;
    }
}

#endif
