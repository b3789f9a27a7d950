// The session's jobs, newest first, a page at a time (ListJobs page_size/page_token).

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { call, describe, jobs } from "../api";
import { h } from "../dom";
import type { Job } from "../gen/mangakai/v1/common_pb";
import { JOB_STATES, jobStateName } from "../labels";

const PAGE_SIZE = 12;

export function historyView(root: HTMLElement): () => void {
  const list = h("ul", { class: "history", id: "history" });
  const more = h("button", { type: "button", id: "load-more" }, "Show older");
  const banner = h("div", { class: "banner", role: "alert" });
  banner.hidden = true;
  more.hidden = true;
  let token = "";
  let disposed = false;

  const load = async (): Promise<void> => {
    more.disabled = true;
    try {
      const page = await call(() => jobs.listJobs({ pageSize: PAGE_SIZE, pageToken: token }));
      if (disposed) return;
      list.append(...page.jobs.map(card));
      token = page.nextPageToken;
      more.hidden = !token;
      if (!list.children.length) {
        list.append(h("li", { class: "empty" }, "No manga yet. ", h("a", { href: "/", "data-link": true }, "Make your first one"), "."));
      }
    } catch (err) {
      banner.hidden = false;
      banner.textContent = describe(err).message;
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", () => void load());

  root.append(h("section", { class: "history-page", "aria-labelledby": "history-title" }, h("h1", { id: "history-title" }, "Your manga"), banner, list, h("div", { class: "actions" }, more)));
  void load();
  return () => {
    disposed = true;
  };
}

function card(job: Job): HTMLLIElement {
  const id = job.name.split("/")[1];
  const thumb = job.panels.map((p) => p.versions[0]?.image?.uri).find(Boolean);
  const created = job.createTime ? timestampDate(job.createTime) : null;
  return h(
    "li",
    { class: "history-item", dataset: { job: id, state: jobStateName(job.state) } },
    h(
      "a",
      { href: `/jobs/${id}`, "data-link": true },
      thumb ? h("img", { src: thumb, alt: "", loading: "lazy" }) : h("div", { class: "thumb-empty", "aria-hidden": "true" }, "漫"),
      h(
        "span",
        { class: "history-text" },
        h("strong", null, job.title || "Untitled story"),
        h("span", { class: "badge", dataset: { state: jobStateName(job.state) } }, JOB_STATES[job.state]),
        h("span", { class: "meta" }, `${job.panelCount} ${job.panelCount === 1 ? "panel" : "panels"}`, created ? " · " : "", created ? h("time", { dateTime: created.toISOString() }, created.toLocaleString()) : null),
      ),
    ),
  );
}
