"""The renderer service: plans stories into scenes and draws manga panels and pages."""
