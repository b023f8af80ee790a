/*
 * The panic boundary. rf_test_panic exists only in the library the tests build (the
 * `test-panic` feature): it panics inside the same guard every entry point runs in. A
 * panic must come back as RF_ERR_PANIC with its message, on the calling thread, and
 * leave the library working: on the main thread, on other threads, and on a core thread
 * inside a callback, where the engine must go on serving.
 */
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

/* Not in ringfort.h: built only with the test-panic feature. */
rf_status rf_test_panic(const char *message);

static atomic_int core_panics;

static void *panic_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(rf_test_panic("from a thread"), RF_ERR_PANIC);
        CHECK_ERROR_TEXT("rf_test_panic: panicked: from a thread");
    }
    return NULL;
}

static void on_start(void *ud, rf_core *core) {
    (void)ud;
    heartbeat(core);
}

static void on_timer(void *ud, rf_core *core, rf_timer t, uint64_t token) {
    (void)ud;
    (void)t;
    if (token == HEARTBEAT_TOKEN) heartbeat(core);
}

/* Each message triggers a panic on the core thread, then is echoed. */
static void on_data(void *ud, rf_core *core, rf_conn conn, rf_data *data) {
    (void)ud;
    CHECK_STATUS(rf_test_panic("inside on_data"), RF_ERR_PANIC);
    CHECK_ERROR_TEXT("inside on_data");
    atomic_fetch_add(&core_panics, 1);
    /* The core handle and the view still work after the caught panic. */
    CHECK_OK(rf_conn_send_data(core, conn, data, rf_data_len(data)));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    CHECK_STATUS(rf_test_panic("boom"), RF_ERR_PANIC);
    CHECK_ERROR_TEXT("rf_test_panic: panicked: boom");
    CHECK_STATUS(rf_test_panic(NULL), RF_ERR_INVALID_ARGUMENT);

    /* The library goes on working on this thread. */
    rf_config *cfg = rf_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(rf_config_set_cores(cfg, 1));

    pthread_t t;
    CHECK(pthread_create(&t, NULL, panic_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    /* The last error is per thread: the other thread's panics left this one alone. */
    CHECK_ERROR_TEXT("message is NULL");

    rf_handler h;
    memset(&h, 0, sizeof h);
    h.on_start = on_start;
    h.on_timer = on_timer;
    h.on_data = on_data;
    CHECK_OK(rf_config_add_listener(cfg, "127.0.0.1:0"));
    rf_engine *eng = NULL;
    CHECK_OK(rf_engine_start(cfg, &h, NULL, &eng));
    rf_config_free(cfg);
    uint16_t port = 0;
    CHECK_OK(rf_engine_listener_port(eng, 0, &port));
    int fd = connect_loopback(port);
    for (int i = 0; i < 5; i++) {
        char msg[16], back[16];
        int n = snprintf(msg, sizeof msg, "ping %d", i);
        write_all(fd, msg, (size_t)n);
        read_exact(fd, back, (size_t)n);
        CHECK(memcmp(msg, back, (size_t)n) == 0);
    }
    close(fd);
    CHECK(atomic_load(&core_panics) >= 1);
    CHECK_OK(rf_engine_stop(eng, 1000));
    CHECK_OK(rf_engine_wait(eng));
    rf_stats s;
    CHECK_OK(rf_engine_stats(eng, 0, &s));
    CHECK(s.live_buffers_at_exit == 0);
    rf_engine_free(eng);
    printf("test_panic: panics on the main thread, another thread and a core thread were "
           "caught; the engine kept serving\n");
    return 0;
}
