import { hideToast } from "./dom";

// Client-side routes: / (new manga), /jobs/{id} (one job), /history. The gateway answers
// every such path with index.html, so a reload or a shared link lands on the same screen.

type View = (root: HTMLElement, params: Record<string, string>) => () => void;

const routes: [RegExp, View][] = [];
let dispose: (() => void) | null = null;

export function route(pattern: RegExp, view: View): void {
  routes.push([pattern, view]);
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

export function render(): void {
  const root = document.getElementById("main");
  if (!root) return;
  dispose?.();
  dispose = null;
  hideToast();
  root.replaceChildren();
  for (const [pattern, view] of routes) {
    const match = pattern.exec(location.pathname);
    if (match) {
      dispose = view(root, match.groups ?? {});
      for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
        link.toggleAttribute("aria-current", link.pathname === location.pathname);
      }
      return;
    }
  }
  navigate("/", true);
}

export function start(): void {
  document.addEventListener("click", (e) => {
    const link = (e.target as Element).closest?.("a[data-link]") as HTMLAnchorElement | null;
    if (!link || e.ctrlKey || e.metaKey || e.shiftKey || link.origin !== location.origin) return;
    e.preventDefault();
    navigate(link.pathname);
  });
  window.addEventListener("popstate", render);
  render();
}
