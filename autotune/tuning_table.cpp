#include "autotune/tuning_table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/config_json.hpp"
#include "flashmla/error.hpp"

namespace flashmla::autotune {
namespace {

using nlohmann::json;

int line_of(const std::string& text, std::size_t byte) {
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + std::min(byte, text.size()), '\n'));
}

json key_json(const TuningKey& k) {
  return {{"family", std::string(to_string(k.family))}, {"dtype", std::string(to_string(k.dtype))},
          {"h_q", k.h_q}, {"s_q", k.s_q}, {"h_kv", k.h_kv}, {"page_size", k.page_size},
          {"latent_dim", k.latent_dim}, {"batch_bucket", k.batch_bucket}, {"seqlen_bucket", k.seqlen_bucket}};
}

TuningKey key_from(const json& j) {
  TuningKey k;
  k.family = parse_family(j.at("family").get<std::string>(), "tuning key");
  k.dtype = parse_dtype(j.at("dtype").get<std::string>());
  k.h_q = j.at("h_q"), k.s_q = j.at("s_q"), k.h_kv = j.at("h_kv"), k.page_size = j.at("page_size");
  k.latent_dim = j.at("latent_dim"), k.batch_bucket = j.at("batch_bucket"), k.seqlen_bucket = j.at("seqlen_bucket");
  return k;
}

}  // namespace

std::string TuningKey::describe() const {
  return fmt::format("{} {} h_q={} s_q={} h_kv={} page={} latent={} b~2^{} s_k~2^{}", to_string(family),
                     to_string(dtype), h_q, s_q, h_kv, page_size, latent_dim, batch_bucket, seqlen_bucket);
}

int batch_bucket(int b) { return b <= 1 ? 0 : static_cast<int>(std::ceil(std::log2(double(b)))); }

int seqlen_bucket(double mean_seqlen) {
  return std::max(6, mean_seqlen <= 1 ? 0 : static_cast<int>(std::ceil(std::log2(mean_seqlen))));
}

TuningKey make_key(const DecodeShape& s, double mean_seqlen) {
  TuningKey k;
  k.dtype = s.dtype, k.h_q = s.h_q, k.s_q = s.s_q, k.h_kv = s.h_kv, k.page_size = s.page_size;
  k.latent_dim = s.latent_dim, k.batch_bucket = batch_bucket(s.b), k.seqlen_bucket = seqlen_bucket(mean_seqlen);
  return k;
}

std::string gpu_slug(const std::string& name) {
  std::string slug;
  for (char ch : name) {
    if (std::isalnum(static_cast<unsigned char>(ch)))
      slug += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    else if (!slug.empty() && slug.back() != '-')
      slug += '-';
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return slug;
}

TuningTable parse_table(const std::string& text, const std::string& origin) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw InvalidArgument(fmt::format("{}:{}: not valid JSON ({})", origin, line_of(text, e.byte), e.what()));
  }
  TuningTable t;
  t.origin = origin;
  std::size_t entry_index = 0;
  try {
    if (doc.value("format", "") != kTableFormat)
      throw InvalidArgument(fmt::format("format is '{}', expected {}", doc.value("format", ""), kTableFormat));
    const json& d = doc.at("device");
    t.device = {d.at("name"), d.at("sm_count"), d.at("arch"), d.at("driver"), d.at("nvrtc"), d.at("library"),
                d.at("date")};
    for (const json& e : doc.at("entries")) {
      TuningEntry entry;
      entry.key = key_from(e.at("key"));
      entry.config = config_from_json(e.at("config"));
      entry.median_us = e.at("median_us");
      entry.heuristic_config = e.value("heuristic_config", "");
      entry.heuristic_us = e.value("heuristic_us", 0.0);
      for (const json& c : e.value("candidates", json::array())) {
        Candidate cand;
        cand.config_id = c.at("config_id");
        if (c.contains("median_us"))
          cand.timing = Timing{c.at("median_us"), c.value("p20_us", 0.0), c.value("p80_us", 0.0)};
        cand.failure = c.value("failure", "");
        entry.candidates.push_back(std::move(cand));
      }
      t.entries.push_back(std::move(entry));
      ++entry_index;
    }
  } catch (const std::exception& e) {  // json type/key errors and bad config fields
    // Point at the failing entry: the n-th "key" after "entries" (line 1 outside the entries).
    std::size_t at = text.find("\"entries\"");
    for (std::size_t i = 0; at != std::string::npos && i <= entry_index; ++i) at = text.find("\"key\"", at + 1);
    const bool in_entries = doc.contains("entries") && entry_index < doc["entries"].size();
    throw InvalidArgument(fmt::format("{}:{}: {}{}", origin, in_entries && at != std::string::npos ? line_of(text, at) : 1,
                                      in_entries ? fmt::format("entry {}: ", entry_index) : "", e.what()));
  }
  return t;
}

std::string dump_table(const TuningTable& t) {
  json entries = json::array();
  for (const auto& e : t.entries) {
    json candidates = json::array();
    for (const auto& c : e.candidates) {
      if (c.timing)
        candidates.push_back({{"config_id", c.config_id}, {"median_us", c.timing->median_us},
                              {"p20_us", c.timing->p20_us}, {"p80_us", c.timing->p80_us}});
      else
        candidates.push_back({{"config_id", c.config_id}, {"failure", c.failure}});
    }
    entries.push_back({{"key", key_json(e.key)}, {"config", to_json(e.config)}, {"median_us", e.median_us},
                       {"heuristic_config", e.heuristic_config}, {"heuristic_us", e.heuristic_us},
                       {"candidates", candidates}});
  }
  const json doc = {{"format", kTableFormat},
                    {"device",
                     {{"name", t.device.name}, {"sm_count", t.device.sm_count}, {"arch", t.device.arch},
                      {"driver", t.device.driver}, {"nvrtc", t.device.nvrtc}, {"library", t.device.library},
                      {"date", t.device.date}}},
                    {"entries", entries}};
  return doc.dump(1) + "\n";
}

std::optional<std::string> stale_reason(const TuningTable& t, const DeviceStamp& here) {
  if (t.device.name != here.name || t.device.sm_count != here.sm_count)
    return fmt::format("measured on {} ({} SMs), this is {} ({} SMs)", t.device.name, t.device.sm_count, here.name,
                       here.sm_count);
  if (t.device.library != here.library)
    return fmt::format("made by flashmla {}, this is {}", t.device.library, here.library);
  return std::nullopt;
}

Choice lookup(const std::vector<TuningTable>& tables, const TuningKey& key) {
  const TuningEntry* best = nullptr;
  const TuningTable* best_table = nullptr;
  int best_distance = INT_MAX;
  for (const auto& t : tables)
    for (const auto& e : t.entries) {
      const TuningKey& k = e.key;
      if (k.family != key.family || k.dtype != key.dtype || k.h_q != key.h_q || k.s_q != key.s_q ||
          k.h_kv != key.h_kv || k.page_size != key.page_size || k.latent_dim != key.latent_dim)
        continue;
      const int distance = std::abs(k.batch_bucket - key.batch_bucket) + std::abs(k.seqlen_bucket - key.seqlen_bucket);
      if (distance < best_distance) best = &e, best_table = &t, best_distance = distance;
    }
  Choice c;
  if (!best) {
    c.explanation = fmt::format("no tuning entry for {}; heuristic", key.describe());
    return c;
  }
  c.config = best->config;
  c.explanation =
      best_distance == 0
          ? fmt::format("tuning entry for {} in {}: {} ({:.1f} us; heuristic {} {:.1f} us)", key.describe(),
                        best_table->origin, best->config.id(), best->median_us, best->heuristic_config,
                        best->heuristic_us)
          : fmt::format("nearest tuning entry to {} in {} ({} bucket steps away: b~2^{} s_k~2^{}): {}", key.describe(),
                        best_table->origin, best_distance, best->key.batch_bucket, best->key.seqlen_bucket,
                        best->config.id());
  return c;
}

}  // namespace flashmla::autotune
