# A stand-in for an attached console that does only what it asks of the
# relay, for the control run of bench/attach.sh (STANDINS=1): once a second
# `sessions-changed` with `brief`, in pages of 250 (one per 40 ms), as
# `attach` asks, at nice 10, and nothing else — no table, no drawing.
# What the relay's side of attaching costs the data path, apart from the
# console's own CPU. Usage: control_standin.py SOCKET
import json, os, socket, sys, time

os.nice(10)
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
conn = sock.makefile("rwb")
conn.readline()  # the hello
clock = None
while True:
    after, started = None, None
    while True:
        request = {"request": "sessions-changed", "limit": 250, "brief": True}
        if clock is not None:
            request["since"] = clock
        if after is not None:
            request["after"] = after
        conn.write((json.dumps(request) + "\n").encode())
        conn.flush()
        answer = json.loads(conn.readline())
        started = answer["clock"] if started is None else started
        rows = [s["id"] for s in answer.get("changed", [])] + [m[0] for m in answer.get("moved", [])]
        if not (answer.get("more") and rows):
            break
        after = max(rows)
        time.sleep(0.04)
    clock = started
    time.sleep(1)
