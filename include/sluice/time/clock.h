// Clocks: where processing time comes from. Inject a ManualClock in tests so processing-time
// windows, timers and watermark intervals are deterministic.
//
//   auto clock = std::make_shared<sluice::ManualClock>(/*start_millis=*/0);
//   sluice::StreamEnvironment env({.clock = clock});
//   ... start the job ...
//   clock->Advance(absl::Seconds(5));   // fires processing-time timers due by then
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

#include <sluice/time/time.h>

namespace sluice {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual Timestamp NowMillis() const = 0;
  // True when time only moves through explicit calls (the runtime then never sleeps on it but is
  // woken by AddListener callbacks).
  virtual bool IsManual() const { return false; }
  // Registers `fn` to be called after the clock moved (manual clocks only). Returns an id.
  virtual int AddListener(std::function<void()> /*fn*/) { return -1; }
  virtual void RemoveListener(int /*id*/) {}
};

class SystemClock final : public Clock {
 public:
  Timestamp NowMillis() const override { return absl::ToUnixMillis(absl::Now()); }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(Timestamp start_millis = 0) : now_(start_millis) {}

  Timestamp NowMillis() const override { return now_.load(std::memory_order_acquire); }
  bool IsManual() const override { return true; }

  void Advance(absl::Duration d) { Set(NowMillis() + ToMillis(d)); }
  // Moves the clock to `millis` (never backwards) and wakes the jobs that use it.
  void Set(Timestamp millis) {
    Timestamp cur = now_.load(std::memory_order_acquire);
    while (millis > cur && !now_.compare_exchange_weak(cur, millis, std::memory_order_acq_rel)) {
    }
    // Called under the lock, so RemoveListener() returns only when no call is in flight.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, fn] : listeners_) fn();
  }

  int AddListener(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    listeners_.emplace_back(next_id_, std::move(fn));
    return next_id_++;
  }
  void RemoveListener(int id) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(listeners_, [id](const auto& l) { return l.first == id; });
  }

 private:
  std::atomic<Timestamp> now_;
  std::mutex mu_;
  std::vector<std::pair<int, std::function<void()>>> listeners_;
  int next_id_ = 0;
};

}  // namespace sluice
