// WorkerPool: N threads (the caller counts as worker 0) that run one
// function together and return when every worker finished it: the round
// barrier of the archive replay. Partitions are handed out inside a round
// by the caller's function (an atomic index), so a partition is only ever
// processed by one thread at a time and rounds never overlap.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kappa {

class WorkerPool {
 public:
  explicit WorkerPool(int workers) {
    for (int w = 1; w < workers; ++w) threads_.emplace_back([this, w] { Loop(w); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
      ++generation_;
    }
    start_.notify_all();
    for (auto& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int size() const { return static_cast<int>(threads_.size()) + 1; }

  // Runs fn(worker) on every worker, the caller as worker 0; returns when all
  // are done.
  void Run(const std::function<void(int)>& fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      running_ = static_cast<int>(threads_.size());
      ++generation_;
    }
    start_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return running_ == 0; });
    fn_ = nullptr;
  }

 private:
  void Loop(int worker) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        start_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (quit_) return;
        fn = fn_;
      }
      (*fn)(worker);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (--running_ == 0) done_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* fn_ = nullptr;
  uint64_t generation_ = 0;
  int running_ = 0;
  bool quit_ = false;
};

}  // namespace kappa
