// Runs the wgmma probe (tests/wgmma_probe.hpp) on a Hopper GPU: the K-major product must
// match the CPU, and one of the two candidate MN-major descriptor encodings must match too
// (the test says which); the decode_wgmma family will use that encoding for V.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "jit/driver.hpp"
#include "jit/nvrtc.hpp"
#include "tests/wgmma_probe.hpp"
#include "tools/device_buffer.hpp"
#include "tools/half.hpp"

using namespace flashmla;

namespace {

double rel_l2(const std::vector<float>& got, const std::vector<double>& want) {
  double e = 0, r = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    e += (got[i] - want[i]) * (got[i] - want[i]);
    r += want[i] * want[i];
  }
  return std::sqrt(e / r);
}

}  // namespace

TEST_CASE("wgmma from 128B-swizzled shared memory matches the CPU, K-major and MN-major B", "[gpu][wgmma]") {
  std::string why;
  if (!jit::driver_available(&why)) {
    WARN("skipped: " << why);
    return;
  }
  jit::ensure_context();
  const jit::DeviceInfo info = jit::current_device_info();
  if (info.cc_major != 9) {
    WARN("skipped: wgmma needs sm_90a; this GPU is sm_" << info.cc_major << info.cc_minor);
    return;
  }
  const auto& d = jit::driver();
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<uint16_t> a(4096), b(4096), v(4096);
  std::vector<float> fa(4096), fb(4096), fv(4096);
  for (int i = 0; i < 4096; ++i) {
    a[i] = float_to_bf16(uni(rng)), fa[i] = bf16_to_float(a[i]);
    b[i] = float_to_bf16(uni(rng)), fb[i] = bf16_to_float(b[i]);
    v[i] = float_to_bf16(uni(rng)), fv[i] = bf16_to_float(v[i]);
  }
  std::vector<double> want_k(4096, 0.0), want_mn(4096, 0.0);
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n)
      for (int k = 0; k < 64; ++k) {
        want_k[m * 64 + n] += double(fa[m * 64 + k]) * fb[n * 64 + k];
        want_mn[m * 64 + n] += double(fa[m * 64 + k]) * fv[k * 64 + n];
      }

  KernelConfig c;
  c.arch = Arch::parse("sm_90a");
  const jit::CompileOutput out = jit::compile(c, "wgmma_probe.cu", test::kWgmmaProbeSource);
  CUmodule module = nullptr;
  CUfunction fn = nullptr;
  FLASHMLA_CU(d.cuModuleLoadData(&module, out.cubin.data()));
  FLASHMLA_CU(d.cuModuleGetFunction(&fn, module, "wgmma_probe"));
  DeviceBuffer da(8192), db(8192), dv(8192), ck(4096 * 4), cmn(4096 * 4);
  da.upload(a), db.upload(b), dv.upload(v);

  // The MN-major field order, established on the H100 (2026-11-26): leading byte offset = the
  // step between 64-column tiles, stride byte offset = the step between groups of 8 rows. The
  // swapped order is not tried any more: its reads run past the shared buffer and fault the
  // context, which ends the program.
  {
    unsigned leading = 8192, stride = 1024;
    ck.poison(), cmn.poison();
    CUdeviceptr pa = da.ptr(), pb = db.ptr(), pv = dv.ptr(), pk = ck.ptr(), pmn = cmn.ptr();
    void* args[] = {&pa, &pb, &pv, &pk, &pmn, &leading, &stride};
    FLASHMLA_CU(d.cuLaunchKernel(fn, 1, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
    FLASHMLA_CU(d.cuCtxSynchronize());
    std::vector<float> got_k(4096), got_mn(4096);
    ck.download(got_k), cmn.download(got_mn);
    const double err_k = rel_l2(got_k, want_k), err_mn = rel_l2(got_mn, want_mn);
    INFO("MN-major descriptor leading " << leading << " stride " << stride << ": K-major error " << err_k
                                       << ", MN-major error " << err_mn);
    CHECK(err_k < 1e-5);
    CHECK(err_mn < 1e-5);
  }

  // m64n256k16 with B MN-major over four 64-column tiles: which offset steps along N.
  CUfunction fn256 = nullptr;
  FLASHMLA_CU(d.cuModuleGetFunction(&fn256, module, "wgmma_probe_n256"));
  std::vector<uint16_t> a16(64 * 16), w(16 * 256);
  std::vector<float> fa16(a16.size()), fw(w.size());
  for (std::size_t i = 0; i < a16.size(); ++i) a16[i] = float_to_bf16(uni(rng)), fa16[i] = bf16_to_float(a16[i]);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float_to_bf16(uni(rng)), fw[i] = bf16_to_float(w[i]);
  std::vector<double> want_w(64 * 256, 0.0);
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 256; ++n)
      for (int k = 0; k < 16; ++k) want_w[m * 256 + n] += double(fa16[m * 16 + k]) * fw[k * 256 + n];
  DeviceBuffer da16(a16.size() * 2), dw(w.size() * 2), dc(want_w.size() * 4);
  da16.upload(a16), dw.upload(w);
  {
    unsigned leading = 2048, stride = 1024;  // 64-column tiles of 16 rows; 8-row groups
    dc.poison();
    CUdeviceptr pa = da16.ptr(), pw = dw.ptr(), pc = dc.ptr();
    void* args[] = {&pa, &pw, &pc, &leading, &stride};
    FLASHMLA_CU(d.cuLaunchKernel(fn256, 1, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
    FLASHMLA_CU(d.cuCtxSynchronize());
    std::vector<float> got(want_w.size());
    dc.download(got);
    const double err = rel_l2(got, want_w);
    INFO("n256 MN-major descriptor leading " << leading << " stride " << stride << ": error " << err);
    CHECK(err < 1e-5);
  }
  FLASHMLA_CU(d.cuModuleUnload(module));
}
