/*
 * The write-ahead log through the C ABI: concurrent appends to a standalone log, a clean
 * close and reopen, replay through the reader, truncation; then a core's log inside the
 * engine, acknowledged through on_wal_durable, replayed on restart, and read back by the
 * standalone reader (both drivers share one format).
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define WRITERS 2
static int per_writer = 150;

/* Record bytes are a function of (writer, index), and carry both. */
static size_t make_record(char *buf, int writer, int i) {
    int n = snprintf(buf, 64, "w%d/r%d/", writer, i);
    size_t len = (size_t)n + (size_t)((writer * 977 + i * 131) % 1500);
    for (size_t k = (size_t)n; k < len; k++) buf[k] = (char)('a' + (k + (size_t)i) % 26);
    return len;
}

struct writer {
    rf_wal *wal;
    int id;
    uint64_t *lsn_of; /* lsn_of[i]: the LSN record i of this writer got */
};

static void *append_loop(void *arg) {
    struct writer *w = arg;
    char buf[2048];
    for (int i = 0; i < per_writer; i++) {
        size_t len = make_record(buf, w->id, i);
        CHECK_OK(rf_wal_append(w->wal, buf, len, &w->lsn_of[i]));
    }
    return NULL;
}

static rf_wal_config *small_config(void) {
    rf_wal_config *cfg = rf_wal_config_new();
    CHECK(cfg != NULL);
    /* Small segments, so the log spans several and truncation has something to cut. */
    CHECK_OK(rf_wal_config_set_block_size(cfg, 8192));
    CHECK_OK(rf_wal_config_set_batch_bytes(cfg, 8192));
    CHECK_OK(rf_wal_config_set_max_record(cfg, 4096));
    CHECK_OK(rf_wal_config_set_segment_size(cfg, 64 * 1024));
    CHECK_OK(rf_wal_config_validate(cfg));
    return cfg;
}

/* Which (writer, index) each LSN holds, to check replay byte for byte. */
static int owner_writer[1024], owner_index[1024];

static void standalone(const char *dir) {
    rf_wal_config *cfg = small_config();
    rf_wal *wal = NULL;
    rf_wal_report rep;
    CHECK_OK(rf_wal_open(dir, cfg, &rep, &wal));
    CHECK(rep.next_lsn == 1 && rep.records == 0 && rep.tail == RF_TAIL_CLEAN);

    struct writer ws[WRITERS];
    pthread_t threads[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        ws[w].wal = wal;
        ws[w].id = w;
        ws[w].lsn_of = calloc((size_t)per_writer, sizeof(uint64_t));
        CHECK(ws[w].lsn_of != NULL);
        CHECK(pthread_create(&threads[w], NULL, append_loop, &ws[w]) == 0);
    }
    for (int w = 0; w < WRITERS; w++) CHECK(pthread_join(threads[w], NULL) == 0);
    int total = WRITERS * per_writer;
    memset(owner_writer, -1, sizeof owner_writer);
    for (int w = 0; w < WRITERS; w++) {
        for (int i = 0; i < per_writer; i++) {
            uint64_t lsn = ws[w].lsn_of[i];
            CHECK(lsn >= 1 && lsn <= (uint64_t)total);
            CHECK(owner_writer[lsn] == -1); /* every LSN handed out once */
            owner_writer[lsn] = w;
            owner_index[lsn] = i;
        }
        free(ws[w].lsn_of);
    }
    CHECK_OK(rf_wal_flush(wal));
    uint64_t next = 0, acked = 0;
    CHECK_OK(rf_wal_lsns(wal, &next, &acked));
    CHECK(next == (uint64_t)total + 1 && acked == next);

    /* A clean close; closing again is guarded, and so is everything after it. */
    CHECK_OK(rf_wal_close(wal));
    CHECK_STATUS(rf_wal_close(wal), RF_ERR_CLOSED);
    CHECK_STATUS(rf_wal_append(wal, "x", 1, NULL), RF_ERR_CLOSED);
    CHECK_STATUS(rf_wal_flush(wal), RF_ERR_CLOSED);
    rf_wal_free(wal);

    /* Reopen: recovery finds every record and a clean tail. */
    CHECK_OK(rf_wal_open(dir, cfg, &rep, &wal));
    CHECK(rep.next_lsn == (uint64_t)total + 1);
    CHECK(rep.records == (uint64_t)total);
    CHECK(rep.tail == RF_TAIL_CLEAN);
    CHECK(rep.segments > 2);
    CHECK_OK(rf_wal_close(wal));
    rf_wal_free(wal);

    /* Replay every record, byte for byte, in LSN order. */
    rf_wal_reader *rd = NULL;
    CHECK_OK(rf_wal_reader_open(dir, 0, RF_RECOVERY_ABSOLUTE, &rd));
    rf_record rec;
    uint64_t want = 1;
    char expect[2048];
    rf_status s;
    while ((s = rf_wal_reader_next(rd, &rec)) == RF_OK) {
        CHECK(rec.lsn == want);
        size_t len = make_record(expect, owner_writer[want], owner_index[want]);
        CHECK(rec.len == len && memcmp(rec.data, expect, len) == 0);
        want++;
    }
    CHECK_STATUS(s, RF_DONE);
    CHECK_STATUS(rf_wal_reader_next(rd, &rec), RF_DONE);
    CHECK(want == (uint64_t)total + 1);
    CHECK_OK(rf_wal_reader_report(rd, &rep));
    CHECK(rep.next_lsn == want && rep.tail == RF_TAIL_CLEAN);
    rf_wal_reader_free(rd);

    /* Truncate below the middle: whole segments go, and reading from there still works. */
    uint64_t cut = (uint64_t)total / 2;
    CHECK_OK(rf_wal_open(dir, cfg, NULL, &wal));
    size_t removed = 0;
    CHECK_OK(rf_wal_truncate_prefix(wal, cut, &removed));
    CHECK(removed >= 1);
    uint64_t appended = 0;
    CHECK_OK(rf_wal_append(wal, "after truncation", 16, &appended));
    CHECK(appended == (uint64_t)total + 1);
    CHECK_OK(rf_wal_close(wal));
    rf_wal_free(wal);
    CHECK_OK(rf_wal_reader_open(dir, cut, RF_RECOVERY_ABSOLUTE, &rd));
    CHECK_OK(rf_wal_reader_next(rd, &rec));
    CHECK(rec.lsn == cut);
    uint64_t last = rec.lsn;
    while ((s = rf_wal_reader_next(rd, &rec)) == RF_OK) last = rec.lsn;
    CHECK_STATUS(s, RF_DONE);
    CHECK(last == (uint64_t)total + 1);
    CHECK_OK(rf_wal_reader_report(rd, &rep));
    CHECK(rep.first_lsn > 1);
    rf_wal_reader_free(rd);
    rf_wal_config_free(cfg);
}

/* ---- a core's log inside the engine ---- */

#define CORE_RECORDS 40

struct core_state {
    const char *dir;
    rf_core *opening; /* the core handle of the on_start that is opening the log */
    int abort_replay;
    atomic_int replayed;
    atomic_int replay_bad;
    atomic_int opened;
    atomic_uint_fast64_t durable;
    uint32_t wal;
    rf_status open_status;
    char open_error[256];
};

static int replay_cb(void *ud, const rf_record *rec) {
    struct core_state *st = ud;
    char expect[2048];
    /* The replay runs inside rf_core_wal_open: the core handle is suspended meanwhile. */
    rf_timer t;
    CHECK_STATUS(rf_core_timer(st->opening, 1, 1, &t), RF_ERR_WRONG_THREAD);
    size_t len = make_record(expect, 9, (int)rec->lsn - 1);
    if (rec->len != len || memcmp(rec->data, expect, len) != 0) atomic_fetch_add(&st->replay_bad, 1);
    atomic_fetch_add(&st->replayed, 1);
    return st->abort_replay && rec->lsn == 3;
}

static void core_on_start(void *ud, rf_core *core) {
    struct core_state *st = ud;
    heartbeat(core);
    rf_wal_report rep;
    st->opening = core;
    st->open_status = rf_core_wal_open(core, st->dir, NULL, 0, replay_cb, st, &rep, &st->wal);
    if (st->open_status != RF_OK) {
        snprintf(st->open_error, sizeof st->open_error, "%s", rf_last_error_message());
        atomic_store(&st->opened, 1);
        return;
    }
    CHECK(rep.next_lsn == (uint64_t)atomic_load(&st->replayed) + 1);
    /* An id that names no log on this core. */
    uint64_t lsn = 0;
    CHECK_STATUS(rf_core_wal_append(core, st->wal + 7, "x", 1, &lsn), RF_ERR_NOT_FOUND);
    char buf[2048];
    for (uint64_t i = rep.next_lsn - 1; i < rep.next_lsn - 1 + CORE_RECORDS; i++) {
        size_t len = make_record(buf, 9, (int)i);
        CHECK_OK(rf_core_wal_append(core, st->wal, buf, len, &lsn));
        CHECK(lsn == i + 1);
    }
    atomic_store(&st->opened, 1);
}

static void core_on_timer(void *ud, rf_core *core, rf_timer t, uint64_t token) {
    (void)ud;
    (void)t;
    if (token == HEARTBEAT_TOKEN) heartbeat(core);
}

static void core_on_data(void *ud, rf_core *core, rf_conn conn, rf_data *data) {
    (void)ud;
    (void)core;
    (void)conn;
    CHECK_OK(rf_data_consume(data, rf_data_len(data)));
}

static void core_on_durable(void *ud, rf_core *core, uint32_t wal, uint64_t durable) {
    struct core_state *st = ud;
    uint64_t d = 0, next = 0;
    CHECK(wal == st->wal);
    CHECK_OK(rf_core_wal_lsns(core, wal, &d, &next));
    CHECK(d >= durable);
    atomic_store(&st->durable, durable);
}

static void core_on_failed(void *ud, rf_core *core, uint32_t wal, uint64_t first, uint64_t end,
                           const char *why) {
    (void)ud;
    (void)core;
    fprintf(stderr, "core log %u failed for LSNs %llu..%llu: %s\n", wal,
            (unsigned long long)first, (unsigned long long)end, why);
    exit(1);
}

static void run_core(struct core_state *st, uint64_t want_durable) {
    rf_handler h;
    memset(&h, 0, sizeof h);
    h.on_start = core_on_start;
    h.on_data = core_on_data;
    h.on_timer = core_on_timer;
    h.on_wal_durable = core_on_durable;
    h.on_wal_failed = core_on_failed;
    rf_config *cfg = rf_config_new();
    CHECK_OK(rf_config_set_cores(cfg, 1));
    rf_engine *eng = NULL;
    CHECK_OK(rf_engine_start(cfg, &h, st, &eng));
    rf_config_free(cfg);
    WAIT_FOR(atomic_load(&st->opened) == 1);
    if (want_durable > 0) WAIT_FOR(atomic_load(&st->durable) >= want_durable);
    CHECK_OK(rf_engine_stop(eng, 1000));
    CHECK_OK(rf_engine_wait(eng));
    rf_engine_free(eng);
}

static void in_engine(const char *dir) {
    static struct core_state st;
    st.dir = dir;
    run_core(&st, CORE_RECORDS + 1);
    CHECK_OK(st.open_status);
    CHECK(atomic_load(&st.replayed) == 0);

    /* Restart: replay hands back the 40 acknowledged records, then 40 more go in. */
    atomic_store(&st.opened, 0);
    atomic_store(&st.durable, 0);
    run_core(&st, 2 * CORE_RECORDS + 1);
    CHECK(atomic_load(&st.replayed) == CORE_RECORDS);
    CHECK(atomic_load(&st.replay_bad) == 0);

    /* A replay callback that stops the open. */
    atomic_store(&st.opened, 0);
    atomic_store(&st.replayed, 0);
    st.abort_replay = 1;
    run_core(&st, 0);
    CHECK_STATUS(st.open_status, RF_ERR_ABORTED);
    CHECK(strstr(st.open_error, "replay") != NULL);
    CHECK(atomic_load(&st.replayed) == 3);

    /* The standalone reader reads the engine's log. */
    rf_wal_reader *rd = NULL;
    CHECK_OK(rf_wal_reader_open(dir, 0, RF_RECOVERY_TOLERATE_TAIL, &rd));
    rf_record rec;
    uint64_t n = 0;
    while (rf_wal_reader_next(rd, &rec) == RF_OK) n++;
    CHECK(n == 2 * CORE_RECORDS);
    rf_wal_reader_free(rd);
}

int main(void) {
    if (getenv("RF_TEST_LIGHT")) per_writer = 60;
    char base[] = "/tmp/rf-test-wal-XXXXXX";
    CHECK(mkdtemp(base) != NULL);
    char dir1[256], dir2[256];
    snprintf(dir1, sizeof dir1, "%s/standalone", base);
    snprintf(dir2, sizeof dir2, "%s/core", base);
    standalone(dir1);
    in_engine(dir2);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    CHECK(system(cmd) == 0);
    printf("test_wal: %d concurrent appends replayed, core log replayed across restarts\n",
           WRITERS * per_writer);
    return 0;
}
