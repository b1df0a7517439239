// WatermarkCombiner: one watermark and one idle/active status from several inputs (the channels
// of an input gate, the two gates of a two-input operator, the splits of a source subtask), with
// Flink's semantics (StatusWatermarkValve for channels, CombinedWatermarkStatus for splits).
// Internal.
//
//   WatermarkCombiner c(WatermarkCombiner::Mode::kChannels);
//   int a = c.AddInput(), b = c.AddInput();
//   c.UpdateWatermark(a, 100);   // c.watermark() == kMinWatermark: b holds it back
//   c.SetIdle(b, true);          // c.watermark() == 100: idle inputs are left out
//   CombinedOutput out;          // what the owner told downstream so far
//   out.Sync(c, on_status, on_watermark);
//
// Not thread-safe: a combiner belongs to one task. Status changes are rare control events; every
// call is O(number of inputs).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include <sluice/core/status.h>
#include <sluice/time/time.h>

namespace sluice::internal {

class WatermarkCombiner {
 public:
  enum class Mode {
    // Channels and gates (Flink's StatusWatermarkValve): an input that becomes active again
    // while its watermark is behind the combined one is left out until it catches up, so it
    // neither lowers the combined watermark nor holds it back.
    kChannels,
    // Splits of a source (Flink's CombinedWatermarkStatus): every active input counts, including
    // one that is behind; the combined watermark then waits (it never decreases) until it
    // catches up. A new split starts at kMinWatermark and holds the watermark back likewise.
    kSplits,
  };

  explicit WatermarkCombiner(Mode mode = Mode::kChannels) : mode_(mode) {}
  // With `inputs` active inputs at kMinWatermark, indexes 0 .. inputs - 1.
  WatermarkCombiner(Mode mode, int inputs) : mode_(mode), inputs_(static_cast<size_t>(inputs)) {}

  // Adds an active input at kMinWatermark and returns its index, reusing the slot of a released
  // input. The combined status becomes active if it was idle.
  int AddInput() {
    Input fresh;
    fresh.aligned = fresh.watermark >= watermark_;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      if (inputs_[i].released) {
        inputs_[i] = fresh;
        Recompute();
        return static_cast<int>(i);
      }
    }
    inputs_.push_back(fresh);
    Recompute();
    return static_cast<int>(inputs_.size() - 1);
  }

  // Input `i` reports watermark `w` (ignored unless it advances that input). A watermark of an
  // idle input is remembered but does not count until the input is active again.
  void UpdateWatermark(int i, Timestamp w) {
    Input& in = at(i);
    if (w <= in.watermark) return;
    in.watermark = w;
    if (in.idle) return;
    if (in.watermark >= watermark_) in.aligned = true;
    Recompute();
  }

  // Input `i` became idle (true) or active (false).
  void SetIdle(int i, bool idle) {
    Input& in = at(i);
    if (in.idle == idle) return;
    in.idle = idle;
    in.aligned = !idle && in.watermark >= watermark_;
    Recompute();
  }

  // Input `i` ended or was removed: it no longer holds the watermark back (as if it were at
  // +infinity) and no longer counts for the status. Its index may be reused by AddInput().
  void Release(int i) {
    at(i).released = true;
    Recompute();
  }

  // The combined watermark: never decreases.
  Timestamp watermark() const { return watermark_; }
  // True when every input that is not released is idle (and there is at least one). With no
  // inputs left the status and the watermark stay as they were.
  bool idle() const { return idle_; }
  bool input_idle(int i) const { return inputs_[static_cast<size_t>(i)].idle; }
  Timestamp input_watermark(int i) const { return inputs_[static_cast<size_t>(i)].watermark; }

 private:
  struct Input {
    Timestamp watermark = kMinWatermark;
    bool idle = false;
    // kChannels: active and not behind the combined watermark, so it takes part in the minimum.
    bool aligned = true;
    bool released = false;
  };

  Input& at(int i) {
    SLUICE_CHECK(i >= 0 && static_cast<size_t>(i) < inputs_.size() &&
                 !inputs_[static_cast<size_t>(i)].released);
    return inputs_[static_cast<size_t>(i)];
  }

  void Recompute() {
    bool any_open = false;
    bool any_active = false;
    bool any_counted = false;
    Timestamp min = kMaxWatermark;
    for (const Input& in : inputs_) {
      if (in.released) continue;
      any_open = true;
      if (in.idle) continue;
      any_active = true;
      if (mode_ == Mode::kChannels && !in.aligned) continue;
      any_counted = true;
      min = std::min(min, in.watermark);
    }
    if (!any_open) return;
    // All idle: the watermark stays where it is (it does not jump to the inputs' maximum or to
    // +infinity); an idle input may still be behind and become active again.
    idle_ = !any_active;
    if (!idle_ && any_counted && min > watermark_) watermark_ = min;
  }

  Mode mode_;
  std::vector<Input> inputs_;
  Timestamp watermark_ = kMinWatermark;
  bool idle_ = false;
};

// What the owner of a combiner has told downstream. Sync() emits what changed, in the order
// downstream needs: ACTIVE before a watermark, IDLE after it.
struct CombinedOutput {
  Timestamp watermark = kMinWatermark;
  bool idle = false;

  // `on_status(bool idle)`, `on_watermark(Timestamp)`.
  template <typename OnStatus, typename OnWatermark>
  void Sync(const WatermarkCombiner& c, OnStatus&& on_status, OnWatermark&& on_watermark) {
    if (idle && !c.idle()) {
      idle = false;
      on_status(false);
    }
    if (c.watermark() > watermark) {
      watermark = c.watermark();
      on_watermark(watermark);
    }
    if (!idle && c.idle()) {
      idle = true;
      on_status(true);
    }
  }
};

}  // namespace sluice::internal
