// SHA-256 (FIPS 180-4), for cache keys and bundle integrity.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace flashmla {

class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, std::size_t size);
  Sha256& update(std::string_view text) { return update(text.data(), text.size()); }
  // Length-prefixed update: ("ab","c") and ("a","bc") hash differently.
  Sha256& field(std::string_view text);
  std::array<uint8_t, 32> digest();
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  std::size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view data);

}  // namespace flashmla
