"""Drives a real Home Assistant for tests/it/ha_live.rs and the `ha` benchmark.

Run with the Python of the Home Assistant under test (its venv has aiohttp):

    python live.py http://127.0.0.1:8123

It onboards Home Assistant over REST when asked, then keeps one websocket
session: it mirrors every entity's state from `state_changed` events and
answers one JSON command a line on stdin with one JSON line on stdout:

    {"op": "onboard", "timeout": 120}         -> {"ok": true}
    {"op": "dump"}                            -> {"ok": true, "devices": [...],
                                                  "entities": [...], "states": {...}}
    {"op": "call", "domain": "light", "service": "turn_on",
     "target": {...}, "data": {...}}          -> {"ok": true}
    {"op": "wait", "expect": {ENTITY: {"state": "on",
     "attributes": {"brightness": 128}}}, "timeout": 1}
                                              -> {"ok": true, "after": seconds,
                                                  "changed": {ENTITY: epoch seconds}}
                                                 or {"ok": false, "states": {...}}

`changed` is when Home Assistant changed each entity's state (the event's
`time_fired`), so the benchmark can compare it with when a device spoke.
The owner it creates gets a random password that is never printed.
"""

import asyncio
import datetime
import json
import secrets
import sys
import time

import aiohttp


class Ha:
    def __init__(self, url):
        self.url = url.rstrip("/")
        self.session = None
        self.ws = None
        self.next_id = 1
        self.pending = {}
        self.states = {}
        self.changed = {}
        self.updated = asyncio.Condition()

    async def onboard(self, timeout):
        self.session = aiohttp.ClientSession()
        deadline = time.monotonic() + timeout
        # Home Assistant answers HTTP only once its core integrations are up.
        while True:
            try:
                async with self.session.get(self.url + "/api/onboarding") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Home Assistant's HTTP did not answer within %ss" % timeout)
            await asyncio.sleep(0.5)
        client_id = self.url + "/"
        owner = {
            "client_id": client_id,
            "name": "Owner",
            "username": "owner",
            "password": secrets.token_urlsafe(24),
            "language": "en",
        }
        async with self.session.post(self.url + "/api/onboarding/users", json=owner) as r:
            if r.status != 200:
                raise RuntimeError("onboarding the owner: HTTP %s %s" % (r.status, await r.text()))
            code = (await r.json())["auth_code"]
        form = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
        async with self.session.post(self.url + "/auth/token", data=form) as r:
            if r.status != 200:
                raise RuntimeError("token: HTTP %s" % r.status)
            token = (await r.json())["access_token"]
        auth = {"Authorization": "Bearer " + token}
        # The remaining steps, so Home Assistant counts as set up; none of
        # them matters to the tests, so a refusal is not an error.
        for step, body in [
            ("core_config", {}),
            ("analytics", {}),
            ("integration", {"client_id": client_id, "redirect_uri": client_id}),
        ]:
            async with self.session.post(self.url + "/api/onboarding/" + step, json=body, headers=auth) as r:
                await r.read()
        self.ws = await self.session.ws_connect(self.url + "/api/websocket", max_msg_size=0)
        hello = await self.ws.receive_json()
        assert hello["type"] == "auth_required", hello
        await self.ws.send_json({"type": "auth", "access_token": token})
        ok = await self.ws.receive_json()
        if ok["type"] != "auth_ok":
            raise RuntimeError("websocket auth: %s" % ok["type"])
        asyncio.get_running_loop().create_task(self.reader())
        await self.command({"type": "subscribe_events", "event_type": "state_changed"})
        for s in await self.command({"type": "get_states"}):
            self.states[s["entity_id"]] = s

    async def reader(self):
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            m = msg.json()
            if m.get("type") == "event":
                ev = m["event"]
                data = ev.get("data", {})
                entity = data.get("entity_id")
                if entity is None:
                    continue
                async with self.updated:
                    if data.get("new_state") is None:
                        self.states.pop(entity, None)
                    else:
                        self.states[entity] = data["new_state"]
                    self.changed[entity] = fired(ev.get("time_fired"))
                    self.updated.notify_all()
            elif m.get("type") == "result":
                fut = self.pending.pop(m["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(m)

    async def command(self, body):
        body = dict(body, id=self.next_id)
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[body["id"]] = fut
        await self.ws.send_json(body)
        m = await asyncio.wait_for(fut, 30)
        if not m.get("success"):
            raise RuntimeError("%s: %s" % (body["type"], m.get("error")))
        return m.get("result")

    async def dump(self):
        return {
            "devices": await self.command({"type": "config/device_registry/list"}),
            "entities": await self.command({"type": "config/entity_registry/list"}),
            "states": self.states,
        }

    async def wait(self, expect, timeout):
        start = time.monotonic()
        deadline = start + timeout
        async with self.updated:
            while not all(matches(self.states.get(e), want) for e, want in expect.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"ok": False, "states": {e: self.states.get(e) for e in expect}}
                try:
                    await asyncio.wait_for(self.updated.wait(), left)
                except asyncio.TimeoutError:
                    pass
        return {
            "ok": True,
            "after": time.monotonic() - start,
            "changed": {e: self.changed.get(e) for e in expect},
        }


def fired(text):
    if not text:
        return None
    return datetime.datetime.fromisoformat(text).timestamp()


def matches(state, want):
    if state is None:
        return want.get("state") == "absent"
    if "state" in want and state["state"] != want["state"]:
        return False
    if "not" in want and state["state"] in want["not"]:
        return False
    attrs = state.get("attributes", {})
    return all(attrs.get(k) == v for k, v in want.get("attributes", {}).items())


async def main(url):
    ha = Ha(url)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        try:
            op = cmd["op"]
            if op == "onboard":
                await ha.onboard(cmd.get("timeout", 120))
                out = {"ok": True}
            elif op == "dump":
                out = dict(await ha.dump(), ok=True)
            elif op == "call":
                await ha.command(
                    {
                        "type": "call_service",
                        "domain": cmd["domain"],
                        "service": cmd["service"],
                        "service_data": cmd.get("data", {}),
                        "target": cmd.get("target", {}),
                    }
                )
                out = {"ok": True}
            elif op == "wait":
                out = await ha.wait(cmd["expect"], cmd.get("timeout", 10))
            else:
                out = {"ok": False, "error": "unknown op %s" % op}
        except Exception as e:  # reported to the test, which fails with it
            out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    if ha.session is not None:
        await ha.session.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
