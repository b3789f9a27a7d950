// A tiny element builder: h("button", { class: "primary", onclick: go }, "Generate").

type Child = Node | string | number | null | undefined | false;
type Props = Record<string, unknown>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value as EventListener);
    } else if (key in el && !key.includes("-") && key !== "list" && key !== "form") {
      (el as unknown as Record<string, unknown>)[key] = value;
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** Replaces an element's children (no-op when they would read the same text). */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

let toastTimer: number | undefined;

/** Hides the current toast (a new screen starts without the last one's message). */
export function hideToast(): void {
  document.getElementById("toast")?.classList.remove("shown");
}

/** A short message in the polite live region at the bottom of the screen. */
export function toast(message: string): void {
  const box = document.getElementById("toast");
  if (!box) return;
  box.textContent = message;
  box.classList.add("shown");
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => box.classList.remove("shown"), 5000);
}
