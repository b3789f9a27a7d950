// The start screen: a story, the panel count, layout, reading order and style, then Generate.

import { call, describe, jobs, type Problem } from "../api";
import { h, toast } from "../dom";
import { PageLayout, ReadingOrder } from "../gen/mangakai/v1/common_pb";
import { SAMPLES, layoutPicture, readingOrderPicture } from "../guide";
import { LAYOUTS, READING_ORDERS, STYLE_CHOICES, type Choice } from "../labels";
import { navigate } from "../router";

const DRAFT_KEY = "mangakai.draft";
const MAX_STORY = 20000;

export function createView(root: HTMLElement): () => void {
  const errors = new Map<string, HTMLElement>();
  const errorSlot = (field: string): HTMLElement => {
    const slot = h("p", { class: "field-error", id: `error-${field.replace(".", "-")}`, "data-error-for": field });
    slot.hidden = true;
    errors.set(field, slot);
    return slot;
  };

  const story = h("textarea", {
    id: "story",
    name: "story",
    rows: 12,
    placeholder: "Once upon a time… (any language: English, 日本語, 中文)",
    "aria-describedby": "story-hint error-story",
    spellcheck: true,
  });
  story.value = localStorage.getItem(DRAFT_KEY) ?? "";
  const counter = h("span", { class: "counter", "aria-live": "off" });
  const updateCounter = (): void => {
    counter.textContent = `${story.value.length.toLocaleString()} / ${MAX_STORY.toLocaleString()} characters`;
    counter.classList.toggle("over", story.value.length > MAX_STORY);
  };
  story.addEventListener("input", () => {
    localStorage.setItem(DRAFT_KEY, story.value);
    updateCounter();
  });
  updateCounter();

  const fileInput = h("input", { type: "file", accept: ".txt,text/plain", class: "visually-hidden", id: "story-file" });
  const loadFile = async (file: File | undefined): Promise<void> => {
    if (!file) return;
    if (file.size > 4 * MAX_STORY * 4) {
      toast(`${file.name} is too large for a story.`);
      return;
    }
    story.value = (await file.text()).replace(/^\uFEFF/, "");
    story.dispatchEvent(new Event("input"));
    toast(`Loaded ${file.name}`);
  };
  fileInput.addEventListener("change", () => void loadFile(fileInput.files?.[0]));
  const dropZone = h("div", { class: "drop-zone" }, story);
  for (const kind of ["dragenter", "dragover"]) {
    dropZone.addEventListener(kind, (e) => {
      e.preventDefault();
      dropZone.classList.add("dragging");
    });
  }
  for (const kind of ["dragleave", "drop"]) {
    dropZone.addEventListener(kind, () => dropZone.classList.remove("dragging"));
  }
  dropZone.addEventListener("drop", (e) => {
    e.preventDefault();
    void loadFile((e as DragEvent).dataTransfer?.files?.[0]);
  });

  const panels = h("input", {
    type: "number",
    id: "panel-count",
    name: "panel_count",
    min: 1,
    max: 24,
    value: 6,
    inputMode: "numeric",
    "aria-describedby": "error-panel_count",
  });
  const panelsRange = h("input", { type: "range", min: 1, max: 24, value: 6, "aria-label": "Panels (slider)", tabIndex: -1 });
  panels.addEventListener("input", () => (panelsRange.value = panels.value));
  panelsRange.addEventListener("input", () => (panels.value = panelsRange.value));

  const radios = (
    name: string,
    legend: string,
    choices: Choice[],
    checked: number,
    picture: (value: number) => SVGElement,
  ): HTMLFieldSetElement =>
    h(
      "fieldset",
      { class: "choices", id: `field-${name}` },
      h("legend", null, legend),
      ...choices.map(([value, label, hint]) =>
        h(
          "label",
          { class: "choice" },
          h("input", { type: "radio", name, value, checked: value === checked }),
          picture(value),
          h("span", null, h("strong", null, label), hint ? h("small", null, hint) : null),
        ),
      ),
      errorSlot(name),
    );

  // Trying it needs no story of one's own: the repository's samples, one per language.
  const samples = h(
    "p",
    { class: "samples hint", id: "samples" },
    "No story at hand? Try a sample: ",
    ...SAMPLES.map(({ lang, label, story: text }) =>
      h(
        "button",
        {
          type: "button",
          class: "small",
          lang,
          onclick: () => {
            story.value = text;
            story.dispatchEvent(new Event("input"));
            story.focus();
            story.setSelectionRange(0, 0); // show the story from its title, not its last line
            story.scrollTop = 0;
          },
        },
        label,
      ),
    ),
  );

  const selects = STYLE_CHOICES.map(({ field, label, choices }) => {
    const select = h(
      "select",
      { id: `style-${field}`, name: field, "aria-describedby": `error-style-${snake(field)}` },
      h("option", { value: 0 }, "Let the artist choose"),
      ...choices.map(([value, text, hint]) => h("option", { value }, hint ? `${text} — ${hint}` : text)),
    );
    return { field, select, el: h("div", { class: "field" }, h("label", { for: select.id }, label), select, errorSlot(`style.${snake(field)}`)) };
  });
  const notes = h("textarea", {
    id: "style-notes",
    name: "notes",
    rows: 2,
    maxLength: 1000,
    placeholder: "e.g. rainy night, the heroine wears a red scarf",
    "aria-describedby": "error-style-notes",
  });

  const banner = h("div", { class: "banner", role: "alert" });
  banner.hidden = true;
  const submit = h("button", { type: "submit", class: "primary big", id: "generate" }, "Generate manga");
  let requestId = crypto.randomUUID();
  let retryTimer: number | undefined;

  const showProblem = (problem: Problem): void => {
    for (const [field, slot] of errors) {
      const message = problem.fields.get(field);
      slot.hidden = !message;
      slot.textContent = message ? `${FIELD_NAMES[field] ?? "This value"} ${message}.`.replace(/\.\.$/, ".") : "";
      const control = form.querySelector<HTMLElement>(`[aria-describedby~="${slot.id}"]`);
      control?.setAttribute("aria-invalid", message ? "true" : "false");
    }
    const unplaced = [...problem.fields].filter(([f]) => !errors.has(f)).map(([f, m]) => `${f}: ${m}`);
    banner.hidden = false;
    banner.textContent = [problem.message, ...unplaced].join(" ");
    const first = [...errors].find(([f]) => problem.fields.has(f));
    const target = first && form.querySelector<HTMLElement>(`[aria-describedby~="${first[1].id}"]`);
    (target ?? banner).focus?.();
    if (problem.retryAfterSeconds !== null) {
      let left = problem.retryAfterSeconds;
      submit.disabled = true;
      window.clearInterval(retryTimer);
      retryTimer = window.setInterval(() => {
        left -= 1;
        if (left <= 0) {
          window.clearInterval(retryTimer);
          submit.disabled = false;
          submit.textContent = "Generate manga";
        } else submit.textContent = `Try again in ${left} s`;
      }, 1000);
      submit.textContent = `Try again in ${left} s`;
    }
  };

  const form = h(
    "form",
    { class: "create", novalidate: true, "aria-labelledby": "create-title" },
    h("h1", { id: "create-title" }, "Turn your story into a manga"),
    h(
      "p",
      { class: "lede" },
      "Paste a story, pick a look, and watch every panel being drawn. ",
      h("a", { href: "/help", "data-link": true }, "How it works"),
    ),
    banner,
    h(
      "div",
      { class: "field" },
      h(
        "div",
        { class: "label-row" },
        h("label", { for: "story" }, "Story"),
        h("label", { class: "button small", for: "story-file", tabIndex: 0, onkeydown: (e: KeyboardEvent) => (e.key === "Enter" || e.key === " ") && fileInput.click() }, "Open a .txt file"),
        fileInput,
      ),
      samples,
      dropZone,
      h("p", { class: "hint", id: "story-hint" }, counter, " · drop a .txt file on the box to load it"),
      errorSlot("story"),
    ),
    h(
      "div",
      { class: "row" },
      h(
        "div",
        { class: "field panel-count" },
        h("label", { for: "panel-count" }, "Panels"),
        h("div", { class: "inline" }, panels, panelsRange),
        errorSlot("panel_count"),
      ),
    ),
    h(
      "div",
      { class: "row two" },
      radios("layout", "Page layout", LAYOUTS, PageLayout.CLASSIC, (v) => layoutPicture(v)),
      radios("reading_order", "Reading order", READING_ORDERS, ReadingOrder.RIGHT_TO_LEFT, (v) => readingOrderPicture(v)),
    ),
    h(
      "fieldset",
      { class: "style" },
      h("legend", null, "Style"),
      h("div", { class: "style-grid" }, ...selects.map((s) => s.el)),
      h("div", { class: "field" }, h("label", { for: "style-notes" }, "Notes for the artist"), notes, errorSlot("style.notes")),
    ),
    // Sticky: on a laptop screen the button stays in view below however long the form is.
    h("div", { class: "actions sticky-actions" }, submit),
  );

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    submit.textContent = "Starting…";
    banner.hidden = true;
    const style: Record<string, number | string> = { notes: notes.value };
    for (const { field, select } of selects) style[field] = Number(select.value);
    const checked = (name: string): number =>
      Number(form.querySelector<HTMLInputElement>(`input[name="${name}"]:checked`)?.value ?? 0);
    try {
      const job = await call(() =>
        jobs.createJob({
          story: story.value,
          panelCount: Number(panels.value) || 0,
          layout: checked("layout"),
          readingOrder: checked("reading_order"),
          style,
          requestId,
        }),
      );
      requestId = crypto.randomUUID();
      localStorage.removeItem(DRAFT_KEY);
      navigate(`/jobs/${job.name.split("/")[1]}`);
    } catch (err) {
      submit.disabled = false;
      submit.textContent = "Generate manga";
      showProblem(describe(err));
    }
  });

  root.append(form);
  story.focus();
  return () => window.clearInterval(retryTimer);
}

function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

const FIELD_NAMES: Record<string, string> = {
  story: "The story",
  panel_count: "The number of panels",
  layout: "The page layout",
  reading_order: "The reading order",
  "style.notes": "The notes",
};
