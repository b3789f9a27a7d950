// What a new user needs before the first manga: the flow (story -> plan -> panels -> pages ->
// export), a small picture of each page layout and reading order, what the local backend can
// draw, and the sample stories. The start screen and the "How it works" screen both use these.

import en from "../../samples/en/the_lighthouse_keeper.txt?raw";
import ja from "../../samples/ja/summer_festival.txt?raw";
import zh from "../../samples/zh/lantern_festival.txt?raw";
import { h } from "./dom";
import { PageLayout, ReadingOrder } from "./gen/mangakai/v1/common_pb";

/** The repository's sample stories (samples/), one per language the planner knows best. */
export const SAMPLES: { lang: string; label: string; story: string }[] = [
  { lang: "en", label: "English", story: en },
  { lang: "ja", label: "日本語", story: ja },
  { lang: "zh", label: "中文", story: zh },
];

export const STEPS: [name: string, what: string][] = [
  ["Story", "Write, paste or drop a story: English, 日本語 or 中文, up to 20,000 characters."],
  ["Plan", "It is split into scenes, one per panel: setting, action, characters and dialogue."],
  ["Panels", "Each scene is drawn as a panel while you watch. Redraw any panel with an instruction."],
  ["Pages", "Panels are laid out on pages in the layout and reading order you chose."],
  ["Export", "Download the pages as a PDF or a CBZ for comic readers."],
];

export const LOCAL_BACKEND = {
  can:
    "lighthouse, sea, room, festival, shrine, street, forest, river and mountain settings by day, dusk or night, " +
    "with rain, snow or fireworks; characters who keep their look from panel to panel and smile, cry or frown; " +
    "speech balloons lettered in the story's language (vertical for Japanese).",
  cannot:
    "anything else the story names (animals, vehicles, objects), real poses or action, or a reference image. " +
    "Those need Gemini: set GEMINI_API_KEY on the renderer.",
};

const SVG = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>, ...children: (SVGElement | string)[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child);
  return el;
}

type Box = [x: number, y: number, w: number, h: number];

/** A page 40 x 56 with panel boxes, optionally numbered in reading order. */
function page(boxes: Box[], numbers: boolean, label: string): SVGElement {
  const shapes = boxes.flatMap(([x, y, w, height], i) => {
    const rect = svg("rect", { x, y, width: w, height, rx: 1, class: "cell" });
    if (!numbers) return [rect];
    const text = svg("text", { x: x + w / 2, y: y + height / 2 + 3.5, "text-anchor": "middle", class: "num" }, String(i + 1));
    return [rect, text];
  });
  return svg(
    "svg",
    { viewBox: "0 0 40 56", width: 40, height: 56, role: "img", "aria-label": label, class: "picture" },
    svg("rect", { x: 0.5, y: 0.5, width: 39, height: 55, rx: 2, class: "sheet" }),
    ...shapes,
  );
}

/** A small picture of a page layout. */
export function layoutPicture(layout: PageLayout): SVGElement {
  switch (layout) {
    case PageLayout.FOUR_KOMA:
      return page([[4, 4, 32, 11], [4, 17, 32, 11], [4, 30, 32, 11], [4, 43, 32, 9]], false, "four equal panels stacked");
    case PageLayout.WEBTOON:
      return page([[12, 3, 16, 14], [12, 20, 16, 16], [12, 39, 16, 14]], false, "one long vertical strip");
    case PageLayout.SINGLE:
      return page([[4, 4, 32, 48]], false, "one panel filling the page");
    default:
      return page([[4, 4, 32, 14], [4, 20, 15, 14], [21, 20, 15, 14], [4, 36, 32, 16]], false, "panels of varied sizes");
  }
}

/** A small picture of a reading order: a 2 x 2 page numbered in the order it is read. */
export function readingOrderPicture(order: ReadingOrder): SVGElement {
  const [left, right]: [number, number] = [4, 21];
  const [first, second] = order === ReadingOrder.LEFT_TO_RIGHT ? [left, right] : [right, left];
  return page(
    [[first, 4, 15, 23], [second, 4, 15, 23], [first, 29, 15, 23], [second, 29, 15, 23]],
    true,
    order === ReadingOrder.LEFT_TO_RIGHT ? "read from the top left" : "read from the top right",
  );
}

/** The five steps as one line of labelled boxes joined by arrows. */
export function flow(): HTMLOListElement {
  return h("ol", { class: "flow" }, ...STEPS.map(([name, what]) => h("li", null, h("strong", null, name), h("span", null, what))));
}
