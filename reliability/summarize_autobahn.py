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
the relay's job is to change nothing.

Some verdicts race inside an origin (Python websockets fails the connection
on a bad frame while its echo of the previous message may or may not have
gone out: OK one run, NON-STRICT the next, directly). So a case that differs
is run again (autobahn.sh does it; the extra index files follow the first
on the command line), and it counts as the same when, over all runs, the
relay reached at least once a verdict the origin reached directly and every
verdict either way was OK or NON-STRICT (only the arrival of an echo before
the failure raced), or else every relay verdict is one seen directly. A
relay that always loses an echo the origin sends, or turns a pass into a
failure, still fails.

`--differing INDEX` prints the differing cases of groups 1-10 (all origins),
comma-separated, for autobahn.sh to run again."""
import collections
import json
import os
import sys

ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL"}
RACY = {"OK", "NON-STRICT"}
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


def differing(direct, relay):
    """Cases of groups 1-10 whose verdict differs between the two agents."""
    return [c for c in sorted(set(direct) | set(relay), key=case_key)
            if group(c) <= 10 and direct.get(c, {}).get("behavior") != relay.get(c, {}).get("behavior")]


def same_over_runs(d_verdicts, r_verdicts):
    """A racing case is the same when the relay reached a direct verdict at
    least once, and either only OK / NON-STRICT (echo timing) were seen or
    the relay reached nothing the origin did not reach directly."""
    d, r = set(d_verdicts), set(r_verdicts)
    return bool(d & r) and (d | r <= RACY or r <= d)


def tally(verdicts):
    return ", ".join(f"{v}×{n}" for v, n in sorted(collections.Counter(verdicts).items()))


def compare(name, direct, relay, reports_dir, reruns=()):
    """Prints one origin's comparison; returns its number of failures.
    `reruns`: further (direct, relay) results of the differing cases."""
    print(f"{name}")
    print(f"  direct {len(direct):4} cases  {counts(direct)}")
    print(f"  relay  {len(relay):4} cases  {counts(relay)}")
    differ = differing(direct, relay)
    bad_direct = [c for c in sorted(relay, key=case_key)
                  if group(c) <= 10 and c not in differ and relay[c]["behavior"] not in ACCEPTABLE]
    deflate = [c for c in relay if group(c) in (12, 13)]
    if deflate:
        d = collections.Counter(direct.get(c, {}).get("behavior") for c in deflate)
        r = collections.Counter(relay[c]["behavior"] for c in deflate)
        same = sum(1 for c in deflate if direct.get(c, {}).get("behavior") == relay[c]["behavior"])
        print(f"  permessage-deflate (12.*, 13.*): direct {dict(d)}, relay {dict(r)}, {same}/{len(deflate)} the same")
    racing = []
    for case in differ:
        d_all = [d.get(case, {}).get("behavior") for d in [direct] + [d for d, _ in reruns]]
        r_all = [r.get(case, {}).get("behavior") for r in [relay] + [r for _, r in reruns]]
        d_all, r_all = [v for v in d_all if v], [v for v in r_all if v]
        if reruns and same_over_runs(d_all, r_all):
            racing.append(case)
            print(f"  timing-dependent {case}: over {len(d_all)} runs direct {tally(d_all)}; relay {tally(r_all)}")
            continue
        print(f"  DIFFERS {case}:" + (f" over {len(d_all)} runs direct {tally(d_all)}; relay {tally(r_all)}" if reruns else ""))
        print(f"    direct: {seen(reports_dir, direct[case]) if case in direct else 'not run'}")
        print(f"    relay:  {seen(reports_dir, relay[case]) if case in relay else 'not run'}")
    differ = [c for c in differ if c not in racing]
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
    note = f" ({len(racing)} of them timing-dependent, see above)" if racing else ""
    print(f"  groups 1-10: {same}/{total} cases with the same verdict through the relay as direct{note}")
    return failures


def load(path):
    with open(path) as f:
        return json.load(f)


def main(path, *rerun_paths):
    index = load(path)
    reruns = [load(p) for p in rerun_paths]
    reports_dir = os.path.dirname(path)
    names = sorted({a.rsplit("-", 1)[0] for a in index if a.endswith(("-direct", "-relay"))},
                   key=lambda n: (n != OURS, n))
    if not names:
        print(f"{path}: no <origin>-direct / <origin>-relay agents found (agents: {sorted(index)})")
        return 1
    failures = 0
    for name in names:
        extra = [(r.get(f"{name}-direct", {}), r.get(f"{name}-relay", {})) for r in reruns]
        failures += compare(name, index.get(f"{name}-direct", {}), index.get(f"{name}-relay", {}),
                            reports_dir, extra)
    if failures:
        print(f"{failures} case(s) fail or differ from direct")
        return 1
    print(f"all {len(names)} origins: every case of groups 1-10 ends through the relay as it does directly")
    return 0


def print_differing(path):
    index = load(path)
    cases = set()
    for agent in index:
        if agent.endswith("-direct"):
            name = agent.rsplit("-", 1)[0]
            cases.update(differing(index[agent], index.get(f"{name}-relay", {})))
    print(",".join(sorted(cases, key=case_key)))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--differing"]:
        sys.exit(print_differing(args[1]))
    sys.exit(main(*(args or ["target/autobahn/reports/index.json"])))
