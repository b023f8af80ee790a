// wal_logger.cpp: a durable line logger on Ringfort, in C++17 with ringfort.hpp.
//
//   c++ -std=c++17 -O2 wal_logger.cpp $(pkg-config --cflags --libs ringfort) -o wal_logger
//   ./wal_logger DIR [PORT] [CORES]
//
// Each core keeps its own write-ahead log in DIR/core-N, driven by its io_uring. Every
// line a client sends is appended to the log of the core that owns the connection, and
// answered "OK <lsn>" once it is durable (on_wal_durable), in order. On start each core
// replays its log and the program prints how many records it found. It prints
// "listening on port P" once ready, and stops cleanly on SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "ringfort.hpp"

namespace {

class Logger : public ringfort::Handler {
  public:
    Logger(std::string dir, size_t cores) : dir_(std::move(dir)), per_core_(cores) {}

    void on_start(ringfort::Core &core) override {
        auto &me = per_core_[core.index()];
        std::string dir = dir_ + "/core-" + std::to_string(core.index());
        me.wal = core.wal_open(dir, 0, [&](const rf_record &) { replayed_++; });
    }

    void on_data(ringfort::Core &core, rf_conn conn, ringfort::Data &data) override {
        auto &me = per_core_[core.index()];
        while (auto end = data.find('\n')) {
            std::string line = data.copy(0, *end - 1);
            data.consume(*end);
            uint64_t lsn = core.wal_append(me.wal, line);
            me.waiting.push_back({lsn, conn});
        }
    }

    void on_wal_durable(ringfort::Core &core, uint32_t, uint64_t durable) override {
        auto &me = per_core_[core.index()];
        while (!me.waiting.empty() && me.waiting.front().lsn < durable) {
            auto w = me.waiting.front();
            me.waiting.pop_front();
            try {
                core.send(w.conn, "OK " + std::to_string(w.lsn) + "\n");
            } catch (const ringfort::Error &e) {
                if (e.status() != RF_ERR_NO_CONN) throw;  // the client left: nothing to say
            }
        }
    }

    uint64_t replayed() const { return replayed_.load(); }

  private:
    struct Waiting {
        uint64_t lsn;
        rf_conn conn;
    };
    // One per core, touched only by that core's thread.
    struct PerCore {
        uint32_t wal = 0;
        std::deque<Waiting> waiting;
    };
    std::string dir_;
    std::vector<PerCore> per_core_;
    std::atomic<uint64_t> replayed_{0};
};

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: wal_logger DIR [PORT] [CORES]\n";
        return 2;
    }
    std::string dir = argv[1];
    std::string port = argc > 2 ? argv[2] : "7001";
    size_t cores = argc > 3 ? std::stoul(argv[3]) : 1;

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    try {
        ringfort::Config cfg;
        cfg.cores(cores).listen("127.0.0.1:" + port);
        Logger logger(dir, cores);
        ringfort::Engine engine(cfg, logger);
        std::cout << "replayed " << logger.replayed() << " records" << std::endl;
        std::cout << "listening on port " << engine.port() << std::endl;
        int sig = 0;
        sigwait(&stop, &sig);
        engine.stop(1000);
        engine.wait();
    } catch (const ringfort::Error &e) {
        std::cerr << "wal_logger: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
