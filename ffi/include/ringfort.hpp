// ringfort.hpp: a small C++17 RAII wrapper over ringfort.h (hand-written; the C header is
// the contract). Handles free themselves, failed calls throw ringfort::Error with the
// status and the library's text, and an engine handler is a class with virtual
// callbacks. Exceptions never cross into the library: a callback that throws is caught
// at the boundary, reported on stderr, and the engine is asked to stop.
//
// Threads: as in ringfort.h. A Core and a Data are valid only inside the callback that
// received them; an Engine, a Wal and a Buffer may be used from any thread.
#ifndef RINGFORT_HPP
#define RINGFORT_HPP

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ringfort.h"

namespace ringfort {

// A failed call: its status and the library's text for it.
class Error : public std::runtime_error {
  public:
    Error(rf_status status, const char *text)
        : std::runtime_error(std::string(rf_status_name(status)) + ": " + (text ? text : "")),
          status_(status) {}
    rf_status status() const noexcept { return status_; }

  private:
    rf_status status_;
};

// Throws Error unless `s` is RF_OK.
inline void check(rf_status s) {
    if (s != RF_OK) throw Error(s, rf_last_error_message());
}

namespace detail {
template <class T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T *)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

template <class T>
T *must(T *p) {
    if (p == nullptr) throw Error(RF_ERR_PANIC, rf_last_error_message());
    return p;
}
}  // namespace detail

// The engine configuration (ringfort.h's rf_config), with chainable setters.
class Config {
  public:
    Config() : p_(detail::must(rf_config_new())) {}
    Config &cores(size_t n) { check(rf_config_set_cores(p_.get(), n)); return *this; }
    Config &listen(const std::string &addr) {
        check(rf_config_add_listener(p_.get(), addr.c_str()));
        return *this;
    }
    Config &ring_entries(uint32_t n) { check(rf_config_set_ring_entries(p_.get(), n)); return *this; }
    Config &max_conns(size_t n) { check(rf_config_set_max_conns(p_.get(), n)); return *this; }
    Config &max_recv_bytes(size_t n) { check(rf_config_set_max_recv_bytes(p_.get(), n)); return *this; }
    Config &idle_timeout_ms(uint64_t ms) { check(rf_config_set_idle_timeout_ms(p_.get(), ms)); return *this; }
    void validate() const { check(rf_config_validate(p_.get())); }
    const rf_config *get() const noexcept { return p_.get(); }

  private:
    detail::Owned<rf_config, rf_config_free> p_;
};

// A retained buffer (rf_buf): shares received blocks; released when destroyed.
class Buffer {
  public:
    explicit Buffer(rf_buf *b) : p_(b) {}
    size_t size() const noexcept { return rf_buf_len(p_.get()); }
    std::string to_string() const {
        std::string s(size(), '\0');
        check(rf_buf_copy(p_.get(), 0, s.data(), s.size()));
        return s;
    }
    Buffer retain() const {
        rf_buf *b = nullptr;
        check(rf_buf_retain(p_.get(), &b));
        return Buffer(b);
    }
    // Gives up ownership (to rf_conn_send_buf).
    rf_buf *release() noexcept { return p_.release(); }

  private:
    detail::Owned<rf_buf, rf_buf_release> p_;
};

// The bytes on_data received (rf_data), valid during that callback.
class Data {
  public:
    explicit Data(rf_data *d) noexcept : d_(d) {}
    size_t size() const noexcept { return rf_data_len(d_); }
    // Copies `len` bytes at `offset` out (nothing is consumed).
    std::string copy(size_t offset, size_t len) const {
        std::string s(len, '\0');
        check(rf_data_copy(d_, offset, s.data(), len));
        return s;
    }
    // The offset just past the first `byte`, if any. Looks in place through the first
    // 32 pieces, and copies out what lies beyond them (a long message in small blocks).
    std::optional<size_t> find(char byte) const {
        rf_slice slices[32];
        size_t n = 0, off = 0;
        check(rf_data_slices(d_, slices, 32, &n));
        for (size_t i = 0; i < n; i++) {
            if (const void *hit = std::memchr(slices[i].ptr, byte, slices[i].len)) {
                return off + static_cast<size_t>(static_cast<const uint8_t *>(hit) - slices[i].ptr) + 1;
            }
            off += slices[i].len;
        }
        char buf[4096];
        while (off < size()) {
            size_t len = std::min(sizeof buf, size() - off);
            check(rf_data_copy(d_, off, buf, len));
            if (const void *hit = std::memchr(buf, byte, len)) {
                return off + static_cast<size_t>(static_cast<const char *>(hit) - buf) + 1;
            }
            off += len;
        }
        return std::nullopt;
    }
    void consume(size_t n) { check(rf_data_consume(d_, n)); }
    Buffer retain(size_t len) {
        rf_buf *b = nullptr;
        check(rf_data_retain(d_, len, &b));
        return Buffer(b);
    }
    rf_data *get() const noexcept { return d_; }

  private:
    rf_data *d_;
};

// A core's handle inside a callback (rf_core).
class Core {
  public:
    explicit Core(rf_core *c) noexcept : c_(c) {}
    size_t index() const noexcept { return rf_core_index(c_); }
    size_t count() const noexcept { return rf_core_count(c_); }
    void send(rf_conn conn, std::string_view bytes) {
        check(rf_conn_send(c_, conn, bytes.data(), bytes.size()));
    }
    // Zero copy: moves the first `len` received bytes into conn's send queue.
    void send(rf_conn conn, Data &data, size_t len) { check(rf_conn_send_data(c_, conn, data.get(), len)); }
    void send(rf_conn conn, Buffer buf) { check(rf_conn_send_buf(c_, conn, buf.release())); }
    void close(rf_conn conn) { check(rf_conn_close(c_, conn)); }
    rf_timer timer(uint64_t after_ms, uint64_t token) {
        rf_timer t = 0;
        check(rf_core_timer(c_, after_ms, token, &t));
        return t;
    }
    bool cancel_timer(rf_timer t) {
        rf_status s = rf_core_timer_cancel(c_, t);
        if (s == RF_ERR_NOT_FOUND) return false;
        check(s);
        return true;
    }
    void post(size_t to_core, uint64_t tag, void *msg) { check(rf_core_post(c_, to_core, tag, msg)); }
    void stop_engine(uint64_t drain_ms) { check(rf_core_stop_engine(c_, drain_ms)); }
    rf_stats stats() const {
        rf_stats s{};
        check(rf_core_stats(c_, &s));
        return s;
    }
    // A log driven by this core's ring; returns its id. `replay` sees each record.
    template <class F>
    uint32_t wal_open(const std::string &dir, uint64_t from, F &&replay, rf_wal_report *report = nullptr) {
        struct Ctx {
            F *f;
            std::exception_ptr error;
        } ctx{&replay, nullptr};
        auto tramp = [](void *ud, const rf_record *rec) -> int {
            auto *c = static_cast<Ctx *>(ud);
            try {
                (*c->f)(*rec);
                return 0;
            } catch (...) {
                c->error = std::current_exception();
                return 1;
            }
        };
        uint32_t id = 0;
        rf_status s = rf_core_wal_open(c_, dir.c_str(), nullptr, from, tramp, &ctx, report, &id);
        if (ctx.error) std::rethrow_exception(ctx.error);
        check(s);
        return id;
    }
    uint64_t wal_append(uint32_t wal, std::string_view bytes) {
        uint64_t lsn = 0;
        check(rf_core_wal_append(c_, wal, bytes.data(), bytes.size(), &lsn));
        return lsn;
    }
    rf_core *get() const noexcept { return c_; }

  private:
    rf_core *c_;
};

// Subclass and override what you need; on_data is required. Methods run on core threads
// (see rf_handler in ringfort.h), several at once: guard shared state.
class Handler {
  public:
    virtual ~Handler() = default;
    virtual void on_start(Core &) {}
    virtual void on_accept(Core &, rf_conn, uint32_t /*listener*/, const rf_peer *) {}
    virtual void on_data(Core &core, rf_conn conn, Data &data) = 0;
    virtual void on_close(Core &, rf_conn, rf_close_reason, const char * /*detail*/) {}
    virtual void on_timer(Core &, rf_timer, uint64_t /*token*/) {}
    virtual void on_message(Core &, int32_t /*from_core*/, uint64_t /*tag*/, void * /*msg*/) {}
    virtual void on_wal_durable(Core &, uint32_t /*wal*/, uint64_t /*durable_lsn*/) {}
    virtual void on_stop(Core &) {}
};

// A running engine (rf_engine); destroying it stops it and waits.
class Engine {
  public:
    Engine(const Config &cfg, Handler &handler) {
        rf_handler h{};
        h.on_start = [](void *ud, rf_core *c) { guarded(c, [&](Core &core) { self(ud).on_start(core); }); };
        h.on_accept = [](void *ud, rf_core *c, rf_conn conn, uint32_t l, const rf_peer *p) {
            guarded(c, [&](Core &core) { self(ud).on_accept(core, conn, l, p); });
        };
        h.on_data = [](void *ud, rf_core *c, rf_conn conn, rf_data *d) {
            guarded(c, [&](Core &core) {
                Data data(d);
                self(ud).on_data(core, conn, data);
            });
        };
        h.on_close = [](void *ud, rf_core *c, rf_conn conn, rf_close_reason r, const char *why) {
            guarded(c, [&](Core &core) { self(ud).on_close(core, conn, r, why); });
        };
        h.on_timer = [](void *ud, rf_core *c, rf_timer t, uint64_t token) {
            guarded(c, [&](Core &core) { self(ud).on_timer(core, t, token); });
        };
        h.on_message = [](void *ud, rf_core *c, int32_t from, uint64_t tag, void *msg) {
            guarded(c, [&](Core &core) { self(ud).on_message(core, from, tag, msg); });
        };
        h.on_wal_durable = [](void *ud, rf_core *c, uint32_t wal, uint64_t lsn) {
            guarded(c, [&](Core &core) { self(ud).on_wal_durable(core, wal, lsn); });
        };
        h.on_stop = [](void *ud, rf_core *c) { guarded(c, [&](Core &core) { self(ud).on_stop(core); }); };
        rf_engine *e = nullptr;
        check(rf_engine_start(cfg.get(), &h, &handler, &e));
        p_.reset(e);
    }
    size_t cores() const noexcept { return rf_engine_cores(p_.get()); }
    uint16_t port(size_t listener = 0) const {
        uint16_t port = 0;
        check(rf_engine_listener_port(p_.get(), listener, &port));
        return port;
    }
    void post(size_t core, uint64_t tag, void *msg) { check(rf_engine_post(p_.get(), core, tag, msg)); }
    rf_stats stats(size_t core) const {
        rf_stats s{};
        check(rf_engine_stats(p_.get(), core, &s));
        return s;
    }
    void stop(uint64_t drain_ms) { check(rf_engine_stop(p_.get(), drain_ms)); }
    void wait() { check(rf_engine_wait(p_.get())); }

  private:
    static Handler &self(void *ud) { return *static_cast<Handler *>(ud); }
    template <class F>
    static void guarded(rf_core *c, F &&f) noexcept {
        Core core(c);
        try {
            f(core);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "ringfort: a handler threw: %s; stopping the engine\n", e.what());
            rf_core_stop_engine(c, 0);
        } catch (...) {
            std::fprintf(stderr, "ringfort: a handler threw; stopping the engine\n");
            rf_core_stop_engine(c, 0);
        }
    }
    detail::Owned<rf_engine, rf_engine_free> p_;
};

// A log configuration (rf_wal_config).
class WalConfig {
  public:
    WalConfig() : p_(detail::must(rf_wal_config_new())) {}
    WalConfig &segment_size(uint64_t b) { check(rf_wal_config_set_segment_size(p_.get(), b)); return *this; }
    WalConfig &block_size(size_t b) { check(rf_wal_config_set_block_size(p_.get(), b)); return *this; }
    WalConfig &batch_bytes(size_t b) { check(rf_wal_config_set_batch_bytes(p_.get(), b)); return *this; }
    WalConfig &max_record(size_t b) { check(rf_wal_config_set_max_record(p_.get(), b)); return *this; }
    WalConfig &durability(rf_durability d) {
        check(rf_wal_config_set_durability(p_.get(), static_cast<uint32_t>(d)));
        return *this;
    }
    WalConfig &recovery(rf_recovery_mode m) {
        check(rf_wal_config_set_recovery(p_.get(), static_cast<uint32_t>(m)));
        return *this;
    }
    const rf_wal_config *get() const noexcept { return p_.get(); }

  private:
    detail::Owned<rf_wal_config, rf_wal_config_free> p_;
};

// A standalone, thread-safe write-ahead log (rf_wal); closed and freed when destroyed.
class Wal {
  public:
    explicit Wal(const std::string &dir, const WalConfig *cfg = nullptr, rf_wal_report *report = nullptr) {
        rf_wal *w = nullptr;
        check(rf_wal_open(dir.c_str(), cfg ? cfg->get() : nullptr, report, &w));
        p_.reset(w);
    }
    uint64_t append(std::string_view bytes) {
        uint64_t lsn = 0;
        check(rf_wal_append(p_.get(), bytes.data(), bytes.size(), &lsn));
        return lsn;
    }
    void flush() { check(rf_wal_flush(p_.get())); }
    uint64_t next_lsn() const {
        uint64_t next = 0;
        check(rf_wal_lsns(p_.get(), &next, nullptr));
        return next;
    }
    size_t truncate_prefix(uint64_t checkpoint) {
        size_t n = 0;
        check(rf_wal_truncate_prefix(p_.get(), checkpoint, &n));
        return n;
    }
    void close() { check(rf_wal_close(p_.get())); }

  private:
    detail::Owned<rf_wal, rf_wal_free> p_;
};

// One record a reader yielded, copied out.
struct Record {
    uint64_t lsn;
    std::string bytes;
};

// A replay iterator over a log directory (rf_wal_reader).
class WalReader {
  public:
    explicit WalReader(const std::string &dir, uint64_t from = 0,
                       rf_recovery_mode mode = RF_RECOVERY_TOLERATE_TAIL) {
        rf_wal_reader *r = nullptr;
        check(rf_wal_reader_open(dir.c_str(), from, static_cast<uint32_t>(mode), &r));
        p_.reset(r);
    }
    // The next record, or nothing at the end of the log.
    std::optional<Record> next() {
        rf_record rec{};
        rf_status s = rf_wal_reader_next(p_.get(), &rec);
        if (s == RF_DONE) return std::nullopt;
        check(s);
        return Record{rec.lsn, std::string(reinterpret_cast<const char *>(rec.data), rec.len)};
    }
    rf_wal_report report() const {
        rf_wal_report r{};
        check(rf_wal_reader_report(p_.get(), &r));
        return r;
    }

  private:
    detail::Owned<rf_wal_reader, rf_wal_reader_free> p_;
};

}  // namespace ringfort

#endif
