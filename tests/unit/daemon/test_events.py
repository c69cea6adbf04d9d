import asyncio
import time

from berth.daemon.events import EventBus, make_event, matches


def ev(type_="daemon", action="reload", id_="d1", **attrs):
    return make_event(type_, action, id_, attrs)


def test_filter_semantics():
    e = ev(name="host1", debug="true")
    assert matches(e, {})
    assert matches(e, {"type": ["daemon", "image"]})
    assert not matches(e, {"type": ["image"]})
    assert matches(e, {"event": ["reload"]}) and not matches(e, {"event": ["start"]})
    assert matches(e, {"daemon": ["host1"]}) and matches(e, {"daemon": ["d1"]})
    assert not matches(e, {"container": ["d1"]})  # a key for another type excludes this event
    assert matches(e, {"label": ["debug=true"]}) and matches(e, {"label": ["debug"]})
    assert not matches(e, {"label": ["debug=false"]})
    assert not matches(e, {"type": ["daemon"], "event": ["start"]})  # keys AND together


def test_since_replays_history_and_until_ends_stream():
    async def main() -> list[str]:
        bus = EventBus()
        bus.publish(ev(action="one"))
        t0 = time.time()
        await asyncio.sleep(0.01)
        bus.publish(ev(action="two"))
        got = []

        async def consume() -> None:
            async for e in bus.subscribe(since=t0, until=time.time() + 0.2, filters={}):
                got.append(e["Action"])

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        bus.publish(ev(action="three"))
        await asyncio.wait_for(task, 2)
        return got

    assert asyncio.run(main()) == ["two", "three"]


def test_slow_subscriber_is_dropped_not_buffered_forever():
    bus = EventBus()

    async def main() -> int:
        stream = bus.subscribe(None, None, {})
        first = asyncio.create_task(stream.__anext__())
        await asyncio.sleep(0)
        for i in range(3000):
            bus.publish(ev(action=str(i)))
        await first
        n = 1
        async for _ in stream:
            n += 1
        return n

    n = asyncio.run(main())
    assert 1000 <= n <= 1025  # it got what fitted in its queue, then its stream ended
    assert bus.listeners == 0
