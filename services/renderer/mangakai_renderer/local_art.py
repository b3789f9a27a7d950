"""The local art backend: draws a manga storyboard panel for a scene without any image model.

It owns the panel's composition: the background chosen from the setting and
mood, the figures (each character's look comes from a hash of the name, via
the planner's character bible, so a character looks the same in every panel),
framing by shot type, mood effects, the colour palette treatment, and the
placement of balloons and the narration caption. Drawing is deterministic:
every random choice comes from a generator seeded with a hash of the inputs.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageOps

from mangakai.v1 import common_pb2
from mangakai_renderer import lettering
from mangakai_renderer.story_planner import CharacterLook, look_from_description

RGB = tuple[int, int, int]
Point = tuple[float, float]

INK: RGB = (18, 16, 20)
PAPER: RGB = (255, 255, 255)
# Shapes are drawn at twice the output size and reduced, which smooths every edge for little cost.
SUPERSAMPLE = 2

_SHOT = common_pb2.ShotType
_MOOD = common_pb2.Mood
_PALETTE = common_pb2.ColorPalette

# Keywords (English, Chinese, Japanese) that pick background scenery.
_SCENERY_WORDS: dict[str, tuple[str, ...]] = {
    "lighthouse": ("lighthouse", "lamp room", "灯塔"),
    "sea": (
        "sea",
        "ocean",
        "wave",
        "water",
        "shore",
        "beach",
        "harbor",
        "harbour",
        "shingle",
        "boat",
        "rocks",
        "海",
        "浜",
        "港",
        "船",
        "沙滩",
    ),
    "room": (
        "room",
        "kitchen",
        "inside",
        "house",
        "classroom",
        "office",
        "library",
        "hall",
        "stairs",
        "部屋",
        "房间",
        "教室",
        "家",
        "屋内",
        "台所",
        "厨房",
    ),
    "festival": (
        "festival",
        "lantern",
        "stall",
        "fair",
        "祭",
        "灯笼",
        "提灯",
        "屋台",
        "元宵",
        "灯谜",
        "庙会",
    ),
    "shrine": ("shrine", "temple", "torii", "神社", "鳥居", "寺", "庙", "石段"),
    "street": (
        "street",
        "town",
        "city",
        "alley",
        "village",
        "road",
        "market",
        "街",
        "町",
        "巷",
        "商店街",
        "村",
        "路",
    ),
    "forest": ("forest", "woods", "park", "garden", "tree", "森", "公园", "公園", "林", "庭", "花园"),
    "river": ("river", "bridge", "canal", "川", "河", "桥", "橋"),
    "mountain": ("mountain", "hill", "cliff", "山", "崖"),
}
_TIME_WORDS: dict[str, tuple[str, ...]] = {
    "night": ("night", "midnight", "dark", "moon", "stars", "夜", "晚", "月", "星"),
    "sunset": ("dusk", "sunset", "evening", "twilight", "夕", "黄昏", "傍晚"),
    "dawn": ("dawn", "sunrise", "朝", "清晨", "早上", "黎明"),
}
_WEATHER_WORDS: dict[str, tuple[str, ...]] = {
    "rain": ("rain", "storm", "stormy", "雨", "嵐"),
    "snow": ("snow", "雪"),
    "fireworks": ("firework", "花火", "烟花", "烟火"),
}
_EXPRESSION_WORDS: dict[str, tuple[str, ...]] = {
    "sad": ("cry", "cried", "tears", "sob", "sad", "泣", "涙", "哭", "泪", "伤心"),
    "angry": ("angry", "shouted at", "glared", "furious", "怒", "生气", "不服气"),
    "surprised": ("gasp", "surprised", "shock", "驚", "惊", "吃惊", "知道了"),
    "smile": ("smile", "laugh", "grin", "happy", "笑", "高兴", "嬉し"),
}


@dataclass(frozen=True)
class _Framing:
    """How large figures are and where they stand for a shot type (fractions of the panel height)."""

    head_radius: float
    head_y: float
    body: str  # "full", "waist" or "bust"


_FRAMINGS: dict[int, _Framing] = {
    _SHOT.SHOT_TYPE_ESTABLISHING: _Framing(0.026, 0.70, "full"),
    _SHOT.SHOT_TYPE_WIDE: _Framing(0.048, 0.44, "full"),
    _SHOT.SHOT_TYPE_MEDIUM: _Framing(0.088, 0.52, "waist"),
    _SHOT.SHOT_TYPE_CLOSE_UP: _Framing(0.2, 0.58, "bust"),
    _SHOT.SHOT_TYPE_EXTREME_CLOSE_UP: _Framing(0.36, 0.6, "bust"),
    _SHOT.SHOT_TYPE_OVER_THE_SHOULDER: _Framing(0.085, 0.5, "waist"),
    _SHOT.SHOT_TYPE_UNSPECIFIED: _Framing(0.088, 0.52, "waist"),
}


@dataclass
class _Figure:
    name: str
    look: CharacterLook
    x: float
    head_y: float
    radius: float
    facing: int  # +1 looks right, -1 looks left
    body: str
    expression: str
    back_view: bool = False

    @property
    def mouth(self) -> Point:
        return self.x + self.facing * self.radius * 0.1, self.head_y + self.radius * 0.62


@dataclass(frozen=True)
class _Style:
    """The drawing parameters derived from the style preferences."""

    line: float  # ink width multiplier
    eye_scale: float
    heads_tall: float
    sparkle_eyes: bool
    detailed: bool
    sketchy: bool


def draw_panel(
    scene: common_pb2.Scene,
    characters: Sequence[common_pb2.Character],
    style: common_pb2.StylePreferences,
    *,
    language: str,
    size: tuple[int, int] = (1024, 1024),
    instruction: str = "",
    seed_extra: str = "",
) -> Image.Image:
    """Draws `scene` as an RGB manga panel of `size` pixels, lettered."""
    return draw_panel_layers(
        scene, characters, style, language=language, size=size, instruction=instruction, seed_extra=seed_extra
    )[1]


def draw_panel_layers(
    scene: common_pb2.Scene,
    characters: Sequence[common_pb2.Character],
    style: common_pb2.StylePreferences,
    *,
    language: str,
    size: tuple[int, int] = (1024, 1024),
    instruction: str = "",
    seed_extra: str = "",
    reading_order: common_pb2.ReadingOrder.ValueType = common_pb2.READING_ORDER_UNSPECIFIED,
) -> tuple[Image.Image, Image.Image]:
    """Draws `scene` at `size` pixels; returns the art without lettering and the lettered panel.

    `reading_order` orders the balloons as the page is read (UNSPECIFIED is manga order)."""
    width, height = size
    seed = _seed(scene, characters, style, language, size, instruction, seed_extra)
    rng = random.Random(seed)
    words = _scene_words(scene, instruction)
    shot = _shot_for(scene, words)
    look_style = _style_for(style)
    mood = style.mood

    canvas_size = (width * SUPERSAMPLE, height * SUPERSAMPLE)
    scenery = _pick(words, _SCENERY_WORDS, "open")
    time_of_day = _pick(words, _TIME_WORDS, "day")
    weather = _pick(words, _WEATHER_WORDS, "")
    if mood == _MOOD.MOOD_DARK and time_of_day == "day":
        time_of_day = "sunset"

    art = _background(canvas_size, shot, scenery, time_of_day, weather, mood, rng)
    bible = {character.name: character.description for character in characters}
    figures = _place_figures(scene, shot, canvas_size, words, language, look_style, bible)
    draw = ImageDraw.Draw(art)
    _mood_effects(art, draw, mood, shot, rng, figures)
    for figure in sorted(figures, key=lambda f: (f.back_view, f.radius)):
        _draw_figure(draw, figure, look_style, mood, rng)
    if weather == "rain" and scenery != "room":
        _rain(draw, canvas_size, rng)
    elif weather == "snow":
        _snow(draw, canvas_size, rng)

    panel = art.reduce(SUPERSAMPLE) if SUPERSAMPLE > 1 else art
    art = _apply_palette(panel, style.color_palette)
    _frame(art)
    lettered = art.copy()
    _letter(lettered, scene, figures, language, _right_to_left(reading_order))
    _frame(lettered)
    return art, lettered


def letter_art(
    art: Image.Image,
    scene: common_pb2.Scene,
    characters: Sequence[common_pb2.Character],
    style: common_pb2.StylePreferences,
    *,
    language: str,
    reading_order: common_pb2.ReadingOrder.ValueType = common_pb2.READING_ORDER_UNSPECIFIED,
) -> Image.Image:
    """Letters art drawn elsewhere (by an image model) from the scene plan; returns a new image.

    Where the model put each character is unknown, so balloon tails point to
    where this module would have placed them for the scene's shot: speakers in
    reading order, which is also how the image prompt asks for them.
    """
    lettered = art.convert("RGB")
    canvas_size = (lettered.width * SUPERSAMPLE, lettered.height * SUPERSAMPLE)
    words = _scene_words(scene, "")
    shot = _shot_for(scene, words)
    bible = {character.name: character.description for character in characters}
    figures = _place_figures(scene, shot, canvas_size, words, language, _style_for(style), bible)
    _letter(lettered, scene, figures, language, _right_to_left(reading_order))
    _frame(lettered)
    return lettered


def draw_character_sheet(
    characters: Sequence[common_pb2.Character],
    style: common_pb2.StylePreferences,
    *,
    language: str,
    size: tuple[int, int] = (1536, 1024),
) -> Image.Image:
    """A model sheet: every character of the bible standing side by side, full figure, named.

    Each figure is drawn from the same look as in the panels (the look comes
    from the name and the bible's description), so the sheet shows exactly
    what the panels will draw.
    """
    width, height = size
    shown = list(characters)[:6]
    canvas_size = (width * SUPERSAMPLE, height * SUPERSAMPLE)
    art = _vertical_gradient(canvas_size, (246, 244, 238), (226, 222, 214))
    draw = ImageDraw.Draw(art)
    look_style = _style_for(style)
    label_band = canvas_size[1] * 0.14
    ground = canvas_size[1] - label_band
    draw.line((0, ground, canvas_size[0], ground), fill=INK, width=SUPERSAMPLE * 3)
    count = max(1, len(shown))
    # Every figure at the same scale: the sheet compares heights and builds.
    radius = min(canvas_size[0] / count * 0.18, (ground * 0.9) / (2.2 * (look_style.heads_tall - 0.5) + 1.2))
    head_y = ground - radius * 2.2 * (look_style.heads_tall - 0.5)
    for index, character in enumerate(shown):
        x = canvas_size[0] * (index + 0.5) / count
        figure = _Figure(
            character.name,
            look_from_description(character.name, character.description),
            x,
            head_y,
            radius,
            1 if index % 2 == 0 else -1,
            "full",
            "calm",
        )
        _draw_figure(draw, figure, look_style, style.mood, random.Random(character.name))
    sheet = art.reduce(SUPERSAMPLE) if SUPERSAMPLE > 1 else art
    sheet = _apply_palette(sheet, style.color_palette)
    names = ImageDraw.Draw(sheet)
    band_top = round(ground / SUPERSAMPLE)
    for index, character in enumerate(shown):
        slot = (round(width * index / count), round(width * (index + 1) / count))
        block = lettering.layout_text(
            character.name,
            language,
            slot[1] - slot[0] - 16,
            height - band_top - 12,
            max_size=max(14, round(height * 0.05)),
            min_size=12,
        )
        origin = (
            slot[0] + (slot[1] - slot[0] - block.width) / 2,
            band_top + (height - band_top - block.height) / 2,
        )
        lettering.draw_text_block(names, block, origin, fill=INK)
    _frame(sheet)
    return sheet


def _frame(image: Image.Image) -> None:
    border = max(4, round(min(image.size) / 170))
    ImageDraw.Draw(image).rectangle((0, 0, image.width - 1, image.height - 1), outline=INK, width=border)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of `image`, favouring speed over the last few percent of size."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def _seed(
    scene: common_pb2.Scene,
    characters: Sequence[common_pb2.Character],
    style: common_pb2.StylePreferences,
    language: str,
    size: tuple[int, int],
    instruction: str,
    seed_extra: str,
) -> int:
    digest = hashlib.sha256()
    digest.update(scene.SerializeToString(deterministic=True))
    for character in characters:
        digest.update(character.SerializeToString(deterministic=True))
    digest.update(style.SerializeToString(deterministic=True))
    digest.update(f"|{language}|{size}|{instruction}|{seed_extra}".encode())
    return int.from_bytes(digest.digest()[:8], "big")


def _scene_words(scene: common_pb2.Scene, instruction: str) -> str:
    text = " ".join([scene.setting, scene.action, scene.narration, scene.source_text, instruction])
    # A name is not scenery: 小雨 is a person, not rain.
    for name in scene.characters:
        text = text.replace(name, " ")
    return text.lower()


def _pick(words: str, table: dict[str, tuple[str, ...]], default: str) -> str:
    best = default
    best_position = len(words) + 1
    for key, keywords in table.items():
        for keyword in keywords:
            position = words.find(keyword)
            if 0 <= position < best_position:
                best, best_position = key, position
    return best


def _shot_for(scene: common_pb2.Scene, words: str) -> int:
    tail = words[-200:]  # the instruction is last; it wins over the plan
    if any(k in tail for k in ("extreme close", "大特写", "超アップ")):
        return _SHOT.SHOT_TYPE_EXTREME_CLOSE_UP
    if any(k in tail for k in ("close-up", "close up", "closeup", "アップ", "特写")):
        return _SHOT.SHOT_TYPE_CLOSE_UP
    if any(k in tail for k in ("wide shot", "wide angle", "full body", "全身", "远景", "引き")):
        return _SHOT.SHOT_TYPE_WIDE
    return scene.shot or _SHOT.SHOT_TYPE_MEDIUM


def _style_for(style: common_pb2.StylePreferences) -> _Style:
    line = {
        common_pb2.LINE_STYLE_BOLD: 1.7,
        common_pb2.LINE_STYLE_FINE: 0.6,
        common_pb2.LINE_STYLE_BRUSH: 1.3,
        common_pb2.LINE_STYLE_SKETCHY: 0.9,
    }.get(style.line_style, 1.0)
    eye_scale = {
        common_pb2.ART_STYLE_SHOJO: 1.3,
        common_pb2.ART_STYLE_SEINEN: 0.75,
        common_pb2.ART_STYLE_CLASSIC: 1.15,
        common_pb2.ART_STYLE_CHIBI: 1.35,
    }.get(style.art_style, 1.0)
    chibi = (
        style.art_style == common_pb2.ART_STYLE_CHIBI
        or style.character_style == common_pb2.CHARACTER_STYLE_CHIBI
    )
    realistic = (
        style.character_style == common_pb2.CHARACTER_STYLE_REALISTIC
        or style.art_style == common_pb2.ART_STYLE_SEINEN
    )
    if realistic:
        eye_scale *= 0.8
    return _Style(
        line=line,
        eye_scale=eye_scale,
        heads_tall=3.0 if chibi else (7.0 if realistic else 5.8),
        sparkle_eyes=style.art_style == common_pb2.ART_STYLE_SHOJO or style.mood == _MOOD.MOOD_ROMANTIC,
        detailed=style.character_style
        in (common_pb2.CHARACTER_STYLE_DETAILED, common_pb2.CHARACTER_STYLE_REALISTIC),
        sketchy=style.line_style == common_pb2.LINE_STYLE_SKETCHY,
    )


# --- colour helpers -----------------------------------------------------------------------------


def _shade(colour: RGB, factor: float) -> RGB:
    """Darker (factor < 1) or lighter (factor > 1, mixed toward white) version of `colour`."""
    if factor <= 1:
        return (round(colour[0] * factor), round(colour[1] * factor), round(colour[2] * factor))
    mix = min(1.0, factor - 1)
    return (
        round(colour[0] + (255 - colour[0]) * mix),
        round(colour[1] + (255 - colour[1]) * mix),
        round(colour[2] + (255 - colour[2]) * mix),
    )


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


@lru_cache(maxsize=64)
def _gradient_l(size: tuple[int, int]) -> Image.Image:
    return Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)


def _vertical_gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    return ImageOps.colorize(_gradient_l(size), top, bottom)


def _tint(image: Image.Image, box: tuple[int, int, int, int], colour: RGB, mask: Image.Image) -> None:
    """Pastes `colour` into `box` through `mask` (its alpha), for glows and light beams."""
    image.paste(colour, box, mask)


# --- backgrounds ------------------------------------------------------------------------------------


_SKIES: dict[str, tuple[RGB, RGB]] = {
    "day": ((120, 178, 232), (222, 238, 250)),
    "sunset": ((92, 74, 140), (248, 164, 110)),
    "dawn": ((150, 170, 220), (252, 214, 176)),
    "night": ((10, 14, 40), (44, 56, 104)),
}


def _background(
    size: tuple[int, int],
    shot: int,
    scenery: str,
    time_of_day: str,
    weather: str,
    mood: int,
    rng: random.Random,
) -> Image.Image:
    width, height = size
    sky_top, sky_bottom = _SKIES[time_of_day]
    if weather == "rain" and time_of_day == "day":
        sky_top, sky_bottom = (96, 108, 128), (168, 176, 188)
    if mood == _MOOD.MOOD_ROMANTIC:
        sky_top, sky_bottom = _mix(sky_top, (250, 190, 210), 0.35), _mix(sky_bottom, (255, 226, 236), 0.4)
    elif mood == _MOOD.MOOD_MYSTERIOUS:
        sky_top, sky_bottom = _mix(sky_top, (40, 20, 70), 0.5), _mix(sky_bottom, (110, 90, 150), 0.4)

    if shot in (_SHOT.SHOT_TYPE_CLOSE_UP, _SHOT.SHOT_TYPE_EXTREME_CLOSE_UP):
        # Close-ups drop the scenery for an abstract mood backdrop, as manga does.
        return _abstract_backdrop(size, sky_top, sky_bottom, time_of_day, mood, rng)

    if scenery == "room":
        image = _room(size, time_of_day, rng)
    else:
        image = _vertical_gradient(size, sky_top, sky_bottom)
        draw = ImageDraw.Draw(image)
        horizon = round(height * (0.62 if shot == _SHOT.SHOT_TYPE_ESTABLISHING else 0.68))
        if time_of_day == "night":
            _stars(draw, width, horizon, rng)
            _moon(draw, (width * rng.uniform(0.62, 0.85), height * rng.uniform(0.1, 0.2)), width * 0.045)
        elif weather != "rain":
            _clouds(draw, width, horizon, rng, time_of_day)
        if weather == "fireworks" or (
            scenery == "festival" and time_of_day == "night" and rng.random() < 0.5
        ):
            _fireworks(image, width, horizon, rng)
        painter = {
            "lighthouse": _lighthouse_scene,
            "sea": _sea_scene,
            "festival": _festival_scene,
            "shrine": _shrine_scene,
            "street": _street_scene,
            "forest": _forest_scene,
            "river": _river_scene,
            "mountain": _mountain_scene,
        }.get(scenery, _open_scene)
        painter(image, draw, horizon, time_of_day, rng)
    return image


def _abstract_backdrop(
    size: tuple[int, int], top: RGB, bottom: RGB, time_of_day: str, mood: int, rng: random.Random
) -> Image.Image:
    width, height = size
    light = time_of_day != "night"
    base_top = _mix(top, (255, 255, 255), 0.45 if light else 0.1)
    base_bottom = _mix(bottom, (255, 255, 255), 0.55 if light else 0.15)
    image = _vertical_gradient(size, base_top, base_bottom)
    draw = ImageDraw.Draw(image)
    if mood in (_MOOD.MOOD_LIGHTHEARTED, _MOOD.MOOD_ROMANTIC, _MOOD.MOOD_PEACEFUL, _MOOD.MOOD_UNSPECIFIED):
        # Soft bokeh circles.
        for _ in range(18):
            radius = rng.uniform(0.02, 0.07) * width
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            colour = _mix(base_top, (255, 255, 255), rng.uniform(0.3, 0.7))
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    else:
        # Diagonal hatching reads as tension.
        step = max(6, width // 90)
        colour = _shade(base_top, 0.8)
        for offset in range(-height, width, step * 3):
            draw.line((offset, 0, offset + height, height), fill=colour, width=step)
    return image


def _room(size: tuple[int, int], time_of_day: str, rng: random.Random) -> Image.Image:
    width, height = size
    wall_hue = rng.choice([(236, 222, 196), (214, 226, 214), (226, 214, 230), (232, 214, 190)])
    if time_of_day == "night":
        wall_hue = _shade(wall_hue, 0.55)
    image = _vertical_gradient(size, _shade(wall_hue, 0.92), wall_hue)
    draw = ImageDraw.Draw(image)
    floor_y = round(height * 0.7)
    floor = _shade((168, 124, 86), 0.6 if time_of_day == "night" else 1.0)
    draw.rectangle((0, floor_y, width, height), fill=floor)
    vanishing = width * rng.uniform(0.4, 0.6)
    for index in range(-6, 7):
        x = vanishing + index * width * 0.16
        draw.line(
            (vanishing + index * width * 0.05, floor_y, x + (x - vanishing) * 1.6, height),
            fill=_shade(floor, 0.8),
            width=max(2, width // 400),
        )
    draw.line((0, floor_y, width, floor_y), fill=_shade(floor, 0.6), width=max(3, width // 300))
    # A window onto the time of day.
    wx0 = width * rng.uniform(0.08, 0.55)
    wy0, ww, wh = height * 0.14, width * 0.3, height * 0.32
    sky = _SKIES[time_of_day]
    window = _vertical_gradient((round(ww), round(wh)), sky[0], sky[1])
    image.paste(window, (round(wx0), round(wy0)))
    frame = max(6, width // 120)
    draw.rectangle((wx0, wy0, wx0 + ww, wy0 + wh), outline=(120, 92, 64), width=frame)
    draw.line((wx0 + ww / 2, wy0, wx0 + ww / 2, wy0 + wh), fill=(120, 92, 64), width=frame)
    draw.line((wx0, wy0 + wh / 2, wx0 + ww, wy0 + wh / 2), fill=(120, 92, 64), width=frame)
    if time_of_day == "night":
        _moon(draw, (wx0 + ww * 0.72, wy0 + wh * 0.3), ww * 0.09)
    # A shelf and a lamp glow.
    shelf_x = width * 0.78 if wx0 < width * 0.45 else width * 0.06
    draw.rectangle((shelf_x, height * 0.3, shelf_x + width * 0.16, height * 0.33), fill=(120, 86, 58))
    for index in range(5):
        book_x = shelf_x + index * width * 0.028 + width * 0.01
        colour = rng.choice([(170, 60, 50), (60, 90, 150), (70, 130, 80), (200, 160, 60)])
        draw.rectangle(
            (book_x, height * 0.235, book_x + width * 0.022, height * 0.3), fill=colour, outline=INK, width=2
        )
    return image


def _stars(draw: ImageDraw.ImageDraw, width: int, horizon: int, rng: random.Random) -> None:
    for _ in range(90):
        x, y = rng.uniform(0, width), rng.uniform(0, horizon * 0.9)
        radius = rng.choice([1.5, 2, 2, 3, 4]) * width / 1024
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 250, 220))


def _moon(draw: ImageDraw.ImageDraw, centre: Point, radius: float) -> None:
    x, y = centre
    draw.ellipse((x - radius * 1.6, y - radius * 1.6, x + radius * 1.6, y + radius * 1.6), fill=(70, 80, 120))
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(252, 246, 214))


def _clouds(
    draw: ImageDraw.ImageDraw, width: int, horizon: int, rng: random.Random, time_of_day: str
) -> None:
    colour: RGB = (255, 255, 255) if time_of_day == "day" else (252, 210, 190)
    for _ in range(rng.randint(2, 4)):
        cx, cy = rng.uniform(0, width), rng.uniform(horizon * 0.12, horizon * 0.6)
        scale = rng.uniform(0.05, 0.09) * width
        for dx, dy, r in ((-1.2, 0.2, 0.7), (-0.4, -0.2, 0.95), (0.5, -0.1, 0.85), (1.3, 0.25, 0.6)):
            draw.ellipse(
                (
                    cx + dx * scale - r * scale,
                    cy + dy * scale - r * scale * 0.7,
                    cx + dx * scale + r * scale,
                    cy + dy * scale + r * scale * 0.7,
                ),
                fill=colour,
            )


def _fireworks(image: Image.Image, width: int, horizon: int, rng: random.Random) -> None:
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 4)):
        cx, cy = rng.uniform(width * 0.1, width * 0.9), rng.uniform(horizon * 0.12, horizon * 0.5)
        radius = rng.uniform(0.08, 0.16) * width
        colour = rng.choice(
            [(255, 90, 90), (255, 210, 80), (120, 230, 140), (140, 180, 255), (250, 140, 230)]
        )
        rays = 28
        for index in range(rays):
            angle = 2 * math.pi * index / rays
            inner = radius * 0.25
            draw.line(
                (
                    cx + math.cos(angle) * inner,
                    cy + math.sin(angle) * inner,
                    cx + math.cos(angle) * radius,
                    cy + math.sin(angle) * radius,
                ),
                fill=colour,
                width=max(3, width // 400),
            )
            dot = width / 300
            px, py = cx + math.cos(angle) * radius * 1.08, cy + math.sin(angle) * radius * 1.08
            draw.ellipse((px - dot, py - dot, px + dot, py + dot), fill=_shade(colour, 1.4))


def _ground(draw: ImageDraw.ImageDraw, image: Image.Image, horizon: int, colour: RGB) -> None:
    width, height = image.size
    band = _vertical_gradient((width, height - horizon), colour, _shade(colour, 0.7))
    image.paste(band, (0, horizon))
    draw.line((0, horizon, width, horizon), fill=_shade(colour, 0.55), width=max(3, width // 340))


def _night(colour: RGB, time_of_day: str) -> RGB:
    if time_of_day == "night":
        return _mix(_shade(colour, 0.45), (30, 40, 80), 0.3)
    if time_of_day == "sunset":
        return _mix(colour, (240, 140, 90), 0.2)
    return colour


def _open_scene(
    image: Image.Image, draw: ImageDraw.ImageDraw, horizon: int, time_of_day: str, rng: random.Random
) -> None:
    width, _ = image.size
    _hills(draw, width, horizon, _night((150, 190, 140), time_of_day), rng)
    _ground(draw, image, horizon, _night((170, 200, 130), time_of_day))


def _hills(draw: ImageDraw.ImageDraw, width: int, horizon: int, colour: RGB, rng: random.Random) -> None:
    points: list[Point] = [(0, horizon)]
    for index in range(9):
        points.append((width * index / 8, horizon - rng.uniform(0.03, 0.1) * width))
    points.append((width, horizon))
    draw.polygon(points, fill=colour)


def _sea_scene(
    image: Image.Image, draw: ImageDraw.ImageDraw, horizon: int, time_of_day: str, rng: random.Random
) -> None:
    width, height = image.size
    sea_top = _night((60, 120, 180), time_of_day)
    water = _vertical_gradient((width, height - horizon), sea_top, _shade(sea_top, 0.6))
    image.paste(water, (0, horizon))
    line_colour = _shade(sea_top, 1.35)
    for row in range(14):
        y = horizon + (height - horizon) * (row / 14) ** 1.4 + 6
        length = width * (0.03 + 0.06 * row / 14)
        for _ in range(3 + row // 2):
            x = rng.uniform(0, width)
            draw.arc(
                (x, y - length * 0.2, x + length, y + length * 0.2),
                200,
                340,
                fill=line_colour,
                width=max(2, width // 500 + row // 5),
            )
    # A shore of rocks in the foreground corner.
    rock = _night((110, 100, 92), time_of_day)
    side = rng.choice([0, 1])
    base_x = 0 if side == 0 else width
    direction = 1 if side == 0 else -1
    rocks: list[Point] = [(base_x, height), (base_x, height * 0.8)]
    for index in range(1, 6):
        rocks.append(
            (
                base_x + direction * width * 0.08 * index,
                height * (0.78 + rng.uniform(-0.04, 0.06) + index * 0.03),
            )
        )
    rocks.append((base_x + direction * width * 0.5, height))
    draw.polygon(rocks, fill=rock, outline=INK, width=max(3, width // 400))


def _lighthouse_scene(
    image: Image.Image, draw: ImageDraw.ImageDraw, horizon: int, time_of_day: str, rng: random.Random
) -> None:
    _sea_scene(image, draw, horizon, time_of_day, rng)
    width, height = image.size
    x = width * rng.choice([0.2, 0.78])
    base_y = height * 0.78
    top_y = height * 0.18
    bottom_half, top_half = width * 0.075, width * 0.045
    line = max(3, width // 340)
    # Cliff under the tower.
    cliff = _night((120, 110, 96), time_of_day)
    draw.polygon(
        [
            (x - width * 0.2, height),
            (x - width * 0.14, base_y),
            (x + width * 0.16, base_y - 8),
            (x + width * 0.24, height),
        ],
        fill=cliff,
        outline=INK,
        width=line,
    )
    stripes = 5
    for index in range(stripes):
        t0, t1 = index / stripes, (index + 1) / stripes
        y0 = base_y - (base_y - top_y) * t0
        y1 = base_y - (base_y - top_y) * t1
        h0 = bottom_half + (top_half - bottom_half) * t0
        h1 = bottom_half + (top_half - bottom_half) * t1
        colour = _night((220, 60, 50) if index % 2 else (246, 244, 236), time_of_day)
        draw.polygon([(x - h0, y0), (x + h0, y0), (x + h1, y1), (x - h1, y1)], fill=colour)
    draw.polygon(
        [(x - bottom_half, base_y), (x + bottom_half, base_y), (x + top_half, top_y), (x - top_half, top_y)],
        outline=INK,
        width=line,
    )
    # Lamp room, with a beam when it is dark.
    lamp_top = top_y - height * 0.07
    if time_of_day in ("night", "sunset"):
        beam = Image.new("L", image.size, 0)
        beam_draw = ImageDraw.Draw(beam)
        direction = -1 if x > width / 2 else 1
        beam_draw.polygon(
            [
                (x, top_y - height * 0.035),
                (x + direction * width * 1.2, lamp_top - height * 0.2),
                (x + direction * width * 1.2, top_y + height * 0.12),
            ],
            fill=110,
        )
        _tint(image, (0, 0, *image.size), (255, 246, 190), beam)
        draw = ImageDraw.Draw(image)
    draw.rectangle(
        (x - top_half * 0.9, lamp_top, x + top_half * 0.9, top_y),
        fill=(255, 236, 150),
        outline=INK,
        width=line,
    )
    draw.polygon(
        [(x - top_half * 1.2, lamp_top), (x + top_half * 1.2, lamp_top), (x, lamp_top - height * 0.05)],
        fill=(60, 60, 70),
        outline=INK,
        width=line,
    )
    draw.rectangle(
        (x - top_half * 1.3, top_y - 4, x + top_half * 1.3, top_y + height * 0.012), fill=(50, 50, 56)
    )


def _festival_scene(
    image: Image.Image, draw: ImageDraw.ImageDraw, horizon: int, time_of_day: str, rng: random.Random
) -> None:
    width, height = image.size
    _street_scene(image, draw, horizon, time_of_day, rng, lanterns=False)
    # Stalls with striped awnings.
    line = max(3, width // 380)
    for index in range(3):
        x0 = width * (0.02 + index * 0.34) + rng.uniform(-10, 10)
        w = width * 0.28
        y0 = horizon - height * 0.16
        draw.rectangle(
            (x0, y0 + height * 0.05, x0 + w, horizon + height * 0.02),
            fill=_night((150, 100, 70), time_of_day),
            outline=INK,
            width=line,
        )
        stripes = 6
        for s in range(stripes):
            colour = (230, 60, 60) if s % 2 == 0 else (250, 246, 236)
            draw.polygon(
                [
                    (x0 + w * s / stripes, y0),
                    (x0 + w * (s + 1) / stripes, y0),
                    (x0 + w * (s + 1) / stripes + 4, y0 + height * 0.06),
                    (x0 + w * s / stripes + 4, y0 + height * 0.06),
                ],
                fill=_night(colour, time_of_day),
            )
        draw.rectangle((x0, y0, x0 + w + 4, y0 + height * 0.06), outline=INK, width=line)
    _lantern_string(image, width, height * 0.1, height * 0.2, rng, time_of_day)


def _lantern_string(
    image: Image.Image, width: int, y_start: float, sag: float, rng: random.Random, time_of_day: str
) -> None:
    draw = ImageDraw.Draw(image)
    line = max(2, width // 500)
    points = [(width * t / 20, y_start + sag * math.sin(math.pi * t / 20)) for t in range(21)]
    draw.line(points, fill=INK, width=line)
    glow_mask = Image.new("L", image.size, 0) if time_of_day in ("night", "sunset") else None
    glow_draw = ImageDraw.Draw(glow_mask) if glow_mask is not None else None
    radius = width * 0.03
    for index in range(1, 20, 2):
        x, y = points[index]
        y += radius * 1.2
        if glow_draw is not None:
            glow_draw.ellipse(
                (x - radius * 2.6, y - radius * 2.6, x + radius * 2.6, y + radius * 2.6), fill=70
            )
    if glow_mask is not None:
        _tint(image, (0, 0, *image.size), (255, 200, 120), glow_mask)
        draw = ImageDraw.Draw(image)
    for index in range(1, 20, 2):
        x, y = points[index]
        y += radius * 1.2
        draw.line((x, y - radius * 1.2, x, y - radius * 0.9), fill=INK, width=line)
        draw.ellipse(
            (x - radius, y - radius * 0.95, x + radius, y + radius * 0.95),
            fill=(226, 52, 44),
            outline=INK,
            width=line,
        )
        draw.line((x - radius * 0.9, y, x + radius * 0.9, y), fill=(150, 30, 30), width=line)
        draw.rectangle(
            (x - radius * 0.45, y - radius * 1.05, x + radius * 0.45, y - radius * 0.85), fill=(40, 36, 36)
        )
        draw.rectangle(
            (x - radius * 0.45, y + radius * 0.85, x + radius * 0.45, y + radius * 1.05), fill=(40, 36, 36)
        )


def _street_scene(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    horizon: int,
    time_of_day: str,
    rng: random.Random,
    *,
    lanterns: bool = True,
) -> None:
    width, height = image.size
    line = max(3, width // 380)
    x = -rng.uniform(0, width * 0.05)
    while x < width:
        w = rng.uniform(0.14, 0.24) * width
        h = rng.uniform(0.22, 0.42) * height
        colour = _night(
            rng.choice([(196, 170, 150), (170, 160, 150), (150, 130, 120), (200, 190, 170)]), time_of_day
        )
        draw.rectangle((x, horizon - h, x + w, horizon), fill=colour, outline=INK, width=line)
        # A dark tiled roof.
        draw.polygon(
            [
                (x - w * 0.06, horizon - h),
                (x + w * 1.06, horizon - h),
                (x + w * 0.92, horizon - h - height * 0.05),
                (x + w * 0.08, horizon - h - height * 0.05),
            ],
            fill=_night((70, 70, 84), time_of_day),
            outline=INK,
            width=line,
        )
        lit = time_of_day in ("night", "sunset")
        for row in range(int(h // (height * 0.1))):
            for col in range(int(w // (width * 0.07))):
                wx = x + w * 0.12 + col * width * 0.07
                wy = horizon - h + height * 0.04 + row * height * 0.1
                if wy + height * 0.05 > horizon - height * 0.02:
                    continue
                window = (
                    (255, 214, 120) if lit and rng.random() < 0.7 else _night((120, 150, 180), time_of_day)
                )
                draw.rectangle(
                    (wx, wy, wx + width * 0.04, wy + height * 0.05),
                    fill=window,
                    outline=INK,
                    width=max(2, line // 2),
                )
        x += w + rng.uniform(0.0, 0.03) * width
    _ground(draw, image, horizon, _night((150, 146, 140), time_of_day))
    if lanterns and time_of_day == "night":
        _lantern_string(image, width, height * 0.12, height * 0.12, rng, time_of_day)


def _shrine_scene(
    image: Image.Image, draw: ImageDraw.ImageDraw, horizon: int, time_of_day: str, rng: random.Random
) -> None:
    width, height = image.size
    _forest_scene(image, draw, horizon, time_of_day, rng, trees=5)
    line = max(3, width // 340)
    red = _night((206, 46, 38), time_of_day)
    cx = width * rng.uniform(0.4, 0.6)
    span = width * 0.36
    top = horizon - height * 0.42
    for side in (-1, 1):
        px = cx + side * span / 2
        draw.rectangle(
            (px - width * 0.018, top + height * 0.04, px + width * 0.018, horizon),
            fill=red,
            outline=INK,
            width=line,
        )
    draw.polygon(
        [
            (cx - span * 0.75, top - height * 0.01),
            (cx + span * 0.75, top - height * 0.01),
            (cx + span * 0.68, top + height * 0.035),
            (cx - span * 0.68, top + height * 0.035),
        ],
        fill=(40, 34, 34),
        outline=INK,
        width=line,
    )
    draw.rectangle(
        (cx - span * 0.62, top + height * 0.035, cx + span * 0.62, top + height * 0.06),
        fill=red,
        outline=INK,
        width=line,
    )
    draw.rectangle(
        (cx - span * 0.58, top + height * 0.12, cx + span * 0.58, top + height * 0.145),
        fill=red,
        outline=INK,
        width=line,
    )
    # Stone steps toward the viewer.
    for step in range(5):
        y = horizon + step * (image.height - horizon) / 5
        half = span * (0.35 + step * 0.12)
        draw.rectangle(
            (cx - half, y, cx + half, y + (image.height - horizon) / 5),
            fill=_night((190, 186, 176), time_of_day),
            outline=_shade(_night((190, 186, 176), time_of_day), 0.6),
            width=line,
        )
    if time_of_day in ("night", "sunset"):
        _lantern_string(image, width, height * 0.08, height * 0.1, rng, time_of_day)


def _tree(draw: ImageDraw.ImageDraw, x: float, base: float, size: float, leaf: RGB, line: int) -> None:
    draw.rectangle(
        (x - size * 0.09, base - size * 0.9, x + size * 0.09, base),
        fill=(110, 76, 50),
        outline=INK,
        width=line,
    )
    for dx, dy, r in ((0, -1.3, 0.55), (-0.35, -1.0, 0.45), (0.35, -1.0, 0.45), (0, -0.9, 0.5)):
        draw.ellipse(
            (
                x + dx * size - r * size,
                base + dy * size - r * size,
                x + dx * size + r * size,
                base + dy * size + r * size,
            ),
            fill=leaf,
            outline=INK,
            width=line,
        )
    for dx, dy, r in ((0, -1.3, 0.55), (-0.35, -1.0, 0.45), (0.35, -1.0, 0.45)):
        draw.ellipse(
            (
                x + dx * size - r * size + line,
                base + dy * size - r * size + line,
                x + dx * size + r * size - line,
                base + dy * size + r * size - line,
            ),
            fill=leaf,
        )


def _forest_scene(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    horizon: int,
    time_of_day: str,
    rng: random.Random,
    *,
    trees: int = 8,
) -> None:
    width, _ = image.size
    line = max(3, width // 400)
    _hills(draw, width, horizon, _night((110, 160, 110), time_of_day), rng)
    _ground(draw, image, horizon, _night((130, 180, 100), time_of_day))
    for index in range(trees):
        x = width * (index + rng.uniform(0.1, 0.9)) / trees
        size = rng.uniform(0.12, 0.2) * width
        _tree(
            draw,
            x,
            horizon + rng.uniform(-0.01, 0.03) * width,
            size,
            _night(rng.choice([(70, 140, 70), (90, 160, 80), (60, 120, 80)]), time_of_day),
            line,
        )


def _river_scene(
    image: Image.Image, draw: ImageDraw.ImageDraw, horizon: int, time_of_day: str, rng: random.Random
) -> None:
    width, height = image.size
    _open_scene(image, draw, horizon, time_of_day, rng)
    water = _night((90, 150, 200), time_of_day)
    river_top = horizon + (height - horizon) * 0.25
    draw.polygon(
        [(0, river_top), (width, river_top - height * 0.04), (width, height * 0.93), (0, height)], fill=water
    )
    for _ in range(24):
        x, y = rng.uniform(0, width), rng.uniform(river_top, height)
        length = width * rng.uniform(0.03, 0.08)
        draw.line((x, y, x + length, y), fill=_shade(water, 1.35), width=max(2, width // 500))
    # An arched bridge across the back.
    line = max(3, width // 380)
    bridge = _night((170, 120, 80), time_of_day)
    box = (width * 0.1, river_top - height * 0.18, width * 0.9, river_top + height * 0.18)
    draw.arc(box, 195, 345, fill=INK, width=round(height * 0.045) + 2 * line)
    draw.arc(box, 195, 345, fill=bridge, width=round(height * 0.045))
    for post in range(7):
        angle = math.radians(200 + post * 23)
        px = (box[0] + box[2]) / 2 + (box[2] - box[0]) / 2 * math.cos(angle)
        py = (box[1] + box[3]) / 2 + (box[3] - box[1]) / 2 * math.sin(angle)
        draw.line((px, py, px, py - height * 0.05), fill=INK, width=line)


def _mountain_scene(
    image: Image.Image, draw: ImageDraw.ImageDraw, horizon: int, time_of_day: str, rng: random.Random
) -> None:
    width, height = image.size
    line = max(3, width // 380)
    for index in range(3):
        peak_x = width * (0.2 + index * 0.3 + rng.uniform(-0.08, 0.08))
        peak_y = horizon - height * rng.uniform(0.25, 0.45)
        half = width * rng.uniform(0.25, 0.35)
        colour = _night(_mix((120, 130, 160), (90, 110, 90), index / 2), time_of_day)
        draw.polygon(
            [(peak_x - half, horizon), (peak_x, peak_y), (peak_x + half, horizon)],
            fill=colour,
            outline=INK,
            width=line,
        )
        cap = 0.22
        draw.polygon(
            [
                (peak_x - half * cap, peak_y + (horizon - peak_y) * cap),
                (peak_x, peak_y),
                (peak_x + half * cap, peak_y + (horizon - peak_y) * cap),
                (peak_x, peak_y + (horizon - peak_y) * cap * 0.7),
            ],
            fill=(245, 248, 252),
        )
    _ground(draw, image, horizon, _night((140, 170, 110), time_of_day))


# --- mood effects -----------------------------------------------------------------------------------


def _mood_effects(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    mood: int,
    shot: int,
    rng: random.Random,
    figures: list[_Figure],
) -> None:
    width, height = image.size
    focus = (figures[0].x, figures[0].head_y) if figures else (width / 2, height / 2)
    if mood == _MOOD.MOOD_ACTION:
        _speed_lines(draw, image.size, focus, rng, min(width, height) * 0.32)
    elif mood in (_MOOD.MOOD_DRAMATIC, _MOOD.MOOD_DARK, _MOOD.MOOD_MYSTERIOUS):
        _vignette(image, 150 if mood == _MOOD.MOOD_DARK else 110)
        if mood == _MOOD.MOOD_DRAMATIC and shot in (
            _SHOT.SHOT_TYPE_CLOSE_UP,
            _SHOT.SHOT_TYPE_EXTREME_CLOSE_UP,
        ):
            _speed_lines(ImageDraw.Draw(image), image.size, focus, rng, min(width, height) * 0.42)
    elif mood == _MOOD.MOOD_ROMANTIC:
        _flowers(ImageDraw.Draw(image), image.size, rng)
    elif mood == _MOOD.MOOD_LIGHTHEARTED:
        _sparkles(ImageDraw.Draw(image), image.size, rng, 10)


def _speed_lines(
    draw: ImageDraw.ImageDraw, size: tuple[int, int], focus: Point, rng: random.Random, clear: float
) -> None:
    """Focus lines: thin black wedges from the frame edge toward the subject."""
    width, height = size
    reach = math.hypot(width, height)
    for _ in range(110):
        angle = rng.uniform(0, 2 * math.pi)
        spread = rng.uniform(0.004, 0.012)
        inner = clear * rng.uniform(1.0, 1.5)
        tip = (focus[0] + math.cos(angle) * inner, focus[1] + math.sin(angle) * inner)
        a = (focus[0] + math.cos(angle - spread) * reach, focus[1] + math.sin(angle - spread) * reach)
        b = (focus[0] + math.cos(angle + spread) * reach, focus[1] + math.sin(angle + spread) * reach)
        draw.polygon([tip, a, b], fill=INK)


def _vignette(image: Image.Image, strength: int) -> None:
    width, height = image.size
    mask = Image.radial_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    mask = mask.point(lambda v: max(0, min(255, (v - 150) * strength // 60)))
    image.paste((8, 6, 20), (0, 0, width, height), mask)


def _sparkles(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random, count: int) -> None:
    width, height = size
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height * 0.6)
        r = rng.uniform(0.012, 0.03) * width
        draw.polygon(
            [
                (x, y - r),
                (x + r * 0.22, y - r * 0.22),
                (x + r, y),
                (x + r * 0.22, y + r * 0.22),
                (x, y + r),
                (x - r * 0.22, y + r * 0.22),
                (x - r, y),
                (x - r * 0.22, y - r * 0.22),
            ],
            fill=(255, 255, 240),
            outline=(200, 170, 80),
        )


def _flowers(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    width, height = size
    for _ in range(16):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if abs(x - width / 2) < width * 0.25 and height * 0.25 < y < height * 0.8:
            continue  # keep petals off the faces
        r = rng.uniform(0.012, 0.03) * width
        colour = rng.choice([(255, 182, 200), (255, 210, 225), (250, 160, 190)])
        for petal in range(5):
            angle = 2 * math.pi * petal / 5
            px, py = x + math.cos(angle) * r, y + math.sin(angle) * r
            draw.ellipse(
                (px - r * 0.7, py - r * 0.7, px + r * 0.7, py + r * 0.7),
                fill=colour,
                outline=_shade(colour, 0.8),
            )
        draw.ellipse((x - r * 0.35, y - r * 0.35, x + r * 0.35, y + r * 0.35), fill=(255, 230, 120))
    _sparkles(draw, size, rng, 6)


def _rain(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    width, height = size
    for _ in range(160):
        x, y = rng.uniform(-width * 0.1, width), rng.uniform(0, height)
        length = rng.uniform(0.03, 0.07) * height
        draw.line((x, y, x + length * 0.25, y + length), fill=(220, 230, 245), width=max(2, width // 700))


def _snow(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    width, height = size
    for _ in range(140):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.003, 0.009) * width
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255))


# --- figures ----------------------------------------------------------------------------------------


def _place_figures(
    scene: common_pb2.Scene,
    shot: int,
    size: tuple[int, int],
    words: str,
    language: str,
    style: _Style,
    bible: dict[str, str],
) -> list[_Figure]:
    width, height = size

    def character_look(name: str) -> CharacterLook:
        return look_from_description(name, bible.get(name, ""))

    cast = list(scene.characters)
    # Speakers stand in the order their balloons are read, so each balloon sits above its speaker.
    speaking_order = [line.speaker for line in scene.dialogue if line.speaker in cast]
    ordered = list(dict.fromkeys([*speaking_order, *cast]))
    framing = _FRAMINGS.get(shot, _FRAMINGS[_SHOT.SHOT_TYPE_MEDIUM])
    right_to_left = language.startswith("ja")
    if not ordered:
        return []
    expression = _expression(scene, words)
    if shot in (_SHOT.SHOT_TYPE_CLOSE_UP, _SHOT.SHOT_TYPE_EXTREME_CLOSE_UP):
        main = ordered[0]
        x = width * (0.5 if not scene.dialogue else (0.42 if right_to_left else 0.58))
        return [
            _Figure(
                main,
                character_look(main),
                x,
                height * framing.head_y,
                height * framing.head_radius,
                -1 if x > width / 2 else 1,
                framing.body,
                expression.get(main, "neutral"),
            )
        ]
    if shot == _SHOT.SHOT_TYPE_OVER_THE_SHOULDER and len(ordered) >= 2:
        front, back = ordered[0], ordered[1]
        front_x = width * (0.38 if right_to_left else 0.62)
        back_x = width * (0.86 if right_to_left else 0.14)
        return [
            _Figure(
                back,
                character_look(back),
                back_x,
                height * 0.86,
                height * 0.2,
                1 if back_x < width / 2 else -1,
                "bust",
                "neutral",
                back_view=True,
            ),
            _Figure(
                front,
                character_look(front),
                front_x,
                height * framing.head_y,
                height * framing.head_radius,
                -1 if back_x > front_x else 1,
                framing.body,
                expression.get(front, "neutral"),
            ),
        ]
    shown = ordered[:3] if framing.body != "full" else ordered[:4]
    count = len(shown)
    radius = height * framing.head_radius * (0.85 if count >= 3 and framing.body != "full" else 1.0)
    if framing.body == "full":
        # Full bodies: the head sits `heads_tall` head-heights above the ground line.
        ground = height * (0.9 if shot == _SHOT.SHOT_TYPE_ESTABLISHING else 0.95)
        head_y = ground - radius * 2.2 * (style.heads_tall - 0.5)
    else:
        head_y = height * framing.head_y
    spacing = {1: [0.5], 2: [0.3, 0.7], 3: [0.2, 0.5, 0.8], 4: [0.16, 0.39, 0.61, 0.84]}[count]
    if right_to_left:
        spacing = list(reversed(spacing))
    if shot == _SHOT.SHOT_TYPE_ESTABLISHING and count <= 2:
        spacing = [0.42 + 0.08 * index for index in range(count)]
        if right_to_left:
            spacing.reverse()
    figures: list[_Figure] = []
    for index, name in enumerate(shown):
        x = width * spacing[index]
        facing = 1 if x < width / 2 else -1
        if count == 1:
            facing = 1 if (index + len(name)) % 2 else -1
        lift = radius * 0.25 * (index % 2) if framing.body == "waist" else 0.0
        figures.append(
            _Figure(
                name,
                character_look(name),
                x,
                head_y + lift,
                radius,
                facing,
                framing.body,
                expression.get(name, "neutral"),
            )
        )
    return figures


def _expression(scene: common_pb2.Scene, words: str) -> dict[str, str]:
    """Per speaker: an expression read from what they say; others take the scene's tone."""
    scene_tone = "neutral"
    for key in ("sad", "angry", "surprised", "smile"):
        if any(keyword in words for keyword in _EXPRESSION_WORDS[key]):
            scene_tone = key
            break
    result: dict[str, str] = {}
    for name in scene.characters:
        result[name] = scene_tone if scene_tone != "neutral" else "calm"
    for line in scene.dialogue:
        text = line.text
        if "!" in text or "！" in text:
            result[line.speaker] = "shout" if len(text) < 30 else "surprised"
        elif "?" in text or "？" in text:
            result[line.speaker] = "surprised" if scene_tone == "surprised" else "talk"
        else:
            result[line.speaker] = scene_tone if scene_tone in ("sad", "angry") else "talk"
    return result


def _ink(radius: float, style: _Style) -> int:
    return max(2, round(radius * 0.06 * style.line))


def _draw_figure(
    draw: ImageDraw.ImageDraw, figure: _Figure, style: _Style, mood: int, rng: random.Random
) -> None:
    look = figure.look
    r = figure.radius
    x, y = figure.x, figure.head_y
    ink = _ink(r, style)
    if figure.back_view:
        _draw_torso(draw, figure, style, ink)
        _draw_back_of_head(draw, figure, ink)
        return
    _draw_hair_back(draw, figure, ink)
    _draw_torso(draw, figure, style, ink)
    # Neck.
    draw.rectangle(
        (x - r * 0.28, y + r * 0.7, x + r * 0.28, y + r * 1.35),
        fill=_shade(look.skin, 0.9),
        outline=INK,
        width=ink,
    )
    _draw_head(draw, figure, ink)
    _draw_face(draw, figure, style, mood, ink)
    _draw_hair_front(draw, figure, ink)


def _build_width(look: CharacterLook) -> float:
    return {"slim": 1.0, "sturdy": 1.25, "small": 0.92, "tall and lanky": 0.95, "athletic": 1.15}.get(
        look.build, 1.0
    )


def _draw_torso(draw: ImageDraw.ImageDraw, figure: _Figure, style: _Style, ink: int) -> None:
    look = figure.look
    r = figure.radius
    x, y = figure.x, figure.head_y
    build = _build_width(look)
    shoulder = r * 1.45 * build
    waist = r * 1.05 * build
    neck_y = y + r * 1.2
    head_h = r * 2.2
    if figure.body == "full":
        torso_h = head_h * (style.heads_tall - 1) * 0.42
        leg_h = head_h * (style.heads_tall - 1) * 0.58
    else:
        torso_h = r * 6
        leg_h = 0.0
    hip_y = neck_y + torso_h
    clothes = look.clothes_colour
    dark = _shade(clothes, 0.7)
    if figure.body == "full":
        trousers = _shade(_mix(clothes, (50, 60, 90), 0.6), 0.8)
        for side in (-1, 1):
            lx = x + side * waist * 0.45
            draw.polygon(
                [
                    (lx - waist * 0.42, hip_y - r * 0.1),
                    (lx + waist * 0.42, hip_y - r * 0.1),
                    (lx + waist * 0.32, hip_y + leg_h),
                    (lx - waist * 0.32, hip_y + leg_h),
                ],
                fill=trousers,
                outline=INK,
                width=ink,
            )
            draw.ellipse(
                (
                    lx - waist * 0.42 + side * r * 0.1,
                    hip_y + leg_h - r * 0.25,
                    lx + waist * 0.42 + side * r * 0.1,
                    hip_y + leg_h + r * 0.2,
                ),
                fill=(40, 34, 34),
                outline=INK,
                width=ink,
            )
    # Arms behind the body, hanging with a slight swing.
    for side in (-1, 1):
        sx = x + side * shoulder * 0.92
        hand_x = sx + side * r * 0.35
        hand_y = neck_y + torso_h * 0.92 if figure.body == "full" else neck_y + r * 4.2
        draw.line((sx, neck_y + r * 0.4, hand_x, hand_y), fill=INK, width=round(r * 0.62) + 2 * ink)
        draw.line((sx, neck_y + r * 0.4, hand_x, hand_y), fill=dark, width=round(r * 0.62))
        if figure.body == "full":
            draw.ellipse(
                (hand_x - r * 0.22, hand_y - r * 0.1, hand_x + r * 0.22, hand_y + r * 0.34),
                fill=look.skin,
                outline=INK,
                width=ink,
            )
    torso = [
        (x - shoulder, neck_y + r * 0.35),
        (x - shoulder * 0.7, neck_y),
        (x + shoulder * 0.7, neck_y),
        (x + shoulder, neck_y + r * 0.35),
        (x + waist, hip_y),
        (x - waist, hip_y),
    ]
    draw.polygon(torso, fill=clothes, outline=INK, width=ink)
    # Collar: a V of skin and a lapel line; a ribbon when the clothes call for one.
    draw.polygon(
        [(x - r * 0.42, neck_y), (x + r * 0.42, neck_y), (x, neck_y + r * 0.7)],
        fill=look.skin,
        outline=INK,
        width=ink,
    )
    draw.line((x - r * 0.42, neck_y, x - r * 0.05, neck_y + r * 1.3), fill=_shade(clothes, 0.55), width=ink)
    draw.line((x + r * 0.42, neck_y, x + r * 0.05, neck_y + r * 1.3), fill=_shade(clothes, 0.55), width=ink)
    if "ribbon" in look.clothes_name:
        draw.polygon(
            [(x, neck_y + r * 0.65), (x - r * 0.4, neck_y + r * 0.45), (x - r * 0.4, neck_y + r * 0.9)],
            fill=(210, 40, 50),
            outline=INK,
            width=ink,
        )
        draw.polygon(
            [(x, neck_y + r * 0.65), (x + r * 0.4, neck_y + r * 0.45), (x + r * 0.4, neck_y + r * 0.9)],
            fill=(210, 40, 50),
            outline=INK,
            width=ink,
        )
    if "blazer" in look.clothes_name or "jacket" in look.clothes_name:
        draw.line((x, neck_y + r * 0.7, x, hip_y), fill=_shade(clothes, 0.5), width=ink)
    if style.detailed:
        for fold in range(3):
            fy = neck_y + r * (1.6 + fold * 0.8)
            draw.arc(
                (x - shoulder * 0.6, fy, x - shoulder * 0.1, fy + r * 0.5),
                200,
                330,
                fill=dark,
                width=max(1, ink // 2),
            )


def _head_box(figure: _Figure) -> tuple[float, float, float, float]:
    r = figure.radius
    widths = {"round": 1.0, "oval": 0.9, "heart-shaped": 0.93, "square-jawed": 0.97}
    w = r * widths.get(figure.look.head_shape, 1.0)
    return figure.x - w, figure.head_y - r * 1.05, figure.x + w, figure.head_y + r * 0.95


def _draw_head(draw: ImageDraw.ImageDraw, figure: _Figure, ink: int) -> None:
    look = figure.look
    r = figure.radius
    x, y = figure.x, figure.head_y
    box = _head_box(figure)
    w = (box[2] - box[0]) / 2
    # Ears first, so the head outline covers their inner edge.
    for side in (-1, 1):
        ex = x + side * w * 0.98
        draw.ellipse(
            (ex - r * 0.16, y - r * 0.05, ex + r * 0.16, y + r * 0.35), fill=look.skin, outline=INK, width=ink
        )
    chin_y = y + r * (1.12 if look.head_shape in ("oval", "heart-shaped") else 1.0)
    jaw = [
        (x - w, y),
        (x - w * (0.7 if look.head_shape == "square-jawed" else 0.55), y + r * 0.8),
        (x + figure.facing * r * 0.05, chin_y),
        (x + w * (0.7 if look.head_shape == "square-jawed" else 0.55), y + r * 0.8),
        (x + w, y),
    ]
    draw.polygon(jaw, fill=look.skin, outline=INK, width=ink)
    draw.ellipse(box, fill=look.skin, outline=INK, width=ink)
    # Repaint the seam between cranium and jaw so the face reads as one shape.
    draw.polygon(
        [(x - w + ink, y), (x - w * 0.5, y + r * 0.7), (x + w * 0.5, y + r * 0.7), (x + w - ink, y)],
        fill=look.skin,
    )


def _draw_face(draw: ImageDraw.ImageDraw, figure: _Figure, style: _Style, mood: int, ink: int) -> None:
    look = figure.look
    r = figure.radius
    x = figure.x + figure.facing * r * 0.1
    y = figure.head_y
    expression = figure.expression
    if r < 14:
        # Too small for features: two dots for eyes.
        for side in (-1, 1):
            draw.ellipse(
                (x + side * r * 0.35 - r * 0.09, y + r * 0.1, x + side * r * 0.35 + r * 0.09, y + r * 0.32),
                fill=INK,
            )
        return
    eye_w = r * 0.2 * style.eye_scale
    eye_h = r * 0.3 * style.eye_scale
    eye_y = y + r * 0.18
    thin = max(1, ink // 2)
    for side in (-1, 1):
        ex = x + side * r * 0.4
        # Eyebrows carry most of the expression.
        tilt = {"angry": 0.12, "sad": -0.1}.get(expression, 0.0) * r
        brow_y = eye_y - eye_h * 1.3 - (r * 0.07 if expression == "surprised" else 0)
        inner = (ex - side * eye_w * 0.9, brow_y + tilt)
        outer = (ex + side * eye_w * 1.15, brow_y - tilt * 0.3 - r * 0.03)
        draw.line((inner, outer), fill=_shade(look.hair_colour, 0.6), width=max(2, round(ink * 1.2)))
        if expression == "smile" and mood != _MOOD.MOOD_DARK:
            # Happy closed eyes: upward arcs.
            draw.arc(
                (ex - eye_w, eye_y - eye_h * 0.6, ex + eye_w, eye_y + eye_h * 0.6),
                200,
                340,
                fill=INK,
                width=max(2, ink),
            )
            continue
        open_h = eye_h * (1.15 if expression == "surprised" else 1.0)
        draw.ellipse((ex - eye_w, eye_y - open_h, ex + eye_w, eye_y + open_h), fill=PAPER)
        iris_r = eye_w * (0.62 if expression == "surprised" else 0.8)
        ix = ex + figure.facing * eye_w * 0.18
        draw.ellipse(
            (ix - iris_r, eye_y - open_h * 0.75, ix + iris_r, eye_y + open_h * 0.95),
            fill=look.eye_colour,
            outline=INK,
            width=thin,
        )
        draw.ellipse(
            (ix - iris_r * 0.45, eye_y - open_h * 0.2, ix + iris_r * 0.45, eye_y + open_h * 0.5), fill=INK
        )
        highlight = iris_r * 0.38
        draw.ellipse(
            (
                ix - iris_r * 0.55 - highlight * 0.2,
                eye_y - open_h * 0.55,
                ix - iris_r * 0.55 + highlight * 1.6,
                eye_y - open_h * 0.55 + highlight * 1.8,
            ),
            fill=PAPER,
        )
        if style.sparkle_eyes:
            draw.ellipse(
                (ix + iris_r * 0.2, eye_y + open_h * 0.35, ix + iris_r * 0.55, eye_y + open_h * 0.7),
                fill=PAPER,
            )
        # Upper lid: the heavy line that makes a manga eye.
        draw.arc(
            (ex - eye_w * 1.15, eye_y - open_h * 1.05, ex + eye_w * 1.15, eye_y + open_h * 1.2),
            195,
            345,
            fill=INK,
            width=max(2, round(ink * 1.5)),
        )
        draw.arc(
            (ex - eye_w * 0.9, eye_y - open_h, ex + eye_w * 0.9, eye_y + open_h),
            60,
            120,
            fill=INK,
            width=thin,
        )
        if expression == "sad":
            draw.ellipse(
                (
                    ex + side * eye_w * 0.3,
                    eye_y + open_h * 1.1,
                    ex + side * eye_w * 0.3 + r * 0.08,
                    eye_y + open_h * 1.1 + r * 0.14,
                ),
                fill=(150, 200, 255),
                outline=INK,
                width=thin,
            )
    # Nose: a small shadow stroke.
    draw.line(
        (x + figure.facing * r * 0.02, y + r * 0.45, x + figure.facing * r * 0.08, y + r * 0.52),
        fill=_shade(look.skin, 0.7),
        width=max(2, ink),
    )
    mouth_y = y + r * 0.7
    mw = r * 0.2
    if expression in ("shout", "surprised"):
        h = r * (0.2 if expression == "shout" else 0.12)
        draw.ellipse(
            (
                x - mw * (1.0 if expression == "shout" else 0.6),
                mouth_y - h * 0.5,
                x + mw * (1.0 if expression == "shout" else 0.6),
                mouth_y + h,
            ),
            fill=(120, 30, 40),
            outline=INK,
            width=thin,
        )
    elif expression == "smile":
        draw.chord(
            (x - mw * 1.2, mouth_y - r * 0.12, x + mw * 1.2, mouth_y + r * 0.16),
            0,
            180,
            fill=(150, 40, 50),
            outline=INK,
            width=thin,
        )
    elif expression == "talk":
        draw.ellipse(
            (x - mw * 0.6, mouth_y - r * 0.03, x + mw * 0.6, mouth_y + r * 0.08),
            fill=(140, 40, 50),
            outline=INK,
            width=thin,
        )
    elif expression in ("sad", "angry"):
        draw.arc((x - mw, mouth_y, x + mw, mouth_y + r * 0.16), 200, 340, fill=INK, width=max(2, ink))
    else:
        draw.arc(
            (x - mw, mouth_y - r * 0.1, x + mw, mouth_y + r * 0.06), 20, 160, fill=INK, width=max(2, ink)
        )
    if mood == _MOOD.MOOD_ROMANTIC or expression == "smile":
        for side in (-1, 1):
            cx = x + side * r * 0.55
            draw.ellipse(
                (cx - r * 0.16, y + r * 0.42, cx + r * 0.16, y + r * 0.56),
                fill=_mix(look.skin, (240, 120, 130), 0.45),
            )


def _hair_colours(look: CharacterLook) -> tuple[RGB, RGB, RGB]:
    base = look.hair_colour
    return base, _shade(base, 0.7), _shade(base, 1.35)


def _draw_hair_back(draw: ImageDraw.ImageDraw, figure: _Figure, ink: int) -> None:
    look = figure.look
    r = figure.radius
    x, y = figure.x, figure.head_y
    base, dark, _ = _hair_colours(look)
    style = look.hair_style
    if style == "long straight":
        draw.polygon(
            [
                (x - r * 1.15, y - r * 0.3),
                (x + r * 1.15, y - r * 0.3),
                (x + r * 1.35, y + r * 3.2),
                (x - r * 1.35, y + r * 3.2),
            ],
            fill=base,
            outline=INK,
            width=ink,
        )
    elif style == "chin-length bob":
        draw.ellipse(
            (x - r * 1.22, y - r * 1.2, x + r * 1.22, y + r * 1.25), fill=base, outline=INK, width=ink
        )
    elif style == "high ponytail":
        side = -figure.facing
        draw.polygon(
            [
                (x + side * r * 0.6, y - r * 0.9),
                (x + side * r * 1.7, y - r * 0.4),
                (x + side * r * 1.9, y + r * 1.6),
                (x + side * r * 1.2, y + r * 0.6),
            ],
            fill=base,
            outline=INK,
            width=ink,
        )
        draw.ellipse(
            (x + side * r * 0.55 - r * 0.2, y - r * 1.05, x + side * r * 0.55 + r * 0.2, y - r * 0.65),
            fill=(220, 50, 70),
            outline=INK,
            width=ink,
        )
    elif style == "twin tails":
        for side in (-1, 1):
            draw.polygon(
                [
                    (x + side * r * 0.9, y - r * 0.6),
                    (x + side * r * 1.7, y - r * 0.2),
                    (x + side * r * 1.6, y + r * 2.4),
                    (x + side * r * 1.05, y + r * 0.7),
                ],
                fill=base,
                outline=INK,
                width=ink,
            )
    elif style == "curly shoulder-length":
        for angle in range(0, 360, 30):
            cx = x + math.cos(math.radians(angle)) * r * 1.05
            cy = y + math.sin(math.radians(angle)) * r * 1.05 + r * 0.2
            draw.ellipse(
                (cx - r * 0.42, cy - r * 0.42, cx + r * 0.42, cy + r * 0.42),
                fill=base,
                outline=INK,
                width=ink,
            )
    elif style == "top-knot bun":
        draw.ellipse(
            (x - r * 0.45, y - r * 1.7, x + r * 0.45, y - r * 0.85), fill=base, outline=INK, width=ink
        )
        draw.arc(
            (x - r * 0.3, y - r * 1.55, x + r * 0.3, y - r * 1.0), 200, 320, fill=dark, width=max(1, ink)
        )
    elif style == "short spiky":
        spikes: list[Point] = []
        for index in range(11):
            spike_angle = math.radians(160 + index * 22)
            spike = 1.45 if index % 2 == 0 else 1.0
            spikes.append(
                (x + math.cos(spike_angle) * r * spike, y - r * 0.1 + math.sin(spike_angle) * r * spike)
            )
        draw.polygon(spikes, fill=base, outline=INK, width=ink)


def _draw_hair_front(draw: ImageDraw.ImageDraw, figure: _Figure, ink: int) -> None:
    """The hair over the forehead, drawn as one outlined shape so no seam crosses the head."""
    look = figure.look
    r = figure.radius
    x, y = figure.x, figure.head_y
    base, dark, light = _hair_colours(look)
    box = _head_box(figure)
    left, top, right = box[0] - r * 0.08, box[1] - r * 0.1, box[2] + r * 0.08
    centre_y = (box[1] + box[3]) / 2
    half_w, half_h = (right - left) / 2, centre_y - top
    crown = [
        (x + math.cos(math.radians(a)) * half_w, centre_y + math.sin(math.radians(a)) * half_h)
        for a in range(180, 361, 12)
    ]
    style = look.hair_style
    side = figure.facing
    fringe_y = y - r * 0.22
    edge: list[Point]  # the lower edge, from right to left
    if style in ("chin-length bob", "long straight", "twin tails"):
        lock = 0.95 if style != "twin tails" else 0.5
        edge = [(right, y + r * lock), (right - r * 0.22, y + r * lock * 0.6), (right - r * 0.2, fringe_y)]
        edge += [(left + r * 0.2, fringe_y), (left + r * 0.22, y + r * lock * 0.6), (left, y + r * lock)]
    else:
        spiky = style == "short spiky"
        clumps = 5 if spiky else 4
        inner_left, inner_right = left + r * 0.16, right - r * 0.16
        edge = [(right, y + r * 0.12), (inner_right, y - r * 0.25)]
        for index in range(clumps, 0, -1):
            t_tip = (index - 0.5) / clumps
            t_valley = (index - 1) / clumps
            # Locks lean toward the side the character faces and lengthen on that side.
            reach = 0.0 if spiky else 0.22 * (t_tip if side > 0 else 1 - t_tip)
            edge.append(
                (inner_left + (inner_right - inner_left) * t_tip + side * r * 0.14, y - r * (0.12 - reach))
            )
            if index > 1:
                edge.append(
                    (inner_left + (inner_right - inner_left) * t_valley, y - r * (0.5 if spiky else 0.45))
                )
        edge += [(inner_left, y - r * 0.25), (left, y + r * 0.12)]
    draw.polygon(crown + edge, fill=base, outline=INK, width=ink)
    if style in ("chin-length bob", "long straight", "twin tails"):
        for index in range(1, 5):
            bx = left + r * 0.2 + (right - left - r * 0.4) * index / 5
            draw.line(
                (bx, fringe_y - r * 0.3, bx + side * r * 0.04, fringe_y - ink),
                fill=dark,
                width=max(1, ink // 2 + 1),
            )
    elif style == "curly shoulder-length":
        for index in range(5):
            bx = left + r * 0.3 + (right - left - r * 0.6) * index / 4
            draw.ellipse(
                (bx - r * 0.3, y - r * 0.62, bx + r * 0.3, y - r * 0.08), fill=base, outline=INK, width=ink
            )
    # A shine band across the crown.
    draw.arc(
        (x - r * 0.7, y - r * 1.0, x + r * 0.7, y - r * 0.1),
        215,
        325,
        fill=light,
        width=max(2, round(r * 0.09)),
    )


def _draw_back_of_head(draw: ImageDraw.ImageDraw, figure: _Figure, ink: int) -> None:
    look = figure.look
    r = figure.radius
    x, y = figure.x, figure.head_y
    base, dark, light = _hair_colours(look)
    for side in (-1, 1):
        ex = x + side * r * 0.98
        draw.ellipse(
            (ex - r * 0.16, y - r * 0.05, ex + r * 0.16, y + r * 0.35), fill=look.skin, outline=INK, width=ink
        )
    draw.ellipse((x - r, y - r * 1.05, x + r, y + r * 0.95), fill=base, outline=INK, width=ink)
    if look.hair_style in ("long straight", "chin-length bob", "twin tails", "curly shoulder-length"):
        draw.polygon(
            [(x - r * 1.05, y), (x + r * 1.05, y), (x + r * 1.1, y + r * 1.4), (x - r * 1.1, y + r * 1.4)],
            fill=base,
            outline=INK,
            width=ink,
        )
    for index in range(5):
        sx = x - r * 0.6 + index * r * 0.3
        draw.arc(
            (sx - r * 0.3, y - r * 0.9, sx + r * 0.3, y + r * 0.8), 250, 290, fill=dark, width=max(1, ink)
        )
    draw.arc(
        (x - r * 0.7, y - r * 0.9, x + r * 0.7, y - r * 0.2),
        210,
        330,
        fill=light,
        width=max(2, round(r * 0.09)),
    )


# --- palette and lettering --------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _screentone(size: tuple[int, int], cell: int) -> Image.Image:
    """A clustered-dot threshold map: where a tone is darker than the map, a dot of ink appears."""
    tile = Image.new("L", (cell, cell))
    centre = (cell - 1) / 2
    # Threshold rises with distance from the dot centre, so darker tones grow rounder dots.
    values = []
    for y in range(cell):
        for x in range(cell):
            distance = math.hypot(x - centre, y - centre) / (centre * math.sqrt(2))
            values.append(round(28 + 212 * distance))
    tile.putdata(values)
    tile = tile.rotate(45, resample=Image.Resampling.NEAREST, expand=True)
    tiled = Image.new("L", size)
    for y in range(0, size[1], tile.height):
        for x in range(0, size[0], tile.width):
            tiled.paste(tile, (x, y))
    return tiled


def _apply_palette(image: Image.Image, palette: int) -> Image.Image:
    if palette == _PALETTE.COLOR_PALETTE_BLACK_AND_WHITE:
        grey = ImageOps.grayscale(image)
        # Light tones become paper and dark ones ink; only the middle is screened, and screened lightly,
        # so faces stay clean and the tone reads as a background rather than noise.
        lut = [0 if v < 48 else 255 if v > 196 else round(110 + (v - 48) * 140 / 148) for v in range(256)]
        toned = grey.point(lut)
        threshold = _screentone(image.size, max(5, image.width // 150))
        dotted = ImageChops.subtract(toned, threshold).point(lambda v: 255 if v > 0 else 0)
        solid_mask = grey.point(lambda v: 255 if v < 48 or v > 196 else 0)
        result = Image.composite(toned, dotted, solid_mask)
        return result.convert("RGB")
    if palette == _PALETTE.COLOR_PALETTE_SEPIA:
        grey = ImageOps.grayscale(image)
        return ImageOps.colorize(grey, (46, 28, 14), (250, 238, 210), mid=(160, 118, 76))
    if palette == _PALETTE.COLOR_PALETTE_PASTEL:
        soft = ImageEnhance.Color(image).enhance(0.7)
        return Image.blend(soft, Image.new("RGB", image.size, (255, 250, 252)), 0.28)
    if palette == _PALETTE.COLOR_PALETTE_VIBRANT:
        return ImageEnhance.Contrast(ImageEnhance.Color(image).enhance(1.45)).enhance(1.06)
    if palette == _PALETTE.COLOR_PALETTE_MUTED:
        dull = ImageEnhance.Color(image).enhance(0.45)
        return Image.blend(dull, Image.new("RGB", image.size, (128, 124, 118)), 0.12)
    return image


def _right_to_left(reading_order: common_pb2.ReadingOrder.ValueType) -> bool:
    return reading_order != common_pb2.READING_ORDER_LEFT_TO_RIGHT


def _letter(
    panel: Image.Image,
    scene: common_pb2.Scene,
    figures: list[_Figure],
    language: str,
    right_to_left: bool,
) -> None:
    """Narration caption at the top, then the dialogue in balloons above the speakers, in
    reading order: the first line top-right when the page reads right to left."""
    width, height = panel.size
    unit = min(width, height) / 1024
    margin = round(22 * unit)
    vertical = language.startswith("ja")
    caption_box: tuple[int, int, int, int] | None = None
    if scene.narration:
        region_width = round(width * (0.3 if vertical else 0.62))
        region_height = round(height * (0.34 if vertical else 0.2))
        left = width - margin - region_width if right_to_left else margin
        caption_box = lettering.draw_caption(
            panel,
            (left, margin, left + region_width, margin + region_height),
            scene.narration,
            language,
            vertical=vertical,
            max_size=round(28 * unit),
            min_size=round(15 * unit),
            line_width=max(2, round(3 * unit)),
            anchor="right" if right_to_left else "left",
        )
    min_size = lettering.min_dialogue_px(panel.size)
    max_size = max(min_size, round(34 * unit))
    lines = _balloon_lines(list(scene.dialogue), language, width - 2 * margin, height, min_size, vertical)
    if not lines:
        return
    scale = 1 / SUPERSAMPLE
    by_name = {figure.name: figure for figure in figures if not figure.back_view}
    back = {figure.name: figure for figure in figures if figure.back_view}
    # Side by side while each balloon keeps a readable measure (about eight ems of Latin, five
    # of vertical columns); the rest go on below, in the same order.
    fitting = int((width - 2 * margin) // (min_size * (5 if vertical else 8)))
    columns = max(1, min(len(lines), fitting))
    column_width = (width - 2 * margin) / columns
    drawn: list[lettering.Box] = [caption_box] if caption_box is not None else []
    for index, line in enumerate(lines):
        slot = (columns - 1 - index % columns) if right_to_left else index % columns
        x0 = margin + slot * column_width
        x1 = x0 + column_width
        # Each balloon a little lower than the one before: the eye goes down the reading order.
        top = margin + round(index * height * 0.04)
        if caption_box is not None and x0 < caption_box[2] and x1 > caption_box[0]:
            top = caption_box[3] + margin // 2
            if vertical and caption_box[0] < x0 + column_width * 0.5:
                # A tall vertical caption: the balloon moves beside it rather than under it.
                x1 = min(x1, caption_box[0] - margin // 2)
                top = margin
        bottom = top + height * _BALLOON_HEIGHT
        figure = by_name.get(line.speaker) or back.get(line.speaker)
        tail: lettering.Point
        if figure is not None:
            if figure.back_view:
                tail = (figure.x * scale, (figure.head_y - figure.radius) * scale)
            else:
                tail = (figure.mouth[0] * scale, figure.mouth[1] * scale)
        else:
            # An unseen speaker: the tail points out of the frame.
            tail = ((x0 + x1) / 2, height * 1.0)
        kind = lettering.balloon_kind_for(line.text)
        box = lettering.draw_balloon(
            panel,
            (round(x0), round(top), round(max(x0 + 40 * unit, x1 - margin * 0.4)), round(bottom)),
            line.text,
            language,
            tail_to=tail,
            kind=kind,
            vertical=vertical,
            max_size=max_size,
            min_size=min_size,
            line_width=max(2, round(3 * unit)),
            avoid=drawn,
        )
        drawn.append(box)


# The most of a panel's height a balloon takes before its line is split over two balloons.
_BALLOON_HEIGHT = 0.5
_MAX_BALLOONS = 4


def _balloon_lines(
    lines: list[common_pb2.DialogueLine],
    language: str,
    band_width: int,
    height: int,
    min_size: int,
    vertical: bool,
) -> list[common_pb2.DialogueLine]:
    """The dialogue as balloons: lines beyond the third join the third (their punctuation
    kept), and a line too long for a balloon at dialogue size is split over two."""
    if len(lines) > 3:
        merged = lines[2].text
        for line in lines[3:]:
            merged = lettering.join_speech(merged, line.text, language)
        lines = [*lines[:2], common_pb2.DialogueLine(speaker=lines[2].speaker, text=merged)]
    while len(lines) < _MAX_BALLOONS:
        # Balloons that do not fit side by side stack down the panel, so each may take half its width.
        region = (band_width // min(2, max(1, len(lines))), round(height * _BALLOON_HEIGHT))
        for index, line in enumerate(lines):
            kind = lettering.balloon_kind_for(line.text)
            layout = lettering.layout_balloon(
                region,
                line.text,
                language,
                kind=kind,
                vertical=vertical,
                max_size=min_size,
                min_size=min_size,
            )
            if layout.fits:
                continue
            pieces = lettering.split_speech(line.text, language)
            if len(pieces) == 2:
                halves = [common_pb2.DialogueLine(speaker=line.speaker, text=piece) for piece in pieces]
                lines = [*lines[:index], *halves, *lines[index + 1 :]]
                break
        else:
            break
    return lines
