// The portal's pages. Each renders into `main` from the admin API; every action calls the API
// and shows its error message when it fails.
import * as api from "./api.js";
import { barChart, blurhash, bytes, clear, columnChart, confirmDialog, date, errorBox, h, num, say } from "./dom.js";

const PAGE = 100;
let uid = 0;
const id = (p) => `${p}-${++uid}`;

function field(label, input, hint) {
  const fid = input.id || id("f");
  input.id = fid;
  return h("div", { class: "field" }, h("label", { for: fid }, label), input, hint ? h("small", {}, hint) : null);
}

function table(caption, heads, rows) {
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

async function act(button, fn, done) {
  button.disabled = true;
  try {
    const out = await fn();
    if (done) say(done);
    return out;
  } catch (e) {
    say(e.message, "error");
    return undefined;
  } finally {
    button.disabled = false;
  }
}

async function allClients() {
  const out = [];
  for (let offset = 0; ; offset += 100) {
    const page = await api.get(`/clients${api.query({ limit: 100, offset })}`);
    out.push(...page.items);
    if (out.length >= page.total || !page.items.length) return out;
  }
}

async function signedUrls(ids, w, hgt, fit) {
  if (!ids.length) return {};
  return (await api.get(`/images/signed${api.query({ ids: ids.join(","), w, h: hgt, fit })}`)).urls;
}

// "1–100 of 10,000" with Previous and Next links: a page of a list the API pages by offset.
function pager(path, params, offset, list) {
  const nav = h("nav", { class: "pager", "aria-label": "Pages" },
    h("span", {}, `${list.total ? offset + 1 : 0}–${offset + list.items.length} of ${num(list.total)}`));
  const link = (o, label) => {
    const p = new URLSearchParams(params);
    p.set("offset", String(o));
    return h("a", { href: `#${path}?${p}` }, label);
  };
  if (offset > 0) nav.append(link(Math.max(0, offset - PAGE), "Previous"));
  if (offset + PAGE < list.total) nav.append(link(offset + PAGE, "Next"));
  return nav;
}

// -- sign in -----------------------------------------------------------------------------------

export async function signin(main, { go }) {
  document.querySelector("header.top").hidden = true;
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password",
    required: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const err = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "card narrow", "aria-labelledby": "signin-h" },
    h("h1", { id: "signin-h" }, "Sign in"), field("Email", email), field("Password", password), err, submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    err.hidden = true;
    try {
      await api.signIn(email.value, password.value);
      say("");
      go("/dashboard");
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  email.focus();
}

// -- dashboard ---------------------------------------------------------------------------------

export async function dashboard(main) {
  main.append(h("h1", {}, "Dashboard"));
  const [stats, uploads] = await Promise.all([api.get("/stats"), api.get("/stats/uploads?days=30")]);
  const card = (key, label, value) => h("div", { class: "stat", dataset: { stat: key } },
    h("span", { class: "label" }, label), h("span", { class: "value" }, value));
  main.append(h("section", { class: "stats", "aria-label": "Totals" },
    card("clients", "Clients", num(stats.clients)),
    card("images", "Images", num(stats.images || 0)),
    card("privateImages", "Private images", num(stats.privateImages || 0)),
    card("imageBytes", "Image bytes", bytes(stats.imageBytes || 0)),
    card("albums", "Albums", num(stats.albums || 0)),
    card("avatars", "Avatars", num(stats.avatars || 0)),
    card("totalBytes", "Total bytes", bytes(stats.totalBytes || 0))));
  const per = stats.perClient || [];
  main.append(h("section", { class: "card" }, h("h2", {}, "Uploads, last 30 days"),
    columnChart(uploads.items, { label: (r) => r.date.slice(5), value: (r) => r.images,
      title: "Images uploaded per day over the last 30 days" })));
  if (per.length) {
    main.append(h("section", { class: "card" }, h("h2", {}, "Images per client"),
      barChart(per, { label: (c) => c.slug, value: (c) => c.stats.images, title: "Images per client" }),
      barChart(per, { label: (c) => c.slug, value: (c) => c.stats.totalBytes, format: bytes,
        title: "Bytes per client" })));
  }
  main.append(h("section", { class: "card scroll" }, table("Per client",
    ["Client", "Images", "Private", "Image bytes", "Albums", "Avatars", "Total bytes"],
    per.map((c) => [h("a", { href: `#/clients/${c.id}` }, c.name || c.slug), num(c.stats.images),
      num(c.stats.privateImages), bytes(c.stats.imageBytes), num(c.stats.albums), num(c.stats.avatars),
      bytes(c.stats.totalBytes)]))));
}

// -- clients -----------------------------------------------------------------------------------

export async function clients(main, { params, go }) {
  main.append(h("h1", {}, "Clients"));
  const search = h("input", { type: "search", name: "q", value: params.get("q") || "" });
  const form = h("form", { class: "filters", role: "search" }, field("Search clients", search),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => { e.preventDefault(); go("/clients", new URLSearchParams({ q: search.value })); });
  main.append(form);
  const offset = Number(params.get("offset")) || 0;
  const list = await api.get(`/clients${api.query({ search: params.get("q"), limit: PAGE, offset })}`);
  main.append(h("section", { class: "card scroll" }, table(`${num(list.total)} client(s)`, ["Id", "Slug", "Name", "Created"],
    list.items.map((c) => [String(c.id), h("a", { href: `#/clients/${c.id}` }, c.slug), c.name || "", date(c.createdAt)]))));
  main.append(pager("/clients", params, offset, list));
}

export async function client(main, { args }) {
  const cid = args[0];
  const [c, keys, recent] = await Promise.all([api.get(`/clients/${cid}`), api.get(`/clients/${cid}/keys`),
    api.get(`/images${api.query({ clientId: cid, limit: 12 })}`)]);
  main.append(h("h1", {}, `Client ${c.slug}`));
  const name = h("input", { type: "text", name: "name", value: c.name || "", maxlength: 255 });
  const save = h("button", { type: "submit" }, "Save");
  const form = h("form", { class: "card" }, h("h2", {}, "Edit"), field("Name", name), save);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(save, () => api.call("PATCH", `/clients/${cid}`, { name: name.value }), "Client saved.");
  });
  const st = c.stats;
  main.append(
    h("section", { class: "card" }, h("h2", {}, "Figures"), h("dl", { class: "meta" },
      [["Images", num(st.images)], ["Private images", num(st.privateImages)], ["Image bytes", bytes(st.imageBytes)],
        ["Albums", num(st.albums)], ["Avatars", num(st.avatars)], ["Total bytes", bytes(st.totalBytes)]]
        .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
    form,
    h("section", { class: "card scroll" }, table("API keys (never the secret)", ["Prefix", "Name", "Created", "State"],
      keys.items.map((k) => [k.prefix, k.name || "", date(k.createdAt), k.state]))),
    h("section", { class: "card" }, h("h2", {}, "Recent uploads"),
      h("p", {}, h("a", { href: `#/images?clientId=${cid}` }, "All images of this client"))));
  const grid = h("ul", { class: "grid small" });
  main.lastChild.append(grid);
  await fillGrid(grid, recent.items, null);
}

// -- images grid -------------------------------------------------------------------------------

// A cell of a grid: one canvas, the BlurHash placeholder at once, the thumbnail drawn over it when
// show(blob) has decoded it; `decoded` settles then (or once it failed, or there is none). A canvas
// and createImageBitmap (decoded off the page's thread), not an <img> fading in over a placeholder:
// 100 of those were the slowest part of the grid in chromium (docs/performance.md).
function thumbCell(item, selection) {
  const canvas = blurhash(item.blurHash) || h("canvas", { width: 1, height: 1 });
  canvas.removeAttribute("aria-hidden");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", item.description || item.filename || "");
  const frame = h("span", { class: "frame" }, canvas);
  let settle;
  const decoded = new Promise((resolve) => { settle = resolve; });
  const show = async (blob) => {
    try {
      if (!blob) throw new Error("no thumbnail");
      const bitmap = await createImageBitmap(blob);
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      frame.classList.add("loaded");
    } catch {
      frame.classList.add("failed");
    }
    settle();
  };
  const link = h("a", { href: `#/images/${item.id}`, class: "thumb" }, frame,
    h("span", { class: "name" }, item.filename || item.id));
  const li = h("li", { class: "cell", dataset: { id: item.id } }, link,
    item.isPrivate ? h("span", { class: "badge" }, "private") : null);
  if (selection) {
    const box = h("input", { type: "checkbox", class: "pick", "aria-label": `Select ${item.filename || item.id}` });
    box.checked = selection.has(item.id);
    box.addEventListener("change", () => { if (box.checked) selection.add(item.id); else selection.delete(item.id); selection.changed(); });
    li.prepend(box);
  }
  return { li, show, decoded };
}

// The thumbnails' size in pixels: the cell's width at the screen's density, in steps of 24 px
// (a few sizes, each rendered and cached once), at most the API's 400.
function thumbSize(cell) {
  const px = cell.getBoundingClientRect().width * (window.devicePixelRatio || 1);
  return Math.min(400, Math.max(48, Math.ceil(px / 24) * 24));
}

// Every thumbnail of a grid in one request (not one each: the browser's six connections and a
// request's costs per image were most of a grid's time), asked as soon as the first cell gives the
// size; the other cells and their placeholders are made while it is on its way.
async function fillGrid(grid, items, selection) {
  if (!items.length) { grid.append(h("li", { class: "empty" }, "No images.")); return; }
  const first = thumbCell(items[0], selection);
  grid.append(first.li);
  const size = thumbSize(first.li.querySelector(".frame"));
  const asked = api.thumbnails(items.map((i) => i.id), size, size).catch((e) => {
    if (e instanceof api.ApiError && e.status === 401) throw e;
    say(e.message, "error");
    return new Map();
  });
  const cells = [first, ...items.slice(1).map((i) => thumbCell(i, selection))];
  grid.append(...cells.slice(1).map((c) => c.li));
  const blobs = await asked;
  performance.mark("mp-grid-thumbnails");
  items.forEach((item, n) => cells[n].show(blobs.get(item.id)));
  await Promise.all(cells.map((c) => c.decoded));
}

export async function images(main, { params, go, rerender }) {
  main.append(h("h1", {}, "Images"));
  const clientsP = allClients();
  const f = (k) => params.get(k) || "";
  const client = h("select", { name: "clientId" }, h("option", { value: "" }, "All clients"));
  const tag = h("input", { type: "text", name: "tag", value: f("tag"), list: "tag-suggestions", autocomplete: "off" });
  const suggestions = h("datalist", { id: "tag-suggestions" });
  const privacy = h("select", { name: "isPrivate" }, h("option", { value: "" }, "Any"),
    h("option", { value: "false" }, "Public"), h("option", { value: "true" }, "Private"));
  privacy.value = f("isPrivate");
  const from = h("input", { type: "date", name: "from", value: f("from") });
  const to = h("input", { type: "date", name: "to", value: f("to") });
  const text = h("input", { type: "search", name: "search", value: f("search") });
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter images" },
    field("Client", client), field("Tag", tag), suggestions, field("Privacy", privacy), field("From", from),
    field("To", to), field("Text", text), h("button", { type: "submit" }, "Filter"));
  let timer = null;
  tag.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const out = await api.get(`/images/tags${api.query({ search: tag.value.trim(), limit: 20, clientId: client.value })}`);
        clear(suggestions).append(...out.items.map((t) => h("option", { value: t.tag }, `${t.tag} (${t.count})`)));
      } catch (e) { say(e.message, "error"); }
    }, 150);
  });
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, el] of [["clientId", client], ["tag", tag], ["isPrivate", privacy], ["from", from], ["to", to],
      ["search", text]]) if (el.value) p.set(k, el.value);
    go("/images", p);
  });
  main.append(filters);

  const offset = Number(f("offset")) || 0;
  const q = { limit: PAGE, offset, clientId: f("clientId"), tag: f("tag"), isPrivate: f("isPrivate"),
    search: f("search"), from: f("from") ? `${f("from")}T00:00:00` : "", to: f("to") ? `${f("to")}T23:59:59.999` : "" };
  const list = await api.get(`/images${api.query(q)}`);
  performance.mark("mp-grid-list");

  const selection = new Set();
  const count = h("span", { class: "count", "aria-live": "polite" }, "0 selected");
  const bulkTag = h("input", { type: "text", name: "bulkTag", list: "tag-suggestions" });
  const buttons = {
    tag: h("button", { type: "button" }, "Add tag"),
    priv: h("button", { type: "button" }, "Make private"),
    pub: h("button", { type: "button" }, "Make public"),
    del: h("button", { type: "button", class: "danger" }, "Delete"),
  };
  selection.changed = () => {
    count.textContent = `${selection.size} selected`;
    for (const b of Object.values(buttons)) b.disabled = selection.size === 0;
  };
  selection.changed();
  const byId = new Map(list.items.map((i) => [i.id, i]));
  const bulk = async (button, label, fn) => {
    button.disabled = true;
    let failed = 0;
    let last = "";
    for (const iid of [...selection]) {
      try { await fn(byId.get(iid)); } catch (e) { failed++; last = e.message; }
    }
    if (failed) say(`${label}: ${failed} failed (${last})`, "error"); else say(`${label}: done.`);
    rerender();
  };
  buttons.tag.addEventListener("click", () => {
    const t = bulkTag.value.trim();
    if (!t) { say("Type a tag to add.", "error"); return; }
    bulk(buttons.tag, "Add tag", (i) => api.call("PATCH", `/images/${i.id}`, { tags: [...i.tags, t] }));
  });
  buttons.priv.addEventListener("click", () => bulk(buttons.priv, "Make private",
    (i) => api.call("PATCH", `/images/${i.id}`, { isPrivate: true })));
  buttons.pub.addEventListener("click", () => bulk(buttons.pub, "Make public",
    (i) => api.call("PATCH", `/images/${i.id}`, { isPrivate: false })));
  buttons.del.addEventListener("click", async () => {
    if (await confirmDialog(`Delete ${selection.size} image(s)? This cannot be undone.`)) {
      bulk(buttons.del, "Delete", (i) => api.call("DELETE", `/images/${i.id}`));
    }
  });
  const selectAll = h("button", { type: "button" }, "Select page");
  selectAll.addEventListener("click", () => {
    for (const box of main.querySelectorAll("input.pick")) { box.checked = true; selection.add(box.closest("li").dataset.id); }
    selection.changed();
  });
  main.append(h("div", { class: "bulk", role: "group", "aria-label": "Bulk actions" }, count, selectAll,
    field("Tag to add", bulkTag), buttons.tag, buttons.priv, buttons.pub, buttons.del));

  main.append(pager("/images", params, offset, list));
  const grid = h("ul", { class: "grid", "aria-label": "Images" });
  main.append(grid);
  const ready = fillGrid(grid, list.items, selection);
  main.append(uploadPanel(await clientsP, rerender));
  for (const c of await clientsP) client.append(h("option", { value: String(c.id) }, `${c.slug}${c.name ? ` — ${c.name}` : ""}`));
  client.value = f("clientId");
  await ready;
  performance.mark("mp-grid-ready");
  grid.dataset.ready = "true";
}

function uploadPanel(clientList, rerender) {
  const client = h("select", { name: "uploadClient", required: true },
    clientList.map((c) => h("option", { value: String(c.id) }, c.slug)));
  const owner = h("input", { type: "text", name: "externalUserId", maxlength: 255 });
  const priv = h("input", { type: "checkbox", name: "isPrivate" });
  const tags = h("input", { type: "text", name: "uploadTags" });
  const desc = h("input", { type: "text", name: "uploadDescription", maxlength: 4096 });
  const files = h("input", { type: "file", name: "file", multiple: true, accept: "image/*" });
  const progress = h("ul", { class: "progress", "aria-live": "polite" });
  const send = async (list) => {
    for (const file of list) {
      const bar = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
      const note = h("span", {}, "0 %");
      progress.append(h("li", {}, h("span", { class: "name" }, file.name), bar, note));
      const form = new FormData();
      if (owner.value) form.append("externalUserId", owner.value);
      if (priv.checked) form.append("isPrivate", "true");
      if (tags.value) form.append("tags", tags.value);
      if (desc.value) form.append("description", desc.value);
      form.append("file", file, file.name);
      try {
        await api.upload(`/images?clientId=${encodeURIComponent(client.value)}`, form, (done, total) => {
          const pct = total ? Math.round((100 * done) / total) : 0;
          bar.value = pct;
          note.textContent = `${pct} %`;
        });
        bar.value = 100;
        note.textContent = "uploaded";
      } catch (e) {
        note.textContent = e.message;
        note.className = "error";
      }
    }
    say("Upload finished.");
  };
  files.addEventListener("change", () => send([...files.files]));
  const zone = h("div", { class: "drop", tabindex: "-1" }, "Drop images here, or choose files: ", files);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); send([...e.dataTransfer.files]); });
  const refresh = h("button", { type: "button" }, "Show new uploads");
  refresh.addEventListener("click", rerender);
  return h("section", { class: "card upload", "aria-labelledby": "upload-h" }, h("h2", { id: "upload-h" }, "Upload on behalf of a client"),
    h("div", { class: "row wrap" }, field("Client", client), field("Owner (external user id)", owner),
      field("Tags (comma-separated)", tags), field("Description", desc), field("Private", priv)),
    field("Files", zone), progress, refresh);
}

// -- one image ---------------------------------------------------------------------------------

export async function image(main, { args, go }) {
  const iid = args[0];
  const [m, shares, urls] = await Promise.all([api.get(`/images/${iid}`), api.get(`/images/${iid}/share`),
    signedUrls([iid], 1024, 1024, "inside")]);
  main.append(h("h1", {}, m.filename || m.id));
  const pic = h("img", { src: urls[iid], alt: m.description || m.filename || "", class: "full" });
  const meta = [["Id", m.id], ["Client", h("a", { href: `#/clients/${m.clientId}` }, String(m.clientId))],
    ["Owner", m.userId || "the client"], ["Type", m.mimeType], ["Size", bytes(m.size)],
    ["Dimensions", `${m.width} × ${m.height}`], ["Privacy", m.isPrivate ? "private" : "public"],
    ["Tags", m.tags.join(", ") || "–"], ["Description", m.description || "–"], ["Albums", m.albumIds.join(", ") || "–"],
    ["Created", date(m.createdAt)], ["Updated", date(m.updatedAt)], ["BlurHash", m.blurHash || "–"],
    ["Public URL", m.url || "none (private)"], ["Content address", m.canonicalUri || "–"]];
  main.append(h("div", { class: "split" }, h("figure", { class: "card" }, pic),
    h("section", { class: "card" }, h("h2", {}, "Metadata"), h("dl", { class: "meta" },
      meta.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))));
  const variants = (m.variants || []).map((v) => [v.name, `${v.width} × ${v.height}`, bytes(v.size), v.mimeType]);
  main.append(h("section", { class: "card scroll" }, table("Variants", ["Name", "Dimensions", "Size", "Type"],
    [["original", `${m.width} × ${m.height}`, bytes(m.size), m.mimeType], ...variants])));

  // edit
  const tags = h("input", { type: "text", name: "tags", value: m.tags.join(", ") });
  const desc = h("textarea", { name: "description", rows: 3 }, m.description || "");
  const priv = h("input", { type: "checkbox", name: "isPrivate", checked: m.isPrivate });
  const save = h("button", { type: "submit" }, "Save");
  const edit = h("form", { class: "card" }, h("h2", {}, "Edit"), field("Tags (comma-separated)", tags),
    field("Description", desc), field("Private", priv), save);
  edit.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean), description: desc.value,
      isPrivate: priv.checked };
    if ((await act(save, () => api.call("PATCH", `/images/${iid}`, body), "Image saved.")) !== undefined) go(`/images/${iid}`);
  });
  main.append(edit);

  // share links
  const expires = h("select", { name: "expiresIn" }, [["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"],
    ["2592000", "30 days"]].map(([v, l]) => h("option", { value: v }, l)));
  expires.value = "604800";
  const create = h("button", { type: "submit" }, "Create share link");
  const created = h("div", { class: "created", "aria-live": "polite" });
  const shareForm = h("form", { class: "row wrap" }, field("Expires in", expires), create);
  const list = h("tbody");
  const showShares = (items) => {
    clear(list).append(...items.map((t) => {
      const revoke = h("button", { type: "button", class: "danger", disabled: t.state !== "active" }, "Revoke");
      revoke.addEventListener("click", async () => {
        if ((await act(revoke, () => api.call("DELETE", `/images/${iid}/share/${t.id}`), "Share link revoked.")) !== undefined) {
          showShares((await api.get(`/images/${iid}/share`)).items);
        }
      });
      return h("tr", { dataset: { token: String(t.id) } }, h("td", {}, String(t.id)), h("td", {}, date(t.createdAt)),
        h("td", {}, date(t.expiresAt)), h("td", { class: "state" }, t.state), h("td", {}, revoke));
    }));
  };
  showShares(shares.items);
  shareForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = await act(create, () => api.call("POST", `/images/${iid}/share`, { expiresIn: Number(expires.value) }),
      "Share link created: copy it now, it is shown once.");
    if (!out) return;
    const url = h("input", { type: "text", readonly: true, value: out.url, class: "share-url", "aria-label": "Share link" });
    const copy = h("button", { type: "button" }, "Copy");
    copy.addEventListener("click", async () => {
      url.select();
      try { await navigator.clipboard.writeText(out.url); say("Copied."); } catch { say("Select the link and copy it.", "error"); }
    });
    clear(created).append(h("div", { class: "row" }, url, copy));
    showShares((await api.get(`/images/${iid}/share`)).items);
  });
  main.append(h("section", { class: "card" }, h("h2", {}, "Share links"), shareForm, created,
    h("table", { class: "shares" }, h("caption", {}, "Links (a token is shown only when created)"),
      h("thead", {}, h("tr", {}, ["Id", "Created", "Expires", "State", ""].map((x) => h("th", { scope: "col" }, x)))), list)));

  const del = h("button", { type: "button", class: "danger" }, "Delete image");
  del.addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete ${m.filename || m.id}? Its bytes, variants and share links go too.`))) return;
    if ((await act(del, () => api.call("DELETE", `/images/${iid}`), "Image deleted.")) !== undefined) go("/images");
  });
  main.append(h("section", { class: "card" }, h("h2", {}, "Delete"), del));
}

// -- albums ------------------------------------------------------------------------------------

export async function albums(main, { params }) {
  main.append(h("h1", {}, "Albums"));
  const offset = Number(params.get("offset")) || 0;
  const list = await api.get(`/albums${api.query({ limit: 100, offset, clientId: params.get("clientId") })}`);
  main.append(h("section", { class: "card scroll" }, table(`${num(list.total)} album(s)`,
    ["Name", "Client", "Owner", "Public", "Images", "Created"],
    list.items.map((a) => [h("a", { href: `#/albums/${a.id}` }, a.name), String(a.clientId), a.userId || "",
      a.isPublic ? "yes" : "no", num(a.imageCount), date(a.createdAt)]))));
}

export async function album(main, { args, go }) {
  const aid = args[0];
  const [a, imgs, tokens] = await Promise.all([api.get(`/albums/${aid}`), api.get(`/albums/${aid}/images?limit=100`),
    api.get(`/albums/${aid}/tokens`)]);
  main.append(h("h1", {}, `Album ${a.name}`));
  const name = h("input", { type: "text", name: "name", value: a.name, maxlength: 255, required: true });
  const desc = h("textarea", { name: "description", rows: 2 }, a.description || "");
  const pub = h("input", { type: "checkbox", name: "isPublic", checked: a.isPublic });
  const save = h("button", { type: "submit" }, "Save");
  const form = h("form", { class: "card" }, h("h2", {}, "Edit"), field("Name", name), field("Description", desc),
    field("Public", pub), save);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(save, () => api.call("PATCH", `/albums/${aid}`, { name: name.value, description: desc.value, isPublic: pub.checked }),
      "Album saved.");
  });
  main.append(h("section", { class: "card" }, h("dl", { class: "meta" },
    [["Client", String(a.clientId)], ["Owner", a.userId || ""], ["Images", num(a.imageCount)],
      ["Created", date(a.createdAt)]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))), form);

  const tbody = h("tbody");
  const show = (items) => clear(tbody).append(...items.map((t) => {
    const revoke = h("button", { type: "button", class: "danger", disabled: t.state !== "active" }, "Revoke");
    revoke.addEventListener("click", async () => {
      if ((await act(revoke, () => api.call("DELETE", `/albums/${aid}/tokens/${t.id}`), "Token revoked.")) !== undefined) {
        show((await api.get(`/albums/${aid}/tokens`)).items);
      }
    });
    return h("tr", {}, h("td", {}, String(t.id)), h("td", {}, date(t.expiresAt)), h("td", {}, t.state), h("td", {}, revoke));
  }));
  show(tokens.items);
  const expires = h("input", { type: "number", name: "expiresIn", min: 1, value: 604800 });
  const create = h("button", { type: "submit" }, "Create access token");
  const out = h("div", { "aria-live": "polite" });
  const tform = h("form", { class: "row wrap" }, field("Expires in (seconds)", expires), create);
  tform.addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = await act(create, () => api.call("POST", `/albums/${aid}/tokens`, { expiresIn: Number(expires.value) }),
      "Access token created: copy it now, it is shown once.");
    if (!t) return;
    clear(out).append(h("input", { type: "text", readonly: true, value: t.url, "aria-label": "Album link", class: "share-url" }));
    show((await api.get(`/albums/${aid}/tokens`)).items);
  });
  main.append(h("section", { class: "card" }, h("h2", {}, "Access tokens"), tform, out,
    h("table", {}, h("caption", {}, "Tokens"), h("thead", {}, h("tr", {}, ["Id", "Expires", "State", ""].map((x) => h("th", { scope: "col" }, x)))), tbody)));
  const grid = h("ul", { class: "grid small" });
  main.append(h("section", { class: "card" }, h("h2", {}, `Images (${num(imgs.total)})`), grid));
  await fillGrid(grid, imgs.items, null);
  const del = h("button", { type: "button", class: "danger" }, "Delete album");
  del.addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete the album ${a.name}? Its images are kept.`))) return;
    if ((await act(del, () => api.call("DELETE", `/albums/${aid}`), "Album deleted.")) !== undefined) go("/albums");
  });
  main.append(h("section", { class: "card" }, h("h2", {}, "Delete"), del));
}

// -- avatars -----------------------------------------------------------------------------------

// An avatar's picture at `size` (CSS px), or "No picture" when there is none to show (the API
// answers no part for it: not a ready image).
function picture(blob, alt, size) {
  if (!blob) return h("span", { class: "nopic", role: "img", "aria-label": `${alt}: no picture` }, "No picture");
  const url = URL.createObjectURL(blob);
  const img = h("img", { src: url, alt, width: size, height: size, class: "avatar", decoding: "async" });
  const release = () => URL.revokeObjectURL(url);
  img.addEventListener("load", release);
  img.addEventListener("error", () => { release(); img.replaceWith(picture(null, alt, size)); });
  return img;
}

const dims = (a) => (a.width && a.height ? `${a.width} × ${a.height}` : "–");

async function avatarPictures(list, size) {
  const dpr = window.devicePixelRatio || 1;
  const px = Math.min(400, Math.ceil((size * dpr) / 24) * 24);
  try {
    return await api.thumbnails(list.filter((a) => a.mediaId).map((a) => a.mediaId), px, px);
  } catch (e) {
    if (e instanceof api.ApiError && e.status === 401) throw e;
    say(e.message, "error");
    return new Map();
  }
}

export async function avatars(main, { params }) {
  main.append(h("h1", {}, "Avatars"));
  const offset = Number(params.get("offset")) || 0;
  const list = await api.get(`/avatars${api.query({ limit: PAGE, offset, clientId: params.get("clientId") })}`);
  const pics = await avatarPictures(list.items, 48);
  main.append(h("section", { class: "card scroll" }, table(`${num(list.total)} avatar(s)`,
    ["Picture", "User", "Client", "Type", "Size", "Dimensions", "Updated"],
    list.items.map((a) => [picture(pics.get(a.mediaId), `Avatar of ${a.externalUserId}`, 48),
      h("a", { href: `#/avatars/${a.id}` }, a.externalUserId), String(a.clientId), a.mimeType || "–",
      bytes(a.size), dims(a), date(a.updatedAt)]))));
  main.append(pager("/avatars", params, offset, list));
}

export async function avatar(main, { args, go }) {
  const a = await api.get(`/avatars/${args[0]}`);
  const pics = await avatarPictures([a], 256);
  main.append(h("h1", {}, `Avatar of ${a.externalUserId}`), h("section", { class: "card" },
    picture(pics.get(a.mediaId), `Avatar of ${a.externalUserId}`, 256), h("dl", { class: "meta" },
      [["Client", String(a.clientId)], ["User", a.externalUserId], ["Media", a.mediaId || "–"],
        ["Type", a.mimeType || "–"], ["Size", bytes(a.size)], ["Dimensions", dims(a)],
        ["Created", date(a.createdAt)], ["Updated", date(a.updatedAt)]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))));
  const del = h("button", { type: "button", class: "danger" }, "Delete avatar");
  del.addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete the avatar of ${a.externalUserId}?`))) return;
    if ((await act(del, () => api.call("DELETE", `/avatars/${a.id}`), "Avatar deleted.")) !== undefined) go("/avatars");
  });
  main.append(del);
}

// -- profile -----------------------------------------------------------------------------------

export async function profile(main, { go }) {
  const me = await api.get("/auth/me");
  main.append(h("h1", {}, "Profile"));
  const name = h("input", { type: "text", name: "name", value: me.name || "", maxlength: 255, autocomplete: "name" });
  const email = h("input", { type: "email", name: "email", value: me.email, required: true, autocomplete: "username" });
  const save = h("button", { type: "submit" }, "Save");
  const form = h("form", { class: "card" }, h("h2", {}, "Your details"), field("Name", name), field("Email", email), save);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(save, () => api.call("PATCH", "/auth/me", { name: name.value, email: email.value }), "Profile saved.");
  });
  const current = h("input", { type: "password", name: "currentPassword", required: true, autocomplete: "current-password" });
  const next = h("input", { type: "password", name: "newPassword", required: true, minlength: 10, autocomplete: "new-password" });
  const change = h("button", { type: "submit" }, "Change password");
  const pw = h("form", { class: "card" }, h("h2", {}, "Password"), field("Current password", current),
    field("New password", next, "At least 10 characters. Every session ends: you sign in again."), change);
  pw.addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = await act(change, () => api.call("POST", "/auth/me/change-password",
      { currentPassword: current.value, newPassword: next.value }));
    if (out === undefined) return;
    try { await api.signOut(false); } catch { /* every session has ended already */ }
    say("Password changed: every session has ended. Sign in with the new password.");
    go("/signin");
  });
  const everywhere = h("button", { type: "button", class: "danger" }, "Sign out everywhere");
  everywhere.addEventListener("click", async () => {
    if ((await act(everywhere, async () => { await api.signOut(true); return true; })) === undefined) return;
    say("Signed out of every session.");
    go("/signin");
  });
  main.append(form, pw, h("section", { class: "card" }, h("h2", {}, "Sessions"),
    h("p", {}, "End every session of this account, on every device."), everywhere));
}

export { errorBox };
