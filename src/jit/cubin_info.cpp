#include "jit/cubin_info.hpp"

#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>

#include <fmt/format.h>

namespace flashmla::jit {
namespace {

// ELF64, little-endian (every CUDA cubin). Only the fields used here.
struct SectionHeader {
  std::uint32_t name, type;
  std::uint64_t flags, addr, offset, size;
  std::uint32_t link, info;
  std::uint64_t addralign, entsize;
};
static_assert(sizeof(SectionHeader) == 64);

constexpr std::uint32_t kSymtab = 2;
// .nv.info attribute encoding: u8 format, u8 attribute, then by format: none (1), one byte (2),
// u16 (3), or u16 length + that many bytes (4).
constexpr std::uint8_t kFormatNone = 1, kFormatByte = 2, kFormatHalf = 3, kFormatSized = 4;
// Sized attributes of the global .nv.info section: u32 symbol index, u32 value.
constexpr std::uint8_t kAttrRegCount = 0x2f, kAttrFrameSize = 0x11, kAttrMinStackSize = 0x12;

template <class T>
T load(std::string_view bytes, std::uint64_t at, const char* what) {
  if (at > bytes.size() || bytes.size() - at < sizeof(T))
    throw std::runtime_error(fmt::format("cubin: {} at byte {} lies past the end ({} bytes)", what, at, bytes.size()));
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof(T));
  return v;
}

std::string_view c_string(std::string_view bytes, std::uint64_t at) {
  if (at >= bytes.size()) throw std::runtime_error("cubin: a name lies past the end");
  const std::string_view rest = bytes.substr(at);
  const auto end = rest.find('\0');
  if (end == std::string_view::npos) throw std::runtime_error("cubin: unterminated name");
  return rest.substr(0, end);
}

}  // namespace

std::vector<CubinFunction> read_cubin_functions(std::string_view cubin) {
  if (cubin.size() < 64 || cubin.substr(0, 4) != "\x7f" "ELF" || cubin[4] != 2 || cubin[5] != 1)
    throw std::runtime_error("cubin: not a little-endian ELF64 file");
  const auto shoff = load<std::uint64_t>(cubin, 0x28, "section table offset");
  const auto shentsize = load<std::uint16_t>(cubin, 0x3a, "section entry size");
  const auto shnum = load<std::uint16_t>(cubin, 0x3c, "section count");
  const auto shstrndx = load<std::uint16_t>(cubin, 0x3e, "section name index");
  if (shentsize != sizeof(SectionHeader) || shstrndx >= shnum)
    throw std::runtime_error("cubin: unexpected section table layout");
  std::vector<SectionHeader> sections(shnum);
  for (std::uint16_t i = 0; i < shnum; ++i)
    sections[i] = load<SectionHeader>(cubin, shoff + std::uint64_t{i} * shentsize, "section header");
  auto section_bytes = [&](const SectionHeader& s) {
    if (s.offset > cubin.size() || cubin.size() - s.offset < s.size)
      throw std::runtime_error("cubin: a section lies past the end");
    return cubin.substr(s.offset, s.size);
  };
  const std::string_view names = section_bytes(sections[shstrndx]);

  // Symbol index -> name, from the symbol table and its string table.
  std::map<std::uint32_t, std::string> symbol_names;
  for (const auto& s : sections) {
    if (s.type != kSymtab) continue;
    if (s.link >= shnum) throw std::runtime_error("cubin: symbol table names no string table");
    const std::string_view table = section_bytes(s), strings = section_bytes(sections[s.link]);
    for (std::uint64_t at = 0, i = 0; at + 24 <= table.size(); at += 24, ++i)
      symbol_names[static_cast<std::uint32_t>(i)] = std::string(c_string(strings, load<std::uint32_t>(table, at, "symbol")));
  }

  std::vector<CubinFunction> out;
  auto entry_for = [&](std::uint32_t symbol) -> CubinFunction& {
    const auto name = symbol_names.find(symbol);
    if (name == symbol_names.end()) throw std::runtime_error(fmt::format("cubin: .nv.info names symbol {} that is not there", symbol));
    for (auto& f : out)
      if (f.symbol == name->second) return f;
    out.push_back(CubinFunction{name->second});
    return out.back();
  };
  for (const auto& s : sections) {
    if (c_string(names, s.name) != ".nv.info") continue;
    const std::string_view info = section_bytes(s);
    for (std::uint64_t at = 0; at + 2 <= info.size();) {
      const auto format = static_cast<std::uint8_t>(info[at]), attr = static_cast<std::uint8_t>(info[at + 1]);
      at += 2;
      if (format == kFormatNone) continue;
      if (format == kFormatByte) { at += 1; continue; }
      if (format == kFormatHalf) { at += 2; continue; }
      if (format != kFormatSized) throw std::runtime_error(fmt::format("cubin: unknown .nv.info format {}", format));
      const auto size = load<std::uint16_t>(info, at, ".nv.info attribute size");
      at += 2;
      if ((attr == kAttrRegCount || attr == kAttrFrameSize || attr == kAttrMinStackSize) && size == 8) {
        CubinFunction& f = entry_for(load<std::uint32_t>(info, at, ".nv.info symbol"));
        const int value = static_cast<int>(load<std::uint32_t>(info, at + 4, ".nv.info value"));
        (attr == kAttrRegCount ? f.registers : attr == kAttrFrameSize ? f.frame_bytes : f.min_stack_bytes) = value;
      }
      at += size;
    }
  }
  // Internal helpers (division slow paths...) carry a frame but no register count of their own.
  std::erase_if(out, [](const CubinFunction& f) { return f.registers < 0; });
  return out;
}

}  // namespace flashmla::jit
