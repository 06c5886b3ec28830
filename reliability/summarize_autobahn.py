#!/usr/bin/env python3
"""Summarises an Autobahn fuzzingclient report of reliability/autobahn.sh.

Agents come in pairs, `<origin>-direct` and `<origin>-relay` (the same
origin reached directly and through the relay). For each origin: verdict
counts for both, and every case of groups 1-10 whose verdict through the
relay differs from the direct one, with what the client saw each way (the
close code and reason it received, whether the close was clean, who dropped
TCP), read from the per-case reports.

Exit 0 when, for every origin, every case of groups 1-10 has the same
verdict through the relay as directly, and the embedded origin (ours) ends
every such case OK, NON-STRICT or INFORMATIONAL; 1 otherwise. A verdict that
is already bad directly on an origin that is not ours is listed, not failed:
the relay's job is to change nothing."""
import collections
import json
import os
import sys

ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL"}
OURS = "embedded"


def group(case):
    return int(case.split(".")[0])


def case_key(case):
    return [int(x) for x in case.split(".")]


def counts(results):
    c = collections.Counter(r["behavior"] for r in results.values())
    return "  ".join(f"{k}={v}" for k, v in sorted(c.items()))


def seen(reports_dir, result):
    """What the client saw at the end of one case, in one line."""
    try:
        with open(os.path.join(reports_dir, result["reportfile"])) as f:
            r = json.load(f)
    except (OSError, KeyError, ValueError):
        return f"close {result.get('remoteCloseCode')}"
    if r.get("remoteCloseCode") is None:
        got = "no close frame"
    else:
        got = f"close {r['remoteCloseCode']} {r.get('remoteCloseReason') or ''!r}"
    how = "clean" if r.get("wasClean") else f"unclean ({r.get('wasNotCleanReason')})"
    by = "client dropped TCP" if r.get("droppedByMe") else "server dropped TCP"
    return f"{r['behavior']}/{r['behaviorClose']}: {got}, {how}, {by}"


def compare(name, direct, relay, reports_dir):
    """Prints one origin's comparison; returns its number of failures."""
    print(f"{name}")
    print(f"  direct {len(direct):4} cases  {counts(direct)}")
    print(f"  relay  {len(relay):4} cases  {counts(relay)}")
    differ, bad_direct = [], []
    for case in sorted(set(direct) | set(relay), key=case_key):
        if group(case) > 10:
            continue
        d = direct.get(case, {}).get("behavior")
        r = relay.get(case, {}).get("behavior")
        if d != r:
            differ.append(case)
        elif r not in ACCEPTABLE:
            bad_direct.append(case)
    deflate = [c for c in relay if group(c) in (12, 13)]
    if deflate:
        d = collections.Counter(direct.get(c, {}).get("behavior") for c in deflate)
        r = collections.Counter(relay[c]["behavior"] for c in deflate)
        same = sum(1 for c in deflate if direct.get(c, {}).get("behavior") == relay[c]["behavior"])
        print(f"  permessage-deflate (12.*, 13.*): direct {dict(d)}, relay {dict(r)}, {same}/{len(deflate)} the same")
    for case in differ:
        print(f"  DIFFERS {case}:")
        print(f"    direct: {seen(reports_dir, direct[case]) if case in direct else 'not run'}")
        print(f"    relay:  {seen(reports_dir, relay[case]) if case in relay else 'not run'}")
    failures = len(differ)
    if bad_direct:
        label = "FAIL" if name == OURS else "note"
        print(f"  {label}: {len(bad_direct)} case(s) end badly the same way directly and through the relay:")
        for case in bad_direct:
            print(f"    {case}: {seen(reports_dir, relay[case])}")
        if name == OURS:
            failures += len(bad_direct)
    same = sum(1 for c in relay if group(c) <= 10 and c not in differ)
    total = sum(1 for c in set(direct) | set(relay) if group(c) <= 10)
    print(f"  groups 1-10: {same}/{total} cases with the same verdict through the relay as direct")
    return failures


def main(path):
    with open(path) as f:
        index = json.load(f)
    reports_dir = os.path.dirname(path)
    names = sorted({a.rsplit("-", 1)[0] for a in index if a.endswith(("-direct", "-relay"))},
                   key=lambda n: (n != OURS, n))
    if not names:
        print(f"{path}: no <origin>-direct / <origin>-relay agents found (agents: {sorted(index)})")
        return 1
    failures = 0
    for name in names:
        failures += compare(name, index.get(f"{name}-direct", {}), index.get(f"{name}-relay", {}), reports_dir)
    if failures:
        print(f"{failures} case(s) fail or differ from direct")
        return 1
    print(f"all {len(names)} origins: every case of groups 1-10 ends through the relay as it does directly")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "target/autobahn/reports/index.json"))
