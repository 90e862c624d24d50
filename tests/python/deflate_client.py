"""A third-party client against ringcast with permessage-deflate: Python `websockets`
(Debian's python3-websockets), which offers the extension by default.

Usage: deflate_client.py WS_URL TOKEN_A TOKEN_B
Alice authenticates in-band (`auth` as first frame), Bob with `Authorization: Bearer`; both
join a room, each sends messages of several sizes and the other must receive them intact.
Prints one JSON line with what was negotiated; exits non-zero on any failure.
"""

import asyncio
import json
import sys

import websockets


async def recv_type(ws, kind, op_id=None):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] == kind and (op_id is None or frame.get("op_id") == op_id):
            return frame


async def main(url, token_a, token_b):
    alice = await websockets.connect(url, max_size=2**20)
    await alice.send(json.dumps({"type": "auth", "op_id": "a1", "data": {"token": token_a}}))
    await recv_type(alice, "connected")
    bob = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + token_b}, max_size=2**20)
    await recv_type(bob, "connected")
    for ws, name in ((alice, "a"), (bob, "b")):
        await ws.send(json.dumps({"type": "room.join", "op_id": "j-" + name, "data": {"room": "py"}}))
        ack = await recv_type(ws, "ack", "j-" + name)
        assert ack["data"]["status"] == "joined", ack
    sizes = [10, 255, 256, 1024, 20000, 200000]
    for size in sizes:
        for sender, receiver in ((alice, bob), (bob, alice)):
            text = ("hello from python %d " % size) * (size // 20 + 1)
            text = text[:size]
            await sender.send(json.dumps({"type": "chat.send", "op_id": "s", "data": {"room": "py", "text": text}}))
            ack = await recv_type(sender, "ack", "s")
            assert "seq" in ack["data"], ack
            message = await recv_type(receiver, "chat.message")
            assert message["data"]["text"] == text, (size, len(message["data"]["text"]))
    negotiated = {
        "alice": alice.response_headers.get("Sec-WebSocket-Extensions"),
        "bob": bob.response_headers.get("Sec-WebSocket-Extensions"),
        "extensions": [type(extension).__name__ for extension in alice.extensions],
        "messages": len(sizes) * 2,
    }
    await alice.close()
    await bob.close()
    print(json.dumps(negotiated))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
