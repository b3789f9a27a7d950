// "How it works" on one screen: the flow, the layouts and reading orders with a picture each,
// and what the local backend draws when the renderer has no Gemini key.

import { h } from "../dom";
import { LOCAL_BACKEND, flow, layoutPicture, readingOrderPicture } from "../guide";
import { LAYOUTS, READING_ORDERS } from "../labels";

export function helpView(root: HTMLElement): () => void {
  const choice = (picture: SVGElement, label: string, hint?: string): HTMLLIElement =>
    h("li", { class: "pictured" }, picture, h("span", null, h("strong", null, label), hint ? h("small", null, hint) : null));
  root.append(
    h(
      "section",
      { class: "help", "aria-labelledby": "help-title" },
      h("h1", { id: "help-title" }, "How it works"),
      flow(),
      h(
        "div",
        { class: "help-grid" },
        h(
          "section",
          { "aria-labelledby": "help-layouts" },
          h("h2", { id: "help-layouts" }, "Page layouts"),
          h("ul", { class: "pictures", id: "layouts" }, ...LAYOUTS.map(([value, label, hint]) => choice(layoutPicture(value), label, hint))),
        ),
        h(
          "section",
          { "aria-labelledby": "help-orders" },
          h("h2", { id: "help-orders" }, "Reading order"),
          h("ul", { class: "pictures", id: "reading-orders" }, ...READING_ORDERS.map(([value, label, hint]) => choice(readingOrderPicture(value), label, hint))),
        ),
        h(
          "section",
          { "aria-labelledby": "help-local", id: "local-backend" },
          h("h2", { id: "help-local" }, "Without a Gemini key"),
          h("p", null, "The renderer draws every panel with its local backend."),
          h("p", null, h("strong", null, "It can draw: "), LOCAL_BACKEND.can),
          h("p", null, h("strong", null, "It cannot draw: "), LOCAL_BACKEND.cannot),
        ),
      ),
      h("p", { class: "actions" }, h("a", { class: "button primary", href: "/", "data-link": true }, "Write a story")),
    ),
  );
  return () => undefined;
}
