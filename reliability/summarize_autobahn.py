#!/usr/bin/env python3
"""Summarises an Autobahn fuzzingclient report: verdict counts per agent,
and every case where the relay's verdict differs from the direct one.

Exit 0 when every case of groups 1-10 through the relay ends OK, NON-STRICT
or INFORMATIONAL with the same verdict as direct; 1 otherwise."""
import collections
import json
import sys

ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL"}


def group(case):
    return int(case.split(".")[0])


def main(path):
    with open(path) as f:
        index = json.load(f)
    direct = index.get("direct", {})
    relay = index.get("ecdn-relay", {})
    for agent, results in (("direct", direct), ("ecdn-relay", relay)):
        counts = collections.Counter(r["behavior"] for r in results.values())
        print(f"{agent:11} {len(results):4} cases  " + "  ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    failures = []
    for case in sorted(relay, key=lambda c: [int(x) for x in c.split(".")]):
        ours = relay[case]["behavior"]
        theirs = direct.get(case, {}).get("behavior")
        if group(case) <= 10 and (ours not in ACCEPTABLE or ours != theirs):
            failures.append(f"  {case}: relay {ours}, direct {theirs}")
    deflate = [c for c in relay if group(c) in (12, 13)]
    if deflate:
        counts = collections.Counter(relay[c]["behavior"] for c in deflate)
        print(f"permessage-deflate (12.*, 13.*): {dict(counts)} — the origin implements no compression")
    if failures:
        print(f"{len(failures)} case(s) of groups 1-10 fail or differ from direct:")
        print("\n".join(failures))
        return 1
    ok = sum(1 for c in relay if group(c) <= 10)
    print(f"groups 1-10: all {ok} cases through the relay passed with the same verdicts as direct")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "target/autobahn/reports/index.json"))
