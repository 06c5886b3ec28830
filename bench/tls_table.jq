# bench/compare.sh's table with TLS=1 (issue 14): the same loads over ws://
# and wss:// through the relay and nginx (one certificate for both), medians
# over the rounds, and the ratios that answer "what does TLS cost, and how
# does the relay's TLS compare with nginx's". `generator CPU` is ecdn-load's
# own (it does the client half of every TLS record); `load avg` and
# `others` as in bench/table.jq.

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
  (if (.messages // 0) > 0 and .target != "direct" then .proxy_cpu_s / .messages * 1e6 else null end),
  generator_us_per_msg:
  (if (.messages // 0) > 0 then .generator_cpu_s / .messages * 1e6 else null end)})
| . as $all
| def m($test; $target; $path): [$all[] | select(.test == $test and .target == $target) | getpath($path)] | median;
  def load($test): [$all[] | select(.test == $test) | .load_before, .load_after] | map(select(. != null))
    | if length == 0 then "–" else "\(min)–\(max)" end;
  def others($test): [$all[] | select(.test == $test) | .other_user_pct] | map(select(. != null))
    | if length == 0 then "–" else "\(min | floor)–\(max | floor) %" end;
  def row($name; $test; $path; $better):
    [m($test; "relay"; $path), m($test; "relay-tls"; $path), m($test; "nginx"; $path), m($test; "nginx-tls"; $path)] as [$r, $rt, $n, $nt]
    | "| \($name) (\($better)) | \($r | num) | \($rt | num) | \($n | num) | \($nt | num) | \(ratio($rt; $r)) | \(ratio($nt; $n)) | \(ratio($rt; $nt)) | \(load($test)) | \(others($test)) |";
  "| measure | relay ws | relay wss | nginx ws | nginx wss | relay wss÷ws | nginx wss÷ws | relay÷nginx (wss) | load avg | others |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
  row("idle \($idle_n) sessions, KiB/session"; "memory"; ["kib_per_session"]; "lower"),
  row("idle \($idle_n), proxy CPU % while held"; "memory"; ["idle_cpu_pct"]; "lower"),
  row("echo 64 B × \($echo_n) sessions, msgs/s"; "echo64"; ["messages_per_s"]; "higher"),
  row("echo 64 B, RTT p50 ms"; "echo64"; ["rtt_ms", "p50"]; "lower"),
  row("echo 64 B, RTT p99 ms"; "echo64"; ["rtt_ms", "p99"]; "lower"),
  row("echo 64 B, proxy CPU µs/msg"; "echo64"; ["proxy_us_per_msg"]; "lower"),
  row("echo 64 B, generator CPU µs/msg"; "echo64"; ["generator_us_per_msg"]; "lower"),
  row("echo 4 KiB × \($echo_n), MB/s"; "echo4k"; ["mb_per_s"]; "higher"),
  row("echo 4 KiB, proxy CPU µs/msg"; "echo4k"; ["proxy_us_per_msg"]; "lower"),
  row("paced \($paced_n) × 64 B every \($interval) ms, RTT p50 ms"; "paced"; ["rtt_ms", "p50"]; "lower"),
  row("paced, RTT p99 ms"; "paced"; ["rtt_ms", "p99"]; "lower"),
  row("handshakes, \($conc) in flight (open, 1 msg, close), sessions/s"; "handshake"; ["messages_per_s"]; "higher"),
  row("handshakes, proxy CPU µs/session"; "handshake"; ["proxy_us_per_msg"]; "lower"),
  "",
  "Errors (all runs): " + ([$all[] | select((.errors // 0) > 0) | "\(.test)/\(.target)/r\(.round): \(.errors) (\(.error_samples | join("; ")))"] | if length == 0 then "none" else join(", ") end)
