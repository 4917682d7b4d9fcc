// Counter-based random numbers: every value is a pure function of (seed, stream, index), so
// initializers, dropout masks and shuffles are reproducible bit for bit on any thread or rank
// count. Not a statistical-quality generator for simulation; it is splitmix64 mixing.
#pragma once

#include <cmath>
#include <cstdint>

namespace mpiflow {

inline uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// 64 random bits for element `index` of stream `stream` under `seed`.
inline uint64_t RandomBits(uint64_t seed, uint64_t stream, uint64_t index) {
  return Mix64(Mix64(seed ^ Mix64(stream)) ^ index);
}

// Uniform in [0, 1) with 53 random bits.
inline double RandomUniform01(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<double>(RandomBits(seed, stream, index) >> 11) * 0x1.0p-53;
}

// Standard normal truncated to [-2, 2] (values beyond are redrawn with the next attempt).
inline double RandomTruncatedNormal(uint64_t seed, uint64_t stream, uint64_t index) {
  for (uint64_t attempt = 0;; ++attempt) {
    const uint64_t base = (index << 8) | (attempt & 0xff);
    const double u1 = 1.0 - RandomUniform01(seed, stream, 2 * base);  // (0, 1]
    const double u2 = RandomUniform01(seed, stream, 2 * base + 1);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    if (z >= -2.0 && z <= 2.0) return z;
  }
}

}  // namespace mpiflow
