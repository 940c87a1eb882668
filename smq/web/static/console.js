// smq console: collapsible JSON, live figures, a page that follows a running execution.
// Payloads become DOM text nodes (textContent), never HTML: nothing inside a payload can run.
"use strict";

function jsonNode(value, depth) {
  if (value === null || typeof value !== "object") {
    const leaf = document.createElement("span");
    leaf.className = "j-" + (value === null ? "null" : typeof value);
    leaf.textContent = JSON.stringify(value);
    return leaf;
  }
  const isArray = Array.isArray(value);
  const keys = isArray ? value.map((_, i) => i) : Object.keys(value);
  if (keys.length === 0) {
    const empty = document.createElement("span");
    empty.textContent = isArray ? "[]" : "{}";
    return empty;
  }
  const details = document.createElement("details");
  details.open = depth < 2;
  const summary = document.createElement("summary");
  summary.textContent = isArray ? "[ " + keys.length + " items ]" : "{ " + keys.length + " keys }";
  details.appendChild(summary);
  const list = document.createElement("div");
  list.className = "j-members";
  for (const key of keys) {
    const row = document.createElement("div");
    row.className = "j-member";
    const name = document.createElement("span");
    name.className = "j-key";
    name.textContent = isArray ? key + ": " : JSON.stringify(key) + ": ";
    row.appendChild(name);
    row.appendChild(jsonNode(value[key], depth + 1));
    list.appendChild(row);
  }
  details.appendChild(list);
  return details;
}

function collapsibleJson(pre) {
  let value;
  try {
    value = JSON.parse(pre.textContent);
  } catch (e) {
    return; // not JSON: stays the text it is
  }
  if (value === null || typeof value !== "object") return;
  const tree = document.createElement("div");
  tree.className = "json-tree";
  tree.appendChild(jsonNode(value, 0));
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "link raw-toggle";
  toggle.textContent = "raw";
  toggle.addEventListener("click", () => {
    const raw = pre.hidden;
    pre.hidden = !raw;
    tree.hidden = raw;
    toggle.textContent = raw ? "tree" : "raw";
  });
  pre.hidden = true;
  pre.parentNode.insertBefore(toggle, pre);
  pre.parentNode.insertBefore(tree, pre);
}

function refreshEvery(section) {
  const url = section.dataset.refresh;
  const seconds = Number(section.dataset.every || "5");
  setInterval(async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      // The fragment is the server's own template output, escaped like every page.
      if (response.ok) section.innerHTML = await response.text();
    } catch (e) { /* the next tick tries again */ }
  }, seconds * 1000);
}

function followExecution(root) {
  const seconds = Number(root.dataset.watch || "2");
  setInterval(async () => {
    try {
      const response = await fetch(root.dataset.stateUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const now = await response.json();
      if (now.status !== root.dataset.status || String(now.history_length) !== root.dataset.historyLength) {
        window.location.reload();
      }
    } catch (e) { /* the next tick tries again */ }
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("pre[data-json]").forEach(collapsibleJson);
  document.querySelectorAll("[data-refresh]").forEach(refreshEvery);
  document.querySelectorAll("[data-watch]").forEach(followExecution);
});
