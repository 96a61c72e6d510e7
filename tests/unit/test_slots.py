"""Latest-frame-wins back-pressure (recognizer.slots)."""

import threading
import time

from recognizer.slots import LatestSlots


def test_keeps_only_newest_per_key_and_counts_dropped():
    slots = LatestSlots()
    assert slots.put("cam1", 1) is False
    assert slots.put("cam1", 2) is True
    assert slots.put("cam1", 3) is True
    assert len(slots) == 1 and slots.dropped == 2
    assert slots.take(0) == ("cam1", 3)
    assert len(slots) == 0 and slots.take(0) is None


def test_serves_keys_in_arrival_order():
    slots = LatestSlots()
    slots.put("cam1", "a1")
    slots.put("cam2", "b1")
    slots.put("cam3", "c1")
    slots.put("cam1", "a2")  # replaced: keeps cam1's place, carries the newest frame
    assert [slots.take(0) for _ in range(3)] == [("cam1", "a2"), ("cam2", "b1"), ("cam3", "c1")]
    assert slots.dropped == 1


def test_key_taken_then_put_goes_to_the_back():
    slots = LatestSlots()
    slots.put("cam1", 1)
    slots.put("cam2", 1)
    assert slots.take(0) == ("cam1", 1)
    slots.put("cam1", 2)
    assert slots.put("cam1", 3) is True
    assert [slots.take(0) for _ in range(2)] == [("cam2", 1), ("cam1", 3)]


def test_take_times_out_with_none():
    slots = LatestSlots()
    started = time.monotonic()
    assert slots.take(0.05) is None
    assert 0.04 <= time.monotonic() - started < 0.5


def test_take_wakes_when_an_item_arrives():
    slots = LatestSlots()
    threading.Timer(0.05, slots.put, ("cam1", "frame")).start()
    assert slots.take(2.0) == ("cam1", "frame")


def test_producer_never_blocks_without_a_consumer():
    slots = LatestSlots()
    n = 20_000

    def produce():
        for i in range(n):
            slots.put(f"cam{i % 4}", i)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(0.5)
    assert not producer.is_alive()
    assert len(slots) == 4 and slots.dropped == n - 4
    assert [slots.take(0) for _ in range(4)] == [("cam0", n - 4), ("cam1", n - 3), ("cam2", n - 2), ("cam3", n - 1)]


def test_slots_hold_at_most_max_bytes_whatever_the_number_of_devices():
    slots = LatestSlots(max_bytes=10 * 1024**2)
    lost = sum(slots.put(f"invented-{i}", bytes(1024**2)) for i in range(1000))  # 1000 devices, 1 MiB each
    assert len(slots) == 10 and slots.bytes == 10 * 1024**2 and lost == 990
    assert slots.put("invented-0", bytes(1024**2)) is True  # a replacement still fits
    slots.take(0)
    assert slots.bytes == 9 * 1024**2 and slots.put("new", bytes(1024**2)) is False
    big = LatestSlots(max_bytes=10)
    assert big.put("huge", bytes(100)) is False  # one frame always fits in empty slots, whatever its size


def test_device_owners_spread_new_devices_evenly_and_stay_sticky():
    from recognizer.workers import DeviceOwners

    owners = DeviceOwners(workers=2, capacity=100)
    first = [owners.owner(f"cam{i}", 0.0) for i in range(4)]
    assert sorted(first) == [0, 0, 1, 1]
    assert [owners.owner(f"cam{i}", 1.0) for i in range(4)] == first  # a device stays on its worker


def test_device_owners_refuse_new_devices_past_the_cap_until_idle_ones_expire():
    from recognizer.workers import DeviceOwners

    owners = DeviceOwners(workers=3, capacity=50, idle_s=300)
    owners.owner("door", 0.0)
    refused = sum(owners.owner(f"invented-{i}", 1.0) is None for i in range(10_000))
    assert refused == 10_000 - 49 and len(owners) == 50 and sum(owners.load) == 50
    assert owners.owner("door", 250.0) is not None  # a known device is never refused
    assert owners.expire(301.0) == [f"invented-{i}" for i in range(49)]  # door was seen at 250 s
    assert len(owners) == 1 and sum(owners.load) == 1 and owners.owner("new", 302.0) is not None
