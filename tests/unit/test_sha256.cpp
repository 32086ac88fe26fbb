// SHA-256 against the FIPS 180-4 / NIST example vectors, padding boundaries, chunked
// updates, and the length-prefixed field() framing used for cache keys.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "core/sha256.hpp"

namespace {

using flashmla::Sha256;
using flashmla::sha256_hex;

std::string hex(const std::array<uint8_t, 32>& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

// `data` fed to one Sha256 in pieces of random length (0 to max_chunk bytes).
std::string hash_in_chunks(const std::string& data, std::mt19937& rng, std::size_t max_chunk) {
  Sha256 h;
  std::uniform_int_distribution<std::size_t> len(0, max_chunk);
  std::size_t pos = 0;
  while (pos < data.size()) {
    const std::size_t n = std::min(len(rng), data.size() - pos);
    h.update(data.data() + pos, n);
    pos += n;
  }
  return h.hex_digest();
}

}  // namespace

TEST_CASE("FIPS 180-4 example vectors", "[sha256]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsm"
                   "nopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST_CASE("one million 'a' fed in uneven chunks", "[sha256]") {
  const std::string million(1000000, 'a');
  const std::string expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  CHECK(sha256_hex(million) == expected);
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  for (std::size_t max_chunk : {1u, 63u, 65u, 1000u, 100000u}) {
    INFO("max_chunk " << max_chunk);
    CHECK(hash_in_chunks(million, rng, max_chunk) == expected);
  }
  // Fixed uneven split across block boundaries: 1, 62, 2, 127, 129, rest.
  Sha256 h;
  std::size_t pos = 0;
  for (std::size_t n : {1u, 62u, 2u, 127u, 129u}) {
    h.update(million.data() + pos, n);
    pos += n;
  }
  h.update(std::string_view(million).substr(pos));
  CHECK(h.hex_digest() == expected);
}

TEST_CASE("padding boundaries around 55, 56 and 64 bytes", "[sha256]") {
  // Reference digests of 'a' * n (Python hashlib).
  const std::vector<std::pair<std::size_t, std::string>> vectors = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
  };
  for (const auto& [n, digest] : vectors) {
    INFO(n << " bytes");
    CHECK(sha256_hex(std::string(n, 'a')) == digest);
  }
}

TEST_CASE("digest() bytes agree with hex_digest(); random data hashes the same in any chunking", "[sha256]") {
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  std::string data(std::uniform_int_distribution<std::size_t>(1000, 5000)(rng), '\0');
  for (char& c : data) c = static_cast<char>(rng() & 0xff);
  const std::string whole = sha256_hex(data);
  CHECK(whole.size() == 64);
  CHECK(hex(Sha256().update(data).digest()) == whole);
  CHECK(hash_in_chunks(data, rng, 7) == whole);
  CHECK(hash_in_chunks(data, rng, 300) == whole);
  // One flipped bit changes the digest.
  std::string flipped = data;
  flipped[rng() % flipped.size()] ^= static_cast<char>(1 << (rng() % 8));
  CHECK(sha256_hex(flipped) != whole);
}

TEST_CASE("field() framing differs from plain concatenation", "[sha256]") {
  const auto fields = [](std::initializer_list<std::string_view> parts) {
    Sha256 h;
    for (auto p : parts) h.field(p);
    return h.hex_digest();
  };
  // Plain concatenation cannot tell where one part ends.
  CHECK(Sha256().update("ab").update("c").hex_digest() == Sha256().update("a").update("bc").hex_digest());
  // Length-prefixed fields can.
  CHECK(fields({"ab", "c"}) != fields({"a", "bc"}));
  CHECK(fields({"abc", ""}) != fields({"", "abc"}));
  CHECK(fields({"abc"}) != fields({"abc", ""}));
  CHECK(fields({"abc"}) != sha256_hex("abc"));
  CHECK(fields({"ab", "c"}) != sha256_hex("abc"));
  // Deterministic.
  CHECK(fields({"ab", "c"}) == fields({"ab", "c"}));
}
