"""The annotated view's drawing: boxes where the faces are, in their category colour."""

from __future__ import annotations

import numpy as np

from facebus.events import Category, TrackBox
from facebus.images import decode_jpeg
from recognizer.annotate import annotated_jpeg, draw_tracks


def box(category, top=40, right=120, bottom=120, left=40, person="Alice"):
    return TrackBox(track_id="t", box=(top, right, bottom, left), person=person, category=category)


def test_each_box_is_outlined_in_its_category_colour_and_the_inside_is_untouched():
    rgb = np.full((200, 300, 3), 128, np.uint8)
    bgr = draw_tracks(rgb, [box(Category.authorised), box(Category.restricted, 40, 280, 120, 200, "Mallory")])
    assert tuple(bgr[80, 40]) == (60, 180, 60)  # left edge of the authorised box: green
    assert tuple(bgr[80, 280]) == (40, 40, 220)  # right edge of the restricted box: red
    assert tuple(bgr[80, 80]) == (128, 128, 128)  # inside a box: the frame as it was


def test_the_jpeg_is_shrunk_to_the_width_limit_and_boxes_follow():
    rgb = np.full((400, 1280, 3), 128, np.uint8)
    jpeg = annotated_jpeg(rgb, [box(Category.unknown, 100, 600, 300, 400, None)], max_width_px=640)
    out = decode_jpeg(jpeg, 1 << 20, 1 << 22)  # RGB
    assert out.shape == (200, 640, 3)
    r, g, b = (int(v) for v in out[100, 200])  # the left edge, at half scale: amber (BGR 0,170,255)
    assert r > 200 and 120 < g < 220 and b < 60
