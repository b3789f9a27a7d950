"""The local story planner: turns a story into a ScenePlan without any model.

It owns language detection, sentence and scene splitting, dialogue and speaker
extraction, the character bible (including each character's fixed look, which
the local art backend draws from) and the per-scene shot choice. Everything is
deterministic: the same story, panel count and style always give the same plan.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mangakai.v1 import common_pb2
from mangakai_renderer import lettering

# Scripts, by Unicode block.
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_CJK_CHAR = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\uff00-\uffef\u3000-\u303f]"
)

_SENTENCE_END = ".!?。！？…‼⁉"
_CLOSERS = "\"'”’」』»）)]"
_OPENERS = "“「『«（(["
_TERMINAL_PUNCTUATION = _SENTENCE_END + ",;:、，；：" + _CLOSERS

# Quoted speech: (opening, closing) pairs; straight double quotes open and close alike.
_QUOTE = re.compile(r"“([^”]+)”|\"([^\"]+)\"|「([^」]+)」|『([^』]+)』|«([^»]+)»|„([^“”]+)[“”]")

_SPEECH_VERBS_EN = (
    "said|says|asked|asks|replied|replies|whispered|whispers|shouted|shouts|called|calls|cried|cries|"
    "muttered|mutters|answered|answers|yelled|yells|murmured|murmurs|exclaimed|laughed|sighed|added|"
    "began|continued|insisted|snapped|breathed|told|screamed|begged|pleaded|warned|admitted"
)
_NAME_EN = r"[A-Z][\w'’-]+(?:\s[A-Z][\w'’-]+)?"
_ATTR_AFTER_EN = re.compile(
    rf"^[\s,]*(?:(?P<verb1>{_SPEECH_VERBS_EN})\s+(?P<name1>{_NAME_EN})|(?P<name2>{_NAME_EN}|[Hh]e|[Ss]he|[Tt]hey|[Tt]he \w+)\s+(?:{_SPEECH_VERBS_EN})\b)[^.!?\"“”]*[.!?,]?"
)
_ATTR_BEFORE_EN = re.compile(rf"(?P<name>{_NAME_EN})\s+(?:{_SPEECH_VERBS_EN})(?:\s+\w+)?\s*[,:]?\s*$")

_JA_NAME = r"[\u4e00-\u9fff\u30a0-\u30ff々]{1,6}(?:さん|くん|ちゃん|先輩|先生|様)?"
_JA_VERBS = r"(?:言|叫|つぶや|呟|答|聞|尋|笑|囁|ささや|返|話|続|言い|怒鳴|呼|泣)"
_ATTR_AFTER_JA = re.compile(
    rf"^\s*(?:と|って)\s*(?P<name>{_JA_NAME})(?:は|が)[^。！？「]*?{_JA_VERBS}[^。！？「]*[。！？]?"
)
_ATTR_AFTER_JA_SHORT = re.compile(
    rf"^\s*(?:と|って)\s*(?P<name>{_JA_NAME})(?:は|が)[^。！？「]{{0,12}}[。！？]?"
)
_ATTR_TRAILER_JA = re.compile(rf"^\s*(?:と|って)[^。！？「」]{{0,8}}?{_JA_VERBS}[^。！？「]{{0,6}}[。！？]?")
_ATTR_BEFORE_JA = re.compile(rf"(?P<name>{_JA_NAME})(?:は|が)[^。！？「」]{{0,10}}$")

_ZH_ADVERBS = r"(?:笑着|轻声|低声|大声地?|小声|悄悄地?|认真地|高兴地|不服气地|生气地|轻轻地|急忙|连忙|忽然|突然|又|也|却|就)?"
_ZH_VERBS = r"(?:说道|说|问道|问|喊道|喊|叫道|回答|答道|道|嘟囔|嚷道)"
_ATTR_AFTER_ZH = re.compile(rf"^\s*(?P<name>[\u4e00-\u9fff]{{1,4}}?){_ZH_ADVERBS}{_ZH_VERBS}[。！？，]?")
_ATTR_BEFORE_ZH = re.compile(rf"(?P<name>[\u4e00-\u9fff]{{1,6}}?){_ZH_ADVERBS}{_ZH_VERBS}\s*[：:，,]?\s*$")

# Words that look like names in the patterns above but are not people.
_NOT_NAMES = {
    "I",
    "The",
    "A",
    "An",
    "He",
    "She",
    "They",
    "We",
    "You",
    "It",
    "His",
    "Her",
    "Their",
    "Then",
    "But",
    "And",
    "Or",
    "So",
    "When",
    "While",
    "After",
    "Before",
    "At",
    "In",
    "On",
    "Outside",
    "Inside",
    "Up",
    "For",
    "Near",
    "Together",
    "Slowly",
    "Please",
    "Mr",
    "Mrs",
    "Ms",
    "Dr",
    "Yes",
    "No",
    "Oh",
    "Night",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "God",
    "One",
    "Two",
    "Three",
    "This",
    "That",
    "These",
    "Those",
    "There",
    "Here",
    "What",
    "Why",
    "How",
    "Who",
    "Where",
    "If",
    "As",
    "Once",
    "Now",
    "Still",
    "Only",
    "Just",
    "All",
    "Every",
    "Light",
    "Father",
    "Mother",
    "Mom",
    "Dad",
    "Sir",
    "Madam",
    "Miss",
    "Don't",
    "I'm",
    "It's",
    "That's",
    "Let's",
    "Come",
    "Okay",
    "OK",
    "Hello",
    "Hi",
    "Good",
    "Well",
    "Are",
    "Is",
    "Do",
    "Did",
    "Can",
    "Will",
    "Would",
    "Not",
    "Never",
    "Maybe",
    "Look",
    "Wait",
    "Stop",
    "Go",
    "Run",
    "Thank",
    "Thanks",
    "Sorry",
    "Dear",
}
_NOT_NAMES_CJK = {
    "私",
    "僕",
    "俺",
    "彼",
    "彼女",
    "二人",
    "みんな",
    "今日",
    "明日",
    "空",
    "夜",
    "朝",
    "町",
    "世界",
    "声",
    "光",
    "花火",
    "風",
    "雨",
    "雪",
    "海",
    "川",
    "音",
    "時間",
    "最後",
    "今年",
    "来年",
    "それ",
    "これ",
    "我",
    "你",
    "他",
    "她",
    "我们",
    "他们",
    "她们",
    "大家",
    "两人",
    "人们",
    "有人",
    "风",
    "灯",
    "天",
    "明年",
    "下次",
    "终于",
    "于是",
    "这时",
    "然后",
    "突然",
    "忽然",
    "一起",
    "自己",
    "谁",
}
_HONORIFICS = ("さん", "くん", "ちゃん", "先輩", "先生", "様")
_ZH_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)

_PRONOUNS_EN = re.compile(r"\b(?:he|she|they|him|her|them|his|their)\b", re.IGNORECASE)
_PRONOUNS_CJK = re.compile(r"彼女|彼ら|彼|他们|她们|他|她|二人|两人")

# Location words, per language. The setting is the first phrase naming one of these.
_PLACES_EN = (
    "lighthouse|tower|lamp room|room|kitchen|bedroom|hall|hallway|stairs|staircase|street|road|alley|harbor|"
    "harbour|port|dock|pier|beach|shore|shingle|sea|ocean|rocks|cliff|island|forest|woods|park|garden|field|"
    "meadow|mountain|hill|valley|river|lake|bridge|school|classroom|library|office|station|train|bus|cafe|"
    "café|shop|market|square|city|town|village|house|home|apartment|roof|rooftop|castle|temple|shrine|"
    "church|festival|fair|ship|boat|deck|window|door|gate|yard|desert|cave|palace|hospital|restaurant|bar|"
    "stage|arena|sky|water|waves|point"
)
_PLACE_EN = re.compile(
    rf"\b(?:in|at|on|inside|outside|near|by|under|across|into|onto|beside|along|from|to|toward|towards|through|up|down)\s+"
    rf"(?:the|a|an|her|his|their|my|our|its)\s+((?:[a-z'’-]+\s+){{0,3}}?(?:{_PLACES_EN}))\b"
)
_PLACE_PROPER_EN = re.compile(
    r"\b(?:in|at|on|near|to)\s+((?:[A-Z][a-z]+\s){0,2}(?:Point|Bay|Street|Park|Island|Harbor|Harbour|Station|Hill|Lake|River|Beach|Temple|Shrine|Castle|Village|Town|City))\b"
)
_PLACES_CJK = (
    "灯塔",
    "海边",
    "海岸",
    "沙滩",
    "房间",
    "卧室",
    "厨房",
    "教室",
    "学校",
    "图书馆",
    "车站",
    "街道",
    "老街",
    "街上",
    "巷口",
    "巷子",
    "河边",
    "河面",
    "石桥",
    "桥上",
    "桥",
    "广场",
    "公园",
    "花园",
    "市场",
    "庙会",
    "寺",
    "山上",
    "山",
    "森林",
    "村口",
    "村子",
    "家里",
    "家门口",
    "屋顶",
    "天台",
    "船上",
    "码头",
    "城里",
    "神社",
    "鳥居",
    "石段",
    "境内",
    "屋台",
    "川原",
    "河原",
    "川",
    "海辺",
    "浜辺",
    "海",
    "部屋",
    "台所",
    "教室",
    "学校",
    "図書館",
    "駅",
    "電車",
    "商店街",
    "通り",
    "路地",
    "公園",
    "庭",
    "森",
    "山",
    "村",
    "町",
    "家",
    "屋上",
    "橋",
    "祭り",
    "港",
    "浜",
    "城",
    "寺",
    "空",
)
_TIMES_EN = re.compile(
    r"\b(night|midnight|dawn|dusk|sunset|sunrise|evening|morning|noon|afternoon|storm|stormy|rain|snow)\b",
    re.IGNORECASE,
)
_TIMES_CJK = (
    "夜",
    "晚上",
    "夜晚",
    "黄昏",
    "夕方",
    "夕暮れ",
    "朝",
    "早上",
    "清晨",
    "中午",
    "昼",
    "深夜",
    "雨",
    "雪",
    "嵐",
)

_EMOTION_EN = re.compile(
    r"\b(cried|tears|scream|screamed|shout|shouted|gasped|sob|sobbed|laughed|smiled|blushed|trembled|heart)\b",
    re.IGNORECASE,
)
_EMOTION_CJK = re.compile(r"泣|涙|叫|笑|驚|哭|泪|喊|惊|心跳|脸红|顔を赤")
_ACTION_EN = re.compile(
    r"\b(ran|run|running|jumped|leapt|fought|fight|chased|crashed|raced|pushed|pulled|threw|struck|fell|swept|stormed|burst|tore|sprinted|dashed|climbed)\b",
    re.IGNORECASE,
)
_ACTION_CJK = re.compile(r"跑|冲|跳|打|追|推|拉|挤|走|走ってき|走っ|駆け|跳|投げ|倒れ|飛び|押|引")

# The character bible's vocabulary. Index choices come from a hash of the name only.
HAIR_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("jet-black", (28, 26, 34)),
    ("chestnut-brown", (112, 62, 34)),
    ("ash-blonde", (214, 190, 128)),
    ("fiery red", (182, 52, 34)),
    ("silver-grey", (176, 180, 192)),
    ("deep navy", (34, 46, 96)),
    ("dark brown", (66, 40, 26)),
    ("honey-blonde", (226, 172, 74)),
    ("plum", (104, 46, 96)),
    ("teal", (32, 112, 118)),
)
HAIR_STYLES: tuple[str, ...] = (
    "short spiky",
    "chin-length bob",
    "long straight",
    "high ponytail",
    "twin tails",
    "short neat",
    "curly shoulder-length",
    "top-knot bun",
)
CLOTHES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("a crimson jacket", (176, 38, 48)),
    ("a navy school blazer", (36, 50, 98)),
    ("a forest-green coat", (40, 104, 62)),
    ("a mustard-yellow sweater", (214, 164, 40)),
    ("a sky-blue shirt", (92, 156, 214)),
    ("a charcoal hoodie", (64, 66, 74)),
    ("a white blouse with a red ribbon", (236, 232, 226)),
    ("a violet cardigan", (118, 80, 164)),
    ("an orange windbreaker", (232, 112, 40)),
    ("a brown leather vest", (120, 76, 44)),
)
EYE_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("amber", (196, 128, 30)),
    ("emerald", (30, 140, 80)),
    ("sky-blue", (60, 130, 210)),
    ("dark brown", (70, 40, 24)),
    ("violet", (120, 70, 170)),
    ("grey", (110, 116, 128)),
)
BUILDS: tuple[str, ...] = ("slim", "sturdy", "small", "tall and lanky", "athletic")
HEAD_SHAPES: tuple[str, ...] = ("round", "oval", "heart-shaped", "square-jawed")
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (253, 226, 204),
    (244, 208, 176),
    (226, 180, 140),
    (190, 136, 98),
    (250, 220, 196),
)


@dataclass(frozen=True)
class CharacterLook:
    """The fixed look of one character, chosen by a hash of the character's name."""

    hair_colour_name: str
    hair_colour: tuple[int, int, int]
    hair_style: str
    clothes_name: str
    clothes_colour: tuple[int, int, int]
    eye_colour_name: str
    eye_colour: tuple[int, int, int]
    build: str
    head_shape: str
    skin: tuple[int, int, int]

    def description(self) -> str:
        return (
            f"{self.hair_style} {self.hair_colour_name} hair, {self.eye_colour_name} eyes, "
            f"{self.head_shape} face, {self.build} build, wears {self.clothes_name}"
        )


def character_look(name: str, variant: int = 0) -> CharacterLook:
    """The look of the character called `name`; the same name (and variant) always looks the same.

    `variant` only moves a character off a look that another character of the
    same story already wears (see `_distinct_looks`).
    """
    salt = "" if variant == 0 else f"#{variant}"
    digest = hashlib.sha256(("mangakai-character:" + name.strip() + salt).encode()).digest()
    hair = HAIR_COLOURS[digest[0] % len(HAIR_COLOURS)]
    clothes = CLOTHES[digest[2] % len(CLOTHES)]
    eyes = EYE_COLOURS[digest[3] % len(EYE_COLOURS)]
    return CharacterLook(
        hair_colour_name=hair[0],
        hair_colour=hair[1],
        hair_style=HAIR_STYLES[digest[1] % len(HAIR_STYLES)],
        clothes_name=clothes[0],
        clothes_colour=clothes[1],
        eye_colour_name=eyes[0],
        eye_colour=eyes[1],
        build=BUILDS[digest[4] % len(BUILDS)],
        head_shape=HEAD_SHAPES[digest[5] % len(HEAD_SHAPES)],
        skin=SKIN_TONES[digest[6] % len(SKIN_TONES)],
    )


def look_from_description(name: str, description: str) -> CharacterLook:
    """The look a character-bible description names, filling anything it does not name from the name's hash.

    This is how a drawing follows the bible: a description written by this
    planner round-trips exactly, and a free-form one still yields the hair and
    clothes colours it mentions.
    """
    base = character_look(name)
    text = description.lower()

    def find(options: Sequence[str], default: str) -> str:
        positions = [
            (text.find(option.lower()), -len(option), option) for option in options if option.lower() in text
        ]
        return min(positions)[2] if positions else default

    hair_name = find([h for h, _ in HAIR_COLOURS], base.hair_colour_name)
    clothes_name = find([c for c, _ in CLOTHES], base.clothes_name)
    eye_name = find([f"{e} eyes" for e, _ in EYE_COLOURS], base.eye_colour_name + " eyes").removesuffix(
        " eyes"
    )
    return CharacterLook(
        hair_colour_name=hair_name,
        hair_colour=dict(HAIR_COLOURS)[hair_name],
        hair_style=find(HAIR_STYLES, base.hair_style),
        clothes_name=clothes_name,
        clothes_colour=dict(CLOTHES)[clothes_name],
        eye_colour_name=eye_name,
        eye_colour=dict(EYE_COLOURS)[eye_name],
        build=find(BUILDS, base.build),
        head_shape=find(HEAD_SHAPES, base.head_shape),
        skin=base.skin,
    )


def _distinct_looks(names: Sequence[str]) -> list[CharacterLook]:
    """One look per name, moving later characters to another variant when they would dress like an earlier one."""
    looks: list[CharacterLook] = []
    for name in names:
        chosen = character_look(name)
        for variant in range(1, 16):
            clash = any(
                other.clothes_name == chosen.clothes_name
                or (
                    other.hair_colour_name == chosen.hair_colour_name
                    and other.hair_style == chosen.hair_style
                )
                for other in looks
            )
            if not clash:
                break
            chosen = character_look(name, variant)
        looks.append(chosen)
    return looks


def detect_language(text: str) -> str:
    """A BCP-47 tag for the story's dominant script: "ja", "zh", "ko" or "en"."""
    kana = len(_KANA.findall(text))
    han = len(_HAN.findall(text))
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    # Latin letters are counted per letter while CJK is per word-ish character; weigh them alike.
    latin_weight = latin / 3
    if hangul > max(han, latin_weight, kana):
        return "ko"
    # A handful of kana among Han characters is what makes Japanese Japanese.
    if kana > 0 and kana + han > latin_weight and kana >= 0.05 * (kana + han):
        return "ja"
    if han > latin_weight:
        return "zh"
    return "en"


def is_cjk_language(language: str) -> bool:
    return language.split("-")[0] in ("ja", "zh", "ko")


@dataclass
class _Quote:
    text: str
    start: int
    end: int  # end of the quote including any attribution that belongs to it
    speaker: str


@dataclass
class _Passage:
    """A run of sentences that becomes (part of) a scene."""

    text: str
    paragraph: int
    quotes: list[_Quote] = field(default_factory=list)


def plan_story(story: str, panel_count: int, style: common_pb2.StylePreferences) -> common_pb2.ScenePlan:
    """Plans `story` into exactly `panel_count` scenes, deterministically."""
    if panel_count < 1:
        raise ValueError("panel_count must be at least 1")
    text = story.replace("\r\n", "\n").replace("\r", "\n").strip()
    language = detect_language(text)
    cjk = is_cjk_language(language)
    title, body = _split_title(text, cjk)

    paragraphs = [p.strip() for p in re.split(r"\n+", body) if p.strip()]
    units: list[_Passage] = []
    for index, paragraph in enumerate(paragraphs):
        units.extend(_Passage(sentence, index) for sentence in _split_sentences(paragraph, cjk))
    if len(units) < panel_count:
        units = _split_clauses(units, panel_count, cjk)
    groups = _group_units(units, panel_count)

    passages = [_join(group, cjk) for group in groups]
    known = _candidate_names(body, language)
    for passage in passages:
        passage.quotes = _extract_quotes(passage.text, language, set(known))
    _resolve_pronoun_speakers(passages)

    characters = _character_bible(passages, known, body)
    plan = common_pb2.ScenePlan(title=title, language=language)
    for name, look in zip(characters, _distinct_looks(characters), strict=True):
        plan.characters.add(name=name, description=look.description())

    scenes = _scenes_for(passages, panel_count)
    previous_setting = ""
    previous_shot: common_pb2.ShotType.ValueType = common_pb2.SHOT_TYPE_UNSPECIFIED
    previous_cast: list[str] = []
    for number, (passage, quotes, first_copy, copy_index) in enumerate(scenes, start=1):
        scene = plan.scenes.add(number=number, source_text=passage.text)
        narration_full = _narration(passage, cjk)
        setting = _setting(_without_names(passage.text, characters), language, previous_setting)
        scene.setting = setting
        previous_setting = setting

        cast = [name for name in characters if _mentions(passage.text, name, cjk)]
        for quote in quotes:
            if quote.speaker and quote.speaker not in cast:
                cast.append(quote.speaker)
        if not cast and previous_cast and _mentions_pronoun(passage.text, cjk):
            cast = previous_cast[:2]
        scene.characters.extend(cast[:4])
        previous_cast = cast or previous_cast

        named = {quote.speaker for quote in quotes if quote.speaker}
        for quote in quotes:
            speaker = quote.speaker
            # Two people on stage and one of them named: the unattributed lines are the other's.
            if not speaker and len(cast) == 2 and len(named) == 1:
                speaker = cast[0] if cast[1] in named else cast[1]
            elif not speaker and len(cast) == 1:
                speaker = cast[0]
            previous_line = scene.dialogue[-1] if scene.dialogue else None
            if previous_line is not None and speaker and previous_line.speaker == speaker:
                # One speech broken by an attribution is one balloon.
                previous_line.text = lettering.join_speech(previous_line.text, quote.text, language)
            else:
                scene.dialogue.add(speaker=speaker, text=quote.text)
        if first_copy:
            scene.narration = _shorten(narration_full, 60 if cjk else 160, cjk)
        scene.action = _action(narration_full, quotes, cast, cjk, copy_index)
        scene.shot = _choose_shot(number, passage, quotes, cast, style, previous_shot, copy_index, cjk)
        previous_shot = scene.shot
        scene.visual_prompt = _visual_prompt(scene, plan.characters, style)
    return plan


def _split_title(text: str, cjk: bool) -> tuple[str, str]:
    if not text:
        return "Untitled", ""
    first, _, rest = text.partition("\n")
    first = first.strip()
    limit = 30 if cjk else 80
    if rest.strip() and 0 < len(first) <= limit and first[-1] not in _TERMINAL_PUNCTUATION:
        return first.strip("#* "), rest.strip()
    return _first_words(text, cjk), text


def _first_words(text: str, cjk: bool) -> str:
    if cjk:
        head = re.split(r"[。！？，、\n「」“”]", text, maxsplit=1)[0].strip()
        return head[:12] + ("…" if len(head) > 12 else "")
    words = re.sub(r"[\"“”«»]", "", text).split()
    title = " ".join(words[:6]).rstrip(".,;:!?")
    return title + ("…" if len(words) > 6 else "")


def _split_sentences(paragraph: str, cjk: bool) -> list[str]:
    """Sentences of a paragraph; a quotation with its attribution stays one sentence."""
    sentences: list[str] = []
    start = 0
    depth = 0
    straight_open = False
    i = 0
    n = len(paragraph)
    while i < n:
        ch = paragraph[i]
        if ch in "“「『«":
            depth += 1
        elif ch in "”」』»" and depth > 0:
            depth -= 1
        elif ch == '"':
            straight_open = not straight_open
        inside = depth > 0 or straight_open
        # A runaway unbalanced quote must not swallow the whole paragraph.
        runaway = inside and i - start > 400
        if ch in _SENTENCE_END and (not inside or runaway):
            end = i + 1
            while end < n and paragraph[end] in _SENTENCE_END:
                end += 1
            if _is_boundary(paragraph, end, cjk):
                sentences.append(paragraph[start:end].strip())
                start = end
                i = end
                continue
        elif ch in '”」』»"' and not inside and i > 0 and paragraph[i - 1] in _SENTENCE_END:
            end = i + 1
            while end < n and paragraph[end] in _CLOSERS:
                end += 1
            if _is_boundary(paragraph, end, cjk) and not _attribution_follows(paragraph[end:]):
                sentences.append(paragraph[start:end].strip())
                start = end
                i = end
                continue
        i += 1
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def _is_boundary(text: str, end: int, cjk: bool) -> bool:
    rest = text[end:]
    if not rest.strip():
        return True
    if _CJK_CHAR.match(rest[0]) or rest[0] in _OPENERS:
        return True
    if not rest[0].isspace():
        # "3.5", "e.g.x", a closing quote handled by the caller
        return False
    nxt = rest.lstrip()[0]
    # "Are you there?" he asked. - a lowercase word continues the sentence.
    return not nxt.islower()


def _attribution_follows(rest: str) -> bool:
    rest = rest.lstrip()
    if not rest:
        return False
    if rest[0] in "とっ":
        return True
    if rest[0].islower() or rest[0] in ",，、":
        return True
    head = re.split(r"[。！？.!?「“\"]", rest, maxsplit=1)[0]
    return len(head) <= 10 and re.search(_ZH_VERBS + r"\s*[。！？，]?$", head) is not None


def _split_clauses(units: list[_Passage], wanted: int, cjk: bool) -> list[_Passage]:
    """Splits the longest sentences at clause boundaries until there are `wanted` units or none can split."""
    units = list(units)
    while len(units) < wanted:
        best_index = -1
        best_cut = -1
        best_len = 0
        for index, unit in enumerate(units):
            cut = _clause_cut(unit.text, cjk)
            if cut > 0 and len(unit.text) > best_len:
                best_index, best_cut, best_len = index, cut, len(unit.text)
        if best_index < 0:
            break
        unit = units[best_index]
        head, tail = unit.text[:best_cut].strip(), unit.text[best_cut:].strip()
        units[best_index : best_index + 1] = [_Passage(head, unit.paragraph), _Passage(tail, unit.paragraph)]
    return units


def _clause_cut(text: str, cjk: bool) -> int:
    """The clause boundary outside quotes nearest the middle of `text`, or -1."""
    minimum = 4 if cjk else 12
    depth = 0
    straight_open = False
    middle = len(text) / 2
    best = -1
    for i, ch in enumerate(text):
        if ch in "“「『«":
            depth += 1
        elif ch in "”」』»" and depth > 0:
            depth -= 1
        elif ch == '"':
            straight_open = not straight_open
        if depth or straight_open:
            continue
        if ch in ",;、，；：:—" or (ch in '”」』»"' and i + 1 < len(text)):
            cut = i + 1
            if minimum <= cut <= len(text) - minimum and (best < 0 or abs(cut - middle) < abs(best - middle)):
                best = cut
    return best


def _group_units(units: list[_Passage], wanted: int) -> list[list[_Passage]]:
    """Partitions `units` in order into at most `wanted` groups of similar length, preferring paragraph ends."""
    if not units:
        return [[_Passage("", 0)]]
    if len(units) <= wanted:
        return [[unit] for unit in units]
    lengths = [len(unit.text) + 1 for unit in units]
    total = sum(lengths)
    cumulative = []
    running = 0
    for length in lengths:
        running += length
        cumulative.append(running)
    target = total / wanted
    cuts: list[int] = []  # cut after unit index
    previous = -1
    for k in range(1, wanted):
        goal = k * target
        remaining_groups = wanted - k
        lowest = previous + 1
        highest = len(units) - 1 - remaining_groups
        best_cut = lowest
        best_score = float("inf")
        for i in range(lowest, highest + 1):
            score = abs(cumulative[i] - goal) / target
            if units[i].paragraph != units[i + 1].paragraph:
                score -= 0.3  # a paragraph end is a natural scene break
            if score < best_score:
                best_score, best_cut = score, i
        cuts.append(best_cut)
        previous = best_cut
    groups: list[list[_Passage]] = []
    begin = 0
    for cut in [*cuts, len(units) - 1]:
        groups.append(units[begin : cut + 1])
        begin = cut + 1
    return groups


def _join(group: list[_Passage], cjk: bool) -> _Passage:
    separator = "" if cjk else " "
    parts: list[str] = []
    for index, unit in enumerate(group):
        if index and unit.paragraph != group[index - 1].paragraph:
            parts.append("\n")
        elif index:
            parts.append(separator)
        parts.append(unit.text)
    return _Passage("".join(parts).strip(), group[0].paragraph)


def _scenes_for(passages: list[_Passage], panel_count: int) -> list[tuple[_Passage, list[_Quote], bool, int]]:
    """(passage, its quotes for this scene, first scene of the passage?, copy index) for each panel.

    When the story is shorter than the panel count, a passage spans several
    consecutive scenes; its dialogue is spread over them rather than repeated.
    """
    count = len(passages)
    owners = [min(count - 1, (scene * count) // panel_count) for scene in range(panel_count)]
    result: list[tuple[_Passage, list[_Quote], bool, int]] = []
    for scene in range(panel_count):
        owner = owners[scene]
        copies = owners.count(owner)
        copy_index = scene - owners.index(owner)
        quotes = passages[owner].quotes
        share = [q for i, q in enumerate(quotes) if (i * copies) // max(1, len(quotes)) == copy_index]
        result.append((passages[owner], share, copy_index == 0, copy_index))
    return result


def _candidate_names(body: str, language: str) -> dict[str, float]:
    """Names the story uses as subjects or speakers, with how often they occur.

    They help attribution pick whole names and become the character bible.
    """
    names: Counter[str] = Counter()
    if language == "ja":
        for match in re.finditer(rf"(?:^|[、。！？」\s])(?P<name>{_JA_NAME})(?:は|が|と|も)", body):
            names[_strip_honorific(match.group("name"))] += 1
        for match in re.finditer(r"([\u4e00-\u9fff\u30a0-\u30ff々]{1,5})(?:さん|くん|ちゃん)", body):
            names[match.group(1)] += 2
    elif language.startswith("zh"):
        subject = r"(?:^|[，。！？”\s])(?P<name>[\u4e00-\u9fff]{2,3}?)"
        for match in re.finditer(rf"{subject}{_ZH_ADVERBS}{_ZH_VERBS}", body):
            names[match.group("name")] += 1
        for match in re.finditer(rf"{subject}(?:提着|拿着|站在|坐在|看见|点点头|笑得|摇着|皱着)", body):
            names[match.group("name")] += 1
    elif not is_cjk_language(language):
        for match in re.finditer(r"\b[A-Z][a-z'’]+\b", body):
            word = match.group(0)
            if word in _NOT_NAMES or word.endswith(("'s", "’s")):
                continue
            preceding = body[max(0, match.start() - 6) : match.start()]
            # "on Gull Point", "to the Harbor": a capitalised word after a preposition is a place.
            if re.search(r"\b(?:on|in|at|to|from|of|near|the|a)\s$", preceding, re.IGNORECASE):
                continue
            names[word] += 1
    if is_cjk_language(language):
        return {name: float(count) for name, count in names.items() if count >= 2 and _valid_cjk(name)}
    return {name: float(count) for name, count in names.items() if count >= 2}


def _strip_honorific(name: str) -> str:
    for suffix in _HONORIFICS:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _pick_cjk_name(run: str, known: set[str], language: str) -> str:
    """The name at the end of a run of Han/katakana characters ("那天晚上小明" -> "小明")."""
    run = _strip_honorific(run)
    for size in range(min(len(run), 6), 0, -1):
        if run[-size:] in known:
            return run[-size:]
    if language == "ja":
        # Japanese names in a kanji run: keep at most four characters.
        return run[-4:] if len(run) > 4 else run
    if len(run) >= 3 and run[-3] in _ZH_SURNAMES:
        return run[-3:]
    return run[-2:] if len(run) >= 2 else run


def _extract_quotes(text: str, language: str, known: set[str]) -> list[_Quote]:
    """The quotations of a passage with their speakers.

    A speaker comes from an explicit attribution ("said Mara", 「…」と美咲は言った,
    小明说：“…”); failing that, a quotation continues the previous quotation of
    the same paragraph, or belongs to the last named character acting in that
    paragraph ("Mara knelt. "What is your name?"").
    """
    quotes: list[_Quote] = []
    previous_end = 0
    for match in _QUOTE.finditer(text):
        # "Tomas," the boy said: the comma belongs to the sentence around the quote, not to the balloon.
        spoken = next(group for group in match.groups() if group is not None).strip().rstrip(",，、")
        if not spoken or match.start() < previous_end:
            continue
        after = text[match.end() :]
        paragraph_start = text.rfind("\n", 0, match.start()) + 1
        before = text[max(previous_end, paragraph_start) : match.start()]
        speaker, before_length, after_length = _attribute(before, after, language, known)
        start = match.start() - before_length
        end = match.end() + after_length
        if not speaker:
            same_paragraph = [q for q in quotes if q.end >= paragraph_start]
            if same_paragraph and not text[same_paragraph[-1].end : match.start()].strip(" ,，、"):
                speaker = same_paragraph[-1].speaker
            else:
                speaker = _last_named(_outside_quotes(text[paragraph_start : match.start()]), known, language)
        quotes.append(_Quote(spoken, start, end, speaker))
        previous_end = end
    return quotes


def _outside_quotes(text: str) -> str:
    return _QUOTE.sub(" ", text)


def _last_named(text: str, known: set[str], language: str) -> str:
    """The known name mentioned last in `text`, or ""."""
    best = ""
    best_position = -1
    for name in known:
        if is_cjk_language(language):
            position = text.rfind(name)
        else:
            found = list(re.finditer(rf"\b{re.escape(name)}\b", text))
            position = found[-1].start() if found else -1
        if position > best_position or (position == best_position and len(name) > len(best)):
            best, best_position = name, position
    return best if best_position >= 0 else ""


def _attribute(before: str, after: str, language: str, known: set[str]) -> tuple[str, int, int]:
    """(speaker, attribution length before the quote, attribution length after it)."""
    if is_cjk_language(language):
        after_pattern = _ATTR_AFTER_ZH if language.startswith("zh") else _ATTR_AFTER_JA
        before_pattern = _ATTR_BEFORE_ZH if language.startswith("zh") else _ATTR_BEFORE_JA
        match = after_pattern.match(after) or (
            None if language.startswith("zh") else _ATTR_AFTER_JA_SHORT.match(after)
        )
        if match:
            name = _valid_cjk(_pick_cjk_name(match.group("name"), known, language))
            return name, 0, match.end()
        tail = before_pattern.search(before)
        if tail:
            name = _valid_cjk(_pick_cjk_name(tail.group("name"), known, language))
            if name:
                # 春子は「…」と笑った。 - the trailing と笑った belongs to the attribution too.
                trailer = _ATTR_TRAILER_JA.match(after) if language == "ja" else None
                return name, len(before) - tail.start(), trailer.end() if trailer else 0
            # "小雨眼睛一亮，问道：" - the verb is an attribution even when the name before it is not.
            verb = re.search(rf"{_ZH_ADVERBS}{_ZH_VERBS}\s*[：:，,]?\s*$", before)
            return "", (len(before) - verb.start()) if verb else 0, 0
        return "", 0, 0
    match = _ATTR_AFTER_EN.match(after)
    if match:
        name = match.group("name1") or match.group("name2") or ""
        return (name if _valid_en(name) else ""), 0, match.end()
    tail = _ATTR_BEFORE_EN.search(before)
    if tail and _valid_en(tail.group("name")):
        return tail.group("name"), len(before) - tail.start(), 0
    return "", 0, 0


def _valid_en(name: str) -> bool:
    first = name.split()[0] if name else ""
    return bool(first) and first[0].isupper() and first not in _NOT_NAMES


def _valid_cjk(name: str) -> str:
    # A "name" made of speech verbs or adverbs ("问", "笑着") is the verb phrase, not a person.
    if name in _NOT_NAMES_CJK or len(name) < 2 or re.search(r"[说问道喊叫答着地]", name):
        return ""
    return name


def _resolve_pronoun_speakers(passages: list[_Passage]) -> None:
    """Fills unknown speakers in a two-person exchange by alternation (A, B, ?, -> A)."""
    recent: list[str] = []
    for passage in passages:
        for quote in passage.quotes:
            if not quote.speaker and len(recent) >= 2 and recent[-1] != recent[-2]:
                quote.speaker = recent[-2]
            if quote.speaker:
                recent.append(quote.speaker)


def _character_bible(passages: list[_Passage], known: dict[str, float], body: str) -> list[str]:
    """Character names, at most six: every speaker, then the most frequent named people, in order of appearance."""
    speakers = {q.speaker for p in passages for q in p.quotes if q.speaker}
    ranked = sorted(known, key=lambda name: (-known[name], name))
    names = list(speakers)
    for name in ranked:
        if len(names) >= 6:
            break
        if name not in names:
            names.append(name)

    def first_seen(name: str) -> int:
        position = body.find(name)
        return position if position >= 0 else len(body)

    return sorted(names, key=lambda name: (first_seen(name), name))


def _mentions(text: str, name: str, cjk: bool) -> bool:
    if cjk:
        return name in text
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def _mentions_pronoun(text: str, cjk: bool) -> bool:
    pattern = _PRONOUNS_CJK if cjk else _PRONOUNS_EN
    return pattern.search(text) is not None


def _narration(passage: _Passage, cjk: bool) -> str:
    """The passage without its quotations and their attributions."""
    pieces: list[str] = []
    cursor = 0
    for quote in passage.quotes:
        pieces.append(passage.text[cursor : quote.start])
        cursor = quote.end
    pieces.append(passage.text[cursor:])
    text = " ".join(piece.strip() for piece in pieces if piece.strip())
    if cjk:
        text = re.sub(r"\s+", "", text)
        text = re.sub(r"^[と、，。：:]+", "", text)
        text = re.sub(r"[：:，,]\s*(?=[。！？]|$)", "。", text)
    else:
        text = re.sub(r"\s+", " ", text)
        text = re.sub(r"\s+([,.;:!?])", r"\1", text)
        text = re.sub(r"^[,;:.\s]+", "", text)
        text = re.sub(r"[,:]\s*$", ".", text)
    return text.strip()


def _shorten(text: str, limit: int, cjk: bool) -> str:
    """`text` cut to at most about `limit` characters, at a sentence boundary where possible."""
    if len(text) <= limit:
        return text
    enders = "。！？" if cjk else ".!?"
    cut = max((i + 1 for i, ch in enumerate(text[: limit + 1]) if ch in enders), default=0)
    if cut >= limit // 3:
        return text[:cut].strip()
    if cjk:
        clause = max((i + 1 for i, ch in enumerate(text[:limit]) if ch in "，、；"), default=0)
        return (text[:clause] if clause >= limit // 3 else text[: limit - 1]).rstrip("，、；") + "…"
    head = text[: limit - 1]
    if " " in head:
        head = head[: head.rfind(" ")]
    return head.rstrip(",;: ") + "…"


def _action(narration: str, quotes: list[_Quote], cast: list[str], cjk: bool, copy_index: int) -> str:
    sentences = _split_sentences(narration.replace("\n", " "), cjk) if narration else []
    if sentences:
        sentence = sentences[min(copy_index, len(sentences) - 1)]
        return _shorten(sentence, 50 if cjk else 120, cjk)
    if quotes:
        speaker = quotes[0].speaker or (cast[0] if cast else "")
        if cjk:
            return (
                f"{speaker}：「{_shorten(quotes[0].text, 30, cjk)}」"
                if speaker
                else f"「{_shorten(quotes[0].text, 30, cjk)}」"
            )
        line = _shorten(quotes[0].text, 80, cjk)
        return f'{speaker} says "{line}"' if speaker else f'Someone says "{line}"'
    return ""


def _without_names(text: str, names: list[str]) -> str:
    # 小雨 is a person, not rain.
    for name in names:
        text = text.replace(name, " ")
    return text


def _setting(text: str, language: str, previous: str) -> str:
    """Where and when: the first place named in `text` (else the previous scene's place) and any time of day."""
    if is_cjk_language(language):
        place = next((word for word in sorted(_PLACES_CJK, key=len, reverse=True) if word in text), "")
        if not place:
            place = re.split(r"[，・]", previous)[0] if previous else ""
        positions = [(text.find(word), word) for word in _TIMES_CJK if word in text]
        time = min(positions)[1] if positions else ""
        if place and time and time not in place:
            return f"{place}，{time}" if language.startswith("zh") else f"{place}・{time}"
        return place or time
    match = _PLACE_EN.search(text)
    proper = _PLACE_PROPER_EN.search(text)
    if match and (not proper or match.start() <= proper.start()):
        place = "the " + match.group(1)
    elif proper:
        place = proper.group(1)
    else:
        place = re.split(
            r" (?:at|in) (?:the |a )?(?:night|midnight|dawn|dusk|sunset|sunrise|noon|storm|rain|snow|evening|morning|afternoon)$",
            previous,
        )[0]
    time_match = _TIMES_EN.search(text)
    if not time_match:
        return place
    when = {
        "stormy": "in a storm",
        "storm": "in a storm",
        "rain": "in the rain",
        "snow": "in the snow",
        "midnight": "at midnight",
        "night": "at night",
        "dawn": "at dawn",
        "dusk": "at dusk",
        "noon": "at noon",
        "sunset": "at sunset",
        "sunrise": "at sunrise",
    }.get(time_match.group(1).lower(), f"in the {time_match.group(1).lower()}")
    return f"{place} {when}" if place else when


def _choose_shot(
    number: int,
    passage: _Passage,
    quotes: list[_Quote],
    cast: list[str],
    style: common_pb2.StylePreferences,
    previous: common_pb2.ShotType.ValueType,
    copy_index: int,
    cjk: bool,
) -> common_pb2.ShotType.ValueType:
    text = passage.text
    speakers = {q.speaker for q in quotes if q.speaker}
    emotional = _EMOTION_CJK.search(text) if cjk else _EMOTION_EN.search(text)
    short_exclamation = any(
        len(q.text) <= (12 if cjk else 40) and q.text.rstrip()[-1:] in "!！?？" for q in quotes
    )
    action = _ACTION_CJK.search(text) if cjk else _ACTION_EN.search(text)
    if number == 1:
        shot = common_pb2.SHOT_TYPE_ESTABLISHING
    elif copy_index > 0:
        # A passage drawn twice: the second drawing moves the camera in.
        shot = (
            common_pb2.SHOT_TYPE_CLOSE_UP
            if previous != common_pb2.SHOT_TYPE_CLOSE_UP
            else common_pb2.SHOT_TYPE_MEDIUM
        )
    elif len(speakers) >= 2 or (quotes and len(cast) >= 2):
        shot = (
            common_pb2.SHOT_TYPE_OVER_THE_SHOULDER
            if previous == common_pb2.SHOT_TYPE_MEDIUM
            else common_pb2.SHOT_TYPE_MEDIUM
        )
    elif short_exclamation or (emotional and len(text) < (60 if cjk else 200)):
        shot = common_pb2.SHOT_TYPE_CLOSE_UP
    elif action or not cast:
        shot = common_pb2.SHOT_TYPE_WIDE
    elif quotes:
        shot = common_pb2.SHOT_TYPE_MEDIUM
    else:
        shot = common_pb2.SHOT_TYPE_MEDIUM if number % 2 else common_pb2.SHOT_TYPE_WIDE
    if (
        number > 1
        and style.composition == common_pb2.COMPOSITION_CLOSE_UP
        and shot == common_pb2.SHOT_TYPE_MEDIUM
    ):
        shot = common_pb2.SHOT_TYPE_CLOSE_UP
    if (
        number > 1
        and style.composition == common_pb2.COMPOSITION_WIDE
        and shot == common_pb2.SHOT_TYPE_MEDIUM
    ):
        shot = common_pb2.SHOT_TYPE_WIDE
    if shot == previous:
        alternatives = {
            common_pb2.SHOT_TYPE_CLOSE_UP: common_pb2.SHOT_TYPE_MEDIUM,
            common_pb2.SHOT_TYPE_MEDIUM: common_pb2.SHOT_TYPE_CLOSE_UP if cast else common_pb2.SHOT_TYPE_WIDE,
            common_pb2.SHOT_TYPE_WIDE: common_pb2.SHOT_TYPE_MEDIUM,
            common_pb2.SHOT_TYPE_OVER_THE_SHOULDER: common_pb2.SHOT_TYPE_MEDIUM,
            common_pb2.SHOT_TYPE_ESTABLISHING: common_pb2.SHOT_TYPE_WIDE,
        }
        shot = alternatives.get(shot, common_pb2.SHOT_TYPE_MEDIUM)
    return shot


def _enum_words(value_name: str, prefix: str) -> str:
    return value_name.removeprefix(prefix).replace("_", " ").lower()


def _visual_prompt(
    scene: common_pb2.Scene, characters: Sequence[common_pb2.Character], style: common_pb2.StylePreferences
) -> str:
    shot = _enum_words(common_pb2.ShotType.Name(scene.shot), "SHOT_TYPE_")
    parts = [f"{shot} shot"]
    if scene.setting:
        parts.append(f"setting: {scene.setting}")
    if scene.characters:
        bible = {character.name: character.description for character in characters}
        looks = [
            f"{name} ({bible.get(name) or character_look(name).description()})" for name in scene.characters
        ]
        parts.append("characters: " + "; ".join(looks))
    if scene.action:
        parts.append(f"action: {scene.action}")
    styling = []
    if style.art_style:
        styling.append(_enum_words(common_pb2.ArtStyle.Name(style.art_style), "ART_STYLE_") + " manga")
    else:
        styling.append("manga")
    if style.mood:
        styling.append(_enum_words(common_pb2.Mood.Name(style.mood), "MOOD_") + " mood")
    if style.color_palette:
        styling.append(
            _enum_words(common_pb2.ColorPalette.Name(style.color_palette), "COLOR_PALETTE_") + " palette"
        )
    if style.character_style:
        styling.append(
            _enum_words(common_pb2.CharacterStyle.Name(style.character_style), "CHARACTER_STYLE_")
            + " characters"
        )
    if style.line_style:
        styling.append(_enum_words(common_pb2.LineStyle.Name(style.line_style), "LINE_STYLE_") + " lines")
    if style.composition:
        styling.append(
            _enum_words(common_pb2.Composition.Name(style.composition), "COMPOSITION_") + " composition"
        )
    parts.append("style: " + ", ".join(styling))
    return " | ".join(parts).replace("\n", " ")
