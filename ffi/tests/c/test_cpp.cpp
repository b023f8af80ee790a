// The C++17 wrapper (ringfort.hpp): RAII handles, errors as exceptions, a handler class
// on two cores echoing over many connections, a throwing handler that stops the engine,
// and the standalone log with its reader.
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "ringfort.hpp"

namespace {

template <class F>
void expect_error(rf_status want, F &&f) {
    try {
        f();
    } catch (const ringfort::Error &e) {
        if (e.status() != want) {
            std::fprintf(stderr, "threw %s, want %s\n", e.what(), rf_status_name(want));
            std::exit(1);
        }
        return;
    }
    std::fprintf(stderr, "no exception, want %s\n", rf_status_name(want));
    std::exit(1);
}

// Echoes: even connections zero copy, odd ones through a retained Buffer.
class Echo : public ringfort::Handler {
  public:
    std::atomic<int> accepted{0}, closed{0};
    void on_start(ringfort::Core &core) override { core.timer(1, HEARTBEAT_TOKEN); }
    void on_timer(ringfort::Core &core, rf_timer, uint64_t token) override {
        if (token == HEARTBEAT_TOKEN) core.timer(1, HEARTBEAT_TOKEN);
    }
    void on_accept(ringfort::Core &, rf_conn, uint32_t, const rf_peer *) override { accepted++; }
    void on_data(ringfort::Core &core, rf_conn conn, ringfort::Data &data) override {
        size_t len = data.size();
        if (conn % 2 == 0) {
            core.send(conn, data, len);
        } else {
            ringfort::Buffer b = data.retain(len);
            ringfort::Buffer twin = b.retain();
            CHECK(twin.to_string().size() == len);
            data.consume(len);
            core.send(conn, std::move(b));
        }
    }
    void on_close(ringfort::Core &, rf_conn, rf_close_reason, const char *) override { closed++; }
};

// Throws from on_data: the wrapper catches it at the boundary and stops the engine.
class Thrower : public ringfort::Handler {
  public:
    void on_start(ringfort::Core &core) override { core.timer(1, HEARTBEAT_TOKEN); }
    void on_timer(ringfort::Core &core, rf_timer, uint64_t token) override {
        if (token == HEARTBEAT_TOKEN) core.timer(1, HEARTBEAT_TOKEN);
    }
    void on_data(ringfort::Core &, rf_conn, ringfort::Data &) override {
        throw std::runtime_error("deliberately thrown from on_data");
    }
};

void echo() {
    Echo echo;
    ringfort::Config cfg;
    cfg.cores(2).listen("127.0.0.1:0");
    ringfort::Engine engine(cfg, echo);
    CHECK(engine.cores() == 2);
    uint16_t port = engine.port();
    const int conns = getenv("RF_TEST_LIGHT") ? 8 : 32;
    std::vector<int> fds;
    for (int i = 0; i < conns; i++) fds.push_back(connect_loopback(port));
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < conns; i++) {
            std::string msg = "conn " + std::to_string(i) + " round " + std::to_string(round) +
                              std::string(static_cast<size_t>(i * 100 + round), 'x');
            write_all(fds[i], msg.data(), msg.size());
            std::string back(msg.size(), '\0');
            read_exact(fds[i], back.data(), back.size());
            CHECK(back == msg);
        }
    }
    for (int fd : fds) close(fd);
    WAIT_FOR(echo.closed.load() == conns);
    CHECK(echo.accepted.load() == conns);
    uint64_t accepts = engine.stats(0).accepts + engine.stats(1).accepts;
    CHECK(accepts == static_cast<uint64_t>(conns));
    engine.stop(1000);
    engine.wait();
    expect_error(RF_ERR_CLOSED, [&] { engine.wait(); });
}

void thrower() {
    Thrower t;
    ringfort::Config cfg;
    cfg.cores(1).listen("127.0.0.1:0");
    ringfort::Engine engine(cfg, t);
    int fd = connect_loopback(engine.port());
    write_all(fd, "boom", 4);
    CHECK(read_to_eof(fd) == 0);  // the engine stopped and closed the connection
    close(fd);
    engine.wait();
}

void errors() {
    expect_error(RF_ERR_INVALID_ARGUMENT, [] { ringfort::Config().cores(0); });
    expect_error(RF_ERR_INVALID_ARGUMENT, [] { ringfort::Config().listen("nowhere"); });
    expect_error(RF_ERR_CONFIG, [] { ringfort::Config().ring_entries(3).validate(); });
    expect_error(RF_ERR_CONFIG, [] {
        ringfort::WalConfig w;
        w.block_size(1000);
        ringfort::Wal("/tmp/rf-test-cpp-never", &w);
    });
    expect_error(RF_ERR_IO, [] { ringfort::WalReader("/nonexistent/rf-test"); });
}

void wal() {
    char base[] = "/tmp/rf-test-cpp-XXXXXX";
    CHECK(mkdtemp(base) != nullptr);
    std::string dir = std::string(base) + "/log";
    {
        ringfort::Wal w(dir);
        std::vector<std::thread> writers;
        for (int t = 0; t < 2; t++) {
            writers.emplace_back([&w, t] {
                for (int i = 0; i < 20; i++) w.append("writer " + std::to_string(t) + " record " + std::to_string(i));
            });
        }
        for (auto &th : writers) th.join();
        CHECK(w.next_lsn() == 41);
        w.close();
        expect_error(RF_ERR_CLOSED, [&] { w.close(); });
    }
    rf_wal_report rep{};
    { ringfort::Wal again(dir, nullptr, &rep); }  // closed by its destructor
    CHECK(rep.next_lsn == 41 && rep.tail == RF_TAIL_CLEAN);
    ringfort::WalReader reader(dir, 0, RF_RECOVERY_ABSOLUTE);
    uint64_t want = 1;
    while (auto rec = reader.next()) {
        CHECK(rec->lsn == want++);
        CHECK(rec->bytes.rfind("writer ", 0) == 0);
    }
    CHECK(want == 41);
    CHECK(reader.report().records == 40);
    std::string cmd = std::string("rm -rf ") + base;
    CHECK(std::system(cmd.c_str()) == 0);
}

}  // namespace

int main() {
    signal(SIGPIPE, SIG_IGN);
    errors();
    wal();
    echo();
    thrower();
    std::printf("test_cpp: wrapper handles, errors, echo, a throwing handler and the log\n");
    return 0;
}
