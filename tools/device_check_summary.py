#!/usr/bin/env python3
"""Summarises a tools/device-check.sh output folder into device-check.json and startup.json.

Usage: tools/device_check_summary.py OUT_DIR COMMIT   (also runs on logs fetched from the device)
"""
import datetime, json, os, re, sys, xml.etree.ElementTree as ET
out, commit = sys.argv[1], sys.argv[2]
gpu = re.findall(r"^GPU 0: ([^,]+),", open(f"{out}/ctest.log").read(), re.M)
tests = []
for case in ET.parse(f"{out}/ctest.xml").getroot().iter("testcase"):
    status = case.get("status", "run")
    if case.find("failure") is not None: status = "failed"
    elif case.find("skipped") is not None or status == "notrun": status = "skipped"
    else: status = "passed"
    tests.append({"name": case.get("name"), "status": status, "time_s": float(case.get("time", 0))})
gpu_cases = []
try:
    for case in ET.parse(f"{out}/gpu-tests.xml").getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        gpu_cases.append({"name": case.get("name"), "status": "failed" if failed else "passed"})
except Exception as e:
    gpu_cases.append({"name": "junit report unreadable", "status": "failed", "error": str(e)})
log = open(f"{out}/steps.log").read()
startup = []
if os.path.exists(f"{out}/startup.jsonl"):
    startup = [json.loads(l) for l in open(f"{out}/startup.jsonl") if l.startswith("{")]
    json.dump({"gpu": gpu[0] if gpu else "unknown", "date": datetime.date.today().isoformat(), "commit": commit,
               "runs": startup}, open(f"{out}/startup.json", "w"), indent=2)
    os.remove(f"{out}/startup.jsonl")  # folded into startup.json
bundle_rc = re.findall(r"bundle gpu tests exit (\d+)", log)
errors = sum(int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) error", log))
hazards = sum(int(n) for n in re.findall(r"RACECHECK SUMMARY: (\d+) hazard", log))
runs = len(re.findall(r"^exit \d+", log, re.M))
summary = {
    "gpu": gpu[0] if gpu else "unknown", "date": datetime.date.today().isoformat(), "commit": commit,
    "passed": sum(t["status"] == "passed" for t in tests),
    "failed": sum(t["status"] == "failed" for t in tests) + (1 if not bundle_rc or bundle_rc[0] != "0" else 0),
    "skipped": sum(t["status"] == "skipped" for t in tests), "tests": tests,
    "gpu_test_cases": gpu_cases, "sanitizer_runs": runs, "sanitizer_errors": errors, "racecheck_hazards": hazards,
    "sanitizer_nonzero_exits": len(re.findall(r"^exit [1-9]", log, re.M)),
    "bundle_gpu_tests_exit": int(bundle_rc[0]) if bundle_rc else None,
    "first_call": startup,
}
json.dump(summary, open(f"{out}/device-check.json", "w"), indent=2)
print(json.dumps({k: v for k, v in summary.items() if k not in ("tests", "gpu_test_cases")}))
