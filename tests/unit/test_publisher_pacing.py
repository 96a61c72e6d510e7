"""Frame-rate cap of the publisher (publisher.service.due)."""

import pytest

from publisher.service import due


def test_first_frame_always_due():
    assert due(0.0, None, 5.0)
    assert due(123.4, None, 0.1)


def test_frames_closer_than_the_interval_are_not_due():
    assert not due(0.1, 0.0, 5.0)
    assert not due(0.199, 0.0, 5.0)
    assert due(0.2, 0.0, 5.0)
    assert due(0.3, 0.0, 5.0)


def test_float_rounding_at_the_boundary_still_due():
    assert due(0.1 + 0.2, 0.1, 5.0)  # 0.20000000000000004 apart
    assert due(0.2 - 1e-9, 0.0, 5.0)  # a hair short of the interval (float noise) still counts
    assert not due(0.2 - 1e-4, 0.0, 5.0)
    assert due(3 / 30, 0.0, 10.0)


@pytest.mark.parametrize("source_fps, cap, published",
                         [(30, 10, 10), (30, 5, 5), (30, 30, 30), (30, 60, 30), (25, 10, 9)])
def test_cap_over_one_second_of_video(source_fps, cap, published):
    last = None
    count = 0
    for i in range(source_fps):
        t = i / source_fps
        if due(t, last, cap):
            last, count = t, count + 1
    assert count == published


def test_playback_speed_scales_play_time():
    # at speed 2 (play time = media time / 2) a 10 fps clip has frames 0.05 s apart: a 10 fps cap keeps every other one
    last, kept = None, []
    for i in range(10):
        t = (i / 10) / 2
        if due(t, last, 10.0):
            last = t
            kept.append(i)
    assert kept == [0, 2, 4, 6, 8]
