#include "tools/decode_timer.hpp"

#include <algorithm>
#include <random>
#include <vector>

#include "jit/driver.hpp"
#include "tools/half.hpp"

namespace flashmla {

void fill_random(DeviceBuffer& buf, std::size_t elems, DType dtype, uint64_t seed) {
  std::vector<uint16_t> host(std::min<std::size_t>(elems, std::size_t(1) << 24));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (auto& v : host) v = float_to_half_bits(dist(rng), dtype);
  for (std::size_t done = 0; done < elems; done += host.size()) {
    const std::size_t n = std::min(host.size(), elems - done);
    buf.upload(host.data(), n * 2, done * 2);
  }
}

autotune::Timing time_decode(const DecodeShape& shape, const DecodeArgs& args, const MlaMetadata& md, int runs,
                             DeviceBuffer& l2_flush) {
  const auto& d = jit::driver();
  for (int i = 0; i < 3; ++i) mla_decode(shape, args, md, nullptr);  // warm-up (module load, caches)
  CUevent start, stop;
  FLASHMLA_CU(d.cuEventCreate(&start, CU_EVENT_DEFAULT));
  FLASHMLA_CU(d.cuEventCreate(&stop, CU_EVENT_DEFAULT));
  std::vector<double> us;
  for (int i = 0; i < runs; ++i) {
    FLASHMLA_CU(d.cuMemsetD8(l2_flush.ptr(), static_cast<unsigned char>(i), l2_flush.bytes()));
    FLASHMLA_CU(d.cuEventRecord(start, nullptr));
    mla_decode(shape, args, md, nullptr);
    FLASHMLA_CU(d.cuEventRecord(stop, nullptr));
    FLASHMLA_CU(d.cuEventSynchronize(stop));
    float ms = 0;
    FLASHMLA_CU(d.cuEventElapsedTime(&ms, start, stop));
    us.push_back(ms * 1000.0);
  }
  FLASHMLA_CU(d.cuEventDestroy(start));
  FLASHMLA_CU(d.cuEventDestroy(stop));
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() / 5], us[std::min(us.size() - 1, us.size() * 4 / 5)]};
}

}  // namespace flashmla
