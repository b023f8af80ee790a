/*
 * echo_server.c: an echo server on Ringfort's C ABI. Every byte received is sent back
 * without a copy: the received pool blocks themselves are queued for sending.
 *
 *   cc -O2 echo_server.c $(pkg-config --cflags --libs ringfort) -o echo_server
 *   ./echo_server [--bind IP] [--port N] [--cores N | --cpus A,B,...]
 *
 * Port 0 picks a free port. It prints "echo server on IP:PORT, N cores" once every core
 * listens, and stops cleanly on SIGINT or SIGTERM. `--version` prints the library
 * version and exits.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringfort.h"

/* Runs on the core thread that owns the connection: queue everything back, no copy. */
static void on_data(void *user_data, rf_core *core, rf_conn conn, rf_data *data) {
    (void)user_data;
    rf_status s = rf_conn_send_data(core, conn, data, rf_data_len(data));
    if (s != RF_OK && s != RF_ERR_NO_CONN) {
        fprintf(stderr, "echo_server: send: %s\n", rf_last_error_message());
    }
}

static void usage(void) {
    fprintf(stderr, "usage: echo_server [--bind IP] [--port N] [--cores N | --cpus A,B,...]\n");
    exit(2);
}

/* Parses "0,2,5" into `cpus`; returns how many. */
static size_t parse_cpus(char *list, size_t *cpus, size_t max) {
    size_t n = 0;
    for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
        char *end;
        unsigned long v = strtoul(tok, &end, 10);
        if (*end != '\0' || n == max) usage();
        cpus[n++] = (size_t)v;
    }
    return n;
}

static int fail(const char *what, rf_status s) {
    fprintf(stderr, "echo_server: %s: %s (%s)\n", what, rf_last_error_message(), rf_status_name(s));
    return 1;
}

int main(int argc, char **argv) {
    const char *bind = "127.0.0.1";
    unsigned long port = 7000, cores = 0;
    size_t cpus[256], ncpus = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("ringfort %s (compiled against %d.%d.%d)\n", rf_version(), RF_VERSION_MAJOR,
                   RF_VERSION_MINOR, RF_VERSION_PATCH);
            return 0;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--bind") == 0) {
            bind = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0) {
            port = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--cores") == 0) {
            cores = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--cpus") == 0) {
            ncpus = parse_cpus(argv[++i], cpus, 256);
        } else {
            usage();
        }
    }
    if (port > 65535) usage();

    /* Block the stop signals before the core threads start, so they inherit the mask and
       only this thread receives them (in sigwait below). */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    rf_config *cfg = rf_config_new();
    if (cfg == NULL) return fail("rf_config_new", RF_ERR_PANIC);
    char addr[128];
    snprintf(addr, sizeof addr, strchr(bind, ':') ? "[%s]:%lu" : "%s:%lu", bind, port);
    rf_status s = rf_config_add_listener(cfg, addr);
    if (s == RF_OK && cores > 0) s = rf_config_set_cores(cfg, cores);
    if (s == RF_OK && ncpus > 0) s = rf_config_set_cpus(cfg, cpus, ncpus);
    if (s != RF_OK) return fail("configuration", s);

    rf_handler handler;
    memset(&handler, 0, sizeof handler);
    handler.on_data = on_data;
    rf_engine *engine = NULL;
    s = rf_engine_start(cfg, &handler, NULL, &engine);
    rf_config_free(cfg);
    if (s != RF_OK) return fail("start", s);
    uint16_t bound = 0;
    rf_engine_listener_port(engine, 0, &bound);
    printf("echo server on %s:%u, %zu cores\n", bind, bound, rf_engine_cores(engine));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    rf_engine_stop(engine, 1000);
    s = rf_engine_wait(engine);
    rf_engine_free(engine);
    if (s != RF_OK) return fail("wait", s);
    return 0;
}
