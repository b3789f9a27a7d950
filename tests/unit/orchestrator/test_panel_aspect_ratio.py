"""The orchestrator asks for each panel in the shape of its frame on the page."""

from __future__ import annotations

import pytest

from mangakai.v1 import common_pb2
from mangakai_orchestrator.runner import panel_aspect_ratio


@pytest.mark.parametrize(
    ("layout", "shot", "expected"),
    [
        (common_pb2.PAGE_LAYOUT_CLASSIC, common_pb2.SHOT_TYPE_ESTABLISHING, "16:9"),
        (common_pb2.PAGE_LAYOUT_CLASSIC, common_pb2.SHOT_TYPE_WIDE, "16:9"),
        (common_pb2.PAGE_LAYOUT_CLASSIC, common_pb2.SHOT_TYPE_CLOSE_UP, "3:4"),
        (common_pb2.PAGE_LAYOUT_CLASSIC, common_pb2.SHOT_TYPE_MEDIUM, "1:1"),
        (common_pb2.PAGE_LAYOUT_FOUR_KOMA, common_pb2.SHOT_TYPE_CLOSE_UP, "21:9"),
        (common_pb2.PAGE_LAYOUT_SINGLE, common_pb2.SHOT_TYPE_WIDE, "3:4"),
        (common_pb2.PAGE_LAYOUT_WEBTOON, common_pb2.SHOT_TYPE_WIDE, "16:9"),
    ],
)
def test_panel_shape_follows_layout_and_shot(layout: int, shot: int, expected: str) -> None:
    assert panel_aspect_ratio(layout, shot) == expected
