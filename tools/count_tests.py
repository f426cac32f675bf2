#!/usr/bin/env python3
"""Counts test cases from a Bazel build-event JSON file and each test's XML.

Prints "N passed, N failed" as the last line. A test target that failed to build, timed out or
crashed without XML counts as one failed case; a skipped test case counts as failed (CI runs as
root with every package installed, so nothing may skip). Exit status 1 if anything failed.

  count_tests.py BEP_JSON FORMAT_FAILED(0|1) [BAZEL_EXIT_STATUS]
"""
import json
import os
import sys
import xml.etree.ElementTree as ET


def xml_counts(path):
    """Returns (passed, failed, failed_names) from a JUnit XML file."""
    tree = ET.parse(path)
    passed, failed, names = 0, 0, []
    for case in tree.iter("testcase"):
        name = "%s.%s" % (case.get("classname", ""), case.get("name", ""))
        bad = (case.find("failure") is not None or case.find("error") is not None)
        skipped = case.find("skipped") is not None or case.get("result") == "skipped"
        if case.get("status") == "notrun":
            continue  # DISABLED_ tests: not part of the suite
        if bad or skipped:
            failed += 1
            names.append(name + (" (skipped)" if skipped and not bad else ""))
        else:
            passed += 1
    return passed, failed, names


def main():
    bep_path, format_failed = sys.argv[1], sys.argv[2] == "1"
    bazel_rc = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    targets = {}  # label -> (status, [xml paths])
    configured = set()
    aborted = set()
    with open(bep_path) as f:
        for line in f:
            ev = json.loads(line)
            eid = ev.get("id", {})
            if "targetConfigured" in eid and ev.get("configured", {}).get("testSize"):
                configured.add(eid["targetConfigured"]["label"])
            if "targetCompleted" in eid and ev.get("aborted"):
                aborted.add(eid["targetCompleted"]["label"])
            if "testSummary" in eid:
                label = eid["testSummary"]["label"]
                summ = ev.get("testSummary", {})
                status = summ.get("overallStatus", "NO_STATUS")
                targets[label] = status
            if "testResult" in eid:
                label = eid["testResult"]["label"]
                for out in ev.get("testResult", {}).get("testActionOutput", []):
                    if out.get("name") == "test.xml":
                        uri = out.get("uri", "")
                        if uri.startswith("file://"):
                            targets.setdefault(label + "#xml", []).append(uri[len("file://"):])
    passed = failed = 0
    failures = []
    labels = sorted(set(configured) | {k for k in targets if not k.endswith("#xml")})
    for label in labels:
        status = targets.get(label)
        xmls = [p for p in targets.get(label + "#xml", []) if os.path.exists(p)]
        p = fl = 0
        names = []
        for x in xmls:
            try:
                a, b, n = xml_counts(x)
            except ET.ParseError:
                a, b, n = 0, 1, ["unreadable test.xml"]
            p, fl, names = p + a, fl + b, names + n
        if status == "PASSED" and fl == 0 and p > 0:
            passed += p
        elif status == "PASSED" and p == 0 and fl == 0:
            passed += 1
        else:
            bad = max(fl, 1)
            passed += p
            failed += bad
            failures.append("%s: %s %s" % (label, status or "NOT BUILT", ", ".join(names[:10])))
    if format_failed:
        failed += 1
        failures.append("clang-format check")
    else:
        passed += 1
    # A target that is not a test (a binary, a library, a benchmark) failing to build fails the
    # build without failing any test: count it, so the summary never says "0 failed" then.
    if bazel_rc != 0 and not failures:
        failed += 1
        failures.append("bazel exited with status %d (a non-test target failed to build?)"
                        % bazel_rc)
    for f in failures:
        print("FAILED: " + f)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
