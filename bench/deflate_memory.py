"""RSS per connection of a ringcast node with permessage-deflate (docs/benchmarks.md,
"permessage-deflate, 2026-12-02"): N connections of Python's websockets (Debian's
python3-websockets), offering the extension or not, idle; then each sends MESSAGES messages of
~1 KiB (compressed with its kept context when negotiated).

Usage: deflate_memory.py WS_URL SERVER_PID N JWT_SECRET offer|idle [MESSAGES] [no_takeover]
Prints one JSON line: RSS growth of the node per connection, idle and after the messages.
"""
import asyncio, json, sys, time, hmac, hashlib, base64
import websockets

def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def token(sub, secret):
    h = b64(json.dumps({"alg":"HS256","typ":"JWT"}).encode())
    p = b64(json.dumps({"sub":sub,"exp":int(time.time())+3600}).encode())
    s = b64(hmac.new(secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{s}"

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) * 1024

async def main(url, pid, n, secret, offer):
    before = rss(pid)
    conns = []
    for i in range(n):
        kwargs = {"compression": "deflate" if offer else None}
        if NO_TAKEOVER:
            from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
            kwargs = {"compression": None, "extensions": [ClientPerMessageDeflateFactory(client_no_context_takeover=True, client_max_window_bits=True)]}
        ws = await websockets.connect(f"{url}?token={token('u%d' % i, secret)}", ping_interval=None, **kwargs)
        await ws.recv()
        conns.append(ws)
    await asyncio.sleep(1)
    idle = rss(pid)
    words = "the meeting moved to thursday afternoon can you send me the latest draft before lunch".split()
    for k in range(MESSAGES):
        for i, ws in enumerate(conns):
            pad = " ".join(words[(i * 7 + k * 3 + j) % len(words)] + str(j % 13) for j in range(120))
            await ws.send(json.dumps({"type":"presence.ping","op_id":"p%d" % k,"data":{"pad": pad}}))
            await ws.recv()
    await asyncio.sleep(1)
    sent = rss(pid)
    neg = conns[0].response_headers.get("Sec-WebSocket-Extensions")
    print(json.dumps({"offer": offer, "negotiated": neg, "n": n,
                      "idle_per_conn": (idle - before) / n, "messages": MESSAGES, "after_messages_per_conn": (sent - before) / n}))
    for ws in conns: await ws.close()

NO_TAKEOVER = len(sys.argv) > 7 and sys.argv[7] == "no_takeover"
MESSAGES = int(sys.argv[6]) if len(sys.argv) > 6 else 1
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "offer"))
