/*
 * wal_tool.c: a write-ahead log from the command line, on Ringfort's C ABI.
 *
 *   cc -O2 wal_tool.c $(pkg-config --cflags --libs ringfort) -o wal_tool
 *   wal_tool append DIR [RECORD...]   append each argument (or each stdin line) durably
 *   wal_tool dump DIR [FROM]          print every record from LSN FROM on: "LSN<TAB>bytes"
 *   wal_tool stat DIR                 what recovery finds: first/next LSN, records, tail
 *   wal_tool truncate DIR LSN         remove whole segments below LSN
 *
 * Appends from one run share group commits; each is durable (fdatasync) before the tool
 * says so. `dump` only reads, and refuses a log with damage in the middle.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringfort.h"

static int fail(const char *what, rf_status s) {
    fprintf(stderr, "wal_tool: %s: %s (%s)\n", what, rf_last_error_message(), rf_status_name(s));
    return 1;
}

static int usage(void) {
    fprintf(stderr,
            "usage: wal_tool append DIR [RECORD...] | dump DIR [FROM] | stat DIR | "
            "truncate DIR LSN\n");
    return 2;
}

static int append(const char *dir, int n, char **records) {
    rf_wal *wal = NULL;
    rf_status s = rf_wal_open(dir, NULL, NULL, &wal);
    if (s != RF_OK) return fail("open", s);
    uint64_t lsn = 0, count = 0;
    if (n > 0) {
        for (int i = 0; i < n && s == RF_OK; i++, count++) {
            s = rf_wal_append(wal, records[i], strlen(records[i]), &lsn);
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while (s == RF_OK && (len = getline(&line, &cap, stdin)) >= 0) {
            if (len > 0 && line[len - 1] == '\n') len--;
            s = rf_wal_append(wal, line, (size_t)len, &lsn);
            count += s == RF_OK;
        }
        free(line);
    }
    if (s != RF_OK) {
        fail("append", s);
        rf_wal_free(wal);
        return 1;
    }
    s = rf_wal_close(wal);
    rf_wal_free(wal);
    if (s != RF_OK) return fail("close", s);
    printf("appended %llu record(s), last LSN %llu\n", (unsigned long long)count,
           (unsigned long long)lsn);
    return 0;
}

static int dump(const char *dir, uint64_t from) {
    rf_wal_reader *rd = NULL;
    rf_status s = rf_wal_reader_open(dir, from, RF_RECOVERY_TOLERATE_TAIL, &rd);
    if (s != RF_OK) return fail("open", s);
    rf_record rec;
    while ((s = rf_wal_reader_next(rd, &rec)) == RF_OK) {
        printf("%llu\t%.*s\n", (unsigned long long)rec.lsn, (int)rec.len, (const char *)rec.data);
    }
    rf_wal_reader_free(rd);
    return s == RF_DONE ? 0 : fail("read", s);
}

static int stat_log(const char *dir) {
    rf_wal_reader *rd = NULL;
    rf_status s = rf_wal_reader_open(dir, 0, RF_RECOVERY_TOLERATE_TAIL, &rd);
    if (s != RF_OK) return fail("open", s);
    rf_record rec;
    while ((s = rf_wal_reader_next(rd, &rec)) == RF_OK) {
    }
    rf_wal_report rep;
    if (s == RF_DONE) s = rf_wal_reader_report(rd, &rep);
    rf_wal_reader_free(rd);
    if (s != RF_OK) return fail("read", s);
    static const char *tails[] = {"clean", "torn (cut off on the next open)", "cut"};
    printf("first LSN %llu, next LSN %llu, %llu record(s) in %llu segment(s), tail %s\n",
           (unsigned long long)rep.first_lsn, (unsigned long long)rep.next_lsn,
           (unsigned long long)rep.records, (unsigned long long)rep.segments, tails[rep.tail]);
    return 0;
}

static int truncate_log(const char *dir, uint64_t lsn) {
    rf_wal *wal = NULL;
    rf_status s = rf_wal_open(dir, NULL, NULL, &wal);
    if (s != RF_OK) return fail("open", s);
    size_t removed = 0;
    s = rf_wal_truncate_prefix(wal, lsn, &removed);
    rf_status c = rf_wal_close(wal);
    rf_wal_free(wal);
    if (s != RF_OK) return fail("truncate", s);
    if (c != RF_OK) return fail("close", c);
    printf("removed %zu segment(s)\n", removed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *cmd = argv[1], *dir = argv[2];
    if (strcmp(cmd, "append") == 0) return append(dir, argc - 3, argv + 3);
    if (strcmp(cmd, "dump") == 0 && argc <= 4) {
        return dump(dir, argc == 4 ? strtoull(argv[3], NULL, 10) : 0);
    }
    if (strcmp(cmd, "stat") == 0 && argc == 3) return stat_log(dir);
    if (strcmp(cmd, "truncate") == 0 && argc == 4) {
        return truncate_log(dir, strtoull(argv[3], NULL, 10));
    }
    return usage();
}
