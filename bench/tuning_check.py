#!/usr/bin/env python3
"""The autotuner's device round (issue 4): a full `flashmla tune` over PERF.md's rows (its
wall time recorded), then every row timed again with the heuristic config and with the
tuned one, twice each, into one JSON record. The spread between two runs of the same config
is the noise; "tuned is never slower beyond noise" means tuned_us <= heuristic_us * (1 + noise).

    bench/tuning_check.py BUILD_DIR OUT_DIR [--commit C]

Writes OUT_DIR/tuning.json (the record) and OUT_DIR/table.json (the table, for configs/).
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import tempfile
import time


def bench(cli, row, config, runs=30):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([cli, "bench", "-b", str(row["b"]), "--s-q", str(row["s_q"]), "--h-q", str(row["h_q"]),
                        "--s-k", str(row["s_k"]), "--config", config, "--runs", str(runs), "--json", f.name],
                       check=True, capture_output=True)
        return json.load(open(f.name))["rows"][0]["us"]


def batch_bucket(b):  # as autotune/tuning_table.cpp
    return 0 if b <= 1 else math.ceil(math.log2(b))


def seqlen_bucket(s_k):
    return max(6, 0 if s_k <= 1 else math.ceil(math.log2(s_k)))


def config_id(c):  # KernelConfig::id()
    return "-".join([c["family"], c["dtype"], f"l{c['latent_dim']}", f"r{c['rope_dim']}", f"p{c['page_size']}",
                     f"q{c['block_size_q']}", f"k{c['block_size_k']}", f"w{c['num_warps']}", f"s{c['num_stages']}",
                     c["arch"]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("out")
    ap.add_argument("--commit", default=os.environ.get("FLASHMLA_COMMIT", "unknown"))
    a = ap.parse_args()
    cli = os.path.join(a.build, "flashmla")
    os.makedirs(a.out, exist_ok=True)
    table_path = os.path.join(a.out, "table.json")
    start = time.time()
    subprocess.run([cli, "tune", "--out", table_path], check=True)
    tune_minutes = (time.time() - start) / 60
    table = json.load(open(table_path))
    rows = [(128, 1, 16, 4096), (128, 1, 16, 16384), (128, 1, 64, 8192), (128, 1, 128, 4096), (128, 1, 128, 16384),
            (128, 2, 128, 4096), (128, 2, 128, 8192), (1, 1, 128, 65536), (4, 1, 128, 4096), (8, 1, 128, 8192),
            (32, 1, 16, 4096)]
    record = {"gpu": table["device"]["name"], "date": datetime.date.today().isoformat(), "commit": a.commit,
              "tune_minutes": tune_minutes, "rows": []}
    for b, s_q, h_q, s_k in rows:
        row = {"b": b, "s_q": s_q, "h_q": h_q, "s_k": s_k}
        entry = next((e for e in table["entries"] if e["key"]["h_q"] == h_q and e["key"]["s_q"] == s_q
                      and e["key"]["batch_bucket"] == batch_bucket(b) and e["key"]["seqlen_bucket"] == seqlen_bucket(s_k)),
                     None)
        if entry is None:
            row["error"] = "no table entry (every candidate failed?)"
            record["rows"].append(row)
            continue
        heuristic = entry["heuristic_config"]
        tuned = config_id(entry["config"])
        h = [bench(cli, row, heuristic) for _ in range(2)]
        t = [bench(cli, row, tuned) for _ in range(2)]
        noise = max(abs(h[0] - h[1]) / min(h), abs(t[0] - t[1]) / min(t))
        row.update(heuristic_config=heuristic, heuristic_us=h, tuned_config=tuned, tuned_us=t, noise=noise,
                   tuned_not_slower=min(t) <= max(h) * (1 + noise))
        record["rows"].append(row)
        print(json.dumps(row))
    json.dump(record, open(os.path.join(a.out, "tuning.json"), "w"), indent=2)
    print(f"tune took {tune_minutes:.1f} minutes; all rows tuned <= heuristic within noise:",
          all(r.get("tuned_not_slower", False) for r in record["rows"]))


if __name__ == "__main__":
    main()
