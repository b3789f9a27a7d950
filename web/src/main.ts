import "./style.css";
import { route, start } from "./router";
import { createView } from "./views/create";
import { helpView } from "./views/help";
import { historyView } from "./views/history";
import { jobView } from "./views/job";

route(/^\/$/, (root) => createView(root));
route(/^\/history\/?$/, (root) => historyView(root));
route(/^\/help\/?$/, (root) => helpView(root));
route(/^\/jobs\/(?<id>[0-9a-f-]{36})\/?$/, (root, params) => jobView(root, params.id));
start();
