// The portal's shell: the hash router, the header, the signed-out state.
import * as api from "./api.js";
import { clear, errorBox, h, say } from "./dom.js";
import * as pages from "./pages.js";

const main = document.getElementById("main");
const header = document.querySelector("header.top");

const routes = [
  [/^\/signin$/, pages.signin],
  [/^\/dashboard$/, pages.dashboard],
  [/^\/clients$/, pages.clients],
  [/^\/clients\/(\d+)$/, pages.client],
  [/^\/images$/, pages.images],
  [/^\/images\/([A-Za-z0-9_-]+)$/, pages.image],
  [/^\/albums$/, pages.albums],
  [/^\/albums\/([A-Za-z0-9_-]+)$/, pages.album],
  [/^\/avatars$/, pages.avatars],
  [/^\/avatars\/(\d+)$/, pages.avatar],
  [/^\/profile$/, pages.profile],
];

export function location() {
  const raw = window.location.hash.replace(/^#/, "") || "/dashboard";
  const [path, qs] = raw.split("?");
  return { path, params: new URLSearchParams(qs || "") };
}

let rendering = 0;

async function render() {
  const { path, params } = location();
  const n = ++rendering;
  if (path !== "/signin" && !api.signedIn() && !(await api.refresh())) {
    go("/signin");
    return;
  }
  if (n !== rendering) return;
  header.hidden = path === "/signin";
  const who = document.getElementById("who");
  who.textContent = api.admin() ? api.admin().email : "";
  for (const a of header.querySelectorAll("nav a")) {
    const here = path.startsWith(a.getAttribute("href").slice(1));
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const found = routes.find(([re]) => re.test(path));
  clear(main);
  if (!found) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "No such page."));
    return;
  }
  const args = path.match(found[0]).slice(1);
  try {
    await found[1](main, { params, args, go, rerender: render });
  } catch (e) {
    if (e instanceof api.ApiError && e.status === 401) return;
    main.append(errorBox(e));
  }
  if (n === rendering) document.title = `${(main.querySelector("h1") || {}).textContent || "admin"} · mediaproxy admin`;
}

export function go(path, params) {
  const qs = params ? params.toString() : "";
  const target = `#${path}${qs ? `?${qs}` : ""}`;
  if (window.location.hash === target) render();
  else window.location.hash = target;
}

api.onSignedOut(() => {
  say("Your session has ended: sign in again.", "error");
  go("/signin");
});

document.getElementById("signout").addEventListener("click", async () => {
  try { await api.signOut(false); } catch (e) { say(e.message, "error"); }
  say("Signed out.");
  go("/signin");
});

window.addEventListener("hashchange", () => { say(""); render(); main.focus({ preventScroll: true }); });
render();
