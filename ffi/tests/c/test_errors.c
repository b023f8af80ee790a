/*
 * Every error path of the C ABI: NULL arguments to every function, bad values, a bad
 * configuration, guarded double closes (of a connection, a log, an engine wait), handles
 * used outside their callback or thread, bounds (the receive limit, a full queue), and
 * messages dropped undelivered. Each must give its status and text, never a crash.
 */
#include "check.h"

#include <signal.h>
#include <stdatomic.h>

/* ---- no engine needed ---- */

static void null_arguments(void) {
    /* Freeing NULL is a no-op for every handle. */
    rf_config_free(NULL);
    rf_wal_config_free(NULL);
    rf_engine_free(NULL);
    rf_wal_free(NULL);
    rf_wal_reader_free(NULL);
    rf_buf_release(NULL);

    const rf_status bad = RF_ERR_INVALID_ARGUMENT;
    CHECK_STATUS(rf_config_set_cores(NULL, 1), bad);
    CHECK_ERROR_TEXT("rf_config_set_cores: cfg is NULL");
    CHECK_STATUS(rf_config_set_cpus(NULL, NULL, 1), bad);
    CHECK_STATUS(rf_config_add_listener(NULL, "127.0.0.1:1"), bad);
    CHECK_STATUS(rf_config_set_ring_entries(NULL, 8), bad);
    CHECK_STATUS(rf_config_set_max_conns(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_max_recv_bytes(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_max_timers(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_channel_capacity(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_external_queue(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_idle_timeout_ms(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_send_zc_threshold(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_backlog(NULL, 1), bad);
    CHECK_STATUS(rf_config_set_nodelay(NULL, true), bad);
    CHECK_STATUS(rf_config_validate(NULL), bad);

    rf_config *cfg = rf_config_new();
    rf_handler h;
    memset(&h, 0, sizeof h);
    rf_engine *eng = NULL;
    CHECK_STATUS(rf_engine_start(NULL, &h, NULL, &eng), bad);
    CHECK_STATUS(rf_engine_start(cfg, NULL, NULL, &eng), bad);
    CHECK_STATUS(rf_engine_start(cfg, &h, NULL, NULL), bad);
    CHECK_STATUS(rf_engine_start(cfg, &h, NULL, &eng), bad); /* on_data is required */
    CHECK_ERROR_TEXT("on_data");
    CHECK(eng == NULL);
    rf_config_free(cfg);
    uint16_t port;
    rf_stats stats;
    CHECK(rf_engine_cores(NULL) == 0);
    CHECK_STATUS(rf_engine_listener_port(NULL, 0, &port), bad);
    CHECK_STATUS(rf_engine_post(NULL, 0, 0, NULL), bad);
    CHECK_STATUS(rf_engine_stats(NULL, 0, &stats), bad);
    CHECK_STATUS(rf_engine_stop(NULL, 0), bad);
    CHECK_STATUS(rf_engine_wait(NULL), bad);

    CHECK_STATUS(rf_wal_config_set_segment_size(NULL, 1), bad);
    CHECK_STATUS(rf_wal_config_set_block_size(NULL, 1), bad);
    CHECK_STATUS(rf_wal_config_set_batch_bytes(NULL, 1), bad);
    CHECK_STATUS(rf_wal_config_set_max_record(NULL, 1), bad);
    CHECK_STATUS(rf_wal_config_set_durability(NULL, 0), bad);
    CHECK_STATUS(rf_wal_config_set_dsync(NULL, false), bad);
    CHECK_STATUS(rf_wal_config_set_recovery(NULL, 0), bad);
    CHECK_STATUS(rf_wal_config_set_direct_io(NULL, false), bad);
    CHECK_STATUS(rf_wal_config_validate(NULL), bad);
    rf_wal *wal = NULL;
    uint64_t lsn, next;
    size_t removed;
    CHECK_STATUS(rf_wal_open(NULL, NULL, NULL, &wal), bad);
    CHECK_STATUS(rf_wal_open("/tmp/x", NULL, NULL, NULL), bad);
    CHECK_STATUS(rf_wal_open("", NULL, NULL, &wal), bad);
    CHECK_STATUS(rf_wal_append(NULL, "x", 1, &lsn), bad);
    CHECK_STATUS(rf_wal_flush(NULL), bad);
    CHECK_STATUS(rf_wal_lsns(NULL, &next, NULL), bad);
    CHECK_STATUS(rf_wal_truncate_prefix(NULL, 1, &removed), bad);
    CHECK_STATUS(rf_wal_close(NULL), bad);
    rf_wal_reader *rd = NULL;
    rf_record rec;
    rf_wal_report rep;
    CHECK_STATUS(rf_wal_reader_open(NULL, 0, 0, &rd), bad);
    CHECK_STATUS(rf_wal_reader_open("/tmp", 0, 0, NULL), bad);
    CHECK_STATUS(rf_wal_reader_next(NULL, &rec), bad);
    CHECK_STATUS(rf_wal_reader_report(NULL, &rep), bad);

    rf_buf *buf = NULL;
    rf_slice slices[2];
    size_t count;
    char byte;
    CHECK(rf_buf_len(NULL) == 0);
    CHECK_STATUS(rf_buf_slices(NULL, slices, 2, &count), bad);
    CHECK_STATUS(rf_buf_copy(NULL, 0, &byte, 1), bad);
    CHECK_STATUS(rf_buf_retain(NULL, &buf), bad);
    CHECK(rf_data_len(NULL) == 0);
    CHECK_STATUS(rf_data_slices(NULL, slices, 2, &count), bad);
    CHECK_STATUS(rf_data_copy(NULL, 0, &byte, 1), bad);
    CHECK_STATUS(rf_data_consume(NULL, 1), bad);
    CHECK_STATUS(rf_data_retain(NULL, 1, &buf), bad);

    bool flag;
    rf_timer timer;
    uint32_t id;
    CHECK(rf_core_index(NULL) == SIZE_MAX);
    CHECK(rf_core_count(NULL) == 0);
    CHECK_STATUS(rf_core_listen(NULL, "127.0.0.1:0", &id), bad);
    CHECK_STATUS(rf_conn_send(NULL, 1, "x", 1), bad);
    CHECK_STATUS(rf_conn_send_data(NULL, 1, NULL, 0), bad);
    CHECK_STATUS(rf_conn_send_buf(NULL, 1, NULL), bad);
    CHECK_STATUS(rf_conn_close(NULL, 1), bad);
    CHECK_STATUS(rf_conn_backpressured(NULL, 1, &flag), bad);
    CHECK_STATUS(rf_conn_pause_reading(NULL, 1, true), bad);
    CHECK_STATUS(rf_core_timer(NULL, 1, 1, &timer), bad);
    CHECK_STATUS(rf_core_timer_cancel(NULL, 1), bad);
    CHECK_STATUS(rf_core_post(NULL, 0, 0, NULL), bad);
    CHECK_STATUS(rf_core_stop_engine(NULL, 0), bad);
    CHECK_STATUS(rf_core_stats(NULL, &stats), bad);
    CHECK_STATUS(rf_core_wal_open(NULL, "/tmp/x", NULL, 0, NULL, NULL, NULL, &id), bad);
    CHECK_STATUS(rf_core_wal_append(NULL, 0, "x", 1, &lsn), bad);
    CHECK_STATUS(rf_core_wal_lsns(NULL, 0, &lsn, NULL), bad);
    CHECK_STATUS(rf_core_wal_truncate_prefix(NULL, 0, 1, &removed), bad);

    /* A made-up core handle is compared, never dereferenced. */
    rf_core *bogus = (rf_core *)(uintptr_t)0x1000;
    CHECK_STATUS(rf_conn_close(bogus, 1), RF_ERR_WRONG_THREAD);
    CHECK_ERROR_TEXT("rf_conn_close");
    CHECK_STATUS(rf_core_timer(bogus, 1, 1, &timer), RF_ERR_WRONG_THREAD);
    rf_data *bogus_data = (rf_data *)(uintptr_t)0x2000;
    CHECK_STATUS(rf_data_consume(bogus_data, 1), RF_ERR_WRONG_THREAD);

    /* Statuses have names; a value that is no status is named too. */
    CHECK(strcmp(rf_status_name(RF_ERR_PANIC), "RF_ERR_PANIC") == 0);
    CHECK(strcmp(rf_status_name(-7), "RF_UNKNOWN") == 0);
    CHECK(strcmp(rf_status_name(1000), "RF_UNKNOWN") == 0);
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", RF_VERSION_MAJOR, RF_VERSION_MINOR,
             RF_VERSION_PATCH);
    CHECK(strcmp(rf_version(), version) == 0);
}

static void never_called(void *ud, rf_core *core, rf_conn conn, rf_data *data) {
    (void)ud;
    (void)core;
    (void)conn;
    (void)data;
    abort();
}

static void bad_values(void) {
    const rf_status bad = RF_ERR_INVALID_ARGUMENT;
    rf_config *cfg = rf_config_new();
    CHECK_STATUS(rf_config_set_cores(cfg, 0), bad);
    CHECK_STATUS(rf_config_set_cores(cfg, 257), bad);
    size_t cpus[] = {0, 100000};
    CHECK_STATUS(rf_config_set_cpus(cfg, cpus, 2), bad);
    CHECK_ERROR_TEXT("100000");
    CHECK_STATUS(rf_config_set_cpus(cfg, cpus, 0), bad);
    CHECK_STATUS(rf_config_add_listener(cfg, "localhost:80"), bad);
    CHECK_ERROR_TEXT("IP:PORT");
    CHECK_STATUS(rf_config_add_listener(cfg, "127.0.0.1"), bad);
    CHECK_STATUS(rf_config_add_listener(cfg, "127.0.0.1:99999"), bad);
    CHECK_STATUS(rf_config_add_listener(cfg, "\xff\xfe:1"), bad);
    CHECK_ERROR_TEXT("UTF-8");
    for (int i = 0; i < RF_MAX_LISTENERS; i++) CHECK_OK(rf_config_add_listener(cfg, "127.0.0.1:0"));
    CHECK_STATUS(rf_config_add_listener(cfg, "127.0.0.1:0"), RF_ERR_FULL);
    rf_config_free(cfg);

    /* A bad configuration: caught by validate and by start, naming the field. */
    cfg = rf_config_new();
    CHECK_OK(rf_config_set_cores(cfg, 1));
    CHECK_OK(rf_config_set_ring_entries(cfg, 3));
    CHECK_STATUS(rf_config_validate(cfg), RF_ERR_CONFIG);
    CHECK_ERROR_TEXT("ring_entries");
    rf_handler h;
    memset(&h, 0, sizeof h);
    h.on_data = never_called;
    rf_engine *eng = NULL;
    CHECK_STATUS(rf_engine_start(cfg, &h, NULL, &eng), RF_ERR_CONFIG);
    CHECK_ERROR_TEXT("ring_entries");
    CHECK_OK(rf_config_set_ring_entries(cfg, 64));
    CHECK_OK(rf_config_set_max_conns(cfg, 0));
    CHECK_STATUS(rf_engine_start(cfg, &h, NULL, &eng), RF_ERR_CONFIG);
    CHECK_ERROR_TEXT("max_conns");
    CHECK(eng == NULL);
    rf_config_free(cfg);

    rf_wal_config *wcfg = rf_wal_config_new();
    CHECK_STATUS(rf_wal_config_set_durability(wcfg, 3), bad);
    CHECK_ERROR_TEXT("durability 3");
    CHECK_STATUS(rf_wal_config_set_recovery(wcfg, 99), bad);
    CHECK_OK(rf_wal_config_set_block_size(wcfg, 5000));
    CHECK_STATUS(rf_wal_config_validate(wcfg), RF_ERR_CONFIG);
    CHECK_ERROR_TEXT("block_size");
    rf_wal *wal = NULL;
    CHECK_STATUS(rf_wal_open("/tmp/rf-test-never-created", wcfg, NULL, &wal), RF_ERR_CONFIG);
    CHECK(wal == NULL);
    rf_wal_config_free(wcfg);

    rf_wal_reader *rd = NULL;
    CHECK_STATUS(rf_wal_reader_open("/nonexistent/rf", 0, 0, &rd), RF_ERR_IO);
    CHECK_STATUS(rf_wal_reader_open("/tmp", 0, 4, &rd), bad);
}

/* A record of `len` bytes over the maximum, and a log whose middle is corrupt. */
static void wal_errors(void) {
    char dir[] = "/tmp/rf-test-errors-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    rf_wal_config *cfg = rf_wal_config_new();
    CHECK_OK(rf_wal_config_set_max_record(cfg, 100));
    CHECK_OK(rf_wal_config_set_block_size(cfg, 8192));
    CHECK_OK(rf_wal_config_set_batch_bytes(cfg, 8192));
    CHECK_OK(rf_wal_config_set_segment_size(cfg, 64 * 1024));
    CHECK_OK(rf_wal_config_set_durability(cfg, RF_DURABILITY_BUFFERED));
    rf_wal *wal = NULL;
    CHECK_OK(rf_wal_open(dir, cfg, NULL, &wal));
    char big[101];
    memset(big, 'b', sizeof big);
    uint64_t lsn = 0;
    CHECK_STATUS(rf_wal_append(wal, big, 101, &lsn), RF_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_TEXT("exceeds");
    CHECK_STATUS(rf_wal_append(wal, NULL, 5, &lsn), RF_ERR_INVALID_ARGUMENT);
    CHECK_OK(rf_wal_append(wal, NULL, 0, &lsn)); /* an empty record is a record */
    CHECK(lsn == 1);
    for (int i = 0; i < 3; i++) CHECK_OK(rf_wal_append(wal, big, 100, &lsn));
    CHECK_STATUS(rf_wal_lsns(wal, NULL, NULL), RF_ERR_INVALID_ARGUMENT);
    CHECK_OK(rf_wal_close(wal));
    CHECK_STATUS(rf_wal_close(wal), RF_ERR_CLOSED); /* guarded double close */
    CHECK_ERROR_TEXT("already closed");
    CHECK_STATUS(rf_wal_truncate_prefix(wal, 1, NULL), RF_ERR_CLOSED);
    rf_wal_free(wal);

    rf_wal_reader *rd = NULL;
    rf_record rec;
    rf_wal_report rep;
    CHECK_OK(rf_wal_reader_open(dir, 0, RF_RECOVERY_ABSOLUTE, &rd));
    CHECK_STATUS(rf_wal_reader_report(rd, &rep), RF_ERR_INVALID_ARGUMENT); /* not at the end */
    CHECK_STATUS(rf_wal_reader_next(rd, NULL), RF_ERR_INVALID_ARGUMENT);
    rf_wal_reader_free(rd);

    /* Flip a byte inside the first record's payload: absolute consistency refuses it. */
    char path[300];
    snprintf(path, sizeof path, "%s/%020d.wal", dir, 1);
    FILE *f = fopen(path, "r+b");
    if (f == NULL) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "ls -la %s >&2", dir);
        CHECK(system(cmd) == 0);
    }
    CHECK(f != NULL);
    static unsigned char image[64 * 1024];
    size_t got = fread(image, 1, sizeof image, f);
    CHECK(got > 4096);
    /* The segment header is the first page; corrupt a payload byte ('b') after it. */
    unsigned char *hit = memchr(image + 4096, 'b', got - 4096);
    CHECK(hit != NULL);
    CHECK(fseek(f, (long)(hit - image), SEEK_SET) == 0);
    CHECK(fputc('X', f) != EOF);
    CHECK(fclose(f) == 0);
    CHECK_OK(rf_wal_reader_open(dir, 0, RF_RECOVERY_ABSOLUTE, &rd));
    rf_status s;
    int records = 0;
    while ((s = rf_wal_reader_next(rd, &rec)) == RF_OK) records++;
    CHECK_STATUS(s, RF_ERR_CORRUPT);
    CHECK(records < 4);
    CHECK_STATUS(rf_wal_reader_next(rd, &rec), RF_DONE); /* done after the error */
    rf_wal_reader_free(rd);
    rf_wal_config_free(cfg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* ---- inside a running engine ---- */

struct state {
    rf_engine *engine;
    rf_core *kept_core;
    rf_data *kept_data;
    atomic_int accepted;
    atomic_int data_calls;
    atomic_int closed_local;
    atomic_int closed_limit;
    atomic_int dropped;
    atomic_int checks_done;
};

/* "close": close twice (the second is refused), "keep": keep the handles, "limit":
   consume nothing, so the receive limit closes the connection. */
static void on_data(void *ud, rf_core *core, rf_conn conn, rf_data *data) {
    struct state *st = ud;
    char head[5] = {0};
    size_t len = rf_data_len(data);
    atomic_fetch_add(&st->data_calls, 1);
    if (len < 4) return;
    CHECK_OK(rf_data_copy(data, 0, head, 4));
    if (memcmp(head, "limi", 4) == 0) return; /* leave it all unconsumed */
    CHECK_STATUS(rf_data_consume(data, len + 1), RF_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rf_conn_send_data(core, conn, data, len + 1), RF_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rf_data_copy(data, len, head, 1), RF_ERR_INVALID_ARGUMENT);
    rf_buf *buf = NULL;
    CHECK_STATUS(rf_data_retain(data, len + 1, &buf), RF_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rf_data_retain(data, 1, NULL), RF_ERR_INVALID_ARGUMENT);
    CHECK_OK(rf_data_consume(data, len));
    if (memcmp(head, "clos", 4) == 0) {
        CHECK_OK(rf_conn_close(core, conn));
        CHECK_STATUS(rf_conn_close(core, conn), RF_ERR_NO_CONN); /* guarded double close */
        CHECK_STATUS(rf_conn_send(core, conn, "x", 1), RF_ERR_NO_CONN);
        CHECK_STATUS(rf_conn_send(core, conn + (1ull << 32), "x", 1), RF_ERR_NO_CONN);
        bool bp = false;
        CHECK_OK(rf_conn_backpressured(core, conn, &bp));
        CHECK(bp); /* gone connections count as backpressured */
    } else if (memcmp(head, "keep", 4) == 0) {
        st->kept_core = core;
        st->kept_data = data;
        /* Blocking engine calls from a core thread are refused, not deadlocked. */
        CHECK_STATUS(rf_engine_wait(st->engine), RF_ERR_WRONG_THREAD);
        rf_engine_free(st->engine); /* refused: does nothing */
        CHECK_ERROR_TEXT("nothing was freed");
        CHECK_STATUS(rf_engine_start(NULL, NULL, NULL, NULL), RF_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rf_core_post(core, 5, 0, NULL), RF_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rf_core_timer_cancel(core, 12345), RF_ERR_NOT_FOUND);
        CHECK_STATUS(rf_core_listen(core, "nonsense", NULL), RF_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rf_core_wal_open(core, "", NULL, 0, NULL, NULL, NULL, NULL),
                     RF_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rf_conn_send(core, conn, NULL, 3), RF_ERR_INVALID_ARGUMENT);
        CHECK_OK(rf_conn_send(core, conn, "kept\n", 5));
        atomic_fetch_add(&st->checks_done, 1);
    }
}

static void on_accept(void *ud, rf_core *core, rf_conn conn, uint32_t l, const rf_peer *p) {
    struct state *st = ud;
    (void)core;
    (void)conn;
    (void)l;
    (void)p;
    atomic_fetch_add(&st->accepted, 1);
}

static void on_close(void *ud, rf_core *core, rf_conn conn, rf_close_reason reason,
                     const char *detail) {
    struct state *st = ud;
    (void)core;
    (void)detail;
    if (reason == RF_CLOSE_LOCAL) atomic_fetch_add(&st->closed_local, 1);
    if (reason == RF_CLOSE_RECV_LIMIT) atomic_fetch_add(&st->closed_limit, 1);
    (void)conn;
}

static void on_timer(void *ud, rf_core *core, rf_timer t, uint64_t token) {
    (void)ud;
    (void)t;
    if (token == HEARTBEAT_TOKEN) heartbeat(core);
}

static void on_start(void *ud, rf_core *core) {
    (void)ud;
    heartbeat(core);
}

static void on_dropped(void *ud, uint64_t tag, void *msg) {
    struct state *st = ud;
    CHECK(tag == 77);
    free(msg);
    atomic_fetch_add(&st->dropped, 1);
}

static void engine_errors(void) {
    static struct state st;
    rf_handler h;
    memset(&h, 0, sizeof h);
    h.on_start = on_start;
    h.on_accept = on_accept;
    h.on_data = on_data;
    h.on_close = on_close;
    h.on_timer = on_timer;
    /* No on_message: posted messages go to on_message_dropped. */
    h.on_message_dropped = on_dropped;

    /* A listener on an address this machine does not have: start fails, cleanly. */
    rf_config *cfg = rf_config_new();
    CHECK_OK(rf_config_set_cores(cfg, 1));
    CHECK_OK(rf_config_add_listener(cfg, "192.0.2.1:9"));
    rf_engine *eng = NULL;
    CHECK_STATUS(rf_engine_start(cfg, &h, &st, &eng), RF_ERR_IO);
    CHECK_ERROR_TEXT("192.0.2.1:9");
    CHECK(eng == NULL);
    rf_config_free(cfg);

    cfg = rf_config_new();
    CHECK_OK(rf_config_set_cores(cfg, 1));
    CHECK_OK(rf_config_add_listener(cfg, "127.0.0.1:0"));
    CHECK_OK(rf_config_set_max_recv_bytes(cfg, 1000));
    CHECK_OK(rf_engine_start(cfg, &h, &st, &eng));
    rf_config_free(cfg);
    st.engine = eng;
    uint16_t port = 0;
    CHECK_OK(rf_engine_listener_port(eng, 0, &port));
    CHECK_STATUS(rf_engine_listener_port(eng, 1, &port), RF_ERR_NOT_FOUND);
    CHECK_STATUS(rf_engine_listener_port(eng, 0, NULL), RF_ERR_INVALID_ARGUMENT);
    rf_stats stats;
    CHECK_STATUS(rf_engine_stats(eng, 1, &stats), RF_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rf_engine_stats(eng, 0, NULL), RF_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rf_engine_post(eng, 1, 77, NULL), RF_ERR_INVALID_ARGUMENT);

    /* Messages nobody receives come back through on_message_dropped. */
    int *msg = malloc(sizeof *msg);
    CHECK(msg != NULL);
    CHECK_OK(rf_engine_post(eng, 0, 77, msg));
    WAIT_FOR(atomic_load(&st.dropped) == 1);

    int a = connect_loopback(port);
    write_all(a, "close", 5);
    CHECK(read_to_eof(a) == 0);
    close(a);
    WAIT_FOR(atomic_load(&st.closed_local) == 1);

    int b = connect_loopback(port);
    write_all(b, "keep", 4);
    char line[5];
    read_exact(b, line, 5);
    CHECK(memcmp(line, "kept\n", 5) == 0);
    CHECK(atomic_load(&st.checks_done) == 1);
    /* The handles kept from that callback are refused now, from this thread. */
    CHECK_STATUS(rf_conn_send(st.kept_core, 1, "x", 1), RF_ERR_WRONG_THREAD);
    CHECK_ERROR_TEXT("not the one of a callback running on this thread");
    CHECK(rf_core_index(st.kept_core) == SIZE_MAX);
    CHECK(rf_data_len(st.kept_data) == 0);
    CHECK_STATUS(rf_data_consume(st.kept_data, 0), RF_ERR_WRONG_THREAD);
    close(b);

    /* The receive bound: 4 KiB unconsumed against a limit of 1000 B closes it (here
       before on_data even sees it, since it arrives in one piece). */
    int c = connect_loopback(port);
    char junk[4096];
    memset(junk, 'l', sizeof junk);
    memcpy(junk, "limit", 5);
    write_all(c, junk, sizeof junk);
    WAIT_FOR(atomic_load(&st.closed_limit) == 1);
    close(c);

    CHECK_OK(rf_engine_stop(eng, 1000));
    CHECK_OK(rf_engine_stop(eng, 1000)); /* stopping twice is harmless */
    msg = malloc(sizeof *msg);
    CHECK_STATUS(rf_engine_post(eng, 0, 77, msg), RF_ERR_CLOSED); /* the caller keeps it */
    free(msg);
    CHECK_OK(rf_engine_wait(eng));
    CHECK_STATUS(rf_engine_wait(eng), RF_ERR_CLOSED); /* guarded double wait */
    CHECK_OK(rf_engine_stop(eng, 0));
    CHECK_OK(rf_engine_stats(eng, 0, &stats));
    CHECK(stats.accepts == 3 && stats.live_buffers_at_exit == 0);
    CHECK_STATUS(rf_engine_post(eng, 0, 77, NULL), RF_ERR_CLOSED);
    rf_engine_free(eng);
    CHECK(atomic_load(&st.dropped) == 1);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    null_arguments();
    bad_values();
    wal_errors();
    engine_errors();
    printf("test_errors: every error path returned its status and text\n");
    return 0;
}
