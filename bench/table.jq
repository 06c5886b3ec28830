# Turns bench/compare.sh's results.jsonl (slurped) into one Markdown table:
# the median over rounds of each measure for each target, and the ratios
# relay÷nginx, relay÷HAProxy, relay÷direct. `load avg` is the range of the
# 1-minute load average seen before and after the runs of that row's test,
# `others` the range of the share of both cores spent in user mode by
# anything but the generator, the origin and the proxy under test (other
# engineers may have been compiling on the same 2 cores).

def median: map(select(. != null)) | sort
  | if length == 0 then null else .[(length - 1) / 2 | floor] end;
def num: if . == null then "–"
  elif (. | fabs) >= 100 then (. | round | tostring)
  elif (. | fabs) >= 10 then ((. * 10 | round) / 10 | tostring)
  else ((. * 100 | round) / 100 | tostring) end;
def ratio(a; b): if a == null or b == null or b == 0 then "–"
  else ((a / b * 100 | round) / 100 | tostring) + "×" end;

map(select((.set // "defaults") == $set))
| map(. + {proxy_us_per_msg:
  (if (.messages // 0) > 0 and .target != "direct" then .proxy_cpu_s / .messages * 1e6 else null end)})
| . as $all
| def m($test; $target; $path): [$all[] | select(.test == $test and .target == $target) | getpath($path)] | median;
  def load($test): [$all[] | select(.test == $test) | .load_before, .load_after] | map(select(. != null))
    | if length == 0 then "–" else "\(min)–\(max)" end;
  def others($test): [$all[] | select(.test == $test) | .other_user_pct] | map(select(. != null))
    | if length == 0 then "–" else "\(min | floor)–\(max | floor) %" end;
  def row($name; $test; $path; $better):
    [m($test; "direct"; $path), m($test; "nginx"; $path), m($test; "haproxy"; $path), m($test; "relay"; $path)] as [$d, $n, $h, $r]
    | "| \($name) (\($better)) | \($d | num) | \($n | num) | \($h | num) | \($r | num) | \(ratio($r; $n)) | \(ratio($r; $h)) | \(ratio($r; $d)) | \(load($test)) | \(others($test)) |";
  "| measure | direct | nginx | HAProxy | relay | relay÷nginx | relay÷HAProxy | relay÷direct | load avg | others |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
  row("echo 64 B × \($echo_n) sessions, msgs/s"; "echo64"; ["messages_per_s"]; "higher"),
  row("echo 64 B, RTT p50 ms"; "echo64"; ["rtt_ms", "p50"]; "lower"),
  row("echo 64 B, RTT p99 ms"; "echo64"; ["rtt_ms", "p99"]; "lower"),
  row("echo 64 B, proxy CPU µs/msg"; "echo64"; ["proxy_us_per_msg"]; "lower"),
  row("echo 4 KiB × \($echo_n), MB/s"; "echo4k"; ["mb_per_s"]; "higher"),
  row("echo 4 KiB, proxy CPU µs/msg"; "echo4k"; ["proxy_us_per_msg"]; "lower"),
  row("echo 64 KiB × \($echo_n), MB/s"; "echo64k"; ["mb_per_s"]; "higher"),
  row("echo 64 KiB, proxy CPU µs/msg"; "echo64k"; ["proxy_us_per_msg"]; "lower"),
  row("paced \($paced_n) × 64 B every \($interval) ms, RTT p50 ms"; "paced"; ["rtt_ms", "p50"]; "lower"),
  row("paced, RTT p99 ms"; "paced"; ["rtt_ms", "p99"]; "lower"),
  row("paced, RTT p99.9 ms"; "paced"; ["rtt_ms", "p999"]; "lower"),
  row("paced, handshake p99 ms"; "paced"; ["handshake_ms", "p99"]; "lower"),
  row("handshakes, \($conc) in flight (open, 1 msg, close), sessions/s"; "handshake"; ["messages_per_s"]; "higher"),
  row("handshakes, whole session p99 ms"; "handshake"; ["rtt_ms", "p99"]; "lower"),
  row("fan-out \($fan_size) B every \($fan_interval) ms to \($fan_n), delivery p50 ms"; "fanout"; ["rtt_ms", "p50"]; "lower"),
  row("fan-out, delivery p99 ms"; "fanout"; ["rtt_ms", "p99"]; "lower"),
  row("idle \($idle_n) sessions, KiB/session"; "memory"; ["kib_per_session"]; "lower"),
  row("idle \($idle_n), proxy CPU % while held"; "memory"; ["idle_cpu_pct"]; "lower"),
  row("timeout \($idle_t) s × \($idle_n), lateness p50 ms"; "timeout"; ["idle", "lateness_ms", "p50"]; "lower"),
  row("timeout, lateness p99 ms"; "timeout"; ["idle", "lateness_ms", "p99"]; "lower"),
  row("timeout, lateness max ms"; "timeout"; ["idle", "lateness_ms", "max"]; "lower"),
  "",
  "Errors (all runs): " + ([$all[] | select((.errors // 0) > 0) | "\(.test)/\(.target)/r\(.round): \(.errors) (\(.error_samples | join("; ")))"] | if length == 0 then "none" else join(", ") end),
  "Idle closes: " + ([$all[] | select(.test == "timeout") | "\(.target)/r\(.round): " + ([.idle.closes[]? | "\(.sessions)×\(.close)"] + ["\(.idle.still_open // 0) still open"] | join(" "))] | join("; "))
