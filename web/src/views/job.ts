// One job: live progress from WatchJob, the scene plan, each panel as it is drawn, cancel,
// redraw with an instruction and a reference image, versions, pages, and downloads.

import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { call, describe, jobs, type Problem } from "../api";
import { append, clear, h, setText, toast } from "../dom";
import {
  ExportFormat,
  Job_State,
  PageLayout,
  PanelSchema,
  PanelVersion_State,
  PanelVersionSchema,
  ReadingOrder,
  type Job,
  type JobEvent,
  type Panel,
  type PanelVersion,
} from "../gen/mangakai/v1/common_pb";
import { JOB_STATES, PANEL_STATES, isActive, jobStateName, panelStateName } from "../labels";
import { JobWatch, type WatchStatus } from "../watch";

export function jobView(root: HTMLElement, id: string): () => void {
  const name = `jobs/${id}`;
  let job: Job | null = null;
  let watch: JobWatch | null = null;
  let disposed = false;
  /** The version each panel card shows (the current one unless the reader flipped). */
  const shown = new Map<number, number>();
  const cards = new Map<number, PanelCard>();

  const title = h("h1", { id: "job-title" }, "Loading…");
  const badge = h("span", { class: "badge", id: "job-state" });
  const bar = h("div", { class: "bar" });
  const percent = h("span", { class: "percent", id: "job-progress" });
  const progress = h("div", {
    class: "progress",
    role: "progressbar",
    "aria-valuemin": 0,
    "aria-valuemax": 100,
    "aria-label": "Progress",
  }, bar);
  const connection = h("p", { class: "connection", id: "connection", "aria-live": "polite" });
  const banner = h("div", { class: "banner", role: "alert", id: "job-banner" });
  banner.hidden = true;
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-job" }, "Cancel");
  const pdf = h("button", { type: "button", class: "primary", id: "download-pdf" }, "Download PDF");
  const cbz = h("button", { type: "button", id: "download-cbz" }, "Download CBZ");
  // Nothing to cancel or download until the job is known (and never for one that is not found).
  cancel.hidden = pdf.hidden = cbz.hidden = true;
  /** Panels asked to be redrawn whose new version is not settled yet; the notice lasts as long. */
  const redrawing = new Set<number>();
  const redrawStatus = h("p", { class: "redraw-status", id: "redraw-status", "aria-live": "polite" });
  const zoom = new PanelZoom();
  const exportStatus = h("p", { class: "export-status", id: "export-status", "aria-live": "polite" });
  const planBox = h("details", { class: "plan", id: "plan" });
  const grid = h("div", { class: "panels", id: "panels", "aria-live": "polite" });
  const pages = h("div", { class: "pages", id: "pages" });
  const activity = h("ol", { class: "activity", id: "activity", reversed: true });
  const panelsTab = h("button", { type: "button", role: "tab", id: "tab-panels", "aria-controls": "panels" }, "Panels");
  const pagesTab = h("button", { type: "button", role: "tab", id: "tab-pages", "aria-controls": "pages" }, "Read as pages");
  const dialog = new RedrawDialog(async (panel, instruction, reference) => {
    const updated = await call(() =>
      jobs.regeneratePanel({ name, panel, instruction, referenceImage: reference ?? new Uint8Array() }),
    );
    if (!job) return;
    job.panels[panel - 1] = updated;
    job.state = Job_State.RENDERING;
    shown.delete(panel);
    redrawing.add(panel);
    render();
    follow();
  });

  const selectTab = (which: "panels" | "pages"): void => {
    panelsTab.setAttribute("aria-selected", String(which === "panels"));
    pagesTab.setAttribute("aria-selected", String(which === "pages"));
    grid.hidden = which !== "panels";
    pages.hidden = which !== "pages";
    if (which === "pages") renderPages();
  };
  panelsTab.addEventListener("click", () => selectTab("panels"));
  pagesTab.addEventListener("click", () => selectTab("pages"));

  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "View" }, panelsTab, pagesTab);
  const activityBox = h("details", { class: "activity-box" }, h("summary", null, "Activity"), activity);
  const notFound = h(
    "p",
    { class: "actions not-found", id: "not-found" },
    h("a", { class: "button", href: "/history", "data-link": true }, "Your manga"),
    h("a", { class: "button primary", href: "/", "data-link": true }, "Start a new manga"),
  );
  notFound.hidden = true;
  const section = h(
    "section",
    { class: "job", "aria-labelledby": "job-title" },
    h("div", { class: "job-head" }, h("div", null, title, h("p", { class: "meta" }, badge, " ", percent)), h("div", { class: "job-actions" }, cancel, pdf, cbz)),
    progress,
    connection,
    redrawStatus,
    banner,
    notFound,
    exportStatus,
    planBox,
    tabs,
    grid,
    pages,
    activityBox,
  );
  root.append(section, dialog.element, zoom.element);
  selectTab("panels");

  const showProblem = (problem: Problem): void => {
    banner.hidden = false;
    banner.textContent = problem.message;
  };

  const onStatus = (status: WatchStatus): void => {
    connection.dataset.status = status.kind;
    switch (status.kind) {
      case "live":
        setText(connection, job && isActive(job.state) ? "Live" : "");
        break;
      case "reconnecting":
        setText(connection, `Connection lost. Reconnecting in ${status.inSeconds} s…`);
        if (status.attempt === 1) {
          const when = new Date().toLocaleTimeString();
          activity.prepend(h("li", { class: "connection-note" }, h("time", null, when), " Connection lost; reconnecting"));
        }
        break;
      case "ended":
        setText(connection, "");
        break;
      case "failed":
        setText(connection, "");
        showProblem(status.problem);
        break;
    }
  };

  const onEvent = (event: JobEvent): void => {
    if (!job) return;
    applyEvent(job, event);
    activity.prepend(activityItem(event));
    const kind = event.kind;
    if ((kind.case === "panelFinished" || kind.case === "panelFailed") && redrawing.delete(kind.value.panel)) {
      toast(kind.case === "panelFinished" ? `Panel ${kind.value.panel} redrawn` : `Panel ${kind.value.panel} could not be redrawn`);
    }
    if (event.terminal) {
      redrawing.clear(); // the run ended: nothing is being redrawn any more
      if (event.jobState === Job_State.CANCELLED) toast(`Cancelled with ${drawnCount(job)} of ${job.panels.length} panels drawn`);
    }
    render();
    if (event.terminal) void refresh();
  };

  /** Watches from the last event applied: nothing is lost and nothing is applied twice. */
  const follow = (): void => {
    watch?.stop();
    if (job && !disposed) watch = new JobWatch(name, job.lastEventSequence, onEvent, onStatus);
  };

  const refresh = async (): Promise<void> => {
    try {
      const fresh = await call(() => jobs.getJob({ name }));
      if (disposed || (job && fresh.lastEventSequence < job.lastEventSequence)) return;
      job = fresh;
      render();
    } catch (err) {
      showProblem(describe(err));
    }
  };

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const updated = await call(() => jobs.cancelJob({ name }));
      if (job && updated.lastEventSequence >= job.lastEventSequence) job = updated;
      render();
      // The cancel takes effect once the panel being drawn stops; the terminal event says so.
      if (job && isActive(job.state)) toast("Cancelling…");
      else if (job) toast(`Cancelled with ${drawnCount(job)} of ${job.panels.length} panels drawn`);
    } catch (err) {
      cancel.disabled = false;
      showProblem(describe(err));
    }
  });

  const download = async (format: ExportFormat, button: HTMLButtonElement, label: string): Promise<void> => {
    button.disabled = true;
    setText(exportStatus, `Preparing the ${label}…`);
    try {
      const result = await call(() => jobs.exportJob({ name, format }));
      const response = await fetch(result.uri);
      if (!response.ok) throw new Error(`download failed with HTTP ${response.status}`);
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: `${fileName(job)}.${label.toLowerCase()}` });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
      exportStatus.dataset.pages = String(result.pageCount);
      setText(exportStatus, `${label} ready: ${result.pageCount} ${result.pageCount === 1 ? "page" : "pages"}.`);
    } catch (err) {
      setText(exportStatus, "");
      showProblem(err instanceof Error && !("code" in err) ? { ...describe(err), message: err.message } : describe(err));
    } finally {
      button.disabled = false;
    }
  };
  pdf.addEventListener("click", () => void download(ExportFormat.PDF, pdf, "PDF"));
  cbz.addEventListener("click", () => void download(ExportFormat.CBZ, cbz, "CBZ"));

  function render(): void {
    if (!job || disposed) return;
    const lang = job.plan?.language || undefined;
    const heading = job.title || job.plan?.title || "Untitled story";
    setText(title, heading);
    title.lang = lang ?? "";
    document.title = `${heading} — MangakAI`;
    badge.dataset.state = jobStateName(job.state);
    // Partial (Job.failed_panel_count, counted from the panels so that live events keep it current).
    const failedPanels = job.panels.filter((p) => p.state === PanelVersion_State.FAILED).length;
    setText(badge, job.state === Job_State.COMPLETED && failedPanels ? `Partly finished: ${failedPanels} of ${job.panels.length} panels failed` : JOB_STATES[job.state]);
    setText(percent, `${job.progressPercent}%`);
    bar.style.width = `${job.progressPercent}%`;
    progress.setAttribute("aria-valuenow", String(job.progressPercent));
    root.querySelector(".job")?.setAttribute("data-state", jobStateName(job.state));
    cancel.hidden = !isActive(job.state);
    const done = job.state === Job_State.COMPLETED;
    pdf.hidden = cbz.hidden = !done;
    if (job.state === Job_State.FAILED && job.failureReason) {
      banner.hidden = false;
      banner.textContent = `This manga could not be finished: ${job.failureReason}`;
    }
    if (!isActive(job.state) && connection.dataset.status === "live") setText(connection, "");
    setText(redrawStatus, redrawing.size ? `Redrawing panel ${[...redrawing].sort((a, b) => a - b).join(", ")}…` : "");
    renderPlan(job);
    const canRedraw = (job.state === Job_State.COMPLETED || job.state === Job_State.FAILED) && job.panels.length > 0;
    for (const panel of job.panels) {
      let card = cards.get(panel.number);
      if (!card) {
        card = new PanelCard(panel.number, {
          flip: (step) => flip(panel.number, step),
          choose: (version) => void choose(panel.number, version),
          redraw: (failed) => dialog.open(panel.number, failed),
        });
        cards.set(panel.number, card);
        grid.append(card.element);
      }
      card.update(panel, shown.get(panel.number), canRedraw, lang);
    }
    if (job.panels.length === 0 && !grid.querySelector(".empty")) {
      grid.append(h("p", { class: "empty" }, "The panels appear here once the story has been planned."));
    } else if (job.panels.length) grid.querySelector(".empty")?.remove();
    if (!pages.hidden) renderPages();
  }

  function renderPlan(current: Job): void {
    const plan = current.plan;
    if (!plan || plan.scenes.length === 0) {
      if (!planBox.firstChild) planBox.append(h("summary", null, "Scene plan: waiting for the story to be planned…"));
      return;
    }
    if (planBox.dataset.scenes === String(plan.scenes.length)) return;
    planBox.dataset.scenes = String(plan.scenes.length);
    clear(planBox);
    planBox.lang = plan.language || "";
    append(
      planBox,
      h("summary", null, `Scene plan: ${plan.scenes.length} scenes, ${plan.characters.length} characters`),
      plan.characters.length
        ? h("ul", { class: "characters" }, ...plan.characters.map((c) => h("li", null, h("strong", null, c.name), " — ", c.description)))
        : null,
      h(
        "ol",
        { class: "scenes" },
        ...plan.scenes.map((s) =>
          h("li", null, h("span", { class: "setting" }, s.setting), " ", s.action, ...s.dialogue.map((d) => h("q", null, d.speaker ? `${d.speaker}: ${d.text}` : d.text))),
        ),
      ),
    );
  }

  function renderPages(): void {
    if (!job) return;
    clear(pages);
    const drawn = job.panels.filter((p) => p.currentVersion > 0);
    if (!drawn.length) {
      pages.append(h("p", { class: "empty" }, "Pages appear once panels are drawn."));
      return;
    }
    const rtl = job.readingOrder !== ReadingOrder.LEFT_TO_RIGHT;
    const perPage = { [PageLayout.FOUR_KOMA]: 4, [PageLayout.SINGLE]: 1, [PageLayout.WEBTOON]: drawn.length }[job.layout as number] ?? 6;
    const layoutName = PageLayout[job.layout]?.toLowerCase() ?? "classic";
    pages.append(
      h("p", { class: "hint" }, rtl ? "Read each page from the top right, right to left." : "Read each page from the top left, left to right."),
    );
    for (let start = 0, page = 1; start < drawn.length; start += perPage, page += 1) {
      pages.append(
        h(
          "section",
          { class: `page layout-${layoutName}`, dir: rtl ? "rtl" : "ltr", "aria-label": `Page ${page}` },
          ...drawn.slice(start, start + perPage).map((p) => {
            const version = p.versions.find((v) => v.version === p.currentVersion);
            const alt = `Panel ${p.number}: ${p.scene?.action ?? ""}`;
            const uri = version?.image?.uri ?? "";
            // The number sits under the image, never over it: vertical Japanese captions start in
            // the top right corner, where a badge would cover their first column.
            return h(
              "figure",
              { class: "page-panel", tabIndex: 0, role: "button", "aria-label": `Zoom panel ${p.number}`, onclick: () => zoom.open(uri, alt, p.number), onkeydown: (e: KeyboardEvent) => (e.key === "Enter" || e.key === " ") && zoom.open(uri, alt, p.number) },
              h("img", { src: uri, alt, loading: "lazy" }),
              h("figcaption", { class: "order" }, p.number),
            );
          }),
        ),
      );
    }
  }

  function flip(number: number, step: number): void {
    const panel = job?.panels[number - 1];
    if (!panel || !panel.versions.length) return;
    const at = shown.get(number) ?? (panel.currentVersion || panel.versions[panel.versions.length - 1].version);
    const index = panel.versions.findIndex((v) => v.version === at);
    const next = panel.versions[Math.min(panel.versions.length - 1, Math.max(0, index + step))];
    shown.set(number, next.version);
    render();
    cards.get(number)?.focusVersion();
  }

  async function choose(number: number, version: number): Promise<void> {
    try {
      const updated = await call(() => jobs.setCurrentPanelVersion({ name, panel: number, version }));
      if (!job) return;
      job.panels[number - 1] = updated;
      shown.delete(number);
      render();
      toast(`Panel ${number} now uses version ${version}`);
    } catch (err) {
      showProblem(describe(err));
    }
  }

  void (async () => {
    try {
      job = await call(() => jobs.getJob({ name }));
    } catch (err) {
      const problem = describe(err);
      setText(title, "Manga not found");
      document.title = "Manga not found — MangakAI";
      section.dataset.state = "NOT_FOUND";
      // Only the message and the ways on: there is no job to watch, cancel, read or download.
      for (const el of [badge, percent, progress, connection, planBox, tabs, grid, pages, activityBox]) el.hidden = true;
      notFound.hidden = false;
      showProblem(problem);
      return;
    }
    render();
    if (isActive(job.state)) follow();
  })();

  return () => {
    disposed = true;
    watch?.stop();
    dialog.element.remove();
    zoom.element.remove();
  };
}

function drawnCount(job: Job): number {
  return job.panels.filter((p) => p.currentVersion > 0).length;
}

/** A panel of the page reader at the full width of the screen; a tap (or Escape) closes it. */
class PanelZoom {
  readonly element: HTMLDialogElement;
  private readonly image = h("img", { alt: "" });
  private readonly caption = h("figcaption");

  constructor() {
    this.element = h("dialog", { class: "zoom", id: "zoom", "aria-label": "Panel" }, h("figure", null, this.image, this.caption));
    this.element.addEventListener("click", () => this.element.close());
  }

  open(uri: string, alt: string, number: number): void {
    this.image.src = uri;
    this.image.alt = alt;
    setText(this.caption, `Panel ${number} · tap to close`);
    this.element.showModal();
  }
}

/** Applies one event to the job as the server's state changed. */
function applyEvent(job: Job, event: JobEvent): void {
  job.lastEventSequence = event.sequence;
  job.state = event.jobState;
  job.progressPercent = event.progressPercent;
  const kind = event.kind;
  switch (kind.case) {
    case "stateChanged":
      if (kind.value.reason && kind.value.state === Job_State.FAILED) job.failureReason = kind.value.reason;
      break;
    case "planReady":
      job.plan = kind.value;
      job.title = kind.value.title;
      if (!job.panels.length) {
        job.panels = kind.value.scenes.map((scene) =>
          create(PanelSchema, { number: scene.number, scene, state: PanelVersion_State.PENDING }),
        );
      }
      break;
    case "panelStarted": {
      const version = upsertVersion(job, kind.value.panel, create(PanelVersionSchema, { version: kind.value.version, state: PanelVersion_State.RENDERING }), false);
      if (version) panelOf(job, kind.value.panel)!.state = PanelVersion_State.RENDERING;
      break;
    }
    case "panelFinished": {
      const panel = panelOf(job, kind.value.panel);
      if (panel && kind.value.version) {
        upsertVersion(job, kind.value.panel, kind.value.version, true);
        panel.currentVersion = kind.value.version.version;
        panel.state = PanelVersion_State.SUCCEEDED;
      }
      break;
    }
    case "panelFailed": {
      const panel = panelOf(job, kind.value.panel);
      if (panel && kind.value.version) {
        upsertVersion(job, kind.value.panel, kind.value.version, true);
        panel.state = PanelVersion_State.FAILED;
      }
      break;
    }
  }
}

function panelOf(job: Job, number: number): Panel | undefined {
  return job.panels.find((p) => p.number === number);
}

function upsertVersion(job: Job, number: number, version: PanelVersion, replace: boolean): PanelVersion | undefined {
  const panel = panelOf(job, number);
  if (!panel) return undefined;
  const index = panel.versions.findIndex((v) => v.version === version.version);
  if (index < 0) {
    panel.versions.push(version);
    panel.versions.sort((a, b) => a.version - b.version);
    return version;
  }
  if (replace) panel.versions[index] = version;
  else panel.versions[index].state = version.state;
  return panel.versions[index];
}

function activityItem(event: JobEvent): HTMLLIElement {
  const kind = event.kind;
  let text: string;
  switch (kind.case) {
    case "stateChanged":
      text = JOB_STATES[kind.value.state] + (kind.value.reason ? `: ${kind.value.reason}` : "");
      break;
    case "planReady":
      text = `Story planned into ${kind.value.scenes.length} scenes`;
      break;
    case "panelStarted":
      text = `Drawing panel ${kind.value.panel} (version ${kind.value.version})`;
      break;
    case "panelFinished":
      text = `Panel ${kind.value.panel} drawn (version ${kind.value.version?.version ?? "?"})`;
      break;
    case "panelFailed":
      text = `Panel ${kind.value.panel} failed: ${kind.value.version?.failureReason ?? ""}`;
      break;
    default:
      text = "Update";
  }
  const when = event.createTime ? timestampDate(event.createTime).toLocaleTimeString() : "";
  return h("li", { dataset: { seq: String(event.sequence) } }, h("time", null, when), " ", text);
}

function fileName(job: Job | null): string {
  const base = (job?.title || "manga").normalize("NFKC").replace(/[\\/:*?"<>|\s]+/g, "-").slice(0, 60);
  return base || "manga";
}

interface CardActions {
  flip(step: number): void;
  choose(version: number): void;
  redraw(failed: boolean): void;
}

/** One panel: its image (or its state), its scene, its versions and a redraw button. */
class PanelCard {
  readonly element: HTMLElement;
  private readonly frame = h("div", { class: "frame" });
  private readonly image = h("img", { alt: "", decoding: "async" });
  private readonly placeholder = h("div", { class: "placeholder" });
  private readonly caption = h("figcaption");
  private readonly versionLabel = h("span", { class: "version-label" });
  private readonly prev = h("button", { type: "button", class: "icon", "aria-label": "Previous version" }, "‹");
  private readonly next = h("button", { type: "button", class: "icon", "aria-label": "Next version" }, "›");
  private readonly use = h("button", { type: "button", class: "small use-version" }, "Use this version");
  private readonly versions = h("div", { class: "versions" });
  private readonly redraw = h("button", { type: "button", class: "small redraw" }, "Redraw…");
  private shownVersion = 0;
  private failed = false;

  constructor(
    private readonly number: number,
    actions: CardActions,
  ) {
    this.prev.addEventListener("click", () => actions.flip(-1));
    this.next.addEventListener("click", () => actions.flip(1));
    this.use.addEventListener("click", () => actions.choose(this.shownVersion));
    this.redraw.addEventListener("click", () => actions.redraw(this.failed));
    this.versions.append(this.prev, this.versionLabel, this.next, this.use);
    this.element = h(
      "figure",
      { class: "panel", dataset: { panel: String(number) } },
      this.frame,
      this.caption,
      h("div", { class: "panel-actions" }, this.versions, this.redraw),
    );
  }

  update(panel: Panel, viewed: number | undefined, canRedraw: boolean, lang: string | undefined): void {
    const latest = panel.versions[panel.versions.length - 1];
    const version =
      panel.versions.find((v) => v.version === (viewed ?? panel.currentVersion)) ??
      (panel.currentVersion ? undefined : latest);
    this.shownVersion = version?.version ?? 0;
    this.failed = panel.state === PanelVersion_State.FAILED || panel.state === PanelVersion_State.CANCELLED;
    const data = this.element.dataset;
    data.state = panelStateName(panel.state);
    data.current = String(panel.currentVersion);
    data.shown = String(this.shownVersion);
    data.versions = String(panel.versions.length);
    this.element.lang = lang ?? "";

    const uri = version?.state === PanelVersion_State.SUCCEEDED ? version.image?.uri : undefined;
    if (uri) {
      if (this.image.getAttribute("src") !== uri) this.image.src = uri;
      this.image.alt = `Panel ${this.number}: ${panel.scene?.action ?? ""}`;
      if (this.frame.firstChild !== this.image) this.frame.replaceChildren(this.image);
    } else {
      const state = version?.state ?? panel.state;
      const reason = version?.failureReason;
      this.placeholder.dataset.state = panelStateName(state);
      clear(this.placeholder);
      append(
        this.placeholder,
        h("span", { class: "state" }, PANEL_STATES[state]),
        reason && (state === PanelVersion_State.FAILED || state === PanelVersion_State.CANCELLED) ? h("span", { class: "reason" }, reason) : null,
      );
      if (this.frame.firstChild !== this.placeholder) this.frame.replaceChildren(this.placeholder);
    }
    const scene = panel.scene;
    clear(this.caption);
    append(
      this.caption,
      h("strong", null, `Panel ${this.number}`),
      this.inProgress(panel) ? h("span", { class: "chip" }, PANEL_STATES[panel.state]) : null,
      scene ? h("span", { class: "action" }, scene.action) : null,
      ...(scene?.dialogue ?? []).slice(0, 2).map((d) => h("q", null, d.text)),
    );
    const count = panel.versions.length;
    this.versions.hidden = count < 2;
    const index = panel.versions.findIndex((v) => v.version === this.shownVersion);
    this.prev.disabled = index <= 0;
    this.next.disabled = index < 0 || index >= count - 1;
    setText(
      this.versionLabel,
      `Version ${this.shownVersion} of ${count}${this.shownVersion === panel.currentVersion ? " (in use)" : ""}`,
    );
    this.use.hidden = !(version?.state === PanelVersion_State.SUCCEEDED && version.version !== panel.currentVersion);
    this.redraw.hidden = !canRedraw;
    setText(this.redraw, this.failed ? "Try again…" : "Redraw…");
  }

  focusVersion(): void {
    (this.next.disabled ? this.prev : this.next).focus();
  }

  private inProgress(panel: Panel): boolean {
    return panel.state === PanelVersion_State.PENDING || panel.state === PanelVersion_State.RENDERING;
  }
}

type Redraw = (panel: number, instruction: string, reference: Uint8Array | null) => Promise<void>;

/** The redraw form: an instruction and an optional reference image. */
class RedrawDialog {
  readonly element: HTMLDialogElement;
  private readonly instruction = h("textarea", { id: "redraw-instruction", name: "instruction", rows: 3, maxLength: 1000, "aria-describedby": "error-instruction" });
  private readonly reference = h("input", { id: "redraw-reference", type: "file", accept: "image/png,image/jpeg,image/webp", "aria-describedby": "error-reference_image" });
  private readonly errors = {
    instruction: h("p", { class: "field-error", id: "error-instruction", "data-error-for": "instruction" }),
    reference_image: h("p", { class: "field-error", id: "error-reference_image", "data-error-for": "reference_image" }),
  };
  private readonly banner = h("p", { class: "banner", role: "alert" });
  private readonly heading = h("h2", { id: "redraw-title" });
  private readonly submit = h("button", { type: "submit", class: "primary" }, "Redraw panel");
  private panel = 0;

  constructor(private readonly onSubmit: Redraw) {
    const close = h("button", { type: "button", value: "cancel" }, "Close");
    close.addEventListener("click", () => this.element.close());
    const form = h(
      "form",
      { method: "dialog", novalidate: true },
      this.heading,
      this.banner,
      h("div", { class: "field" }, h("label", { for: "redraw-instruction" }, "What should change?"), this.instruction, this.errors.instruction),
      h("div", { class: "field" }, h("label", { for: "redraw-reference" }, "Reference image (optional: PNG, JPEG or WebP, up to 8 MiB)"), this.reference, this.errors.reference_image),
      h("div", { class: "actions" }, close, this.submit),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.send();
    });
    this.element = h("dialog", { class: "redraw", "aria-labelledby": "redraw-title" }, form);
    document.body.append(this.element);
  }

  open(panel: number, failed: boolean): void {
    this.panel = panel;
    setText(this.heading, `Redraw panel ${panel}`);
    this.instruction.value = failed ? "Draw this scene again" : "";
    this.reference.value = "";
    this.clearErrors();
    this.element.showModal();
    this.instruction.focus();
  }

  private clearErrors(): void {
    this.banner.hidden = true;
    for (const slot of Object.values(this.errors)) {
      slot.hidden = true;
      slot.textContent = "";
    }
  }

  private async send(): Promise<void> {
    this.clearErrors();
    this.submit.disabled = true;
    try {
      const file = this.reference.files?.[0];
      const bytes = file ? new Uint8Array(await file.arrayBuffer()) : null;
      await this.onSubmit(this.panel, this.instruction.value, bytes);
      this.element.close();
    } catch (err) {
      const problem = describe(err);
      for (const [field, message] of problem.fields) {
        const slot = this.errors[field as keyof typeof this.errors];
        if (slot) {
          slot.hidden = false;
          slot.textContent = `${field === "instruction" ? "The instruction" : "The reference image"} ${message}.`;
        }
      }
      this.banner.hidden = false;
      this.banner.textContent = problem.message;
    } finally {
      this.submit.disabled = false;
    }
  }
}
