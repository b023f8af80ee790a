/*
 * Echo round trips through the C ABI over many connections on two cores, using all three
 * send paths (zero copy from the received view, a copy of its slices, a retained buffer),
 * plus timers, messages from outside and between cores, stats, and a clean stop.
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

#define MAX_CONNS 64
#define CORES 2

/* Under valgrind (RF_TEST_LIGHT) fewer connections and rounds keep the run short. */
static int conns = MAX_CONNS, rounds = 6;

struct state {
    atomic_int started;
    atomic_int stopped;
    atomic_int accepted;
    atomic_int closed;
    atomic_int timers_fired;
    atomic_int outside_msgs;
    atomic_int cross_msgs;
    atomic_int bad;
};

static void on_start(void *ud, rf_core *core) {
    struct state *st = ud;
    rf_timer t, cancelled;
    size_t me = rf_core_index(core);
    CHECK(me < CORES);
    CHECK(rf_core_count(core) == CORES);
    CHECK_OK(rf_core_timer(core, 5, 100 + me, &t));
    CHECK_OK(rf_core_timer(core, 60000, 999, &cancelled));
    CHECK_OK(rf_core_timer_cancel(core, cancelled));
    CHECK_STATUS(rf_core_timer_cancel(core, cancelled), RF_ERR_NOT_FOUND);
    heartbeat(core);
    atomic_fetch_add(&st->started, 1);
}

static void on_accept(void *ud, rf_core *core, rf_conn conn, uint32_t listener,
                      const rf_peer *peer) {
    struct state *st = ud;
    (void)core;
    (void)conn;
    if (listener != 0 || peer == NULL || peer->family != 4 || peer->addr[0] != 127) {
        atomic_fetch_add(&st->bad, 1);
    }
    atomic_fetch_add(&st->accepted, 1);
}

/* Echoes everything; the path depends on the connection id, so all three are used. */
static void on_data(void *ud, rf_core *core, rf_conn conn, rf_data *data) {
    struct state *st = ud;
    size_t len = rf_data_len(data);
    switch (conn % 3) {
    case 0:
        CHECK_OK(rf_conn_send_data(core, conn, data, len));
        break;
    case 1:
        /* Unconsumed bytes are offered again only with new ones, so send them all. */
        while (rf_data_len(data) > 0) {
            rf_slice slices[4];
            size_t n = 0, sent = 0;
            CHECK_OK(rf_data_slices(data, slices, 4, &n));
            for (size_t i = 0; i < n; i++) {
                CHECK_OK(rf_conn_send(core, conn, slices[i].ptr, slices[i].len));
                sent += slices[i].len;
            }
            CHECK_OK(rf_data_consume(data, sent));
        }
        break;
    default: {
        rf_buf *buf = NULL;
        CHECK_OK(rf_data_retain(data, len, &buf));
        CHECK(rf_buf_len(buf) == len);
        CHECK_OK(rf_data_consume(data, len));
        CHECK_OK(rf_conn_send_buf(core, conn, buf));
        break;
    }
    }
    if (rf_data_len(data) != 0) atomic_fetch_add(&st->bad, 1);
}

static void on_close(void *ud, rf_core *core, rf_conn conn, rf_close_reason reason,
                     const char *detail) {
    struct state *st = ud;
    (void)conn;
    CHECK(detail != NULL && detail[0] != '\0');
    if (reason != RF_CLOSE_PEER && reason != RF_CLOSE_SHUTDOWN) atomic_fetch_add(&st->bad, 1);
    /* The id is stale now. */
    CHECK_STATUS(rf_conn_send(core, conn, "x", 1), RF_ERR_NO_CONN);
    atomic_fetch_add(&st->closed, 1);
}

static void on_timer(void *ud, rf_core *core, rf_timer timer, uint64_t token) {
    struct state *st = ud;
    (void)timer;
    if (token == HEARTBEAT_TOKEN) {
        heartbeat(core);
        return;
    }
    CHECK(token == 100 + rf_core_index(core));
    atomic_fetch_add(&st->timers_fired, 1);
}

/* From outside (tag 1): forward to the other core (tag 2), which frees the payload. */
static void on_message(void *ud, rf_core *core, int32_t from, uint64_t tag, void *msg) {
    struct state *st = ud;
    int *value = msg;
    size_t me = rf_core_index(core);
    if (tag == 1) {
        CHECK(from == -1);
        CHECK(*value == (int)me);
        atomic_fetch_add(&st->outside_msgs, 1);
        *value = 1000 + (int)me;
        CHECK_OK(rf_core_post(core, (me + 1) % CORES, 2, value));
    } else {
        CHECK(tag == 2);
        CHECK(from == (int32_t)((me + 1) % CORES));
        CHECK(*value == 1000 + from);
        free(value);
        atomic_fetch_add(&st->cross_msgs, 1);
    }
}

static void on_stop(void *ud, rf_core *core) {
    struct state *st = ud;
    (void)core;
    atomic_fetch_add(&st->stopped, 1);
}

static void fill(char *buf, size_t len, int conn, int round) {
    for (size_t i = 0; i < len; i++) buf[i] = (char)((i * 31 + (size_t)conn * 7 + (size_t)round) % 251);
}

int main(void) {
    static struct state st;
    if (getenv("RF_TEST_LIGHT")) {
        conns = 12;
        rounds = 2;
    }
    rf_handler h;
    memset(&h, 0, sizeof h);
    h.on_start = on_start;
    h.on_accept = on_accept;
    h.on_data = on_data;
    h.on_close = on_close;
    h.on_timer = on_timer;
    h.on_message = on_message;
    h.on_stop = on_stop;

    rf_config *cfg = rf_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(rf_config_set_cores(cfg, CORES));
    CHECK_OK(rf_config_add_listener(cfg, "127.0.0.1:0"));
    rf_engine *eng = NULL;
    CHECK_OK(rf_engine_start(cfg, &h, &st, &eng));
    rf_config_free(cfg);
    CHECK(rf_engine_cores(eng) == CORES);
    uint16_t port = 0;
    CHECK_OK(rf_engine_listener_port(eng, 0, &port));
    CHECK(port != 0);
    WAIT_FOR(atomic_load(&st.started) == CORES);
    WAIT_FOR(atomic_load(&st.timers_fired) == CORES);

    for (int c = 0; c < CORES; c++) {
        int *v = malloc(sizeof *v);
        CHECK(v != NULL);
        *v = c;
        CHECK_OK(rf_engine_post(eng, (size_t)c, 1, v));
    }

    int fds[MAX_CONNS];
    for (int i = 0; i < conns; i++) fds[i] = connect_loopback(port);
    size_t max = 100000;
    char *out = malloc(max), *back = malloc(max);
    CHECK(out && back);
    for (int round = 0; round < rounds; round++) {
        size_t sizes[MAX_CONNS];
        for (int i = 0; i < conns; i++) {
            /* Mostly small; one connection per round sends 100,000 B (zero-copy sized). */
            sizes[i] = i == round ? max : (size_t)((i * 131 + round * 1009) % 9000 + 1);
            fill(out, sizes[i], i, round);
            write_all(fds[i], out, sizes[i]);
        }
        for (int i = 0; i < conns; i++) {
            read_exact(fds[i], back, sizes[i]);
            fill(out, sizes[i], i, round);
            CHECK(memcmp(out, back, sizes[i]) == 0);
        }
    }
    free(out);
    free(back);
    WAIT_FOR(atomic_load(&st.accepted) == conns);
    WAIT_FOR(atomic_load(&st.outside_msgs) == CORES && atomic_load(&st.cross_msgs) == CORES);

    uint64_t accepts = 0, bytes_in = 0, messages = 0;
    for (size_t c = 0; c < CORES; c++) {
        rf_stats s;
        CHECK_OK(rf_engine_stats(eng, c, &s));
        accepts += s.accepts;
        bytes_in += s.bytes_in;
        messages += s.messages_in;
    }
    CHECK(accepts == (uint64_t)conns);
    CHECK(bytes_in > 0);
    CHECK(messages == CORES);

    for (int i = 0; i < conns; i++) close(fds[i]);
    WAIT_FOR(atomic_load(&st.closed) == conns);
    CHECK_OK(rf_engine_stop(eng, 1000));
    CHECK_OK(rf_engine_wait(eng));
    CHECK(atomic_load(&st.stopped) == CORES);
    for (size_t c = 0; c < CORES; c++) {
        rf_stats s;
        CHECK_OK(rf_engine_stats(eng, c, &s));
        CHECK(s.live_buffers_at_exit == 0);
        CHECK(s.ops_in_flight == 0);
    }
    rf_engine_free(eng);
    CHECK(atomic_load(&st.bad) == 0);
    printf("test_echo: %d connections x %d rounds echoed on %d cores\n", conns, rounds, CORES);
    return 0;
}
