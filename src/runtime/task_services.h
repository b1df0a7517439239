// Services a running task offers to the readers and writers implemented inside Sluice.
#pragma once

#include <boost/asio/any_io_executor.hpp>

namespace sluice::internal {

class TaskServices {
 public:
  virtual ~TaskServices() = default;
  // Schedules the task to run again soon. Any thread.
  virtual void Wake() = 0;
  // The executor of the job's worker pool, for asynchronous I/O that completes on a worker.
  virtual boost::asio::any_io_executor executor() = 0;
};

}  // namespace sluice::internal
