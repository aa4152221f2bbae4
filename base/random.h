// Deterministic pseudo-random numbers. The standard library's distributions
// differ between implementations, so kappa draws everything from this
// xoshiro256** generator (seeded by splitmix64): the same seed gives the same
// sequence everywhere. Not thread-safe: one instance per thread.
#pragma once

#include <cstdint>
#include <vector>

namespace kappa {

class Random {
 public:
  explicit Random(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, 1).
  double NextDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n).
  uint64_t Uniform(uint64_t n) { return n == 0 ? 0 : Next() % n; }
  bool Bernoulli(double p) { return NextDouble() < p; }

 private:
  uint64_t s_[4];
};

// Samples ranks 0..n-1 with probability proportional to 1/(rank+1)^exponent.
class ZipfSampler {
 public:
  ZipfSampler(uint64_t n, double exponent);
  uint64_t Sample(Random& random) const;

 private:
  std::vector<double> cdf_;
};

}  // namespace kappa
